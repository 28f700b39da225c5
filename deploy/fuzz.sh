#!/usr/bin/env bash
# Builds the libFuzzer targets of Tests/Fuzz (a package of their own, with
# the fuzzer and address sanitizers) and runs each for a while, one after the
# other: command decoding, agent config, desired-config validation, rollout
# documents and the console's ingest of any topic/payload.
#
#   deploy/fuzz.sh                     # 20 s per target (deploy/test.sh runs this)
#   deploy/fuzz.sh 600                 # the long run of docs/BENCHMARKS.md
#   deploy/fuzz.sh 60 fuzz-ingest      # some targets only
#
# The seed corpus (Tests/Fuzz/Corpus/<target>) is copied to a scratch
# directory first, so runs never write into the repository; set FUZZ_WORK to
# choose it (default: a new directory under /tmp). Prints a table of target,
# runs, coverage, corpus size and result; exits 1 when any target crashed,
# leaked, timed out or ran out of memory, naming the input that did it (the
# artifact; reproduce with `<binary> <artifact>`).
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD

seconds=${1:-20}
shift || true
[[ $seconds =~ ^[0-9]+$ ]] && ((seconds > 0)) || { echo "usage: deploy/fuzz.sh [SECONDS_PER_TARGET] [TARGET...]" >&2; exit 2; }
all=(fuzz-command fuzz-agent-config fuzz-desired-config fuzz-rollout fuzz-ingest)
targets=("$@")
((${#targets[@]})) || targets=("${all[@]}")
for t in "${targets[@]}"; do
    [[ " ${all[*]} " == *" $t "* ]] || { echo "error: unknown fuzz target \"$t\"; known: ${all[*]}" >&2; exit 2; }
done

command -v swift >/dev/null || { echo "error: swift is not on PATH; install the Swift 6 toolchain (swift.org) first" >&2; exit 2; }

# SwiftPM's --sanitize fuzzer links libFuzzer's main in place of the
# entry point SwiftPM gives executables on Linux (plain -Xswiftc
# -sanitize=fuzzer fails to link there). The sanitizers go to swiftc as ONE
# flag: swiftc keeps only the last -sanitize= it is given, and SwiftPM orders
# several --sanitize values differently from run to run, so
# `--sanitize fuzzer --sanitize address` leaves Swift code without coverage
# (or without ASan) and rebuilds everything each time. Clang adds up its
# -fsanitize flags, so C code (libyaml in Yams) gets both. Own scratch path:
# never the root's .build.
build=(swift build --package-path Tests/Fuzz --scratch-path "$root/.build-fuzz" -c debug
       --sanitize fuzzer -Xswiftc -sanitize=fuzzer,address -Xcc -fsanitize=address)
echo "==> building the fuzz targets: ${build[*]}"
started=$SECONDS
# ld.gold warns once per ASan helper symbol ("Cannot export local symbol"); harmless.
set +e
"${build[@]}" 2>&1 | grep -v "Cannot export local symbol"
status=${PIPESTATUS[0]}
set -e
((status == 0)) || { echo "error: the fuzz build failed (exit $status)" >&2; exit 1; }
echo "==> built in $((SECONDS - started)) s"
bin=$("${build[@]}" --show-bin-path)

work=${FUZZ_WORK:-$(mktemp -d "${TMPDIR:-/tmp}/massagefleet-fuzz.XXXXXX")}
mkdir -p "$work"
echo "==> fuzzing ${#targets[@]} target(s), $seconds s each, in $work"

rows=()
failed=0
for t in "${targets[@]}"; do
    dir="$work/$t"
    rm -rf "$dir"
    mkdir -p "$dir/corpus" "$dir/artifacts"
    cp Tests/Fuzz/Corpus/"$t"/* "$dir/corpus/"
    echo "--> $t ($seconds s; log: $dir/log)"
    rc=0
    # -timeout: one input taking this long is a finding (a hang), not a slow machine.
    # detect_leaks=0 (libFuzzer's and ASan's at exit): LeakSanitizer reports
    # a handful of Foundation's Data buffers (made by JSONEncoder and
    # String(contentsOf:)) that are still in use: Swift packs such pointers
    # into enum payloads with spare bits, where LSan cannot see them. A real
    # leak per input still shows as growth, caught by -rss_limit_mb.
    # SWIFT_BACKTRACE=enable=no: Swift's backtracer reads the crashed
    # thread's stack, which ASan reports as an overflow of its own and hides
    # the trap; libFuzzer prints the stack of a trap itself.
    SWIFT_BACKTRACE=enable=no ASAN_OPTIONS="detect_leaks=0${ASAN_OPTIONS:+:$ASAN_OPTIONS}" "$bin/$t" "$dir/corpus" \
        -max_total_time="$seconds" -rss_limit_mb=4096 -max_len=65536 -timeout=30 -detect_leaks=0 \
        -artifact_prefix="$dir/artifacts/" -print_final_stats=1 >"$dir/log" 2>&1 || rc=$?
    runs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$dir/log" | tail -1)
    last=$(grep -E '^#[0-9]+' "$dir/log" | tail -1 || true)
    cov=$(sed -n 's/.* cov: \([0-9]*\).*/\1/p' <<<"$last")
    corp=$(sed -n 's/.* corp: \([0-9]*\/[0-9a-zA-Z]*\).*/\1/p' <<<"$last")
    if ((rc == 0)); then
        result=ok
    else
        failed=1
        artifact=$(sed -n 's/.*Test unit written to \(.*\)$/\1/p' "$dir/log" | tail -1)
        kind=$(grep -m1 -oE '(Fatal error|Precondition failed).*|ERROR: (libFuzzer|AddressSanitizer|LeakSanitizer): [a-zA-Z-]+' "$dir/log" || echo "exit $rc")
        result="FAILED: ${artifact:-see $dir/log}"
        echo "$t: $kind" >&2
    fi
    rows+=("$t|${runs:-?}|${cov:-?}|${corp:-?}|$result")
done

echo
printf '%-22s %12s %8s %14s  %s\n' target runs cov corpus result
for row in "${rows[@]}"; do
    IFS='|' read -r t runs cov corp result <<<"$row"
    printf '%-22s %12s %8s %14s  %s\n' "$t" "$runs" "$cov" "$corp" "$result"
done
exit "$failed"
