#!/usr/bin/env bash
# How long mosquitto takes to load (at start-up) and reload (on SIGHUP) the
# password and ACL files of a fleet of N devices in the format
# provision.sh writes: one "user {site}.{device}" block of 8 topic lines
# per device. mosquitto parses ACL files in O(lines x users), so this grows
# with the square of the fleet; while it reloads, the broker serves no one.
# docs/security.md quotes the figures.
#
#   deploy/mosquitto/measure-acl-reload.sh 1000 3000 10000
set -euo pipefail
(($#)) || set -- 1000 3000 10000
for tool in mosquitto mosquitto_passwd mosquitto_pub python3; do
    if ! command -v "$tool" >/dev/null; then
        echo "needs $tool (apt-get install mosquitto mosquitto-clients python3)" >&2
        exit 2
    fi
done

work=$(mktemp -d /tmp/acl-reload.XXXXXX)
broker=""
cleanup() {
    [[ -z $broker ]] || kill "$broker" 2>/dev/null || true
    rm -rf "$work"
}
trap cleanup EXIT

now() { date +%s.%N; }
since() { awk -v a="$1" -v b="$(now)" 'BEGIN { printf "%.3f", b - a }'; }
password=$(printf 'x%.0s' {1..64}) # not a secret: a throwaway broker on loopback

for n in "$@"; do
    if ! [[ $n =~ ^[1-9][0-9]*$ ]]; then
        echo "not a device count: $n" >&2
        exit 2
    fi
    dir="$work/$n"
    mkdir -p "$dir"
    for ((i = 0; i < n; i++)); do
        site="site-$((i / 50))"
        device=$(printf 'massager-%03d' $((i % 50)))
        base="massage/v1/$site/$device"
        printf 'user %s.%s\n' "$site" "$device"
        for kind in status telemetry events usage config/reported; do printf 'topic write %s/%s\n' "$base" "$kind"; done
        printf 'topic read %s/cmd\ntopic read %s/config/desired\ntopic write massage/v1/_console/reply/+\n\n' "$base" "$base"
    done >"$dir/acl"
    for ((i = 0; i < n; i++)); do printf 'site-%d.massager-%03d:%s\n' $((i / 50)) $((i % 50)) "$password"; done >"$dir/passwd"
    mosquitto_passwd -U "$dir/passwd"
    port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
    printf 'listener %s 127.0.0.1\nallow_anonymous false\npassword_file %s/passwd\nacl_file %s/acl\n' "$port" "$dir" "$dir" >"$dir/mosquitto.conf"
    (($(id -u))) || echo "user root" >>"$dir/mosquitto.conf"

    start=$(now)
    mosquitto -c "$dir/mosquitto.conf" >"$dir/log" 2>&1 &
    broker=$!
    until grep -q ' running' "$dir/log"; do
        kill -0 "$broker" 2>/dev/null || { cat "$dir/log" >&2; exit 1; }
        sleep 0.01
    done
    startup=$(since "$start")

    last=$((n - 1))
    site="site-$((last / 50))"
    device=$(printf 'massager-%03d' $((last % 50)))
    start=$(now)
    kill -HUP "$broker"
    # Answered only once the reload is over (the broker is single-threaded).
    # The password through mosquitto_pub's options file, as with real ones
    # (docs/operations.md): never on a command line.
    printf -- '-u %s\n-P %s\n' "$site.$device" "$password" >"$dir/mosquitto_pub"
    XDG_CONFIG_HOME=$dir mosquitto_pub -p "$port" -t "massage/v1/$site/$device/status" -m x -q 1
    reload=$(since "$start")
    kill "$broker"
    wait "$broker" 2>/dev/null || true
    broker=""
    printf 'devices %6d   ACL lines %7d   start-up %7ss   SIGHUP reload + one publish %7ss\n' \
        "$n" "$(wc -l <"$dir/acl")" "$startup" "$reload"
done
