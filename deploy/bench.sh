#!/usr/bin/env bash
# Every benchmark at HEAD, one table: each figure beside the reference
# measured in the same run, the ratio, the goal, passed or missed (issue 23).
#
#   deploy/bench.sh            # release build; runs everything (about half an hour on an idle
#                              # 2-core machine); writes the table as the "Current figures"
#                              # section at the top of docs/BENCHMARKS.md; exits 1 on a missed goal
#   deploy/bench.sh --no-write # the same, without touching docs/BENCHMARKS.md
#   deploy/bench.sh --smoke    # a short run of each benchmark on the debug build (deploy/test.sh
#                              # runs it, so the script and the benchmarks cannot rot): checks that
#                              # every benchmark ran and printed its figures; goals are not judged
#                              # (debug builds, tiny sizes), nothing is written
#
# Each benchmark prints, besides its own Markdown table, one `bench-result {json}`
# line per figure (FleetTestKit's BenchResult); this script gathers those.
# The machine should be idle: a figure measured beside other work says so
# (set BENCH_NOTE="…"; it is written under the table).
set -euo pipefail
cd "$(dirname "$0")/.."

mode=full write=1
for arg in "$@"; do
    case "$arg" in
        --smoke) mode=smoke; write=0 ;;
        --no-write) write=0 ;;
        *) echo "usage: deploy/bench.sh [--smoke] [--no-write]" >&2; exit 2 ;;
    esac
done

scratch=${BENCH_SCRATCH_PATH:-.build}
logs=$(mktemp -d "${TMPDIR:-/tmp}/bench.XXXXXX")
results="$logs/results.jsonl"
: >"$results"
failed_runs=()

if [[ $mode == full ]]; then
    echo "==> building (release)"
    for product in engine-bench mqtt-bench fleet-bench massage-agent fleet-console fleet-sim; do
        swift build -c release --scratch-path "$scratch" --product "$product"
    done
    bin=$(swift build -c release --scratch-path "$scratch" --show-bin-path)
else
    # The smoke uses what deploy/test.sh has built (debug); builds the benchmarks if they are missing.
    bin=$(swift build --scratch-path "$scratch" --show-bin-path)
    for product in engine-bench mqtt-bench fleet-bench massage-agent fleet-console fleet-sim; do
        [[ -x $bin/$product ]] || swift build --scratch-path "$scratch" --product "$product"
    done
fi

# run NAME EXPECTED_FIGURES COMMAND…: runs one benchmark, keeps its output,
# and takes its bench-result lines (a benchmark that fails or prints fewer
# figures than expected is a failure of the run).
run() {
    local name=$1 expected=$2
    shift 2
    local log="$logs/$name.log" rc started=$SECONDS
    echo "==> $name: $*"
    set +e
    "$@" >"$log" 2>&1
    rc=$?
    set -e
    local found
    found=$(grep -c '^bench-result ' "$log" || true)
    grep '^bench-result ' "$log" | sed 's/^bench-result //' >>"$results" || true
    echo "    $((SECONDS - started)) s, exit $rc, $found figures"
    if ((rc != 0 || found < expected)); then
        failed_runs+=("$name (exit $rc, $found of $expected figures)")
        echo "    last lines of its output:" >&2
        tail -20 "$log" | sed 's/^/    | /' >&2
    fi
}

if [[ $mode == full ]]; then
    run engine-bench 1 "$bin/engine-bench"
    run mqtt-bench 4 "$bin/mqtt-bench" all --messages 60000 --runs 3 --clients 1000
    run agent 3 "$bin/fleet-bench" agent --round-trips 1000 --idle-seconds 20
    run ingest 1 "$bin/fleet-bench" ingest
    run load 2 "$bin/fleet-bench" load --devices 1000 --window 30
    run rollout 1 "$bin/fleet-bench" rollout --devices 1000
    run start 1 "$bin/fleet-bench" start --devices 1000
    run storm 3 "$bin/fleet-bench" storm --devices 1000
    # 10,000 massagers: thin simulated devices, in two fleet-sim processes
    # (three file descriptors a device). The issue sets no goal for the
    # start across 10,000; it is held to the rollout's 30 s.
    run load-10k 2 "$bin/fleet-bench" load --devices 10000 --thin --processes 2 --window 30
    run start-10k 1 "$bin/fleet-bench" start --devices 10000 --thin --processes 2 --goal 30
    run rollout-10k 1 "$bin/fleet-bench" rollout --devices 10000 --thin --processes 2 --goal 30
    # Thin devices keep no outbox: this storm measures the reconnection, the
    # storm of 1,000 full agents above measures QoS 1 events lost.
    run storm-10k 2 "$bin/fleet-bench" storm --devices 10000 --thin --processes 2 --down-seconds 10
else
    run engine-bench 1 "$bin/engine-bench" --ticks 20000
    run mqtt-bench 4 "$bin/mqtt-bench" all --messages 2000 --runs 1 --clients 20
    run agent 3 "$bin/fleet-bench" agent --round-trips 20 --idle-seconds 2
    run ingest 1 "$bin/fleet-bench" ingest --devices 10 --events 20
    run rollout 1 "$bin/fleet-bench" rollout --devices 5
    run start 1 "$bin/fleet-bench" start --devices 6 --thin --processes 2
fi

commit=$(git rev-parse --short HEAD)
dirty=""
git diff --quiet HEAD -- Sources Package.swift 2>/dev/null || dirty=" (with uncommitted changes)"
# (mosquitto -h exits 3, and head closes swift's pipe: neither may end the script)
swift_version=$(swift --version 2>/dev/null | sed -n '1s/ (.*//p' || true)
mosquitto_version=$( (mosquitto -h 2>/dev/null || true) | awk 'NR == 1 {print $3}')
machine="$(nproc) cores, $(awk '/MemTotal/ {printf "%.0f GiB", $2 / 1048576}' /proc/meminfo), $(. /etc/os-release && echo "$PRETTY_NAME"), $swift_version, mosquitto $mosquitto_version"

set +e
python3 - "$results" "$mode" "$write" "$commit$dirty" "$machine" "${BENCH_NOTE:-}" "${failed_runs[@]}" <<'PY'
import datetime, json, math, pathlib, sys
path, mode, write, commit, machine, note, *failed = sys.argv[1:]
rows = [json.loads(line) for line in open(path) if line.strip()]

def fmt(x):
    if x is None or (isinstance(x, float) and not math.isfinite(x)):
        return "—"
    a = abs(x)
    if a >= 1000:
        return f"{x:,.0f}"
    if a >= 10:
        return f"{x:.1f}"
    return f"{x:.3g}" if a >= 0.01 or a == 0 else f"{x:.2e}"

missed = 0
lines = ["| figure | value | reference (same run) | ratio | goal | result |", "| --- | ---: | ---: | ---: | --- | --- |"]
for r in rows:
    ref = r.get("reference")
    ratio = r["value"] / ref if ref not in (None, 0) and r["value"] is not None else None
    judged = ratio if r["measure"] == "ratio" else r["value"]
    op = "≥" if r["comparison"] == "at_least" else "≤"
    goal = f"{'ratio ' if r['measure'] == 'ratio' else ''}{op} {fmt(r['goal'])}{'×' if r['measure'] == 'ratio' else ' ' + r['unit']}"
    if judged is None or not math.isfinite(judged):
        ok = False
    else:
        ok = judged >= r["goal"] if r["comparison"] == "at_least" else judged <= r["goal"]
    if mode == "smoke":
        result = "ran (smoke)"
    else:
        result = "pass" if ok else "**missed**"
        missed += 0 if ok else 1
    refText = "" if ref is None else f"{fmt(ref)} {r['unit']} ({r.get('reference_name', '')})"
    lines.append(f"| {r['figure']} | {fmt(r['value'])} {r['unit']} | {refText} | {'' if ratio is None else fmt(ratio) + '×'} | {goal} | {result} |")

table = "\n".join(lines)
print()
print(table)
for f in failed:
    print(f"benchmark failed: {f}")
now = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
summary = f"{len(rows)} figures, {missed} goals missed, {len(failed)} benchmarks failed"
print(f"\n{summary} (commit {commit}, {now})")

if write == "1":
    doc = pathlib.Path("docs/BENCHMARKS.md")
    text = doc.read_text()
    begin, end = "<!-- current figures: written by deploy/bench.sh -->", "<!-- end of current figures -->"
    section = "\n".join([
        begin,
        "## Current figures",
        "",
        f"Measured by `deploy/bench.sh` at commit {commit} on {now}; machine: {machine}; release build. {summary}.",
        *( [f"", note] if note else [] ),
        "",
        table,
        "",
        "Each figure's own section below says how it is measured and what it was before.",
        end,
    ])
    if begin in text:
        head, rest = text.split(begin, 1)
        text = head + section + rest.split(end, 1)[1]
    else:
        title, _, body = text.partition("\n")
        text = title + "\n\n" + section + "\n" + body
    doc.write_text(text)
    print(f"wrote the table to {doc}")

sys.exit(1 if missed or failed or not rows else 0)
PY
rc=$?
set -e
echo "(logs of each benchmark in $logs)"
exit $rc
