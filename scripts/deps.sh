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

missing=()
for p in "${PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ "${#missing[@]}" -gt 0 ]; then
  echo "deps: installing ${missing[*]}" >&2
  export DEBIAN_FRONTEND=noninteractive
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
