#!/usr/bin/env bash
# Installs what the build, the collector and the tests need on Debian 12, and mounts tracefs.
# Idempotent: installs only what is missing, and runs apt-get update only then.
set -euo pipefail

PACKAGES=(
  # build
  clang llvm libbpf-dev bpftool make gcc libelf-dev zlib1g-dev pkg-config libssl-dev
  # runtime: libbpf1 comes with libbpf-dev. librdkafka is not a Debian package here: it comes from
  # NuGet (librdkafka.redist) inside the published collector and needs only glibc
  # tests and benchmarks: real peers, an independent Kafka consumer (kcat, on Debian's own
  # librdkafka1), a real Prometheus
  kcat nginx-light curl wget openssl python3 nodejs iproute2 prometheus wrk procps bpftrace bc util-linux
  # other kernels under qemu (scripts/vm): emulator, the initramfs's shell, its archive, .ko.xz/.zst modules
  qemu-system-x86 busybox-static cpio xz-utils zstd
  # HTTP/2 peers and load: an independent h2/HPACK implementation (python3-h2, python3-hpack), h2load
  python3-h2 python3-hpack nghttp2-client
  # coverage-guided fuzzing of the parsers (make fuzz, not part of make test)
  afl++
)

# Go toolchains for the Go TLS tests (tests/Peers/build-go.sh): 1.19 is bookworm's golang-go;
# 1.21-1.23 come from bookworm-backports and 1.15 (the "too old" case) from bullseye
GO_PACKAGES=(golang-go golang-1.15-go golang-1.21-go golang-1.22-go golang-1.23-go)

missing=()
for p in "${PACKAGES[@]}" "${GO_PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done

# The two extra suites, on the mirror and keyring the system's own Debian sources use, pinned so
# that only the Go toolchains (and their -src packages) are ever taken from them: priority 1 keeps
# every other package of those suites from being installed or upgraded to.
go_sources() {
  local f=/etc/apt/sources.list.d/debian.sources uri="" key=""
  if [ -r "$f" ]; then
    # the first stanza whose suites include bookworm itself (not bookworm-security)
    uri=$(awk 'BEGIN{RS=""} /Suites:[^\n]*bookworm( |\n|$)/ {
                 n=split($0,l,"\n"); for(i=1;i<=n;i++) if (l[i] ~ /^URIs:/) {sub(/^URIs:[ \t]*/,"",l[i]); split(l[i],u," "); print u[1]; exit}
               }' "$f")
    key=$(awk 'BEGIN{RS=""} /Suites:[^\n]*bookworm( |\n|$)/ {
                 n=split($0,l,"\n"); for(i=1;i<=n;i++) if (l[i] ~ /^Signed-By:/) {sub(/^Signed-By:[ \t]*/,"",l[i]); print l[i]; exit}
               }' "$f")
  fi
  printf 'Types: deb\nURIs: %s\nSuites: bookworm-backports bullseye\nComponents: main\nSigned-By: %s\n' \
    "${uri:-http://deb.debian.org/debian}" "${key:-/usr/share/keyrings/debian-archive-keyring.gpg}" \
    > /etc/apt/sources.list.d/collector-go.sources
  cat > /etc/apt/preferences.d/collector-go <<'PIN'
# Only the Go toolchains come from these suites; nothing else is taken from them.
Package: *
Pin: release n=bullseye
Pin-Priority: 1

Package: *
Pin: release n=bookworm-backports
Pin-Priority: 1

Package: golang-1.15-go golang-1.15-src
Pin: release n=bullseye
Pin-Priority: 500

Package: golang-1.21-go golang-1.21-src golang-1.22-go golang-1.22-src golang-1.23-go golang-1.23-src
Pin: release n=bookworm-backports
Pin-Priority: 500
PIN
}

if [ "${#missing[@]}" -gt 0 ]; then
  echo "deps: installing ${missing[*]}" >&2
  export DEBIAN_FRONTEND=noninteractive
  # the extra suites are added only when a toolchain is missing, before the one apt-get update
  for p in "${missing[@]}"; do
    case " ${GO_PACKAGES[*]} " in *" $p "*) go_sources; break ;; esac
  done
  apt-get update -qq
  # policy-rc.d keeps apt from starting nginx or prometheus as services: tests start their own
  printf '#!/bin/sh\nexit 101\n' > /usr/sbin/policy-rc.d; chmod +x /usr/sbin/policy-rc.d
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
  rm -f /usr/sbin/policy-rc.d
fi

if ! command -v dotnet >/dev/null 2>&1; then
  echo "deps: the .NET 10 SDK is required (dotnet on PATH); install it from Microsoft's Debian 12 repository" >&2
  exit 1
fi

# libbpf reads tracepoint ids from tracefs, which is not mounted at boot here
if [ ! -e /sys/kernel/tracing/events/syscalls ]; then
  mount -t tracefs tracefs /sys/kernel/tracing
fi
