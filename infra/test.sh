#!/usr/bin/env bash
# Tests of Strata's infrastructure code (make test-infra).
set -euo pipefail

usage() {
  cat <<'USAGE'
Usage: infra/test.sh [-h|--help]

Checks everything under infra/ and prints one line per check and a final
"N passed, M failed" line; exits non-zero when any check failed.

  shell      shellcheck on every script; shebang, strict mode and --help
  devstack   local.conf renders with sample values into valid DevStack config;
             install.sh's --dest, a rerun keeping its passwords, the helper
             scripts outside a 0750 home directory, optional Octavia
  fake-cli   verify.sh and deploy-vm.sh against a fake `openstack` (and
             systemctl/journalctl) that prints the real CLI's formats:
             healthy and unhealthy clouds, a VM life cycle, failures
  fmt        terraform fmt -check -recursive
  validate   terraform init + validate of every module with the real providers
  lint       tflint (bundled terraform ruleset) on every module; checkov over
             infra/terraform and the rendered Helm chart; git check-ignore of
             every generated secret, kubeconfig, plan and state path
  cloud-init the user data rendered with sample values passes `cloud-init schema`
  plan       terraform plan of each root module with dummy credentials (no
             API is called: endpoints point at a closed loopback port)

On a fresh machine it installs what it needs: shellcheck and cloud-init from
Debian (apt-get), the OpenStack and STACKIT Terraform providers and tflint
built from the Go module proxy, checkov from PyPI (pinned in
infra/tests/checkov-requirements.txt) into a virtual environment, helm
(through deploy/test.sh), and OpenTofu when no terraform is on PATH. Builds
are cached under ${XDG_CACHE_HOME:-~/.cache}/strata/tools/.

Environment:
  STRATA_TF=terraform|tofu|auto  which CLI to test with (default auto:
                                 terraform when on PATH, else OpenTofu)
  STRATA_TEST_BOTH=1             also validate and plan with the other CLI,
                                 building OpenTofu if needed (otherwise this
                                 runs only when the other CLI is already there)
USAGE
}

case ${1:-} in
  -h | --help) usage; exit 0 ;;
  "") ;;
  *) usage >&2; exit 2 ;;
esac

infra=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=infra/lib/tools.sh
. "$infra/lib/tools.sh"

passed=0
failed=0
failures=()
suite_start=$SECONDS
work=$(mktemp -d "${TMPDIR:-/tmp}/strata-infra-test.XXXXXX")
# A directory that another (unprivileged) user may traverse, for the
# home-directory and rerun cases of install.sh.
homecase=$(mktemp -d /tmp/strata-infra-home.XXXXXX)
chmod 0711 "$homecase"
server_pids=()

cleanup() {
  local pid
  for pid in "${server_pids[@]}"; do
    kill "$pid" 2>/dev/null || true
  done
  rm -rf "$work"
  if [[ $(id -u) -eq 0 ]]; then rm -rf "$homecase"; else sudo -n rm -rf "$homecase" 2>/dev/null || rm -rf "$homecase"; fi
}
trap cleanup EXIT

section() { printf '\n== %s\n' "$*"; }

# check NAME CMD...: runs CMD with its output in a log; on failure shows the
# log's tail.
check() {
  local name=$1 log
  shift
  log="$work/log.$((passed + failed))"
  if "$@" >"$log" 2>&1; then
    passed=$((passed + 1))
    printf 'ok    %s\n' "$name"
  else
    failed=$((failed + 1))
    failures+=("$name")
    printf 'FAIL  %s\n' "$name"
    tail -n 25 "$log" | sed 's/^/      | /'
  fi
}

# expect_fail NAME PATTERN CMD...: the check passes when CMD fails with
# output matching PATTERN (so that it fails for the reason under test).
_fails_with() {
  local pattern=$1 out rc=0
  shift
  out=$("$@" 2>&1) || rc=$?
  printf '%s\n' "$out"
  if [[ $rc == 0 ]]; then
    echo "expected a failure, got exit status 0"
    return 1
  fi
  grep -Eq -- "$pattern" <<<"$out" || { echo "failed, but output lacks /$pattern/"; return 1; }
}
expect_fail() {
  local name=$1
  shift
  check "$name" _fails_with "$@"
}

# --- Prerequisites -----------------------------------------------------------------------------

section "prerequisites"
missing=()
command -v shellcheck >/dev/null 2>&1 || missing+=(shellcheck)
command -v cloud-init >/dev/null 2>&1 || missing+=(cloud-init)
command -v curl >/dev/null 2>&1 || missing+=(curl)
command -v ssh-keygen >/dev/null 2>&1 || missing+=(openssh-client)
command -v openssl >/dev/null 2>&1 || missing+=(openssl)
command -v python3 >/dev/null 2>&1 || missing+=(python3)
command -v flock >/dev/null 2>&1 || missing+=(util-linux)
command -v setpriv >/dev/null 2>&1 || missing+=(util-linux)
command -v git >/dev/null 2>&1 || missing+=(git)
python3 -c 'import venv, ensurepip' 2>/dev/null || missing+=(python3-venv)
if ((${#missing[@]} > 0)); then
  install_cmd=(apt-get install -y --no-install-recommends "${missing[@]}")
  if [[ $(id -u) -ne 0 ]]; then
    if sudo -n true 2>/dev/null; then
      install_cmd=(sudo "${install_cmd[@]}")
      update_cmd=(sudo apt-get update)
    else
      printf 'infra/test.sh: missing %s; install with: sudo apt-get update && sudo %s\n' \
        "${missing[*]}" "${install_cmd[*]}" >&2
      printf '0 passed, 1 failed\n'
      exit 1
    fi
  else
    update_cmd=(apt-get update)
  fi
  printf 'installing %s\n' "${missing[*]}"
  if ! DEBIAN_FRONTEND=noninteractive "${update_cmd[@]}" >"$work/apt.log" 2>&1 ||
    ! DEBIAN_FRONTEND=noninteractive "${install_cmd[@]}" >>"$work/apt.log" 2>&1; then
    tail -n 20 "$work/apt.log" >&2
    printf 'infra/test.sh: could not install %s\n0 passed, 1 failed\n' "${missing[*]}" >&2
    exit 1
  fi
fi

export CHECKPOINT_DISABLE=1 TF_IN_AUTOMATION=1 TF_INPUT=0
unset TF_PLUGIN_CACHE_DIR TF_DATA_DIR
t=$SECONDS
tf=$(strata_tf_binary)
if ! TF_CLI_CONFIG_FILE=$(strata_tf_cli_config "$work/tf"); then
  printf 'infra/test.sh: could not build the Terraform providers\n0 passed, 1 failed\n' >&2
  exit 1
fi
export TF_CLI_CONFIG_FILE
printf 'using %s (%s); providers: openstack %s, stackit %s (ready in %ss)\n' \
  "$tf" "$("$tf" version | head -n1)" "$STRATA_OPENSTACK_PROVIDER_VERSION" \
  "$STRATA_STACKIT_PROVIDER_VERSION" "$((SECONDS - t))"
# The linters: tflint (Go module), checkov (PyPI, pinned), helm (Go module,
# built by deploy/test.sh) to render the chart that checkov scans.
t=$SECONDS
if ! tflint=$(strata_tflint_binary) || ! checkov=$(strata_checkov_binary) ||
  ! helm=$("$infra/../deploy/test.sh" --helm-path); then
  printf 'infra/test.sh: could not build or install tflint, checkov or helm\n0 passed, 1 failed\n' >&2
  exit 1
fi
printf 'linters: %s, checkov %s (ready in %ss)\n' "$("$tflint" --version | head -n1)" \
  "$("$checkov" --version)" "$((SECONDS - t))"

# --- Shell ---------------------------------------------------------------------------------------

section "shell"
mapfile -t scripts < <(cd "$infra/.." && find infra -type f -name '*.sh' | sort)
mapfile -t helpers < <(cd "$infra/.." && grep -rlE '^#!/usr/bin/env bash' infra/tests | sort)
for f in "${scripts[@]}" "${helpers[@]}"; do
  check "shellcheck $f" shellcheck -x -P "$infra/.." "$infra/../$f"
done

script_conventions() {
  local f=$1
  [[ $(head -n1 "$f") == '#!/usr/bin/env bash' ]] || { echo "first line is not #!/usr/bin/env bash"; return 1; }
  grep -qx 'set -euo pipefail' "$f" || { echo "no 'set -euo pipefail' line"; return 1; }
  [[ -x $f ]] || { echo "not executable"; return 1; }
  local out
  out=$("$f" --help) || { echo "--help exited non-zero"; return 1; }
  grep -q '^Usage:' <<<"$out" || { echo "--help prints no Usage: line"; return 1; }
}
for f in "${scripts[@]}" "${helpers[@]}"; do
  [[ $f == infra/lib/* ]] && continue # sourced library, not a command
  check "conventions $f" script_conventions "$infra/../$f"
done

# --- DevStack configuration --------------------------------------------------------------------------

section "devstack"
render_local_conf() {
  STRATA_ADMIN_PASSWORD=Adm1nPassw0rd STRATA_DATABASE_PASSWORD=DbPassw0rd12 \
    STRATA_RABBIT_PASSWORD=RabbitPassw0rd STRATA_SERVICE_PASSWORD=ServicePassw0rd \
    STRATA_HOST_IP=192.0.2.10 STRATA_LIBVIRT_TYPE=qemu STRATA_VOLUME_BACKING_FILE_SIZE=24G \
    "$infra/devstack/install.sh" --render-only "$work/local.conf"
}
local_conf_is_valid() {
  render_local_conf || return 1
  if grep -n 'STRATA_' "$work/local.conf"; then
    echo "placeholders left"
    return 1
  fi
  # The [[local|localrc]] section is sourced by DevStack as bash.
  awk '/^\[\[local\|localrc\]\]/{on=1; next} /^\[\[/{on=0} on' "$work/local.conf" >"$work/localrc"
  bash -n "$work/localrc" || return 1
  local svc
  for svc in mysql rabbit key placement-api g-api n-api n-cpu n-sch n-cond q-svc \
    ovn-northd ovn-controller c-api c-sch c-vol horizon; do
    grep -Eq "^enable_service .*\\b$svc\\b" "$work/localrc" || { echo "service $svc not enabled"; return 1; }
  done
  grep -qx 'ADMIN_PASSWORD=Adm1nPassw0rd' "$work/localrc" || { echo "password not rendered"; return 1; }
  grep -qx 'VOLUME_BACKING_FILE_SIZE=24G' "$work/localrc" || { echo "volume size not rendered"; return 1; }
  grep -qx 'Q_AGENT=ovn' "$work/localrc" || { echo "not OVN"; return 1; }
  grep -qF "[[post-config|\$NOVA_CONF]]" "$work/local.conf" || { echo "post-config header changed"; return 1; }
  [[ $(stat -c %a "$work/local.conf") == 600 ]] || { echo "rendered local.conf is not mode 600"; return 1; }
}
check "local.conf renders into valid DevStack config" local_conf_is_valid
no_committed_secret() {
  # Every password line must be a placeholder or a reference to another variable.
  if grep -E 'PASSWORD=' "$infra/devstack/local.conf" | grep -vE 'PASSWORD=\$'; then
    echo "literal password in local.conf"
    return 1
  fi
}
check "local.conf commits no secret" no_committed_secret
expect_fail "install.sh rejects an unsafe password" "STRATA_ADMIN_PASSWORD must be at least 8 characters" \
  env STRATA_ADMIN_PASSWORD="pa\$\$word!" STRATA_HOST_IP=192.0.2.10 \
  "$infra/devstack/install.sh" --render-only "$work/bad.conf"
expect_fail "install.sh rejects a bad volume size" "STRATA_VOLUME_BACKING_FILE_SIZE must look like" \
  env STRATA_VOLUME_BACKING_FILE_SIZE=lots STRATA_HOST_IP=192.0.2.10 \
  "$infra/devstack/install.sh" --render-only "$work/bad.conf"

# --dest reaches DevStack: DEST is set before anything derives from it.
dest_reaches_devstack() {
  STRATA_HOST_IP=192.0.2.10 "$infra/devstack/install.sh" --dest /srv/strata-stack --render-only "$work/dest.conf" || return 1
  awk '/^\[\[local\|localrc\]\]/{on=1; next} /^\[\[/{on=0} on' "$work/dest.conf" >"$work/dest.localrc"
  local got
  # DevStack sources this section as bash; its functions are stubbed here.
  got=$(bash -c 'enable_service() { :; }; disable_all_services() { :; }; enable_plugin() { :; }
    DEST=/opt/stack; . "$1"; printf "%s %s\n" "$DEST" "$LOGFILE"' _ "$work/dest.localrc") || return 1
  [[ $got == "/srv/strata-stack /srv/strata-stack/logs/stack.sh.log" ]] ||
    { echo "DEST and LOGFILE after sourcing: $got"; return 1; }
}
check "install.sh --dest sets DevStack's DEST and LOGFILE" dest_reaches_devstack
octavia_optional() {
  STRATA_HOST_IP=192.0.2.10 STRATA_ENABLE_OCTAVIA=true "$infra/devstack/install.sh" --render-only "$work/octavia.conf" || return 1
  grep -Eq '^enable_plugin ovn-octavia-provider ' "$work/octavia.conf" || { echo "no OVN provider plugin"; return 1; }
  grep -Eq '^enable_service octavia o-api' "$work/octavia.conf" || { echo "octavia not enabled"; return 1; }
  if grep -Eq '^enable_(plugin|service) octavia' "$work/local.conf"; then echo "Octavia enabled by default"; return 1; fi
}
check "install.sh: Octavia only with STRATA_ENABLE_OCTAVIA=true" octavia_optional

# The helper scripts run as the stack user even when the checkout is in a
# home directory of mode 0750 (Ubuntu's default), which that user cannot enter.
as_other_user() {
  local cmd=(setpriv --reuid=65534 --regid=65534 --clear-groups "$@")
  if [[ $(id -u) -ne 0 ]]; then cmd=(sudo -n "${cmd[@]}"); fi
  "${cmd[@]}"
}
as_root_cmd() {
  if [[ $(id -u) -ne 0 ]]; then sudo -n "$@"; else "$@"; fi
}
tools_outside_home() {
  local base=$homecase
  as_root_cmd rm -rf "$base/home" "$base/dest"
  as_root_cmd install -d -m 0750 -o root -g root "$base/home"
  as_root_cmd cp -r "$infra/devstack" "$base/home/devstack"
  # The unfixed way fails: the other user cannot reach the checkout.
  if as_other_user "$base/home/devstack/verify.sh" --help >/dev/null 2>&1; then
    echo "the test user could run the script inside a 0750 home; the case is not reproduced"
    return 1
  fi
  as_root_cmd "$base/home/devstack/install.sh" --dest "$base/dest" --tools-only || return 1
  local f
  for f in verify.sh deploy-vm.sh; do
    as_other_user "$base/dest/strata/$f" --help | grep -q '^Usage:' ||
      { echo "$f in DEST/strata cannot be run by another user"; return 1; }
  done
}
check "install.sh copies verify.sh and deploy-vm.sh where a 0750 home does not hide them" tools_outside_home

# A rerun keeps the passwords of the first run: as root, and as an
# unprivileged user who can read the root-only secrets file only through sudo.
rerun_keeps_passwords() {
  local d="$homecase/rerun" src="$homecase/rerun-src" before after
  as_root_cmd rm -rf "$d" "$src"
  as_root_cmd env STRATA_STACK_USER=nobody "$infra/devstack/install.sh" --dest "$d" --secrets-only || return 1
  [[ $(as_root_cmd stat -c '%a %U' "$d/.strata-devstack.env") == "600 nobody" ]] ||
    { echo "secrets file is not mode 600 owned by the stack user"; return 1; }
  before=$(as_root_cmd cat "$d/.strata-devstack.env")
  grep -Eq '^STRATA_ADMIN_PASSWORD=[A-Za-z0-9]{24}$' <<<"$before" || { echo "no generated password"; return 1; }
  as_root_cmd env STRATA_STACK_USER=nobody "$infra/devstack/install.sh" --dest "$d" --secrets-only | grep -q 'passwords kept' ||
    { echo "rerun as root did not keep the passwords"; return 1; }
  # Unprivileged: the file now belongs to root (mode 0600), so only "sudo"
  # (a stand-in that reads a mirror of it and refuses to write) can read it.
  as_root_cmd chown root "$d/.strata-devstack.env"
  as_root_cmd install -d -m 0755 "$src"
  as_root_cmd cp -r "$infra/devstack" "$infra/tests" "$src/"
  as_root_cmd install -m 0644 "$d/.strata-devstack.env" "$src/mirror.env"
  as_root_cmd install -m 0666 /dev/null "$src/sudo.log"
  if as_other_user cat "$d/.strata-devstack.env" >/dev/null 2>&1; then
    echo "the unprivileged user can read the secrets file; the case is not reproduced"
    return 1
  fi
  as_other_user env PATH="$src/tests/nonroot:$PATH" FAKE_SUDO_LOG="$src/sudo.log" \
    FAKE_SUDO_FILE="$d/.strata-devstack.env:$src/mirror.env" STRATA_STACK_USER=nobody \
    "$src/devstack/install.sh" --dest "$d" --secrets-only >"$work/rerun.out" 2>&1 ||
    { cat "$work/rerun.out" "$src/sudo.log"; echo "unprivileged rerun failed"; return 1; }
  grep -q 'passwords kept' "$work/rerun.out" || { cat "$work/rerun.out"; echo "unprivileged rerun did not keep the passwords"; return 1; }
  grep -qx "cat $d/.strata-devstack.env" "$src/sudo.log" || { echo "secrets not read through sudo:"; cat "$src/sudo.log"; return 1; }
  after=$(as_root_cmd cat "$d/.strata-devstack.env")
  [[ $before == "$after" ]] || { echo "passwords changed on rerun"; return 1; }
}
check "install.sh: a rerun keeps its passwords (as root, and unprivileged through sudo)" rerun_keeps_passwords

# --- Scripts against a fake OpenStack -------------------------------------------------------------------

section "fake-cli"
# A loopback HTTP server stands in for the service endpoints (verify.sh probes
# them) and for the VM's SSH port (deploy-vm.sh's reachability check).
# start_listener NAME: serves HTTP on a free loopback port (for at most 30
# minutes) and leaves the port number in $work/port.NAME.
start_listener() {
  local portfile="$work/port.$1"
  python3 -c '
import http.server, socketserver, sys, time
class H(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        self.send_response(401 if self.path.startswith("/identity") else 200)
        self.end_headers()
    def log_message(self, *a):
        pass
srv = socketserver.TCPServer(("127.0.0.1", 0), H)
with open(sys.argv[1] + ".tmp", "w") as f:
    f.write(str(srv.server_address[1]))
import os
os.rename(sys.argv[1] + ".tmp", sys.argv[1])
srv.timeout = 1
deadline = time.time() + 1800
while time.time() < deadline:
    srv.handle_request()
' "$portfile" >/dev/null 2>&1 &
  server_pids+=($!)
  local deadline=$((SECONDS + 20))
  until [[ -s $portfile ]]; do
    ((SECONDS < deadline)) || return 1
    sleep 0.1
  done
}
free_port() {
  python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1]); s.close()'
}
start_listener http
port=$(<"$work/port.http")
closed_port=$(free_port)

# fake_env ID SCENARIO CMD...: runs CMD against the fake cloud; each ID has
# its own cloud state, call log and log of malformed calls.
fake_env() {
  local id=$1 scenario=$2
  shift 2
  env PATH="$infra/tests/fakebin:$PATH" OS_AUTH_URL=http://192.0.2.10/identity OS_CLOUD= \
    FAKE_OS_SCENARIO="$scenario" FAKE_OS_STATE="$work/state.$id" \
    FAKE_OS_LOG="$work/calls.$id" FAKE_OS_USAGE_ERRORS="$work/usage.$id" \
    FAKE_OS_ENDPOINT_BASE="${endpoint_base:-http://127.0.0.1:$port}" FAKE_OS_FLOATING_IP=127.0.0.1 \
    XDG_CACHE_HOME="$work/xdg" "$@"
}
no_usage_errors() {
  if [[ -s $work/usage.$1 ]]; then
    echo "calls the real CLI would reject:"
    cat "$work/usage.$1"
    return 1
  fi
}

# verify_case SCENARIO EXPECTED_RC PATTERN [ARGS...]
verify_case() {
  local scenario=$1 want=$2 pattern=$3 rc=0 id="verify-$1-$RANDOM"
  shift 3
  fake_env "$id" "$scenario" "$infra/devstack/verify.sh" "$@" >"$work/out.$id" 2>&1 || rc=$?
  cat "$work/out.$id"
  cp "$work/out.$id" "$work/verify.$scenario"
  [[ $rc == "$want" ]] || { echo "exit status $rc, expected $want"; return 1; }
  grep -Eq -- "$pattern" "$work/out.$id" || { echo "output lacks /$pattern/"; return 1; }
  no_usage_errors "$id"
}
check "verify.sh: healthy cloud passes every check" \
  verify_case healthy 0 '^[0-9]+ checks passed, 0 warnings, 0 failed$'
each_service_seen() {
  local p
  for p in "compute .*nova-compute on devstack is up" "network .*OVN Controller Gateway agent" \
    "volume .*cinder-volume on devstack@lvmdriver-1 is up" "endpoints .*block-storage at .* answers" \
    "unit:ovn-northd" "hypervisor .*1 hypervisor\(s\) up" "identity .*token issued" \
    "unit:neutron-server .*devstack@neutron-api.service" "unit:neutron-rpc .*devstack@neutron-rpc-server.service"; do
    grep -Eq "$p" "$work/verify.healthy" || { echo "missing: $p"; return 1; }
  done
}
check "verify.sh: healthy cloud, each service type seen" each_service_seen
check "verify.sh: nova-compute down fails" verify_case compute-down 1 'FAIL +compute +nova-compute on devstack is down'
check "verify.sh: dead OVN agent fails" verify_case agent-dead 1 'FAIL +network +OVN Metadata agent .* is not alive'
check "verify.sh: cinder-volume down fails" verify_case volume-down 1 'FAIL +volume +cinder-volume on devstack@lvmdriver-1 is down'
check "verify.sh: disabled service only warns" verify_case volume-disabled 0 'WARN +volume +cinder-volume .* is disabled'
check "verify.sh: failed systemd unit fails" verify_case unit-failed 1 'FAIL +unit:nova-compute +not running: devstack@n-cpu.service \(loaded/failed/failed\)'
check "verify.sh: missing endpoint fails" verify_case endpoint-missing 1 'FAIL +endpoints +no enabled public endpoint for image'
check "verify.sh: Keystone refusing the token fails" verify_case auth-fail 1 'FAIL +identity .*HTTP 401'
check "verify.sh: log errors warn by default" verify_case log-errors 0 'WARN +logs +3 error line\(s\)'
check "verify.sh: log errors fail with --strict-logs" verify_case log-errors 1 'FAIL +logs .*devstack@n-cpu.service=2' --strict-logs
dead_endpoint() {
  endpoint_base="http://127.0.0.1:$closed_port" verify_case healthy 1 \
    'FAIL +endpoints +identity at .* does not answer \(HTTP 000\)' --skip-logs
}
check "verify.sh: endpoint that does not answer fails" dead_endpoint
no_credentials() {
  local rc=0
  env -u OS_AUTH_URL -u OS_CLOUD PATH="$infra/tests/fakebin:$PATH" "$infra/devstack/verify.sh" || rc=$?
  [[ $rc == 2 ]]
}
check "verify.sh: no credentials is a usage error (exit 2)" no_credentials

remaining_resources() {
  python3 -c '
import json, sys
s = json.load(open(sys.argv[1]))
left = []
for kind in ["subnets", "routers", "keypairs", "servers"]:
    left += [f"{kind}:{n}" for n in s[kind]]
left += [f"networks:{n}" for n in s["networks"] if n not in ("public", "private")]
left += [f"flavors:{n}" for n in s["flavors"] if not n.startswith("m1.")]
left += [f"security_groups:{n}" for n in s["security_groups"] if n != "default"]
left += [f"floating_ips:{f[\"Floating IP Address\"]}" for f in s["floating_ips"]]
print(" ".join(left))
' "$1"
}
# deploy_case ID SCENARIO EXPECTED_RC PATTERN ARGS...: runs deploy-vm.sh,
# then requires that nothing it created is left behind.
deploy_case() {
  local id=$1 scenario=$2 want=$3 pattern=$4 rc=0 left
  shift 4
  fake_env "$id" "$scenario" "$infra/devstack/deploy-vm.sh" "$@" >"$work/out.$id" 2>&1 || rc=$?
  cat "$work/out.$id"
  [[ $rc == "$want" ]] || { echo "exit status $rc, expected $want"; return 1; }
  grep -Eq -- "$pattern" "$work/out.$id" || { echo "output lacks /$pattern/"; return 1; }
  left=$(remaining_resources "$work/state.$id")
  [[ -z $left ]] || { echo "left behind: $left"; return 1; }
  no_usage_errors "$id"
}
check "deploy-vm.sh: cycle creates, reaches and removes a VM" \
  deploy_case deploy healthy 0 'VM strata-demo-vm is reachable at 127.0.0.1' --skip-ssh --check-port "$port" --timeout 20 cycle
calls_in_order() {
  # The calls that change the cloud, in the order they were made.
  local want=(
    "flavor create" "network create" "subnet create" "router create" "router set --external-gateway"
    "router add subnet" "security group create" "security group rule create" "security group rule create"
    "keypair create" "server create" "floating ip create" "server add floating"
    "floating ip delete" "server delete" "keypair delete" "router remove subnet" "router delete"
    "network delete" "security group delete" "flavor delete"
  )
  local got=() line w
  while read -r line; do
    for w in "${want[@]}"; do
      if [[ $line == "$w"* ]]; then
        got+=("$w")
        break
      fi
    done
  done <"$work/calls.deploy"
  if [[ "${got[*]}" != "${want[*]}" ]]; then
    printf 'want: %s\ngot:  %s\n' "${want[*]}" "${got[*]}"
    return 1
  fi
}
check "deploy-vm.sh: cycle made every resource in order" calls_in_order
check "deploy-vm.sh: server going to ERROR fails and cleans up" \
  deploy_case deploy-error server-error 1 'did not become ACTIVE' --skip-ssh --check-port "$port" --timeout 20 cycle
check "deploy-vm.sh: unreachable VM fails and cleans up" \
  deploy_case deploy-unreachable healthy 1 "127.0.0.1:$closed_port did not answer within 3s" --skip-ssh --check-port "$closed_port" --timeout 3 cycle
idempotent_up() {
  local s=idempotent
  fake_env "$s" healthy "$infra/devstack/deploy-vm.sh" --skip-ssh --check-port "$port" --timeout 20 up || return 1
  fake_env "$s" healthy "$infra/devstack/deploy-vm.sh" --skip-ssh --check-port "$port" --timeout 20 up || return 1
  local creates
  creates=$(grep -c -E '^(network|server|router|keypair) create' "$work/calls.$s")
  [[ $creates == 4 ]] || { echo "second up created again ($creates creates)"; return 1; }
  fake_env "$s" healthy "$infra/devstack/deploy-vm.sh" --skip-ssh --check-port "$port" --timeout 20 check || return 1
  fake_env "$s" healthy "$infra/devstack/deploy-vm.sh" down || return 1
  [[ -z $(remaining_resources "$work/state.$s") ]] || return 1
  no_usage_errors "$s"
}
check "deploy-vm.sh: up twice reuses resources, then check and down" idempotent_up

# --- Terraform ------------------------------------------------------------------------------------

section "fmt"
check "terraform fmt -check -recursive" "$tf" fmt -check -recursive -diff "$infra/terraform"

# Each CLI works on its own copy of the modules, which keeps .terraform/ and
# lock files out of the work tree and the two CLIs out of each other's way.
prepare_tree() {
  rm -rf "$1"
  cp -r "$infra/terraform" "$1"
  find "$1" \( -name .terraform -o -name .terraform.lock.hcl -o -name 'terraform.tfvars' \) -prune -exec rm -rf {} +
  mkdir -p "$1/modes"
  cp "$work/modes.tf" "$1/modes/main.tf"
}
dead="http://127.0.0.1:$closed_port"
token=abcdef.0123456789abcdef
# The module itself in its three API exposure modes, through a small root.
cat >"$work/modes.tf" <<HCL
terraform {
  required_providers {
    openstack = {
      source  = "terraform-provider-openstack/openstack"
      version = "$STRATA_OPENSTACK_PROVIDER_VERSION"
    }
  }
}
variable "mode" {
  type = string
}
variable "api_allowed_cidrs" {
  type    = list(string)
  default = ["198.51.100.0/24"]
}
variable "bootstrap_token_ttl" {
  type    = string
  default = "24h0m0s"
}
variable "worker_count" {
  type    = number
  default = 3
}
provider "openstack" {
  auth_url    = "$dead/identity/v3"
  user_name   = "demo"
  password    = "dummy"
  tenant_name = "demo"
}
module "cluster" {
  source                  = "../openstack-k8s"
  cluster_name            = "strata-\${replace(var.mode, "_", "-")}"
  worker_count            = var.worker_count
  external_network_id     = "6a1bcf2a-0a43-4f0e-9c1b-3f5e2d1c0b9a"
  control_plane_flavor    = "m1.medium"
  worker_flavor           = "m1.medium"
  boot_volume_size        = 0
  ssh_allowed_cidrs       = ["198.51.100.0/24"]
  api_allowed_cidrs       = var.api_allowed_cidrs
  bootstrap_token_ttl     = var.bootstrap_token_ttl
  api_server_exposure     = var.mode
  enable_octavia_services = var.mode == "loadbalancer"
  openstack_auth_url      = "http://192.0.2.10/identity"
  bootstrap_token         = "$token"
  ca_certificate          = file("../../pki/ca.crt")
  ca_private_key          = file("../../pki/ca.key")
  application_credential = {
    id     = "0f0e0d0c0b0a09080706050403020100"
    secret = "dummy-secret"
  }
}
HCL

mapfile -t modules < <(cd "$infra/terraform" && find . -name versions.tf -printf '%h\n' | sed 's#^\./##' | sort)

# Sample secrets for plans and rendering: made here, never committed.
mkdir -p "$work/pki"
openssl req -x509 -newkey rsa:2048 -nodes -days 2 -subj /CN=kubernetes \
  -keyout "$work/pki/ca.key" -out "$work/pki/ca.crt" >/dev/null 2>&1
ssh-keygen -q -t ed25519 -N '' -f "$work/pki/id_ed25519"

tree="$work/tree-main"
prepare_tree "$tree"

section "validate ($(basename "$tf"))"
tf_init_validate() {
  local tfbin=$1 dir=$2
  (cd "$dir" && "$tfbin" init -backend=false -no-color >/dev/null && "$tfbin" validate -no-color)
}
for m in "${modules[@]}"; do
  check "init + validate $m" tf_init_validate "$tf" "$tree/$m"
done

section "lint"
# tflint with the bundled "terraform" ruleset (all rules), on each module.
tflint_module() {
  local dir=$1
  shift
  "$tflint" --chdir="$dir" --config="$infra/terraform/.tflint.hcl" --format=compact "$@"
}
tflint_vars=(--var "ssh_public_key_file=$work/pki/id_ed25519.pub" --var "ca_certificate_file=$work/pki/ca.crt"
  --var "ca_private_key_file=$work/pki/ca.key")
for m in "${modules[@]}"; do
  if [[ $m == openstack-k8s/examples/devstack ]]; then
    check "tflint $m" tflint_module "$tree/$m" "${tflint_vars[@]}"
  else
    check "tflint $m" tflint_module "$tree/$m"
  fi
done
mkdir -p "$work/lint-bad"
cp "$infra/terraform/stackit-state/"*.tf "$work/lint-bad/"
printf 'variable "left_over" {\n  description = "Declared, never used."\n  type        = string\n}\n' >>"$work/lint-bad/variables.tf"
expect_fail "tflint finds an unused variable" "terraform_unused_declarations" tflint_module "$work/lint-bad"

# checkov: every finding is fixed or skipped in place with its reason
# (checkov:skip comments in .tf files, checkov.io/skipN annotations in the chart).
checkov_scan() {
  "$checkov" --quiet --compact --skip-download -o cli "$@"
}
check "checkov infra/terraform" checkov_scan --framework terraform -d "$infra/terraform"
render_chart() {
  HELM_CACHE_HOME="$work/helm/cache" HELM_CONFIG_HOME="$work/helm/config" HELM_DATA_HOME="$work/helm/data" \
    "$helm" template strata "$infra/../deploy/helm/strata" --namespace strata --kube-version 1.35.0 >"$work/chart.yaml"
}
checkov_chart() {
  render_chart || return 1
  # CKV2_K8S_6 (a NetworkPolicy for every pod) stands: the API's clients come
  # from an ingress controller whose namespace and labels the installer
  # chooses, so the chart cannot ship a policy that admits them; the
  # operator's own NetworkPolicies cover the tenants' database pods.
  checkov_scan --framework kubernetes -f "$work/chart.yaml" --skip-check CKV2_K8S_6
}
check "checkov deploy/helm/strata (rendered)" checkov_chart
mkdir -p "$work/scan-bad"
cat >"$work/scan-bad/main.tf" <<'HCL'
resource "openstack_networking_secgroup_rule_v2" "ssh" {
  direction         = "ingress"
  ethertype         = "IPv4"
  protocol          = "tcp"
  port_range_min    = 22
  port_range_max    = 22
  remote_ip_prefix  = "0.0.0.0/0"
  security_group_id = "00000000-0000-0000-0000-000000000000"
}
HCL
expect_fail "checkov finds SSH open to the world" "CKV_OPENSTACK_2" checkov_scan --framework terraform -d "$work/scan-bad"

# No generated secret, kubeconfig, plan or state may be committed by accident.
generated_paths_ignored() {
  local root="$infra/.." m p bad=0
  local rel=(terraform.tfvars secret.auto.tfvars pki/ca.key pki/ca.crt kubeconfig kubeconfig-strata-dev
    tfplan plan.tfplan terraform.tfstate terraform.tfstate.backup .terraform/providers/x)
  for m in "${modules[@]}"; do
    for p in "${rel[@]}"; do
      if ! git -C "$root" check-ignore -q --no-index "infra/terraform/$m/$p"; then
        echo "not ignored: infra/terraform/$m/$p"
        bad=1
      fi
    done
  done
  for p in kubeconfig kubeconfig-strata-dev tfplan plan.tfplan; do
    git -C "$root" check-ignore -q --no-index "$p" || { echo "not ignored: $p"; bad=1; }
  done
  ((bad == 0))
}
check "generated secrets, kubeconfigs, plans and state are git-ignored" generated_paths_ignored

section "cloud-init"
# Debian's python3 has PyYAML once cloud-init is installed.
yaml_python=python3
python3 -c 'import yaml' 2>/dev/null || yaml_python=/usr/bin/python3
mkdir -p "$work/render"
render_user_data() {
  local csi=$1
  cat >"$work/render/main.tf" <<HCL
module "user_data" {
  source                 = "../tree-main/openstack-k8s/cloud-init"
  cluster_name           = "strata-test"
  kubernetes_version     = "1.35.4"
  control_plane_endpoint = "10.10.0.5"
  api_server_cert_sans   = ["172.24.4.50"]
  bootstrap_token        = "$token"
  ca_certificate         = file("../pki/ca.crt")
  ca_private_key         = file("../pki/ca.key")
  cloud_config           = "[Global]\nauth-url=http://192.0.2.10/identity\n"
  enable_cinder_csi      = $csi
}
output "control_plane" {
  value     = module.user_data.control_plane_user_data
  sensitive = true
}
output "worker" {
  value     = module.user_data.worker_user_data
  sensitive = true
}
HCL
  (cd "$work/render" && rm -f terraform.tfstate && "$tf" init -no-color >/dev/null &&
    "$tf" apply -auto-approve -no-color >/dev/null &&
    "$tf" output -raw control_plane >"$work/render/control-plane-$csi.yaml" &&
    "$tf" output -raw worker >"$work/render/worker-$csi.yaml")
}
schema_ok() {
  local out
  out=$(cloud-init schema --config-file "$1" 2>&1) || { echo "$out"; return 1; }
  echo "$out"
  grep -qi 'valid' <<<"$out"
}
user_data_content() {
  # The rendered files carry the same scripts and the kubeadm settings.
  "$yaml_python" - "$1" "$infra/terraform/openstack-k8s/cloud-init/files" <<'PY'
import base64, sys, yaml
doc = open(sys.argv[1]).read()
assert doc.startswith("#cloud-config\n"), "no #cloud-config header"
data = yaml.safe_load(doc)
files = {f["path"]: f for f in data["write_files"]}
env = files["/etc/strata/node.env"]["content"]
assert "CALICO_VERSION=v3." in env and "latest" not in env and "FLANNEL" not in env, env
def script(name):
    return base64.b64decode(files["/usr/local/sbin/" + name]["content"]).decode()
# Every node drops pod traffic to the metadata service before the kubelet runs.
install = script("strata-node-install")
assert "-s ${POD_CIDR} -d 169.254.169.254/32 -j DROP" in install, "no metadata block"
assert "Before=kubelet.service" in install and "systemctl enable --now strata-block-metadata" in install
if "/etc/strata/kubeadm.yaml" in files:
    cp = script("strata-control-plane")
    for gone in ["rm -f /etc/strata/kubeadm.yaml", "rm -f /etc/strata/cloud.conf",
                 "rm -f /var/lib/cloud/instance/user-data.txt"]:
        assert gone in cp, "control plane keeps a bootstrap secret: " + gone
    assert "projectcalico/calico/${CALICO_VERSION}/manifests/calico.yaml" in cp, "Calico not installed"
    assert "flannel" not in cp, "flannel is still installed"
else:
    wk = script("strata-worker")
    assert "rm -f /etc/strata/kubeadm-join.yaml /etc/strata/discovery.conf" in wk, "worker keeps the token"
for path, f in files.items():
    if f.get("encoding") == "b64":
        name = path.rsplit("/", 1)[1] + ".sh"
        assert base64.b64decode(f["content"]).decode() == open(f"{sys.argv[2]}/{name}").read(), path
if "/etc/strata/kubeadm.yaml" in files:
    docs = list(yaml.safe_load_all(files["/etc/strata/kubeadm.yaml"]["content"]))
    kinds = [d["kind"] for d in docs]
    assert kinds == ["InitConfiguration", "ClusterConfiguration", "KubeletConfiguration"], kinds
    cc = docs[1]
    assert cc["kubernetesVersion"] == "v1.35.4" and cc["controlPlaneEndpoint"] == "10.10.0.5:6443", cc
    assert "172.24.4.50" in cc["apiServer"]["certSANs"], cc
    assert docs[0]["nodeRegistration"]["kubeletExtraArgs"] == [{"name": "cloud-provider", "value": "external"}]
    assert files["/etc/kubernetes/pki/ca.key"]["permissions"] == "0600"
else:
    join = yaml.safe_load(files["/etc/strata/kubeadm-join.yaml"]["content"])
    assert join["kind"] == "JoinConfiguration"
    disc = yaml.safe_load(files["/etc/strata/discovery.conf"]["content"])
    cluster = disc["clusters"][0]["cluster"]
    assert cluster["server"] == "https://10.10.0.5:6443", cluster
    assert base64.b64decode(cluster["certificate-authority-data"]).startswith(b"-----BEGIN CERTIFICATE-----")
    assert "/etc/kubernetes/pki/ca.key" not in files, "CA key must not reach workers"
print("content ok")
PY
}
for csi in true false; do
  check "render user data (enable_cinder_csi=$csi)" render_user_data "$csi"
  for role in control-plane worker; do
    if [[ -s $work/render/$role-$csi.yaml ]]; then
      check "cloud-init schema $role (csi=$csi)" schema_ok "$work/render/$role-$csi.yaml"
      check "user data content $role (csi=$csi)" user_data_content "$work/render/$role-$csi.yaml"
    fi
  done
done
printf '#cloud-config\nwrite_files: not-a-list\nruncmd: 42\n' >"$work/render/broken.yaml"
expect_fail "cloud-init schema rejects malformed user data" "is not of type" schema_ok "$work/render/broken.yaml"

section "plan ($(basename "$tf"))"
# plan_case NAME DIR KIND ARGS...: plan, then check the plan's content.
plan_case() {
  local tfbin=$1 dir=$2 kind=$3
  shift 3
  (
    cd "$dir" &&
      "$tfbin" init -backend=false -no-color >/dev/null &&
      "$tfbin" plan -no-color -input=false -lock=false -out="$work/plan.bin" "$@" | tail -n 3 &&
      "$tfbin" show -json "$work/plan.bin" >"$work/plan.json" &&
      python3 "$infra/tests/plan_check.py" "$kind" "$work/plan.json"
  )
}
openstack_dummy=(-var "auth_url=$dead/identity/v3" -var user_name=demo -var password=dummy
  -var project_name=demo)
devstack_args=("${openstack_dummy[@]}" -var devstack_host_ip=192.0.2.10
  -var external_network_id=6a1bcf2a-0a43-4f0e-9c1b-3f5e2d1c0b9a -var "bootstrap_token=$token"
  -var "ssh_public_key_file=$work/pki/id_ed25519.pub" -var "ca_certificate_file=$work/pki/ca.crt"
  -var "ca_private_key_file=$work/pki/ca.key")


stackit_no_acl=(-var project_id=3f9e5a3c-6f53-4e43-9b1a-2d5c7e8f9a0b -var dns_subdomain=strata-ci
  -var dns_contact_email=ops@example.com -var backup_bucket_name=strata-ci-backups
  -var "api_endpoint_overrides={ske=\"$dead\",dns=\"$dead\",objectstorage=\"$dead\",iaas=\"$dead\",token=\"$dead\",resourcemanager=\"$dead\",service_account=\"$dead\",authorization=\"$dead\",service_enablement=\"$dead\"}")
stackit_args=("${stackit_no_acl[@]}" -var 'api_allowed_cidrs=["198.51.100.0/24"]')
state_args=(-var project_id=7a1c2e3d-4b5f-4a6b-8c9d-0e1f2a3b4c5d -var bucket_name=strata-ci-tfstate
  -var "api_endpoint_overrides={objectstorage=\"$dead\",token=\"$dead\",service_enablement=\"$dead\"}")
export STACKIT_SERVICE_ACCOUNT_TOKEN=dummy-token-for-offline-plan

run_plans() {
  local tfbin=$1 label=$2 dir=$3
  check "plan openstack-k8s/examples/devstack ($label)" \
    plan_case "$tfbin" "$dir/openstack-k8s/examples/devstack" openstack-floating_ip "${devstack_args[@]}"
  local mode
  for mode in loadbalancer private; do
    check "plan openstack-k8s api_server_exposure=$mode ($label)" \
      plan_case "$tfbin" "$dir/modes" "openstack-$mode" -var "mode=$mode"
  done
  check "plan stackit-ske ($label)" plan_case "$tfbin" "$dir/stackit-ske" stackit "${stackit_args[@]}"
  check "plan stackit-state ($label)" plan_case "$tfbin" "$dir/stackit-state" stackit-state "${state_args[@]}"
}
run_plans "$tf" "$(basename "$tf")" "$tree"

# Validation rules reject bad input before any API call.
expect_fail "plan rejects an invalid bootstrap token" "bootstrap_token must match" \
  plan_case "$tf" "$tree/openstack-k8s/examples/devstack" openstack-floating_ip \
  "${devstack_args[@]}" -var bootstrap_token=not-a-token
expect_fail "plan rejects an SKE cluster name over 11 characters" "cluster_name must be 1-11 characters" \
  plan_case "$tf" "$tree/stackit-ske" stackit "${stackit_args[@]}" -var cluster_name=much-too-long-name
expect_fail "plan rejects a node pool with minimum > maximum" "minimum <= maximum" \
  plan_case "$tf" "$tree/stackit-ske" stackit "${stackit_args[@]}" \
  -var 'node_pools=[{name="p",machine_type="c1.2",minimum=3,maximum=2,availability_zones=["eu01-1"]}]'
expect_fail "plan rejects an SKE cluster without an API allow-list" "api_allowed_cidrs must name at least one CIDR" \
  plan_case "$tf" "$tree/stackit-ske" stackit "${stackit_args[@]}" -var 'api_allowed_cidrs=[]'
expect_fail "plan requires an API allow-list for SKE (no default)" 'No value for required variable' \
  plan_case "$tf" "$tree/stackit-ske" stackit "${stackit_no_acl[@]}"
expect_fail "plan rejects a Kubernetes minor past its end of life on SKE" "1.35 or later" \
  plan_case "$tf" "$tree/stackit-ske" stackit "${stackit_args[@]}" -var kubernetes_version_min=1.34
expect_fail "plan rejects an OpenStack cluster without workers" "worker_count must be a whole number from 1" \
  plan_case "$tf" "$tree/modes" openstack-floating_ip -var mode=floating_ip -var worker_count=0
expect_fail "plan rejects an OpenStack cluster without an API allow-list" "api_allowed_cidrs must name at least one CIDR" \
  plan_case "$tf" "$tree/modes" openstack-floating_ip -var mode=floating_ip -var 'api_allowed_cidrs=[]'
expect_fail "plan rejects a bootstrap token that never expires" "non-zero duration" \
  plan_case "$tf" "$tree/modes" openstack-floating_ip -var mode=floating_ip -var bootstrap_token_ttl=0s

state_outlives_cluster() {
  local f="$infra/terraform/stackit-state/main.tf" n
  n=$(grep -cE '^[[:space:]]*prevent_destroy[[:space:]]*=[[:space:]]*true' "$f")
  [[ $n == 3 ]] || { echo "expected prevent_destroy on the bucket, the group and the key, found $n"; return 1; }
  if grep -rn 'tfstate\|state_bucket' "$infra/terraform/stackit-ske"/*.tf; then
    echo "stackit-ske still manages Terraform state storage"
    return 1
  fi
}
check "state bucket: own root module, destroy-protected" state_outlives_cluster

# The other CLI: Terraform and OpenTofu must both accept the modules.
other=""
if [[ $(basename "$tf") == terraform ]]; then
  if [[ -x "$(strata_tools_dir)/opentofu-$STRATA_OPENTOFU_VERSION/tofu" || ${STRATA_TEST_BOTH:-} == 1 ]]; then
    other=$(strata_tofu_binary) || other=""
  fi
  other_name=tofu
else
  other=$(command -v terraform || true)
  other_name=terraform
fi
if [[ -n $other ]]; then
  section "cross-check with $other_name"
  prepare_tree "$work/tree-other"
  for m in "${modules[@]}"; do
    check "init + validate $m ($other_name)" tf_init_validate "$other" "$work/tree-other/$m"
  done
  run_plans "$other" "$other_name" "$work/tree-other"
else
  # Not a skipped test: an optional second CLI, built only on request (it is slow to build).
  printf 'note  modules checked with %s only; STRATA_TEST_BOTH=1 also checks them with %s\n' \
    "$(basename "$tf")" "$other_name"
fi

printf '\ninfra tests took %ss\n' "$((SECONDS - suite_start))"
if ((failed > 0)); then
  printf 'failed: %s\n' "${failures[@]}"
fi
printf '%d passed, %d failed\n' "$passed" "$failed"
((failed == 0))
