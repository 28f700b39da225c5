#!/usr/bin/env bash
# MassageFleet provisioning: the fleet CA, the broker's certificate and
# credential files, the console's broker credentials and API tokens, and one
# ready-to-install bundle per massager. Bash, openssl and mosquitto_passwd;
# every command is idempotent (run it again and nothing changes unless you
# ask for --rotate), secrets are written 0600 and never printed or logged.
#
#   deploy/provision.sh init --hostname broker.example.org [--ip 10.0.0.5]
#   deploy/provision.sh device clinic-north massager-01
#   deploy/provision.sh revoke clinic-north massager-01
#   deploy/provision.sh console [INSTANCE]
#   deploy/provision.sh revoke-console INSTANCE
#   deploy/provision.sh token NAME admin|operator|viewer [SITE...]
#   deploy/provision.sh help
#
# docs/operations.md walks through it; docs/security.md explains the
# identity scheme (username "{site}.{device}", explicit ACL entries).
set -euo pipefail
umask 077

readonly PROGRAM=${0##*/}
readonly ID_PATTERN='^[a-z0-9][a-z0-9_-]{0,62}$'

usage() {
    cat <<EOF
Usage: $PROGRAM [--dir DIR] COMMAND [ARGUMENTS] [OPTIONS]

Commands
  init      the fleet CA, the broker's server certificate, its password, ACL
            and revocation files, and the console's broker credentials
              --hostname NAME        a DNS name of the broker (repeatable; the
                                     first is what devices connect to)
              --ip ADDRESS           an IP address of the broker (repeatable)
              --broker-address H:P   what device configs connect to
                                     (default: first hostname, port 8883)
              --topic-root ROOT      MQTT topic root (default massage/v1)
              --agent-data-dir DIR   data_dir in device configs
                                     (default /var/lib/massage-agent)
              --agent-programs-dir DIR
                                     programs_dir in device configs
                                     (default /usr/share/massage-agent/programs)
              --fleet-name NAME      shown in the CA's name (default MassageFleet)
              --renew-server         issue a new server certificate even if
                                     the names did not change
  device SITE DEVICE
            a device's password and client certificate, its entries in the
            broker's password and ACL files, and a bundle
            DIR/devices/SITE/DEVICE/ holding agent.yaml, password, ca.crt,
            device.crt and device.key
              --broker HOST:PORT     override the broker address in agent.yaml
              --data-dir DIR, --programs-dir DIR
                                     override data_dir / programs_dir
              --rotate               new password and certificate (the old
                                     certificate is revoked)
  revoke SITE DEVICE
            removes the device's password and ACL entries, revokes its
            certificates (CRL), deletes its bundle, records it in
            DIR/ca/revoked.txt and reloads the broker; then has the console
            forget the device (see --console), or prints the command to run
            (\`device\` does the same when it provisions a revoked id again)
  console [INSTANCE]
            broker credentials for a console instance (default "console"):
            DIR/console/INSTANCE/ with broker-password, console.crt,
            console.key, ca.crt and broker.yaml      (--rotate: new ones)
  revoke-console INSTANCE
            removes a console instance's broker password and ACL entries
            (and every device's reply topic of it), revokes its
            certificates (CRL), deletes DIR/console/INSTANCE/ and reloads
            the broker: its open connection is closed at once
  token NAME ROLE [SITE...]
            an API token for fleet-console (ROLE admin, operator or viewer;
            operators and viewers see only the SITEs given, or every site
            with the single SITE '*'). Its SHA-256 goes
            to DIR/console/tokens.yaml (the console's tokens_file), the token
            itself to DIR/console/tokens/NAME.token    (--rotate: a new one)
  revoke-token NAME
            removes an API token
  crl       rewrites the certificate revocation list (valid ten years;
            every revocation rewrites it too) and reloads the broker
  reload    sends SIGHUP to the broker (reloads passwords, ACL, CRL)
  list      the provisioned devices and consoles
  help      this text

Options for every command
  --dir DIR          where everything is written (default \$FLEET_PROVISION_DIR,
                     else /etc/massagefleet); the broker reads DIR/broker/
  --broker-user USER owner of the files the broker reads (default: mosquitto
                     when run as root and that user exists)
The console, for revoke and re-provisioning (\`fleet-console forget\`):
  --console URL      the console's API (default \$FLEET_CONSOLE_API); without
                     it the command to run is printed instead
  --console-token-file FILE
                     an admin token (default \$FLEET_CONSOLE_TOKEN)
How the broker is reloaded after a change (device, console, revoke,
revoke-console, reload):
  --broker-pid PID   send SIGHUP to this mosquitto process
  --pid-file FILE    read its pid from FILE
  --no-reload        only write the files
  default: \`systemctl reload mosquitto\` when that unit is active, else the
  pid in /run/mosquitto/mosquitto.pid
EOF
}

# ---------------------------------------------------------------- output

note() { printf '%s: %s\n' "$PROGRAM" "$*"; }
warn() { printf '%s: warning: %s\n' "$PROGRAM" "$*" >&2; }
die() {
    printf '%s: error: %s\n' "$PROGRAM" "$*" >&2
    exit 1
}
usage_error() {
    printf '%s: %s\nRun "%s help" for the commands and options.\n' "$PROGRAM" "$*" "$PROGRAM" >&2
    exit 2
}

# ---------------------------------------------------------------- checks

require_tools() {
    local tool
    for tool in "$@"; do
        command -v "$tool" >/dev/null 2>&1 ||
            die "'$tool' is not installed (Debian: apt-get install $(package_of "$tool"))"
    done
}

package_of() {
    case $1 in
        mosquitto_passwd) echo mosquitto ;;
        flock) echo util-linux ;;
        *) echo "$1" ;;
    esac
}

check_id() { # what value
    [[ $2 =~ $ID_PATTERN ]] ||
        usage_error "$1 \"$2\" is not an id: expected 1-63 of a-z, 0-9, '_' and '-', starting with a letter or digit (e.g. clinic-north)"
}

check_topic_root() {
    local root=$1 level
    [[ -n $root && ${#root} -le 256 ]] || usage_error "topic root \"$root\": expected 1-256 bytes"
    [[ $root != \$* ]] || usage_error "topic root \"$root\" must not start with '\$'"
    [[ $root =~ ^[A-Za-z0-9_./-]+$ ]] ||
        usage_error "topic root \"$root\": use letters, digits, '_', '-', '.' and '/' between levels (no wildcards or spaces)"
    IFS=/ read -r -a levels <<<"$root"
    for level in "${levels[@]}"; do
        [[ -n $level ]] || usage_error "topic root \"$root\" has an empty level"
    done
    [[ $root != */ ]] || usage_error "topic root \"$root\" has an empty level"
}

check_host_port() { # what value
    if ! [[ $2 =~ ^[A-Za-z0-9._:-]+:[0-9]{1,5}$ ]] || ((${2##*:} < 1 || ${2##*:} > 65535)); then
        usage_error "$1 \"$2\": expected HOST:PORT, e.g. broker.example.org:8883"
    fi
}

# ---------------------------------------------------------------- files

# Writes standard input to FILE with MODE via a sibling file and a rename,
# so a reader (the broker on SIGHUP) never sees half a file.
write_file() { # file mode
    local file=$1 mode=$2 tmp
    tmp=$(mktemp "${file%/*}/.${file##*/}.XXXXXX")
    if ! cat >"$tmp"; then
        rm -f "$tmp"
        die "cannot write $file"
    fi
    chmod "$mode" "$tmp"
    mv -f "$tmp" "$file"
}

# Gives the broker's user the files the broker reads (mosquitto 2 reads
# them after dropping root).
broker_owns() {
    [[ -n $BROKER_USER ]] || return 0
    chown "$BROKER_USER:" "$@" 2>/dev/null || chown "$BROKER_USER" "$@" ||
        die "cannot chown $* to $BROKER_USER (use --broker-user)"
}

settings_get() { # key [default]
    local key=$1 line
    if [[ -f $SETTINGS ]]; then
        while IFS= read -r line; do
            if [[ $line == "$key="* ]]; then
                printf '%s\n' "${line#*=}"
                return 0
            fi
        done <"$SETTINGS"
    fi
    printf '%s\n' "${2-}"
}

require_init() {
    [[ -f $SETTINGS && -f $CA_DIR/ca.key && -f $CA_DIR/ca.crt ]] ||
        die "$DIR is not initialised: run \"$PROGRAM --dir $DIR init --hostname BROKER-NAME\" first"
}

lock() {
    mkdir -p "$DIR"
    # The broker's user must reach DIR/broker/; ca/, console/ and devices/
    # inside stay 0700.
    chmod 0755 "$DIR"
    exec 9>"$DIR/.lock"
    flock -w 30 9 || die "another $PROGRAM is working on $DIR (lock $DIR/.lock held for 30 s)"
}

# ---------------------------------------------------------------- openssl

run_openssl() { # description args...
    local what=$1 output
    shift
    # openssl.cnf names ${ENV::FLEET_SAN}; only the server certificate uses it.
    if ! output=$(cd "$CA_DIR" && FLEET_SAN=${FLEET_SAN:-DNS:unused} openssl "$@" 2>&1); then
        printf '%s\n' "$output" | sed 's/^/  openssl: /' >&2
        die "openssl failed to $what"
    fi
}

new_key() { # file
    run_openssl "create the key $1" genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out "$1"
    chmod 0600 "$1"
}

write_ca_config() {
    # Relative paths: openssl runs in $CA_DIR, so the directory can move.
    write_file "$CA_DIR/openssl.cnf" 0644 <<EOF
# The fleet CA's openssl configuration, written by $PROGRAM. openssl runs
# with this directory as its working directory.
[ ca ]
default_ca = fleet_ca

[ fleet_ca ]
database = index.txt
serial = serial
crlnumber = crlnumber
new_certs_dir = issued
certificate = ca.crt
private_key = ca.key
default_md = sha256
default_days = 825
# The broker refuses every client once its CRL expires, so the CRL lives as
# long as the CA; it is rewritten on every revocation.
default_crl_days = 3650
policy = policy_cn
# A device keeps its name when its certificate is rotated.
unique_subject = no
copy_extensions = none
email_in_dn = no
name_opt = ca_default
cert_opt = ca_default

[ policy_cn ]
commonName = supplied

[ req ]
distinguished_name = req_dn
prompt = no
[ req_dn ]
CN = unused

[ ext_ca ]
basicConstraints = critical, CA:TRUE, pathlen:0
keyUsage = critical, keyCertSign, cRLSign
subjectKeyIdentifier = hash

[ ext_server ]
basicConstraints = critical, CA:FALSE
keyUsage = critical, digitalSignature, keyEncipherment
extendedKeyUsage = serverAuth
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid:always
subjectAltName = \${ENV::FLEET_SAN}

[ ext_client ]
basicConstraints = critical, CA:FALSE
keyUsage = critical, digitalSignature
extendedKeyUsage = clientAuth
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid:always
EOF
}

# Signs a new key pair for CN with extensions EXT; certificate and key
# land at CERT and KEY. Prints nothing secret.
issue() { # cn ext cert key [days]
    local cn=$1 ext=$2 cert=$3 key=$4 days=${5:-825} csr
    csr=$(mktemp "$CA_DIR/.request.XXXXXX")
    new_key "$key"
    run_openssl "make a request for $cn" req -new -config openssl.cnf -key "$key" -subj "/CN=$cn" -out "$csr"
    run_openssl "sign the certificate of $cn" ca -batch -config openssl.cnf -extensions "$ext" -days "$days" \
        -notext -in "$csr" -out "$cert"
    rm -f "$csr"
    chmod 0644 "$cert"
}

# Serials (hex) of the still-valid certificates issued to CN.
valid_serials() { # cn
    [[ -f $CA_DIR/index.txt ]] || return 0
    # index.txt: state, expiry, revocation time (empty while valid), serial,
    # file, subject. awk, because read would merge the empty field's tabs.
    awk -F '\t' -v subject="/CN=$1" '$1 == "V" && $6 == subject { print $4 }' "$CA_DIR/index.txt"
}

revoke_certificates() { # cn reason
    local serial count=0
    for serial in $(valid_serials "$1"); do
        run_openssl "revoke certificate $serial of $1" ca -config openssl.cnf -revoke "issued/$serial.pem" -crl_reason "$2"
        printf '%s\t%s\t%s\t%s\n' "$(date -u +%Y-%m-%dT%H:%M:%SZ)" "$serial" "$1" "$2" >>"$CA_DIR/revoked.txt"
        count=$((count + 1))
        CRL_STALE=true
    done
    ((count == 0)) || note "revoked $count certificate(s) of $1 (recorded in $CA_DIR/revoked.txt)"
}

# Rewrites the CRL (and the broker's copy) when a certificate was revoked
# since the last time, or when there is none yet.
write_crl() {
    [[ $CRL_STALE == true || ! -f $BROKER_DIR/crl.pem ]] || return 0
    CRL_STALE=false
    run_openssl "write the revocation list" ca -config openssl.cnf -gencrl -out crl.pem
    chmod 0644 "$CA_DIR/crl.pem"
    cp "$CA_DIR/crl.pem" "$BROKER_DIR/.crl.pem.new"
    chmod 0644 "$BROKER_DIR/.crl.pem.new"
    mv -f "$BROKER_DIR/.crl.pem.new" "$BROKER_DIR/crl.pem"
    broker_owns "$BROKER_DIR/crl.pem"
}

# ---------------------------------------------------------------- passwords

new_secret() { openssl rand -hex 32; }

# Sets USER's password in the broker's password file, hashed by
# mosquitto_passwd -U in a private temporary file (a password on
# mosquitto_passwd's command line would be visible in ps).
set_broker_password() { # user password
    local user=$1 password=$2 staging hashed kept
    staging=$(mktemp "$BROKER_DIR/.passwd.XXXXXX")
    printf '%s:%s\n' "$user" "$password" >"$staging"
    if ! mosquitto_passwd -U "$staging" >/dev/null 2>&1; then
        rm -f "$staging"
        die "mosquitto_passwd -U failed to hash the password of $user"
    fi
    hashed=$(<"$staging")
    rm -f "$staging"
    [[ $hashed == "$user:\$"* ]] || die "mosquitto_passwd wrote an unexpected line for $user"
    kept=$(remove_line_of "$user" <"$BROKER_DIR/passwd")
    printf '%s%s\n' "${kept:+$kept$'\n'}" "$hashed" | write_file "$BROKER_DIR/passwd" 0600
    broker_owns "$BROKER_DIR/passwd"
}

has_broker_password() { # user
    [[ -f $BROKER_DIR/passwd ]] && grep -q -F -x -e "$1" < <(cut -d: -f1 "$BROKER_DIR/passwd")
}

remove_broker_password() { # user
    [[ -f $BROKER_DIR/passwd ]] || return 0
    local kept
    kept=$(remove_line_of "$1" <"$BROKER_DIR/passwd")
    printf '%s' "${kept:+$kept$'\n'}" | write_file "$BROKER_DIR/passwd" 0600
    broker_owns "$BROKER_DIR/passwd"
}

remove_line_of() { # user: copies stdin without USER's line
    local line
    while IFS= read -r line || [[ -n $line ]]; do
        [[ $line == "$1:"* ]] || printf '%s\n' "$line"
    done
}

# ---------------------------------------------------------------- ACL

# The ACL file is the concatenation of one fragment per identity
# (DIR/broker/acl.d/*.acl), rebuilt after every change. A device's reply
# topics depend on which console instances exist, so they are not in its
# fragment: they are added here, one exact topic per console instance
# (\$root/_console/reply/INSTANCE/SITE/DEVICE), and any reply line an older
# provision.sh left in a fragment (the shared "_console/reply/+") is dropped.
rebuild_acl() {
    local fragment name root line instance instances=()
    root=$(settings_get topic_root massage/v1)
    for fragment in "$BROKER_DIR"/acl.d/console-*.acl; do
        [[ -e $fragment ]] || continue
        name=${fragment##*/console-}
        instances+=("${name%.acl}")
    done
    {
        printf '# MassageFleet broker ACL, generated by %s from %s/acl.d/ on %s.\n' \
            "$PROGRAM" "$BROKER_DIR" "$(date -u +%Y-%m-%dT%H:%M:%SZ)"
        printf '# Do not edit: run %s device/console/revoke instead.\n' "$PROGRAM"
        printf '# A user may use exactly the topics listed under its name; everything\n'
        printf '# else is denied. No entry is outside a user block (none applies to all).\n'
        for fragment in "$BROKER_DIR"/acl.d/*.acl; do
            [[ -e $fragment ]] || continue
            printf '\n'
            name=${fragment##*/}
            if [[ $name == device-*.acl ]]; then
                while IFS= read -r line || [[ -n $line ]]; do
                    [[ $line == "topic write $root/_console/reply/"* ]] || printf '%s\n' "$line"
                done <"$fragment"
                name=${name#device-}
                name=${name%.acl}
                for instance in "${instances[@]}"; do
                    printf 'topic write %s/_console/reply/%s/%s/%s\n' "$root" "$instance" "${name%%.*}" "${name#*.}"
                done
            else
                cat "$fragment"
            fi
        done
    } | write_file "$BROKER_DIR/acl" 0600
    broker_owns "$BROKER_DIR/acl"
}

# A device's own topics; rebuild_acl adds its reply topic of each console.
device_acl() { # site device root
    local site=$1 device=$2 root=$3
    local base="$root/$site/$device"
    cat <<EOF
# device $site/$device
user $site.$device
topic write $base/status
topic write $base/telemetry
topic write $base/events
topic write $base/usage
topic write $base/config/reported
topic read $base/cmd
topic read $base/config/desired
EOF
}

console_acl() { # instance root
    local root=$2
    cat <<EOF
# console instance $1
user console-$1
topic read $root/#
topic write $root/+/+/cmd
topic write $root/+/+/config/desired
topic write $root/_console/state
EOF
}

# ---------------------------------------------------------------- reload

# Sends SIGHUP to the broker: it rereads the password, ACL and CRL files and
# disconnects clients that lost their access; it does not restart.
# Returns 1 (after a warning) when no broker could be found.
reload_broker() {
    local pid=""
    case $RELOAD in
        none)
            note "not reloading the broker (--no-reload): run \"$PROGRAM reload\" or \"systemctl reload mosquitto\""
            return 0
            ;;
        pid) pid=$RELOAD_PID ;;
        pidfile)
            [[ -r $RELOAD_PID_FILE ]] || { warn "cannot read the pid file $RELOAD_PID_FILE"; return 1; }
            pid=$(<"$RELOAD_PID_FILE")
            ;;
        auto)
            if command -v systemctl >/dev/null 2>&1 && systemctl is-active --quiet mosquitto.service 2>/dev/null; then
                systemctl reload mosquitto.service || { warn "systemctl reload mosquitto failed"; return 1; }
                note "reloaded the broker (systemctl reload mosquitto)"
                return 0
            fi
            if [[ -r /run/mosquitto/mosquitto.pid ]]; then
                pid=$(</run/mosquitto/mosquitto.pid)
            else
                warn "no running broker found (mosquitto.service is not active, no /run/mosquitto/mosquitto.pid); the files are written: reload the broker when it runs"
                return 1
            fi
            ;;
    esac
    pid=${pid//[[:space:]]/}
    [[ $pid =~ ^[0-9]+$ ]] || { warn "\"$pid\" is not a process id"; return 1; }
    local comm=""
    [[ -r /proc/$pid/comm ]] && comm=$(</proc/"$pid"/comm)
    if [[ $comm != mosquitto ]]; then
        warn "process $pid is not a running mosquitto (${comm:-no such process}); not signalled"
        return 1
    fi
    kill -HUP "$pid" || { warn "cannot send SIGHUP to mosquitto ($pid)"; return 1; }
    note "reloaded the broker (SIGHUP to mosquitto, pid $pid)"
}

# ---------------------------------------------------------------- console

# Tells the console to forget SITE/DEVICE (POST /api/v1/devices/SITE/DEVICE/
# forget, admin): it drops the numbers it holds of the device and shows it
# revoked, ignoring the retained status the broker keeps of it, until the id
# connects again with new credentials (docs/operations.md). Done here when
# the console's URL is known (--console URL or FLEET_CONSOLE_API) with an
# admin token (--console-token-file FILE or FLEET_CONSOLE_TOKEN; never on the
# command line); otherwise it prints the command to run.
# Returns 1 (after a warning naming that command) when the call failed.
forget_in_console() { # site device why
    local site=$1 device=$2 why=$3 command
    command="FLEET_CONSOLE_TOKEN=\$(cat ADMIN.token) fleet-console forget $site/$device --api ${CONSOLE_API:-https://CONSOLE} --reason \"$why\""
    if [[ -z $CONSOLE_API ]]; then
        note "the console still holds $site/$device's numbers and last status: forget it there (admin): $command"
        note "(or let $PROGRAM do it: set FLEET_CONSOLE_API and FLEET_CONSOLE_TOKEN, or pass --console URL --console-token-file FILE)"
        return 0
    fi
    local token=${FLEET_CONSOLE_TOKEN-}
    if [[ -n $CONSOLE_TOKEN_FILE ]]; then
        [[ -r $CONSOLE_TOKEN_FILE ]] || { warn "cannot read the console token file $CONSOLE_TOKEN_FILE"; warn "forget $site/$device in the console yourself: $command"; return 1; }
        token=$(<"$CONSOLE_TOKEN_FILE")
        token=${token//[[:space:]]/}
    fi
    if [[ -z $token ]]; then
        warn "--console/FLEET_CONSOLE_API is set but no admin token is (FLEET_CONSOLE_TOKEN or --console-token-file FILE)"
        warn "forget $site/$device in the console yourself: $command"
        return 1
    fi
    command -v curl >/dev/null 2>&1 || { warn "'curl' is not installed (apt-get install curl)"; warn "forget $site/$device in the console yourself: $command"; return 1; }
    local headers body status
    # The token goes to curl in a private file, never on its command line (ps).
    headers=$(mktemp "${TMPDIR:-/tmp}/provision-headers.XXXXXX")
    body=$(mktemp "${TMPDIR:-/tmp}/provision-body.XXXXXX")
    printf 'Authorization: Bearer %s\nContent-Type: application/json\n' "$token" >"$headers"
    unset token
    status=$(curl -sS -o "$body" -w '%{http_code}' --max-time 30 -X POST -H "@$headers" \
        --data "{\"reason\": \"$why\"}" "${CONSOLE_API%/}/api/v1/devices/$site/$device/forget" 2>&1) || status="curl failed: $status"
    rm -f "$headers"
    if [[ $status == 200 ]]; then
        rm -f "$body"
        note "the console at ${CONSOLE_API%/} forgot $site/$device: it shows the device as revoked until it connects with new credentials"
        return 0
    fi
    warn "the console at ${CONSOLE_API%/} did not forget $site/$device (HTTP $status): $(head -c 300 "$body" 2>/dev/null)"
    rm -f "$body"
    warn "forget it yourself once the console answers: $command"
    return 1
}

# Whether SITE.DEVICE was revoked (not rotated) before: re-provisioning it.
was_revoked() { # identity
    [[ -f $CA_DIR/revoked.txt ]] && awk -F '\t' -v cn="$1" '$3 == cn && $4 == "cessationOfOperation" { found = 1 } END { exit !found }' "$CA_DIR/revoked.txt"
}

# ---------------------------------------------------------------- commands

cmd_init() {
    local hostnames=() ips=() broker_address="" topic_root="" data_dir="" programs_dir="" fleet_name="" renew=false
    while (($#)); do
        case $1 in
            --hostname) need_value "$@"; hostnames+=("$2"); shift 2 ;;
            --ip) need_value "$@"; ips+=("$2"); shift 2 ;;
            --broker-address) need_value "$@"; broker_address=$2; shift 2 ;;
            --topic-root) need_value "$@"; topic_root=$2; shift 2 ;;
            --agent-data-dir) need_value "$@"; data_dir=$2; shift 2 ;;
            --agent-programs-dir) need_value "$@"; programs_dir=$2; shift 2 ;;
            --fleet-name) need_value "$@"; fleet_name=$2; shift 2 ;;
            --renew-server) renew=true; shift ;;
            *) usage_error "init: unknown argument \"$1\"" ;;
        esac
    done
    local initialised=false
    [[ -f $SETTINGS ]] && initialised=true
    if ! $initialised && ((${#hostnames[@]} == 0)); then
        usage_error "init needs at least one --hostname: the name devices use to reach the broker (it goes into the broker's certificate)"
    fi
    local name
    for name in "${hostnames[@]}"; do
        [[ $name =~ ^[A-Za-z0-9]([A-Za-z0-9.-]{0,251}[A-Za-z0-9])?$ ]] || usage_error "--hostname \"$name\" is not a DNS name"
    done
    for name in "${ips[@]}"; do
        [[ $name =~ ^[0-9.]+$ || $name =~ ^[0-9A-Fa-f:]+$ ]] || usage_error "--ip \"$name\" is not an IPv4 or IPv6 address"
    done
    [[ -z $topic_root ]] || check_topic_root "$topic_root"
    [[ -z $broker_address ]] || check_host_port --broker-address "$broker_address"

    # Settings: what was given now, else what init stored before, else defaults.
    local san=""
    for name in "${hostnames[@]}"; do san+="${san:+,}DNS:$name"; done
    for name in "${ips[@]}"; do san+="${san:+,}IP:$name"; done
    [[ -n $san ]] || san=$(settings_get server_names)
    [[ -n $topic_root ]] || topic_root=$(settings_get topic_root massage/v1)
    local old_root
    old_root=$(settings_get topic_root "$topic_root")
    [[ $old_root == "$topic_root" ]] ||
        die "this fleet's topic root is $old_root; changing it would orphan every device's ACL (re-run device for each device after editing $SETTINGS)"
    [[ -n $broker_address ]] || broker_address=$(settings_get broker_address)
    if [[ -z $broker_address ]]; then
        local first_name=${san%%,*}
        broker_address="${first_name#*:}:8883"
    fi
    [[ -n $data_dir ]] || data_dir=$(settings_get agent_data_dir /var/lib/massage-agent)
    [[ -n $programs_dir ]] || programs_dir=$(settings_get agent_programs_dir /usr/share/massage-agent/programs)
    [[ -n $fleet_name ]] || fleet_name=$(settings_get fleet_name MassageFleet)
    [[ $fleet_name =~ ^[A-Za-z0-9\ ._-]{1,48}$ ]] || usage_error "--fleet-name: 1-48 letters, digits, spaces, '.', '_' or '-'"

    mkdir -p "$CA_DIR/issued" "$BROKER_DIR/acl.d" "$DIR/console" "$DIR/devices"
    chmod 0700 "$CA_DIR" "$BROKER_DIR" "$DIR/console" "$DIR/devices"
    chmod 0755 "$BROKER_DIR" # the broker's user must reach its files
    [[ -f $CA_DIR/openssl.cnf ]] || write_ca_config
    [[ -f $CA_DIR/index.txt ]] || : >"$CA_DIR/index.txt"
    [[ -f $CA_DIR/serial ]] || openssl rand -hex 16 >"$CA_DIR/serial"
    [[ -f $CA_DIR/crlnumber ]] || echo 1000 >"$CA_DIR/crlnumber"
    [[ -f $CA_DIR/revoked.txt ]] || printf '# revoked certificates: time (UTC), serial, name, reason\n' >"$CA_DIR/revoked.txt"

    if [[ ! -f $CA_DIR/ca.key ]]; then
        new_key "$CA_DIR/ca.key"
        run_openssl "create the fleet CA" req -x509 -new -config openssl.cnf -extensions ext_ca -key ca.key \
            -subj "/CN=$fleet_name CA" -days 3650 -sha256 -out ca.crt
        chmod 0644 "$CA_DIR/ca.crt"
        note "created the fleet CA ($CA_DIR/ca.crt; its key $CA_DIR/ca.key must never leave this machine)"
    else
        note "the fleet CA exists ($CA_DIR/ca.crt)"
    fi
    cp "$CA_DIR/ca.crt" "$BROKER_DIR/ca.crt"
    chmod 0644 "$BROKER_DIR/ca.crt"

    local old_san
    old_san=$(settings_get server_names)
    if $renew || [[ ! -f $BROKER_DIR/server.crt || $old_san != "$san" ]]; then
        if [[ -f $CA_DIR/server-cn ]]; then revoke_certificates "$(<"$CA_DIR/server-cn")" superseded; fi
        local first=${san%%,*}
        first=${first#*:}
        FLEET_SAN=$san
        issue "$first" ext_server "$BROKER_DIR/.server.crt.new" "$BROKER_DIR/.server.key.new" 825
        mv -f "$BROKER_DIR/.server.key.new" "$BROKER_DIR/server.key"
        mv -f "$BROKER_DIR/.server.crt.new" "$BROKER_DIR/server.crt"
        printf '%s\n' "$first" >"$CA_DIR/server-cn"
        note "issued the broker's certificate for $san ($BROKER_DIR/server.crt)"
    else
        note "the broker's certificate exists for $san"
    fi
    broker_owns "$BROKER_DIR/server.key" "$BROKER_DIR/server.crt" "$BROKER_DIR/ca.crt"

    write_file "$SETTINGS" 0600 <<EOF
# Written by $PROGRAM init; read by its other commands. Not secret.
fleet_name=$fleet_name
server_names=$san
topic_root=$topic_root
broker_address=$broker_address
agent_data_dir=$data_dir
agent_programs_dir=$programs_dir
EOF
    [[ -f $BROKER_DIR/passwd ]] || { : | write_file "$BROKER_DIR/passwd" 0600; }
    broker_owns "$BROKER_DIR/passwd"
    write_crl
    provision_console console false
    rebuild_acl
    note "broker files are in $BROKER_DIR (mosquitto.conf points at /etc/massagefleet/broker/)"
    reload_broker || true
}

provision_console() { # instance rotate
    local instance=$1 rotate=$2 root user out
    root=$(settings_get topic_root massage/v1)
    user="console-$instance"
    out="$DIR/console/$instance"
    mkdir -p "$out"
    chmod 0700 "$out"
    if $rotate || [[ ! -f $out/broker-password ]] || ! has_broker_password "$user"; then
        local password
        password=$(new_secret)
        printf '%s\n' "$password" | write_file "$out/broker-password" 0600
        set_broker_password "$user" "$password"
        unset password
        note "set the broker password of $user ($out/broker-password)"
    fi
    if $rotate || [[ ! -f $out/console.crt ]]; then
        revoke_certificates "$user" superseded
        issue "$user" ext_client "$out/.console.crt.new" "$out/.console.key.new" 825
        mv -f "$out/.console.key.new" "$out/console.key"
        mv -f "$out/.console.crt.new" "$out/console.crt"
        note "issued the client certificate of $user ($out/console.crt)"
    fi
    cp "$CA_DIR/ca.crt" "$out/ca.crt"
    chmod 0644 "$out/ca.crt"
    local address host port
    address=$(settings_get broker_address)
    host=${address%:*}
    port=${address##*:}
    write_file "$out/broker.yaml" 0644 <<EOF
# fleet-console settings for instance "$instance", written by $PROGRAM.
# Copy this directory to /etc/fleet-console/ (owner fleet-console, mode
# 0700; the key and the password file 0600) and merge these keys into
# /etc/fleet-console/console.yaml. Relative paths resolve against that file.
instance: "$instance"
topic_root: "$root"
broker:
  host: "$host"
  port: $port
  username: "$user"
  password_file: broker-password
  tls:
    ca_file: ca.crt
    cert_file: console.crt
    key_file: console.key
    verify_hostname: true
EOF
    console_acl "$instance" "$root" | write_file "$BROKER_DIR/acl.d/console-$instance.acl" 0600
}

cmd_console() {
    local instance=console rotate=false
    while (($#)); do
        case $1 in
            --rotate) rotate=true; shift ;;
            -*) usage_error "console: unknown option \"$1\"" ;;
            *) instance=$1; shift ;;
        esac
    done
    check_id instance "$instance"
    require_init
    provision_console "$instance" "$rotate"
    rebuild_acl
    note "console $instance: $DIR/console/$instance/ (merge broker.yaml into the console's config)"
    reload_broker || true
}

cmd_device() {
    local positional=() broker="" data_dir="" programs_dir="" rotate=false
    while (($#)); do
        case $1 in
            --broker) need_value "$@"; broker=$2; shift 2 ;;
            --data-dir) need_value "$@"; data_dir=$2; shift 2 ;;
            --programs-dir) need_value "$@"; programs_dir=$2; shift 2 ;;
            --rotate) rotate=true; shift ;;
            -*) usage_error "device: unknown option \"$1\"" ;;
            *) positional+=("$1"); shift ;;
        esac
    done
    ((${#positional[@]} == 2)) || usage_error "device needs SITE and DEVICE, e.g. \"device clinic-north massager-01\""
    local site=${positional[0]} device=${positional[1]}
    check_id site "$site"
    check_id device "$device"
    [[ -z $broker ]] || check_host_port --broker "$broker"
    require_init

    local identity="$site.$device" out="$DIR/devices/$site/$device" root reprovisioned=false
    root=$(settings_get topic_root massage/v1)
    # An id revoked before and not provisioned since: the console may still
    # hold the numbers of its earlier life (e.g. a thief's epoch), which would
    # shadow the new massager's.
    if ! has_broker_password "$identity" && was_revoked "$identity"; then reprovisioned=true; fi
    # What this device was provisioned with before (a re-run keeps it),
    # else the fleet's defaults from init.
    local previous="$out/.provision.env"
    [[ -n $broker ]] || broker=$(SETTINGS=$previous settings_get broker_address)
    [[ -n $broker ]] || broker=$(settings_get broker_address)
    [[ -n $data_dir ]] || data_dir=$(SETTINGS=$previous settings_get agent_data_dir)
    [[ -n $data_dir ]] || data_dir=$(settings_get agent_data_dir /var/lib/massage-agent)
    [[ -n $programs_dir ]] || programs_dir=$(SETTINGS=$previous settings_get agent_programs_dir)
    [[ -n $programs_dir ]] || programs_dir=$(settings_get agent_programs_dir /usr/share/massage-agent/programs)
    mkdir -p "$out"
    chmod 0700 "$DIR/devices/$site" "$out"
    write_file "$previous" 0644 <<EOF
# What $PROGRAM device used for this bundle (a re-run keeps it). Not secret.
broker_address=$broker
agent_data_dir=$data_dir
agent_programs_dir=$programs_dir
EOF

    if $rotate || [[ ! -f $out/password ]] || ! has_broker_password "$identity"; then
        local password
        password=$(new_secret)
        printf '%s\n' "$password" | write_file "$out/password" 0600
        set_broker_password "$identity" "$password"
        unset password
        note "set the broker password of $identity"
    fi
    if $rotate || [[ ! -f $out/device.crt ]]; then
        revoke_certificates "$identity" superseded
        issue "$identity" ext_client "$out/.device.crt.new" "$out/.device.key.new" 825
        mv -f "$out/.device.key.new" "$out/device.key"
        mv -f "$out/.device.crt.new" "$out/device.crt"
        note "issued the client certificate of $identity"
        write_crl
    fi
    cp "$CA_DIR/ca.crt" "$out/ca.crt"
    chmod 0644 "$out/ca.crt"
    write_file "$out/agent.yaml" 0644 <<EOF
# massage-agent configuration for $site/$device, written by $PROGRAM.
# Install this directory as /etc/massage-agent/ on the massager (owner
# massage-agent, mode 0700; password and device.key 0600). Relative paths
# resolve against this file. Config/agent.yaml documents every other key.
site: "$site"
device: "$device"
topic_root: "$root"
data_dir: "$data_dir"
programs_dir: "$programs_dir"

broker:
  host: "${broker%:*}"
  port: ${broker##*:}
  # The broker's name for this massager; the broker's ACL lets it use only
  # $root/$site/$device/... topics and the console's reply topics.
  username: "$identity"
  password_file: password
  tls:
    ca_file: ca.crt
    cert_file: device.crt
    key_file: device.key
    verify_hostname: true
  keepalive_s: 30
  reconnect_initial_ms: 500
  reconnect_max_ms: 30000
EOF
    device_acl "$site" "$device" "$root" | write_file "$BROKER_DIR/acl.d/device-$identity.acl" 0600
    rebuild_acl
    note "device $site/$device: $out/ (agent.yaml, password, ca.crt, device.crt, device.key)"
    reload_broker || true
    if $reprovisioned; then
        note "$site/$device was revoked before: this is a new life of the id"
        forget_in_console "$site" "$device" "re-provisioned by $PROGRAM" ||
            die "$site/$device is provisioned, but the console may still hold its earlier numbers: forget it there (the command is above) before the massager connects"
    fi
}

cmd_revoke() {
    (($# == 2)) || usage_error "revoke needs SITE and DEVICE, e.g. \"revoke clinic-north massager-01\""
    local site=$1 device=$2
    check_id site "$site"
    check_id device "$device"
    require_init
    local identity="$site.$device" out="$DIR/devices/$site/$device" found=false
    if has_broker_password "$identity"; then
        remove_broker_password "$identity"
        found=true
    fi
    if [[ -f $BROKER_DIR/acl.d/device-$identity.acl ]]; then
        rm -f "$BROKER_DIR/acl.d/device-$identity.acl"
        found=true
    fi
    rebuild_acl
    if [[ -n $(valid_serials "$identity") ]]; then
        revoke_certificates "$identity" cessationOfOperation
        found=true
    fi
    write_crl
    if [[ -d $out ]]; then
        rm -rf "$out"
        rmdir "$DIR/devices/$site" 2>/dev/null || true
        found=true
    fi
    if $found; then
        note "revoked $site/$device: password, ACL entries and certificates removed, bundle deleted"
    else
        note "$site/$device was not provisioned (nothing to revoke)"
    fi
    reload_broker || die "$site/$device is revoked in the files but the broker was NOT reloaded: run \"$PROGRAM reload\" (or systemctl reload mosquitto) now"
    # Only now, with the device cut off: a live message from it would end the console's revocation.
    if $found; then
        forget_in_console "$site" "$device" "revoked by $PROGRAM" ||
            die "$site/$device is revoked on the broker, but the console still shows its last status: forget it there (the command is above)"
    fi
}

# Like cmd_revoke, for a console instance (issue 20, item 13): a leaked
# console identity reads the whole tree and commands every device, so it is
# cut off without waiting for a restart of anything but the broker's files.
cmd_revoke_console() {
    (($# == 1)) || usage_error "revoke-console needs the console INSTANCE, e.g. \"revoke-console replica-2\""
    local instance=$1
    check_id instance "$instance"
    require_init
    local user="console-$instance" out="$DIR/console/$instance" found=false
    if has_broker_password "$user"; then
        remove_broker_password "$user"
        found=true
    fi
    if [[ -f $BROKER_DIR/acl.d/console-$instance.acl ]]; then
        rm -f "$BROKER_DIR/acl.d/console-$instance.acl"
        found=true
    fi
    # Drops the console's block and every device's reply topic of it.
    rebuild_acl
    if [[ -n $(valid_serials "$user") ]]; then
        revoke_certificates "$user" cessationOfOperation
        found=true
    fi
    write_crl
    if [[ -d $out ]]; then
        rm -rf "$out"
        found=true
    fi
    if $found; then
        note "revoked console $instance: password, ACL entries and certificates removed, $out deleted"
    else
        note "console $instance was not provisioned (nothing to revoke)"
    fi
    reload_broker || die "console $instance is revoked in the files but the broker was NOT reloaded: run \"$PROGRAM reload\" (or systemctl reload mosquitto) now"
}

cmd_token() {
    local positional=() rotate=false
    while (($#)); do
        case $1 in
            --rotate) rotate=true; shift ;;
            -*) usage_error "token: unknown option \"$1\"" ;;
            *) positional+=("$1"); shift ;;
        esac
    done
    ((${#positional[@]} >= 2)) || usage_error "token needs NAME and ROLE, e.g. \"token north-desk operator clinic-north\""
    local name=${positional[0]} role=${positional[1]} sites=("${positional[@]:2}") site
    check_id "token name" "$name"
    case $role in
        admin) ((${#sites[@]} == 0)) || usage_error "an admin token sees every site; give no SITE" ;;
        operator | viewer) ((${#sites[@]})) || usage_error "an $role token needs at least one SITE it may see, or '*' for every site" ;;
        *) usage_error "role \"$role\": expected admin, operator or viewer" ;;
    esac
    # '*' alone: every site, said explicitly (the console refuses a viewer
    # or operator token without sites).
    if [[ ${sites[*]-} != "*" ]]; then
        for site in "${sites[@]}"; do check_id site "$site"; done
    fi
    mkdir -p "$DIR/console/tokens"
    chmod 0700 "$DIR/console" "$DIR/console/tokens"
    local file="$DIR/console/tokens.yaml"
    if has_token "$name" && ! $rotate; then
        note "token $name exists ($DIR/console/tokens/$name.token); use --rotate for a new one"
        return 0
    fi
    local token hash line
    token=$(openssl rand -hex 24)
    hash=$(printf '%s' "$token" | openssl dgst -sha256 -r)
    hash=${hash%% *}
    [[ $hash =~ ^[0-9a-f]{64}$ ]] || die "could not hash the token"
    printf '%s\n' "$token" | write_file "$DIR/console/tokens/$name.token" 0600
    unset token
    line="  - {name: \"$name\", sha256: \"$hash\", role: $role"
    if ((${#sites[@]})); then
        local list=""
        for site in "${sites[@]}"; do list+="${list:+, }\"$site\""; done
        line+=", sites: [$list]"
    fi
    line+="}"
    write_tokens "$name" "$line"
    note "token $name ($role${sites[*]:+ for ${sites[*]}}) is in $DIR/console/tokens/$name.token; its SHA-256 in $file (systemctl reload fleet-console loads it)"
}

write_tokens() { # name-to-replace [new-line]
    local file="$DIR/console/tokens.yaml" line entries=()
    if [[ -f $file ]]; then
        while IFS= read -r line; do
            [[ $line == "  - {name: "* && $line != "  - {name: \"$1\", "* ]] && entries+=("$line")
        done <"$file"
    fi
    [[ -z ${2-} ]] || entries+=("$2")
    {
        printf '# fleet-console API tokens (tokens_file): only SHA-256 hashes, written by %s.\n' "$PROGRAM"
        printf '# The console refuses this file when group or others can read it.\n'
        if ((${#entries[@]})); then
            printf 'tokens:\n'
            printf '%s\n' "${entries[@]}"
        else
            printf 'tokens: []\n'
        fi
    } | write_file "$file" 0600
}

has_token() { # name
    local line
    [[ -f $DIR/console/tokens.yaml ]] || return 1
    while IFS= read -r line; do
        [[ $line == "  - {name: \"$1\", "* ]] && return 0
    done <"$DIR/console/tokens.yaml"
    return 1
}

cmd_revoke_token() {
    (($# == 1)) || usage_error "revoke-token needs the token's NAME"
    check_id "token name" "$1"
    has_token "$1" || { note "no token named $1"; return 0; }
    write_tokens "$1"
    rm -f "$DIR/console/tokens/$1.token"
    note "removed token $1 (systemctl reload fleet-console drops it at once)"
}

cmd_list() {
    require_init
    local fragment name
    printf 'fleet %s, broker %s, topic root %s\n' "$(settings_get fleet_name)" "$(settings_get broker_address)" "$(settings_get topic_root)"
    for fragment in "$BROKER_DIR"/acl.d/*.acl; do
        [[ -e $fragment ]] || continue
        name=${fragment##*/}
        name=${name%.acl}
        case $name in
            console-*) printf 'console  %s\n' "${name#console-}" ;;
            device-*) name=${name#device-}; printf 'device   %s/%s\n' "${name%%.*}" "${name#*.}" ;;
        esac
    done
}

need_value() { # option value...
    if (($# < 2)) || [[ $2 == --* ]]; then usage_error "$1 needs a value"; fi
}

# ---------------------------------------------------------------- main

DIR=${FLEET_PROVISION_DIR:-/etc/massagefleet}
CRL_STALE=false
RELOAD=auto
RELOAD_PID=""
RELOAD_PID_FILE=""
BROKER_USER="unset"
CONSOLE_API=${FLEET_CONSOLE_API-}
CONSOLE_TOKEN_FILE=""
args=()
while (($#)); do
    case $1 in
        --dir) need_value "$@"; DIR=$2; shift 2 ;;
        --dir=*) DIR=${1#*=}; shift ;;
        --broker-pid) need_value "$@"; RELOAD=pid; RELOAD_PID=$2; shift 2 ;;
        --pid-file) need_value "$@"; RELOAD=pidfile; RELOAD_PID_FILE=$2; shift 2 ;;
        --no-reload) RELOAD=none; shift ;;
        --broker-user) need_value "$@"; BROKER_USER=$2; shift 2 ;;
        --console) need_value "$@"; CONSOLE_API=$2; shift 2 ;;
        --console-token-file) need_value "$@"; CONSOLE_TOKEN_FILE=$2; shift 2 ;;
        -h | --help) usage; exit 0 ;;
        *) args+=("$1"); shift ;;
    esac
done
set -- "${args[@]+"${args[@]}"}"
(($#)) || { usage >&2; exit 2; }
command=$1
shift

[[ $DIR == /* ]] || DIR="$PWD/$DIR"
readonly CA_DIR="$DIR/ca" BROKER_DIR="$DIR/broker"
SETTINGS="$DIR/fleet.env"
if [[ $BROKER_USER == unset ]]; then
    BROKER_USER=""
    if (($(id -u) == 0)) && id mosquitto >/dev/null 2>&1; then BROKER_USER=mosquitto; fi
elif [[ -n $BROKER_USER ]]; then
    id "$BROKER_USER" >/dev/null 2>&1 || usage_error "--broker-user: no user \"$BROKER_USER\""
fi

case $command in
    help) usage; exit 0 ;;
    init | device | revoke | console | revoke-console | crl | reload | list) require_tools openssl mosquitto_passwd flock ;;
    token | revoke-token) require_tools openssl flock ;;
    *) usage_error "unknown command \"$command\"" ;;
esac
lock
case $command in
    init) cmd_init "$@" ;;
    device) cmd_device "$@" ;;
    revoke) cmd_revoke "$@" ;;
    console) cmd_console "$@" ;;
    revoke-console) cmd_revoke_console "$@" ;;
    token) cmd_token "$@" ;;
    revoke-token) cmd_revoke_token "$@" ;;
    crl)
        (($# == 0)) || usage_error "crl takes no arguments"
        require_init
        CRL_STALE=true
        write_crl
        note "rewrote the revocation list ($BROKER_DIR/crl.pem, valid until $(openssl crl -in "$BROKER_DIR/crl.pem" -noout -nextupdate | cut -d= -f2))"
        reload_broker || die "the broker was not reloaded"
        ;;
    reload) (($# == 0)) || usage_error "reload takes no arguments"; require_init; reload_broker || die "the broker was not reloaded" ;;
    list) cmd_list ;;
esac
