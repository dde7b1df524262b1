#!/usr/bin/env bash
# Checks the health of a single-node DevStack installation.
set -euo pipefail

usage() {
  cat <<'USAGE'
Usage: verify.sh [options]

Checks that every OpenStack service of the Strata DevStack installation is up:
  1. systemd units of DevStack (devstack@*) and of the database, message queue,
     web server, Open vSwitch and OVN are active and running
  2. Keystone issues a token for the credentials in the environment
  3. `openstack compute service list`: every Nova service is enabled and up,
     and a scheduler, a conductor and a compute service exist
  4. `openstack hypervisor list`: at least one hypervisor is up
  5. `openstack network agent list`: every Neutron/OVN agent is alive and an
     OVN controller agent exists
  6. `openstack volume service list`: every Cinder service is enabled and up,
     with a scheduler and a volume service
  7. `openstack endpoint list`: identity, compute, network, image, placement
     and block-storage have public endpoints, and each answers HTTP
  8. the journal of the services since --since holds no ERROR, CRITICAL or
     Traceback lines (a warning, or a failure with --strict-logs)

Credentials come from the environment as for the openstack CLI (OS_CLOUD, or
OS_AUTH_URL and friends: `source /opt/stack/devstack/openrc admin admin`).

Options:
  --since TIME      start of the log scan, as journalctl understands it (default: -1h)
  --strict-logs     error lines in the logs fail the check instead of warning
  --skip-systemd    do not check systemd units (e.g. when run from another host)
  --skip-logs       do not scan the journal
  --skip-probe      do not send HTTP requests to the endpoints
  -h, --help        show this help

Exit status: 0 when every check passed (warnings allowed), 1 when at least one
check failed, 2 on a usage error or when a required tool or credential is missing.
USAGE
}

since=-1h
strict_logs=false
check_systemd=true
check_logs=true
probe=true
while [[ $# -gt 0 ]]; do
  case $1 in
    --since) since=${2:?--since needs a value}; shift 2 ;;
    --strict-logs) strict_logs=true; shift ;;
    --skip-systemd) check_systemd=false; shift ;;
    --skip-logs) check_logs=false; shift ;;
    --skip-probe) probe=false; shift ;;
    -h | --help) usage; exit 0 ;;
    *) printf 'verify.sh: unknown argument: %s\n' "$1" >&2; usage >&2; exit 2 ;;
  esac
done

failures=0
warnings=0
passes=0
pass() { passes=$((passes + 1)); printf 'PASS  %-16s %s\n' "$1" "$2"; }
fail() { failures=$((failures + 1)); printf 'FAIL  %-16s %s\n' "$1" "$2"; }
warn() { warnings=$((warnings + 1)); printf 'WARN  %-16s %s\n' "$1" "$2"; }

need() {
  command -v "$1" >/dev/null 2>&1 || {
    printf 'verify.sh: %s is required but not on PATH\n' "$1" >&2
    exit 2
  }
}
need openstack
need python3
if [[ -z ${OS_CLOUD:-} && -z ${OS_AUTH_URL:-} ]]; then
  printf 'verify.sh: no OpenStack credentials: set OS_CLOUD or source openrc first\n' >&2
  exit 2
fi
$check_systemd && need systemctl
$check_logs && need journalctl
$probe && need curl

# os_run NAME ARGS...: runs the openstack CLI; on failure records a failed
# check NAME with the CLI's error and returns 1.
os_out=""
os_run() {
  local name=$1 err
  shift
  err=$(mktemp)
  if os_out=$(openstack "$@" 2>"$err"); then
    rm -f "$err"
    return 0
  fi
  fail "$name" "openstack $* failed: $(tr '\n' ' ' <"$err" | cut -c1-300)"
  rm -f "$err"
  return 1
}

# json_rows KEY...: reads a JSON list of objects (the CLI's `-f json`) on stdin
# and prints one tab-separated line per object with the values of KEY...
# Booleans print as true/false, missing keys and nulls as "-".
json_rows() {
  python3 -c '
import json, sys
keys = sys.argv[1:]
def show(v):
    if v is None or v == "":
        return "-"
    if isinstance(v, bool):
        return "true" if v else "false"
    return str(v).replace("\t", " ").replace("\n", " ")
for row in json.load(sys.stdin):
    print("\t".join(show(row.get(k)) for k in keys))
' "$@"
}

# --- 1. systemd -------------------------------------------------------------------
# Each entry: a label and the unit names that may provide it (packaged or
# built-from-source variants differ between DevStack and Ubuntu releases).
required_units=(
  "database:mysql.service mariadb.service"
  "message-queue:rabbitmq-server.service"
  "web-server:apache2.service"
  "memcached:memcached.service"
  "etcd:devstack@etcd.service"
  "ovsdb-server:ovsdb-server.service devstack@ovsdb-server.service openvswitch-switch.service"
  "ovs-vswitchd:ovs-vswitchd.service devstack@ovs-vswitchd.service openvswitch-switch.service"
  "ovn-northd:ovn-northd.service devstack@ovn-northd.service ovn-central.service"
  "ovn-controller:ovn-controller.service devstack@ovn-controller.service ovn-host.service"
  "keystone:devstack@keystone.service"
  "placement:devstack@placement-api.service"
  "glance:devstack@g-api.service"
  "nova-api:devstack@n-api.service"
  "nova-metadata:devstack@n-api-meta.service"
  "nova-conductor:devstack@n-super-cond.service devstack@n-cond.service"
  "nova-cell-cond:devstack@n-cond-cell1.service devstack@n-cond.service"
  "nova-scheduler:devstack@n-sch.service"
  "nova-compute:devstack@n-cpu.service"
  "nova-novnc:devstack@n-novnc-cell1.service devstack@n-novnc.service"
  "neutron-server:devstack@neutron-api.service devstack@q-svc.service"
  "neutron-rpc:devstack@neutron-rpc-server.service devstack@q-svc.service"
  "ovn-metadata:devstack@q-ovn-metadata-agent.service devstack@q-ovn-agent.service"
  "cinder-api:devstack@c-api.service"
  "cinder-sched:devstack@c-sch.service"
  "cinder-volume:devstack@c-vol.service"
)

if $check_systemd; then
  declare -A unit_state=()
  # `systemctl list-units --plain --no-legend` prints: UNIT LOAD ACTIVE SUB DESCRIPTION
  while read -r -a fields; do
    # Failed units may carry a leading bullet even in --plain mode.
    [[ ${fields[0]:-} == "●" ]] && fields=("${fields[@]:1}")
    ((${#fields[@]} >= 4)) || continue
    unit_state[${fields[0]}]="${fields[1]}/${fields[2]}/${fields[3]}"
  done < <(systemctl list-units --all --type=service --plain --no-legend --no-pager)

  # unit_ok UNIT STATE: services must be running; the packaging wrappers
  # (openvswitch-switch, ovn-central, ovn-host) are oneshot units that stay
  # "active (exited)" while the daemons they start run.
  unit_ok() {
    case $1 in
      openvswitch-switch.service | ovn-central.service | ovn-host.service) [[ $2 == loaded/active/* ]] ;;
      *) [[ $2 == loaded/active/running ]] ;;
    esac
  }
  declare -A checked=()
  for entry in "${required_units[@]}"; do
    label=${entry%%:*}
    healthy=""
    unhealthy=""
    for unit in ${entry#*:}; do
      checked[$unit]=1
      state=${unit_state[$unit]:-}
      [[ -n $state ]] || continue
      if unit_ok "$unit" "$state"; then
        healthy="$unit ($state)"
        break
      fi
      unhealthy+="$unit ($state) "
    done
    if [[ -n $healthy ]]; then
      pass "unit:$label" "$healthy"
    elif [[ -n $unhealthy ]]; then
      fail "unit:$label" "not running: ${unhealthy% }"
    else
      fail "unit:$label" "none of these units exists: ${entry#*:}"
    fi
  done

  # Any other DevStack unit that is not running is a failure too.
  for unit in "${!unit_state[@]}"; do
    [[ $unit == devstack@* && -z ${checked[$unit]:-} ]] || continue
    state=${unit_state[$unit]}
    if [[ $state != loaded/active/running ]]; then
      fail "unit:other" "$unit is $state"
    fi
  done
fi

# --- 2. identity ------------------------------------------------------------------
if os_run identity token issue -f value -c expires; then
  pass identity "token issued, expires $os_out"
fi

# --- 3. compute services ----------------------------------------------------------
if os_run compute compute service list -f value -c Binary -c Host -c Status -c State; then
  seen=""
  while read -r binary host status state; do
    [[ -n ${binary:-} ]] || continue
    seen+=" $binary"
    if [[ $state != up ]]; then
      fail compute "$binary on $host is $state"
    elif [[ $status != enabled ]]; then
      warn compute "$binary on $host is $status"
    else
      pass compute "$binary on $host is up"
    fi
  done <<<"$os_out"
  for binary in nova-scheduler nova-conductor nova-compute; do
    [[ " $seen " == *" $binary "* ]] || fail compute "no $binary service registered"
  done
fi

# --- 4. hypervisors ---------------------------------------------------------------
if os_run hypervisor hypervisor list -f value -c "Hypervisor Hostname" -c State; then
  up=0
  while read -r hv state; do
    [[ -n ${hv:-} ]] || continue
    if [[ $state == up ]]; then up=$((up + 1)); else fail hypervisor "$hv is $state"; fi
  done <<<"$os_out"
  if ((up > 0)); then pass hypervisor "$up hypervisor(s) up"; else fail hypervisor "no hypervisor is up"; fi
fi

# --- 5. network agents ------------------------------------------------------------
if os_run network network agent list -f json; then
  if ! rows=$(json_rows "Agent Type" Host Alive State Binary <<<"$os_out"); then
    fail network "cannot parse the agent list as JSON"
  else
    ovn_controller=false
    while IFS=$'\t' read -r type host alive admin binary; do
      [[ -n ${type:-} ]] || continue
      [[ $binary == ovn-controller ]] && ovn_controller=true
      if [[ $alive != true ]]; then
        fail network "$type ($binary) on $host is not alive"
      elif [[ $admin != true ]]; then
        warn network "$type ($binary) on $host is administratively down"
      else
        pass network "$type ($binary) on $host is alive"
      fi
    done <<<"$rows"
    $ovn_controller || fail network "no OVN controller agent registered"
  fi
fi

# --- 6. volume services -------------------------------------------------------------
if os_run volume volume service list -f value -c Binary -c Host -c Status -c State; then
  seen=""
  while read -r binary host status state; do
    [[ -n ${binary:-} ]] || continue
    seen+=" $binary"
    if [[ $state != up ]]; then
      fail volume "$binary on $host is $state"
    elif [[ $status != enabled ]]; then
      warn volume "$binary on $host is $status"
    else
      pass volume "$binary on $host is up"
    fi
  done <<<"$os_out"
  for binary in cinder-scheduler cinder-volume; do
    [[ " $seen " == *" $binary "* ]] || fail volume "no $binary service registered"
  done
fi

# --- 7. endpoints -----------------------------------------------------------------
# probe_url URL: any HTTP answer below 500 shows a live API (most answer 200,
# 300 (version discovery) or 401 without a token).
probe_url() {
  local url=$1 code
  # Drop templated path segments such as /v3/%(project_id)s or /$(tenant_id)s.
  url=$(sed -E 's#/[^/]*(%\(|\$\()[^/]*##g' <<<"$url")
  code=$(curl -sS -o /dev/null -w '%{http_code}' --max-time 10 "$url" 2>/dev/null) || code=000
  if [[ $code =~ ^[1-4][0-9][0-9]$ ]]; then
    return 0
  fi
  printf '%s' "$code"
  return 1
}

if os_run endpoints endpoint list --interface public -f value -c "Service Type" -c Enabled -c Interface -c URL; then
  declare -A endpoint_of=()
  while read -r type enabled interface url; do
    [[ -n ${type:-} ]] || continue
    [[ $interface == public ]] || continue
    if [[ $enabled != True ]]; then
      warn endpoints "$type public endpoint $url is disabled"
      continue
    fi
    endpoint_of[$type]=$url
  done <<<"$os_out"
  for wanted in identity compute network image placement block-storage:volumev3; do
    url=""
    for type in ${wanted//:/ }; do
      url=${endpoint_of[$type]:-}
      [[ -n $url ]] && break
    done
    if [[ -z $url ]]; then
      fail endpoints "no enabled public endpoint for ${wanted%%:*}"
    elif ! $probe; then
      pass endpoints "${wanted%%:*} at $url"
    elif code=$(probe_url "$url"); then
      pass endpoints "${wanted%%:*} at $url answers"
    else
      fail endpoints "${wanted%%:*} at $url does not answer (HTTP ${code:-000})"
    fi
  done
fi

# --- 8. logs ------------------------------------------------------------------------
if $check_logs; then
  units=(-u 'devstack@*' -u rabbitmq-server -u mysql -u mariadb -u apache2
    -u 'ovn-*' -u 'ovs-*' -u openvswitch-switch)
  # The system journal is readable by root (and the adm/systemd-journal
  # groups); DevStack's stack user reads it through its sudo rights.
  journal_cmd=(journalctl)
  if [[ $(id -u) -ne 0 ]] && ! id -nG | grep -qwE 'adm|systemd-journal' && sudo -n true 2>/dev/null; then
    journal_cmd=(sudo -n journalctl)
  fi
  if ! journal=$("${journal_cmd[@]}" "${units[@]}" --since "$since" --no-pager -o short 2>&1); then
    fail logs "journalctl failed: $(head -c 300 <<<"$journal")"
  else
    errors=$(grep -E '(^|[[:space:]])(ERROR|CRITICAL)[[:space:]]|Traceback \(most recent call last\)' <<<"$journal" || true)
    if [[ -z $errors ]]; then
      pass logs "no ERROR, CRITICAL or Traceback lines since $since"
    else
      count=$(wc -l <<<"$errors")
      # Count per service: `journalctl -o short` writes "date time host ident[pid]: message".
      summary=$(awk '{ i = $5; sub(/\[.*$/, "", i); sub(/:$/, "", i); n[i]++ } END { for (k in n) printf "%s=%d ", k, n[k] }' <<<"$errors")
      msg="$count error line(s) since $since: ${summary% }"
      if $strict_logs; then fail logs "$msg"; else warn logs "$msg"; fi
      head -n 5 <<<"$errors" | cut -c1-240 | sed 's/^/      /'
    fi
  fi
fi

printf '\n%d checks passed, %d warnings, %d failed\n' "$passes" "$warnings" "$failures"
if ((failures > 0)); then
  exit 1
fi
exit 0
