#!/usr/bin/env bash
# Build a release of the collector into OUTDIR: the eBPF object and the
# published .NET host side by side. The Makefile and the Dockerfile both call
# this script, so a CI run of the Makefile exercises the image's build steps.
#   usage: scripts/build-release.sh OUTDIR     (e.g. /opt/akto-collector)
set -euo pipefail

if [ "$#" -ne 1 ]; then
    echo "usage: $0 OUTDIR" >&2
    exit 2
fi
mkdir -p "$1"
OUTDIR=$(cd "$1" && pwd)   # absolute, before leaving the caller's directory

cd "$(dirname "${BASH_SOURCE[0]}")/.."
make bpf                   # build/collector.bpf.o (CO-RE, from build/vmlinux.h)
dotnet publish src/Collector/Collector.csproj -c Release -o "$OUTDIR"
cp build/collector.bpf.o "$OUTDIR/"
echo "release in $OUTDIR"
