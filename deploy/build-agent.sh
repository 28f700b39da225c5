#!/usr/bin/env bash
# Builds massage-agent as a massager runs it (docs/operations.md): release,
# with the Swift runtime and Foundation linked in (--static-swift-stdlib), so
# a massager needs only Debian's libraries.
#
#   deploy/build-agent.sh    build .build-agent/release/massage-agent
#
# The running agent locks its memory (lock_memory, docs/operations.md,
# "Memory locking"): all of its code is resident, so the link order no
# longer decides how much of it is. The profile-ordered link and the
# unmapping of code pages it served went with issue 19 (docs/BENCHMARKS.md,
# "Pain-to-release").
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD

[[ $# -eq 0 ]] || { echo "build-agent: unknown argument '$1' (expected none)" >&2; exit 1; }
swift build -c release --product massage-agent --static-swift-stdlib --scratch-path "$root/.build-agent"
echo "built $root/.build-agent/release/massage-agent"
