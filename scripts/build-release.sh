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
# ReadyToRun (READY_TO_RUN=true, the default): the assemblies carry native code compiled ahead of
# time, so a collector started under load does not run its hot path in the JIT's first tier;
# tiered compilation still recompiles the hot methods, once (dynamic PGO is off: see README, Start-up).
# It needs a runtime identifier; --self-contained false keeps the host's .NET runtime.
# READY_TO_RUN=false publishes IL only (JIT at start), the build R2R is compared against.
if [ "${READY_TO_RUN:-true}" = true ]; then
    dotnet publish src/Collector/Collector.csproj -c Release -r linux-x64 --self-contained false \
        -p:PublishReadyToRun=true -o "$OUTDIR"
else
    dotnet publish src/Collector/Collector.csproj -c Release -o "$OUTDIR"
fi
cp build/collector.bpf.o "$OUTDIR/"
echo "release in $OUTDIR"
