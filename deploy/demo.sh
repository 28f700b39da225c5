#!/usr/bin/env bash
# The quick start: a private mosquitto, the console, and a simulated fleet of
# massagers over two sites (sessions run 60× faster), sessions started
# remotely through the CLI, the fleet table printed, and the console left
# running until Ctrl-C. Everything started here is stopped on exit.
#
#   deploy/demo.sh            # 12 massagers (fleet-sim), 60× faster
#   DEVICES=100 SPEED=120 deploy/demo.sh
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD
devices=${DEVICES:-12}
speed=${SPEED:-60}

packages=(mosquitto mosquitto-clients libmosquitto-dev libsqlite3-dev openssl pkg-config curl)
missing=()
for p in "${packages[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if ((${#missing[@]})); then
    echo "==> installing ${missing[*]}"
    sudo=""; [ "$(id -u)" -eq 0 ] || sudo="sudo"
    $sudo apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

echo "==> building (release)"
for product in fleet-sim fleet-console; do
    swift build -c release --product "$product" 2>&1 | tail -1
done
bin=$(swift build -c release --show-bin-path)

work=$(mktemp -d /tmp/massagefleet-demo.XXXXXX)
pids=()
cleanup() {
    echo; echo "==> stopping the demo"
    for pid in "${pids[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
    wait 2>/dev/null || true
    rm -rf "$work"
}
trap cleanup EXIT INT TERM

in_use() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }
free_port() { local p; while :; do p=$((20000 + RANDOM % 40000)); in_use $p || { echo $p; return; }; done; }
mqtt_port=$(free_port)
http_port=${HTTP_PORT:-8080}
in_use "$http_port" && http_port=$(free_port)

printf 'listener %s 127.0.0.1\nallow_anonymous true\npersistence false\n' "$mqtt_port" > "$work/mosquitto.conf"
mosquitto=$(command -v mosquitto || echo /usr/sbin/mosquitto)
"$mosquitto" -c "$work/mosquitto.conf" > "$work/mosquitto.log" 2>&1 &
pids+=($!)

token=$(openssl rand -hex 16)
export FLEET_CONSOLE_ADMIN_TOKEN=$token FLEET_CONSOLE_TOKEN=$token FLEET_CONSOLE_API=http://127.0.0.1:$http_port
"$bin/fleet-console" serve --config "$root/Config/console.yaml" --broker 127.0.0.1:$mqtt_port --http 127.0.0.1:$http_port \
    --db "$work/console.sqlite" > "$work/console.log" 2>&1 &
pids+=($!)
for _ in $(seq 100); do curl -sf "http://127.0.0.1:$http_port/healthz" >/dev/null && break; sleep 0.1; done

echo "==> starting $devices simulated massagers over 2 sites (speed ${speed}×)"
"$bin/fleet-sim" --devices "$devices" --site-names clinic-north,spa-south --broker 127.0.0.1:$mqtt_port --speed "$speed" \
    --data-dir "$work/fleet" --programs-dir "$root/Config/programs" --sessions-per-hour 3 --summary-every 30 > "$work/fleet-sim.log" 2>&1 &
pids+=($!)
n=0
for _ in $(seq 150); do
    n=$("$bin/fleet-console" devices --json 2>/dev/null | grep -c '"online" : true' || true)
    [ "$n" -ge "$devices" ] && break; sleep 0.2
done
if [ "$n" -lt "$devices" ]; then
    echo "warning: only $n of $devices massagers came online; their logs are in $work" >&2
fi

echo "==> starting sessions remotely"
"$bin/fleet-console" start --site clinic-north --idle-only --program knee-leg-relief --wait || true
"$bin/fleet-console" start --site spa-south --devices sim-0002,sim-0004 --program calf-release --wait || true
echo
echo "==> the fleet"
"$bin/fleet-console" devices
echo
cat <<MSG
The console is running at http://127.0.0.1:$http_port (API token: $token)
Try:
  export FLEET_CONSOLE_API=http://127.0.0.1:$http_port FLEET_CONSOLE_TOKEN=$token
  $bin/fleet-console devices
  $bin/fleet-console usage
  curl -s http://127.0.0.1:$http_port/metrics | grep fleet_
Logs are in $work. Press Ctrl-C to stop everything.
MSG
wait "${pids[1]}"
