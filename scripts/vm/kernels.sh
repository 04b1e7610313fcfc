#!/usr/bin/env bash
# Debian kernels to boot under qemu (scripts/vm/boot.sh), fetched with a private apt configuration
# (own sources, lists and cache under the cache dir; the system's apt sources stay as they are).
#   kernels.sh fetch NAME     download + unpack into $KERNEL_CACHE/NAME/ (does nothing if there)
#   kernels.sh path NAME      the vmlinuz path
#   kernels.sh release NAME   the uname -r string
#   kernels.sh list           the names
# NAME: 5.10 (bullseye), 6.1 (bookworm), 6.12 and 6.12-rt (bookworm-backports).
# KERNEL_CACHE defaults to /var/cache/collector-kernels.
set -euo pipefail

CACHE=${KERNEL_CACHE:-/var/cache/collector-kernels}
NAMES="5.10 6.1 6.12 6.12-rt"

die() { echo "kernels.sh: $*" >&2; exit 1; }

usage() {
    echo "usage: $0 fetch|path|release NAME   (NAME: ${NAMES// /, })" >&2
    echo "       $0 list" >&2
    exit 2
}

# suite, meta package and a pattern the concrete image package must match, per NAME
spec() {
    case "$1" in
        5.10)    SUITE=bullseye;           META=linux-image-amd64;    PATTERN='^linux-image-5\.10\.0-[0-9]+-amd64$' ;;
        6.1)     SUITE=bookworm;           META=linux-image-amd64;    PATTERN='^linux-image-6\.1\.0-[0-9]+-amd64$' ;;
        6.12)    SUITE=bookworm-backports; META=linux-image-amd64;    PATTERN='^linux-image-6\.12\.[0-9]+\+deb12-amd64$' ;;
        6.12-rt) SUITE=bookworm-backports; META=linux-image-rt-amd64; PATTERN='^linux-image-6\.12\.[0-9]+\+deb12-rt-amd64$' ;;
        *) usage ;;
    esac
}

# The mirror and keyring the machine itself uses (deb822 sources of the main archive).
mirror() {
    local f=/etc/apt/sources.list.d/debian.sources uri="" key=""
    if [ -r "$f" ]; then
        # first stanza whose suites include bookworm (not -security)
        uri=$(awk 'BEGIN{RS=""} /Suites:[^\n]*bookworm( |\n|$)/ {
                     n=split($0,l,"\n"); for(i=1;i<=n;i++) if (l[i] ~ /^URIs:/) {sub(/^URIs:[ \t]*/,"",l[i]); split(l[i],u," "); print u[1]; exit}
                   }' "$f")
        key=$(awk 'BEGIN{RS=""} /Suites:[^\n]*bookworm( |\n|$)/ {
                     n=split($0,l,"\n"); for(i=1;i<=n;i++) if (l[i] ~ /^Signed-By:/) {sub(/^Signed-By:[ \t]*/,"",l[i]); print l[i]; exit}
                   }' "$f")
    fi
    MIRROR=${uri:-http://deb.debian.org/debian}
    KEYRING=${key:-/usr/share/keyrings/debian-archive-keyring.gpg}
}

# apt with a private state per suite (so that a meta package resolves within that suite only)
apt_private() {
    local tool=$1; shift
    "$tool" -q \
        -o Dir::Etc::sourcelist="$APTDIR/sources.list" \
        -o Dir::Etc::sourceparts=/dev/null \
        -o Dir::Etc::preferences=/dev/null \
        -o Dir::Etc::preferencesparts=/dev/null \
        -o Dir::State::lists="$APTDIR/lists" \
        -o Dir::State::status="$APTDIR/status" \
        -o Dir::Cache="$APTDIR/cache" \
        -o APT::Sandbox::User=root \
        -o Acquire::Languages=none \
        -o Acquire::IndexTargets::deb::DEP-11::DefaultEnabled=false \
        -o Acquire::IndexTargets::deb::DEP-11-icons::DefaultEnabled=false \
        -o Acquire::IndexTargets::deb::DEP-11-icons-hidpi::DefaultEnabled=false \
        -o APT::Get::List-Cleanup=false \
        "$@"
}

apt_setup() {
    mirror
    APTDIR="$CACHE/apt/$SUITE"
    mkdir -p "$APTDIR/lists/partial" "$APTDIR/cache/archives/partial"
    : > "$APTDIR/status.new"; [ -e "$APTDIR/status" ] || mv "$APTDIR/status.new" "$APTDIR/status"; rm -f "$APTDIR/status.new"
    local line="deb [signed-by=$KEYRING] $MIRROR $SUITE main"
    if [ "$(cat "$APTDIR/sources.list" 2>/dev/null)" != "$line" ]; then
        echo "$line" > "$APTDIR/sources.list"
        rm -f "$APTDIR/updated"
    fi
    if [ ! -e "$APTDIR/updated" ]; then
        echo "kernels.sh: apt-get update for $SUITE ($MIRROR)" >&2
        apt_private apt-get update >&2
        touch "$APTDIR/updated"
    fi
}

# The concrete image package: what the meta package depends on; else the newest matching name.
resolve() {
    local pkg
    pkg=$(apt_private apt-cache show --no-all-versions "$META" 2>/dev/null |
          sed -n 's/^Depends: //p' | tr ',|' '\n\n' | sed 's/^ *//; s/ .*//' | grep -E "$PATTERN" | head -n1 || true)
    if [ -z "$pkg" ]; then
        pkg=$(apt_private apt-cache pkgnames linux-image- | grep -E "$PATTERN" | sort -V | tail -n1 || true)
    fi
    [ -n "$pkg" ] || die "no package matching $PATTERN in $SUITE"
    echo "$pkg"
}

fetch() {
    local name=$1 dir="$CACHE/$1"
    if [ -e "$dir/.fetched" ]; then
        echo "kernels.sh: $name already in $dir" >&2
        cat "$dir/.fetched"
        return 0
    fi
    spec "$name"
    apt_setup
    local pkg version tmp deb
    pkg=$(resolve)
    version=$(apt_private apt-cache show --no-all-versions "$pkg" | sed -n 's/^Version: //p' | head -n1)
    echo "kernels.sh: $name -> $pkg $version ($SUITE)" >&2
    tmp=$(mktemp -d "$CACHE/.fetch-$name.XXXXXX")
    trap 'rm -rf "$tmp"' EXIT
    (cd "$tmp" && apt_private apt-get download "$pkg=$version" >&2)
    deb=$(ls "$tmp"/*.deb)
    mkdir -p "$tmp/root"
    dpkg-deb -x "$deb" "$tmp/root"
    ls "$tmp"/root/boot/vmlinuz-* >/dev/null 2>&1 || die "$deb has no boot/vmlinuz-*"
    ls -d "$tmp"/root/lib/modules/* >/dev/null 2>&1 || die "$deb has no lib/modules/*"
    echo "$pkg $version" > "$tmp/root/.fetched"
    rm -rf "$dir"
    mv "$tmp/root" "$dir"
    rm -rf "$tmp"; trap - EXIT
    echo "$pkg $version"
}

need() {
    [ -e "$CACHE/$1/.fetched" ] || die "kernel $1 not fetched: run $0 fetch $1"
}

[ "$#" -ge 1 ] || usage
cmd=$1; shift
case "$cmd" in
    list) echo "$NAMES" | tr ' ' '\n' ;;
    fetch)
        [ "$#" -eq 1 ] || usage; spec "$1"
        mkdir -p "$CACHE"
        fetch "$1"
        ;;
    path)
        [ "$#" -eq 1 ] || usage; spec "$1"; need "$1"
        ls "$CACHE/$1"/boot/vmlinuz-* | head -n1
        ;;
    release)
        [ "$#" -eq 1 ] || usage; spec "$1"; need "$1"
        basename "$(ls -d "$CACHE/$1"/lib/modules/* | head -n1)"
        ;;
    *) usage ;;
esac
