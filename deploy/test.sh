#!/usr/bin/env bash
# The one command that runs every test on a fresh Debian machine with the
# Swift toolchain: installs what the tests need when it is missing, builds,
# and runs the whole suite against real mosquitto brokers (each test starts
# its own on a free loopback port; nothing assumes a broker on 1883).
#
#   deploy/test.sh                 # everything
#   deploy/test.sh --fast          # only the fast tier: tests with no tier tag (no broker, no database server)
#   deploy/test.sh --tier postgres # only the tests with that tag
#   deploy/test.sh --filter Engine # passed on to `swift test`
#
# The tiers are Swift Testing tags (FleetTestKit's Tags.swift): .e2e (built
# executables as processes, a real broker), .postgres, .browser, .chaos and
# .slow; a test with none of them is the fast tier. At the end (or when a
# pass fails) a table gives each pass's tests and seconds.
set -euo pipefail
cd "$(dirname "$0")/.."

fast=0 tier=""
case "${1:-}" in
    --fast) fast=1; shift ;;
    --tier) tier=${2:?"--tier needs a tag: e2e, postgres, browser, chaos or slow"}; shift 2 ;;
esac
# The suites and tests that carry any of the given tags, as one `--skip`
# regular expression over test ids (Module.Suite, Module.Suite/test(). Read
# from the sources: Swift 6.3.1's `swift test` has no tag filter (a
# `--skip tag:e2e` is taken as a name pattern and skips nothing).
tagged_tests() {
    python3 - "$@" <<'PY'
import pathlib, re, sys
wanted = set(sys.argv[1:])
args = r'\((?:[^()]|\((?:[^()]|\([^()]*\))*\))*\)'   # balanced, three levels deep
def tags(attribute):
    return {t for group in re.findall(r'\.tags\(([^)]*)\)', attribute) for t in re.findall(r'\.(\w+)', group)}
ids = []
for path in sorted(pathlib.Path("Tests").glob("*/*.swift")):
    module, text = path.parent.name, path.read_text(errors="replace")
    for m in re.finditer(r'@Suite' + args + r'\s*(?:final\s+)?(?:struct|class|enum|actor)\s+(\w+)', text):
        if tags(m.group(0)) & wanted:
            ids.append(f"{module}\\.{m.group(1)}")
    for m in re.finditer(r'@Test' + args + r'\s*(?:@\w+\s*)*func\s+(\w+)', text):
        if tags(m.group(0)) & wanted:
            owner = re.findall(r'^(?:extension|struct|final class|class|enum|actor)\s+(\w+)', text[:m.start()], re.M)
            ids.append(f"{module}\\.{owner[-1]}/{m.group(1)}\\(")
print("|".join(sorted(set(ids))))
PY
}

# The run time of each pass, printed as a table when the script ends.
pass_names=() pass_tests=() pass_seconds=() pass_results=()
record_pass() { # name log seconds rc
    local tests
    # Swift Testing's last line: "Test run with N tests in M suites passed/failed after …".
    tests=$(grep -aoE 'Test run with [0-9]+ tests?' "$2" 2>/dev/null | tail -1 | grep -oE '[0-9]+' || true)
    pass_names+=("$1") pass_tests+=("${tests:--}") pass_seconds+=("$3")
    if (($4 == 0)); then pass_results+=(passed); else pass_results+=("failed ($4)"); fi
}
record_step() { # name seconds: a step without tests (a build, the fuzz run)
    pass_names+=("$1") pass_tests+=(-) pass_seconds+=("$2") pass_results+=(done)
}
print_times() {
    ((${#pass_names[@]})) || return 0
    echo "==> run time per pass"
    printf '%-44s %6s %8s  %s\n' pass tests seconds result
    local i
    for i in "${!pass_names[@]}"; do
        printf '%-44s %6s %8s  %s\n' "${pass_names[$i]}" "${pass_tests[$i]}" "${pass_seconds[$i]}" "${pass_results[$i]}"
    done
}
trap print_times EXIT

packages=(mosquitto mosquitto-clients libmosquitto-dev libmodbus-dev libsqlite3-dev openssl pkg-config systemd)
# The console's PostgreSQL backend tests start their own server through this fixture (FleetTestSupport's PostgresServer); the packaged cluster service is not used.
packages+=(postgresql)
# The dashboard's browser tests: Debian's Chromium, driven by Playwright for
# Python (python3 with pip, when the python3 on PATH has none).
packages+=(chromium)
{ command -v python3 >/dev/null && python3 -m pip --version >/dev/null 2>&1; } || packages+=(python3 python3-pip)
missing=()
for p in "${packages[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if ((${#missing[@]})); then
    echo "==> installing ${missing[*]}"
    sudo=""
    [ "$(id -u)" -eq 0 ] || sudo="sudo"
    $sudo apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi
# Installing the mosquitto package may start a system broker on 1883; the
# tests never use it, so it is left alone.

# Playwright drives the system Chromium (/usr/bin/chromium): it must not
# download a browser of its own. PIP_BREAK_SYSTEM_PACKAGES lets pip install
# into Debian's own python3 (PEP 668) when that is the python3 on PATH.
if ! python3 -c "import playwright.sync_api" >/dev/null 2>&1; then
    echo "==> installing playwright for $(command -v python3)"
    PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD=1 PIP_BREAK_SYSTEM_PACKAGES=1 \
        python3 -m pip install --quiet --disable-pip-version-check --root-user-action=ignore playwright
fi
# axe-playwright-python bundles axe-core: the browser suite's accessibility check of every page.
if ! python3 -c "import axe_playwright_python.sync_playwright" >/dev/null 2>&1; then
    echo "==> installing axe-playwright-python for $(command -v python3)"
    PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD=1 PIP_BREAK_SYSTEM_PACKAGES=1 \
        python3 -m pip install --quiet --disable-pip-version-check --root-user-action=ignore axe-playwright-python
fi

command -v swift >/dev/null || { echo "error: swift is not on PATH; install the Swift 6 toolchain (swift.org) first" >&2; exit 2; }

# Every pass of tests runs under a budget: a test that hangs (a lost wake-up
# no time limit can cancel) fails the run at the budget, naming the tests
# that started and never finished, instead of holding CI to its own timeout.
# PASS_BUDGET_SCALE=2 doubles every budget (a slow machine).
run_pass() {
    local name=$1 minutes=$2
    shift 2
    minutes=$((minutes * ${PASS_BUDGET_SCALE:-1}))
    local log rc started=$SECONDS
    log=$(mktemp)
    set +e
    timeout --kill-after=30s "${minutes}m" "$@" 2>&1 | tee "$log"
    rc=${PIPESTATUS[0]}
    set -e
    record_pass "$name" "$log" $((SECONDS - started)) "$rc"
    if ((rc == 124 || rc == 137)); then
        echo "error: $name ran past its budget of $minutes min and was stopped. Tests that started and never finished:" >&2
        python3 - "$log" >&2 <<'PY'
import re, sys
started, ended = [], set()
for line in open(sys.argv[1], errors="replace"):
    line = line.rstrip("\n")
    m = re.match(r'.*◇ Test "(.*)" started\.$', line)
    if m:
        started.append(m.group(1))
    m = re.match(r'.*[✔✘] Test "(.*)" (?:passed|failed|with \d+ test cases?|recorded)', line)
    if m:
        ended.add(m.group(1))
hung = [name for name in started if name not in ended]
print("\n".join("  - " + name for name in hung) or "  (none: the hang is outside a test)")
PY
    fi
    rm -f "$log"
    return "$rc"
}

echo "==> building (debug, with tests)"
build_started=$SECONDS
swift build --build-tests
record_step "build (debug, with tests)" $((SECONDS - build_started))
if ((fast)); then
    echo "==> running the fast tier (no .e2e, .postgres, .browser, .chaos or .slow tests)"
    slow_tiers=$(tagged_tests e2e postgres browser chaos slow)
    echo "    swift test --skip-build --skip '$slow_tiers'"
    run_pass "the fast tier" 10 swift test --skip-build --skip "$slow_tiers" "$@"
    exit
fi
if [ -n "$tier" ]; then
    echo "==> running the .$tier tier"
    selected=$(tagged_tests "$tier")
    [ -n "$selected" ] || { echo "error: no suite or test is tagged .$tier" >&2; exit 2; }
    echo "    swift test --skip-build --filter '$selected'"
    run_pass "the .$tier tier" 30 swift test --skip-build --filter "$selected" "$@"
    exit
fi
echo "==> running tests"
if (($# == 0)); then
    # The Modbus link suites, and the agent's sessions against
    # massager-controller, run a controller and the engine in real time
    # against each other (watchdogs, 20 ms ticks, an RTU line's timeouts):
    # they run alone, right after, not squeezed between the parallel
    # suites' processes. So does the test that the agent's waiting database
    # writers leave the cooperative pool free: it needs a pool that other
    # suites' blocking work does not already fill, within SQLite's 5 s busy
    # timeout.
    alone='MassagerLinkTests|AgentEndToEndTests/modbus|AgentDatabaseTaskTests/waitingWritersLeaveThePoolFree'
    run_pass "the parallel pass" 30 swift test --skip-build --skip "$alone"
    echo "==> running the Modbus link tests and the pool test alone (real time)"
    run_pass "the tests that run alone" 10 swift test --skip-build --filter "$alone"
else
    selected_started=$SECONDS
    set +e
    selected_log=$(mktemp)
    swift test --skip-build "$@" 2>&1 | tee "$selected_log"
    rc=${PIPESTATUS[0]}
    set -e
    record_pass "the selected tests" "$selected_log" $((SECONDS - selected_started)) "$rc"
    rm -f "$selected_log"
    ((rc == 0)) || exit "$rc"
fi
# The console's suites again with PostgreSQL as its store (a database per
# console on one test server started by the fixture): the same tests must
# pass on both stores. Skipped when arguments narrow the run.
if (($# == 0)); then
    echo "==> running the console tests on PostgreSQL"
    # (The replica and store suites run on PostgreSQL in the first pass already.)
    FLEET_TEST_DATABASE=postgres run_pass "the PostgreSQL pass" 25 swift test --skip-build --filter FleetConsoleTests --skip ReplicaTests --skip ConsoleStoreTests
fi

# ThreadSanitizer (issue 20, item 15): the MQTT client's suites, where C
# callbacks, the event-loop threads and Swift tasks meet, and the agent's
# unit suites, built with -sanitize=thread in a package of their own
# (Tests/TSan: only the client, the agent and their fixtures, a few minutes)
# and a scratch path of its own. Any report fails the run (TSan exits 66);
# deploy/tsan.supp holds the suppressions, each with its reason. TSAN=0
# skips it; skipped when arguments narrow the run.
#
# MASSAGEFLEET_TSAN=1 makes Package.swift define MASSAGEFLEET_TSAN for the
# modules that swap Synchronization.Mutex for a pthread-backed one
# (Mutex+ThreadSanitizer.swift): TSan cannot see the uninstrumented
# libswiftSynchronization lock and reported every Mutex-protected access.
# The agent's end-to-end suites (built executables as processes) are left
# out: they test processes TSan does not instrument.
# The engine drivers' suites too (one engine's control thread, many engines
# on shared ones): the engine's lock is shadowed the same way.
TSAN_FILTER='MosquittoTests|MassageAgentTests\.(OutboxTests|ConfigurationTests|AgentFuzzCorpusTests|AgentEngineStorageTests|HardwareSettingsTests|SimulatorTestControlTests|ControlLaneTests|SharedControlThreadTests|EngineDriverTests)'
if (($# == 0)) && [ "${TSAN:-1}" != 0 ]; then
    echo "==> ThreadSanitizer: building Tests/TSan (-sanitize=thread, .build-tsan)"
    tsan_started=$SECONDS
    MASSAGEFLEET_TSAN=1 swift build --package-path Tests/TSan --scratch-path "$PWD/.build-tsan" --build-tests --sanitize=thread
    echo "==> ThreadSanitizer: the Mosquitto and agent suites"
    MASSAGEFLEET_TSAN=1 TSAN_OPTIONS="halt_on_error=0 second_deadlock_stack=1 suppressions=$PWD/deploy/tsan.supp${TSAN_OPTIONS:+ $TSAN_OPTIONS}" \
        run_pass "the ThreadSanitizer pass" 15 swift test --package-path Tests/TSan --scratch-path "$PWD/.build-tsan" \
        --skip-build --sanitize=thread --filter "$TSAN_FILTER"
    echo "==> ThreadSanitizer pass: $((SECONDS - tsan_started)) s"
    record_step "ThreadSanitizer build and pass" $((SECONDS - tsan_started))
fi

# The agent as massagers run it (deploy/build-agent.sh: release, the Swift
# runtime linked in; it locks its memory when it runs): its end-to-end suite
# again, against that binary, including the simulator test control that
# `fleet-bench pain` uses. Skipped when arguments narrow the run.
if (($# == 0)); then
    echo "==> building the massagers' agent (deploy/build-agent.sh) and running its end-to-end tests"
    agent_build_started=$SECONDS
    deploy/build-agent.sh
    record_step "build of the massagers' agent (release)" $((SECONDS - agent_build_started))
    FLEET_BUILD_PRODUCTS="$PWD/.build-agent/release" run_pass "the massagers' agent end-to-end pass" 15 swift test --skip-build --filter AgentEndToEndTests
fi

# The benchmarks' smoke run (deploy/bench.sh --smoke, under a minute): each
# benchmark runs briefly on the debug build and must print its figures, so
# the script that measures every figure at HEAD cannot rot. Goals are not
# judged here (debug build, tiny sizes). Skipped when arguments narrow the run.
if (($# == 0)); then
    echo "==> the benchmarks' smoke run (deploy/bench.sh --smoke)"
    run_pass "the benchmarks' smoke run" 5 deploy/bench.sh --smoke
fi

# The fuzz targets (Tests/Fuzz, a package of their own built with the fuzzer
# and address sanitizers): a short run of each, which replays the seed corpus
# (every input that once crashed is in it) and explores a little. Skipped when
# arguments narrow the run; FUZZ_SECONDS=0 skips it too. The long run is
# `deploy/fuzz.sh 600` (docs/BENCHMARKS.md).
fuzz_seconds=${FUZZ_SECONDS:-15}
if (($# == 0)) && [ "$fuzz_seconds" != 0 ]; then
    echo "==> fuzzing ($fuzz_seconds s per target)"
    fuzz_started=$SECONDS
    deploy/fuzz.sh "$fuzz_seconds"
    record_step "fuzzing ($fuzz_seconds s per target)" $((SECONDS - fuzz_started))
fi
