#!/usr/bin/env bash
# Coverage-guided fuzzing of the collector's parsers: SharpFuzz instruments Collector.dll, afl-fuzz
# (Debian's afl++) drives tests/Collector.Fuzz, one target after the other. Not part of make test.
#
#   scripts/fuzz.sh                        (make fuzz)
#   FUZZ_SECONDS=180 FUZZ_TARGETS=http1 scripts/fuzz.sh
#
# FUZZ_SECONDS   seconds of afl-fuzz per target (default 1800)
# FUZZ_TARGETS   targets to run (default "http1 http2 hpack"; see tests/Collector.Fuzz/Program.cs)
# FUZZ_TIMEOUT   afl's per-input timeout in ms: longer is a hang (default 2000)
# FUZZ_REPORT=1  no fuzzing: the table and findings of the last run
# FUZZ_PARALLEL=1 the targets' afl-fuzz runs at the same time (one core each), not one after another
#
# Output under build/fuzz/<target>/: in/ (the seeds given), out/default/ (afl's queue, crashes,
# hangs, fuzzer_stats), afl.log. The previous run's out/ is kept as out.prev/. Ends with a table
# per target and the paths of crashes and hangs, each with the command that replays it (the
# exception and its stack). Exit status 1 when something was found.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

SECONDS_PER_TARGET=${FUZZ_SECONDS:-1800}
TARGETS=${FUZZ_TARGETS:-http1 http2 hpack}
TIMEOUT_MS=${FUZZ_TIMEOUT:-2000}
ROOT=build/fuzz
BIN=$ROOT/bin
TOOLS=$ROOT/tools
PROJECT=tests/Collector.Fuzz
export DOTNET_CLI_TELEMETRY_OPTOUT=1 DOTNET_NOLOGO=1

declare -A FOUND=()

# builds, instruments, seeds and runs afl-fuzz on each target
fuzz_all() {
    if ! command -v afl-fuzz >/dev/null; then
        if [ "$(id -u)" = 0 ]; then apt-get install -y afl++ >/dev/null || { apt-get update >/dev/null && apt-get install -y afl++ >/dev/null; }; fi
        command -v afl-fuzz >/dev/null || { echo "afl-fuzz is missing: apt-get install afl++" >&2; exit 2; }
    fi
    mkdir -p "$ROOT"

    # sharpfuzz (SharpFuzz.CommandLine), a dotnet tool kept in build/, from the configured NuGet source
    if [ ! -x "$TOOLS/sharpfuzz" ]; then
        dotnet tool install --tool-path "$TOOLS" SharpFuzz.CommandLine --version 2.3.0
    fi

    # a fresh copy of the fuzz project and Collector.dll each time, then Collector.dll instrumented
    # (once per copy)
    rm -rf "$BIN"
    dotnet publish "$PROJECT/Collector.Fuzz.csproj" -c Release -o "$BIN" --nologo -v quiet
    "$TOOLS/sharpfuzz" "$BIN/Collector.dll"
    FUZZ=(dotnet "$BIN/Collector.Fuzz.dll")

    export AFL_SKIP_BIN_CHECK=1          # dotnet itself is not instrumented: SharpFuzz talks to afl
    export AFL_SKIP_CPUFREQ=1
    export AFL_I_DONT_CARE_ABOUT_MISSING_CRASHES=1
    export AFL_NO_AFFINITY=1             # two cores shared with other work
    export AFL_NO_UI=1                   # a log, not a screen
    export AFL_FAST_CAL=1

    for target in $TARGETS; do
        dir=$ROOT/$target
        mkdir -p "$dir"
        rm -rf "$dir/in" "$dir/out.prev" "$dir/failing-seeds"
        [ -d "$dir/out" ] && mv "$dir/out" "$dir/out.prev"
        mkdir -p "$dir/in"
        if [ -d "$PROJECT/corpus/$target" ]; then cp "$PROJECT/corpus/$target"/* "$dir/in/" 2>/dev/null || true; fi
        if [ "$target" = http1 ]; then
            # the capture corpus: each recorded connection as a script
            "${FUZZ[@]}" seeds-from-capture "$dir/in" tests/Collector.Tests/Corpus/*.json
        fi
        if [ -z "$(ls -A "$dir/in")" ]; then printf 'seed\n' > "$dir/in/empty"; fi
        # a seed that already fails is a finding, and afl refuses to start with it: reported, set aside
        mkdir -p "$dir/failing-seeds"
        if ! "${FUZZ[@]}" "$target" "$dir/in" > "$dir/seeds.log" 2>&1; then
            grep '^FAIL' "$dir/seeds.log" | awk '{print $4}' | while read -r f; do mv "$f" "$dir/failing-seeds/"; done
            echo "[$target] seeds that fail (see $dir/seeds.log): $(ls "$dir/failing-seeds" | tr '\n' ' ')"
            FOUND[$target]=1
            if [ -z "$(ls -A "$dir/in")" ]; then printf 'seed\n' > "$dir/in/empty"; fi
        fi
        dict=()
        [ -f "$PROJECT/dict/$target.dict" ] && dict=(-x "$PROJECT/dict/$target.dict")
        echo "[$target] afl-fuzz for ${SECONDS_PER_TARGET}s ($(ls "$dir/in" | wc -l) seeds), log $dir/afl.log"
        afl-fuzz -i "$dir/in" -o "$dir/out" -t "$TIMEOUT_MS" -m none -V "$SECONDS_PER_TARGET" "${dict[@]}" \
            -- "${FUZZ[@]}" "$target" > "$dir/afl.log" 2>&1 &
        PIDS[$target]=$!
        [ "${FUZZ_PARALLEL:-0}" = 1 ] || wait_for "$target"
    done
    for target in "${!PIDS[@]}"; do wait_for "$target"; done
}

declare -A PIDS=()
wait_for() {
    local target=$1 status=0
    wait "${PIDS[$target]}" || status=$?
    unset "PIDS[$target]"
    if [ "$status" -ne 0 ]; then
        echo "[$target] afl-fuzz failed ($status):" >&2
        tail -n 15 "$ROOT/$target/afl.log" >&2
        FOUND[$target]=1
    fi
}

[ "${FUZZ_REPORT:-0}" = 1 ] || fuzz_all

# ---- the table ----
stat() { awk -F' *: *' -v k="$2" '$1 == k { print $2; exit }' "$1"; }
echo
printf '%-7s %12s %9s %8s %8s %7s %8s %6s\n' target executions execs/s corpus coverage edges crashes hangs
for target in $TARGETS; do
    s=$ROOT/$target/out/default/fuzzer_stats
    if [ ! -f "$s" ]; then printf '%-7s %s\n' "$target" "(no fuzzer_stats: see $ROOT/$target/afl.log)"; continue; fi
    corpus=$(stat "$s" corpus_count); [ -n "$corpus" ] || corpus=$(stat "$s" paths_total)
    crashes=$(stat "$s" saved_crashes); [ -n "$crashes" ] || crashes=$(stat "$s" unique_crashes)
    hangs=$(stat "$s" saved_hangs); [ -n "$hangs" ] || hangs=$(stat "$s" unique_hangs)
    printf '%-7s %12s %9s %8s %8s %7s %8s %6s\n' "$target" "$(stat "$s" execs_done)" "$(stat "$s" execs_per_sec)" \
        "$corpus" "$(stat "$s" bitmap_cvg)" "$(stat "$s" edges_found)" "$crashes" "$hangs"
done

# ---- what was found: each replays with its exception and stack ----
for target in $TARGETS; do
    out=$ROOT/$target/out/default
    if [ -n "$(ls -A "$ROOT/$target/failing-seeds" 2>/dev/null)" ]; then
        FOUND[$target]=1
        echo
        echo "[$target] seeds that fail ($ROOT/$target/failing-seeds):"
        echo "  replay: dotnet $BIN/Collector.Fuzz.dll $target $ROOT/$target/failing-seeds"
    fi
    for kind in crashes hangs; do
        files=$(find "$out/$kind" -type f -name 'id:*' 2>/dev/null | sort)
        [ -n "$files" ] || continue
        FOUND[$target]=1
        echo
        echo "[$target] $kind ($out/$kind):"
        echo "$files" | sed 's/^/  /'
        echo "  replay: dotnet $BIN/Collector.Fuzz.dll $target $out/$kind   (FUZZ_VERBOSE=1: what each did)"
    done
done
if [ ${#FOUND[@]} -gt 0 ]; then
    echo
    echo "found something in: ${!FOUND[*]}; turn each input into a test in tests/Collector.Tests/Http/FuzzRegressionTests.cs"
    echo "minimize one first: AFL_SKIP_BIN_CHECK=1 afl-tmin -i FILE -o FILE.min -t 5000 -m none -- dotnet $BIN/Collector.Fuzz.dll TARGET"
    exit 1
fi
echo
echo "nothing found"
