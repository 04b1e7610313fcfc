#!/usr/bin/env bash
# Builds the Go test programs (tests/Peers/go-tls, tests/Peers/go-offsets) with each Go toolchain
# Debian packages (scripts/deps.sh installs them) in the forms Go services ship in:
#   OUTDIR/goV/go-tls-default     go build
#   OUTDIR/goV/go-tls-strip       -ldflags "-s -w" (no symbol table, no DWARF)
#   OUTDIR/goV/go-tls-pie         -buildmode=pie
#   OUTDIR/goV/go-tls-piestrip    -buildmode=pie -ldflags "-s -w"
#   OUTDIR/goV/go-tls-nocgo       CGO_ENABLED=0
#   OUTDIR/goV/go-offsets         go build
# for V in 1.19 1.21 1.22 1.23; Go 1.15 (the "too old" case) only go-tls-default and go-offsets;
# Go 1.23 also go-tls-extpie and go-tls-extpiestrip (-linkmode=external -buildmode=pie, gcc links)
# when gcc is there. Offline: stdlib only, GOPATH mode, no proxy, no toolchain download.
# Idempotent: an output newer than its sources (and this script) is not built again. Safe to call
# concurrently (flock).
#   usage: tests/Peers/build-go.sh OUTDIR      (make test uses build/peers/go)
set -euo pipefail
[ "$#" -eq 1 ] || { echo "usage: $0 OUTDIR" >&2; exit 2; }
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
mkdir -p "$1"
out="$(cd "$1" && pwd)"

exec 9>"$out/.build.lock"
flock 9

# Debian's go.env says GOTOOLCHAIN=auto and a module proxy: neither may be used here
export GO111MODULE=off GOPROXY=off GOTOOLCHAIN=local GOFLAGS=-p=1 GOTELEMETRY=off
# the build cache and GOPATH live with the outputs, so a build needs no HOME and make clean clears them
export GOCACHE="$out/.gocache" GOPATH="$out/.gopath"

# up to date: the output exists, no source (nor this script) is newer, and it was built by the
# toolchain's present version (a Debian update of golang-1.xx-go must rebuild what it built)
fresh() {
    local target=$1 src=$2 version=$3
    [ -x "$target" ] && [ "$(cat "$target.version" 2>/dev/null)" = "$version" ] &&
        [ -z "$(find "$src" "${BASH_SOURCE[0]}" -newer "$target" -print -quit)" ]
}

# build VERSION PROGRAM FORM: one output, skipped when fresh
build() {
    local v=$1 prog=$2 form=$3
    local go="/usr/lib/go-$v/bin/go" src="$here/$prog" name="$prog"
    [ "$prog" = go-tls ] && name="$prog-$form"
    local target="$out/go$v/$name"
    [ -x "$go" ] || { echo "build-go: $go is missing (scripts/deps.sh installs golang-$v-go)" >&2; exit 1; }
    local version
    version="$(head -n 1 "/usr/lib/go-$v/VERSION")"
    fresh "$target" "$src" "$version" && return 0
    mkdir -p "$out/go$v"
    local flags=() env=()
    case "$form" in
        default) ;;
        strip) flags=(-ldflags "-s -w") ;;
        pie) flags=(-buildmode=pie) ;;
        piestrip) flags=(-buildmode=pie -ldflags "-s -w") ;;
        nocgo) env=(CGO_ENABLED=0) ;;
        extpie) flags=(-buildmode=pie -ldflags "-linkmode=external") ;;
        extpiestrip) flags=(-buildmode=pie -ldflags "-linkmode=external -s -w") ;;
        *) echo "build-go: unknown form $form" >&2; exit 2 ;;
    esac
    echo "build-go: go$v $name" >&2
    # built under a temporary name and moved: a half-written binary is never taken as up to date
    (cd "$src" && env "${env[@]}" nice -n 10 "$go" build "${flags[@]}" -o "$target.tmp" .)
    mv -f "$target.tmp" "$target"
    echo "$version" > "$target.version"
}

for v in 1.19 1.21 1.22 1.23; do
    for form in default strip pie piestrip nocgo; do build "$v" go-tls "$form"; done
    build "$v" go-offsets default
done
build 1.15 go-tls default
build 1.15 go-offsets default
if command -v gcc >/dev/null 2>&1; then
    build 1.23 go-tls extpie
    build 1.23 go-tls extpiestrip
fi
