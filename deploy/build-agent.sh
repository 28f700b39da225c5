#!/usr/bin/env bash
# Builds massage-agent as a massager runs it (docs/operations.md):
#   - the Swift runtime and Foundation linked in (--static-swift-stdlib), so a
#     massager needs only Debian's libraries;
#   - every function in a section of its own, linked by lld in the order of
#     deploy/agent-code-order.txt: the functions the running agent uses (idle,
#     commands, a session) come first and together. The kernel maps code in
#     64 KiB runs around each page touched, so code in use that is spread over
#     the whole binary keeps most of it resident; packed, it keeps far less
#     (docs/BENCHMARKS.md, "massage-agent");
#   - the compiler's private functions, which have no name to order them by,
#     together just before those (deploy/agent-code.lds).
#
#   deploy/build-agent.sh             build .build-agent/release/massage-agent
#   deploy/build-agent.sh --profile   measure the running agent and rewrite
#                                     deploy/agent-code-order.txt (needs root)
#
# A stale order file costs memory, never correctness: lld ignores names that
# no longer exist and places the rest of the code after the listed functions.
# Run --profile after changes to what the agent runs, and commit the file.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD
order=$root/deploy/agent-code-order.txt

die() { echo "build-agent: $*" >&2; exit 1; }

# Each function in its own section (Swift emits some into one .text per file
# otherwise), linked by lld, which orders sections by symbol.
common=(-c release --product massage-agent --static-swift-stdlib
        -Xswiftc -Xfrontend -Xswiftc -function-sections -Xswiftc -use-ld=lld
        -Xlinker -T -Xlinker "$root/deploy/agent-code.lds")

build() { # scratch-path order-file
    # SwiftPM does not see the order file or the script as inputs: relink
    # when either changed since the last link (it relinks a missing binary).
    local binary=$1/release/massage-agent
    if [[ -e "$binary" && ( "$2" -nt "$binary" || "$root/deploy/agent-code.lds" -nt "$binary" ) ]]; then
        rm -f "$binary"
    fi
    swift build "${common[@]}" --scratch-path "$1" \
        -Xlinker --symbol-ordering-file="$2" -Xlinker --no-warn-symbol-ordering
}

if [[ "${1:-}" != "--profile" ]]; then
    [[ $# -eq 0 ]] || die "unknown argument '$1' (expected none, or --profile)"
    [[ -f "$order" ]] || die "$order is missing (deploy/build-agent.sh --profile writes it)"
    build "$root/.build-agent" "$order"
    echo "built $root/.build-agent/release/massage-agent"
    exit 0
fi

# --- profile -----------------------------------------------------------------
# What the agent touches is read from the resident pages of its code at the
# end of `fleet-bench agent` (start-up given back, then idle with a usage
# report, 200 commands, a session and the session commands). Two things make
# that page-exact, then function-exact:
#   - the disk's read-ahead is one page for the run, so a page is resident
#     only when it was touched, not because a neighbour was (it is restored);
#   - a page holds many functions, so the agent is profiled in three link
#     orders (as built and two shuffles) and a function is kept only when it
#     was on a touched page in all three.
[[ $(id -u) -eq 0 ]] || die "--profile needs root: it sets the disk's read-ahead to one page while it measures"
command -v nm > /dev/null || die "--profile needs nm (binutils)"
work=$root/.build-agent-profile
mkdir -p "$work"

source=$(findmnt -no SOURCE -T "$root")
device=$(basename "$source")
if [[ -e /sys/class/block/$device/partition ]]; then
    device=$(basename "$(readlink -f "/sys/class/block/$device/..")")
fi
readahead=/sys/block/$device/queue/read_ahead_kb
[[ -w "$readahead" ]] || die "cannot set the read-ahead of $source ($readahead)"
saved=$(cat "$readahead")
trap 'echo "$saved" > "$readahead"' EXIT

swift build -c release --product fleet-bench
bench=$root/.build/release/fleet-bench

# The layouts: as the compiler emits them (an empty order), then two shuffles.
: > "$work/layout-built.txt"
build "$work/build" "$work/layout-built.txt"
binary=$work/build/release/massage-agent
nm --defined-only "$binary" | awk '$2 ~ /^[tTwW]$/ { print $3 }' | sort -u > "$work/functions.txt"
for seed in 1 2; do
    shuf --random-source=<(yes "$seed") "$work/functions.txt" > "$work/layout-shuffle-$seed.txt"
done

echo 4 > "$readahead"
for layout in built shuffle-1 shuffle-2; do
    echo "== profiling the agent linked in the $layout order"
    build "$work/build" "$work/layout-$layout.txt"
    cp "$binary" "$work/massage-agent-$layout"
    if [[ $layout != built ]] && cmp -s "$work/massage-agent-built" "$work/massage-agent-$layout"; then
        die "the $layout link is the same as the built one (the order file was not used)"
    fi
    # Only what this run reads from storage is cached (fault-around maps cached pages).
    dd if="$work/massage-agent-$layout" iflag=nocache count=0 status=none
    "$bench" agent --agent "$work/massage-agent-$layout" --code-profile "$work/profile-$layout.txt" \
        --round-trips 200 --idle-seconds 62
done
echo "$saved" > "$readahead"

# Functions on touched pages in every layout, in the order the compiler placed them.
{
    echo "# The massage-agent's functions in use, first in its link (deploy/build-agent.sh)."
    echo "# Generated by deploy/build-agent.sh --profile on $(date -u +%F) from $(git rev-parse --short HEAD); do not edit."
    awk 'FILENAME == ARGV[1] { a[$0] = 1; next } FILENAME == ARGV[2] { if ($0 in a) b[$0] = 1; next } ($0 in b)' \
        "$work/profile-shuffle-1.txt" "$work/profile-shuffle-2.txt" "$work/profile-built.txt"
} > "$order.new"
mv "$order.new" "$order"
echo "wrote $(grep -vc '^#' "$order") functions to $order"
