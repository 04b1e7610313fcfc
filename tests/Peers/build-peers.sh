#!/usr/bin/env bash
# Builds the test peers that need building (the .NET gRPC peer) into build/peers/. Idempotent:
# skips the build when the output is newer than every source file. Safe to call concurrently (flock).
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
src="$root/tests/Peers/GrpcPeer"
out="$root/build/peers/grpc"
mkdir -p "$root/build/peers"
exec 9>"$root/build/peers/.build.lock"
flock 9
stamp="$out/.built"
if [[ -f "$stamp" && -x "$out/GrpcPeer" ]] && \
   [[ -z "$(find "$src" -path "$src/obj" -prune -o -path "$src/bin" -prune -o -type f -newer "$stamp" -print -quit)" ]]; then
  exit 0
fi
export DOTNET_CLI_TELEMETRY_OPTOUT=1 DOTNET_NOLOGO=1
dotnet build "$src/GrpcPeer.csproj" -c Release -o "$out" -nologo -v quiet
touch "$stamp"
