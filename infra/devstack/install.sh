#!/usr/bin/env bash
# Installs a single-node OpenStack with DevStack on a fresh Ubuntu VM.
set -euo pipefail

usage() {
  cat <<'USAGE'
Usage: install.sh [options]

Installs a single-node OpenStack (Keystone, Nova, Neutron/OVN, Glance, Cinder,
Placement, Horizon) with DevStack on this Ubuntu host, using the local.conf
template next to this script.

Run it as root or as a user with passwordless sudo on a fresh Ubuntu 22.04 or
24.04 VM (4+ vCPUs, 8+ GiB RAM, 60+ GiB disk recommended). DevStack itself runs
as the unprivileged user "stack" (home DEST), which this script creates.
verify.sh and deploy-vm.sh are copied to DEST/strata/, where "stack" can run
them even when this checkout lives in a home directory it cannot enter.
Running it again keeps the passwords of the first run.

Options:
  --branch NAME        DevStack branch to check out (default: $STRATA_DEVSTACK_BRANCH
                       or stable/2025.2)
  --repo URL           DevStack git repository
                       (default: $STRATA_DEVSTACK_REPO or https://opendev.org/openstack/devstack)
  --dest DIR           where DevStack and OpenStack are checked out, DevStack's
                       DEST and the stack user's home (default: /opt/stack)
  --render-only FILE   only render local.conf into FILE and exit (no changes to
                       the host); useful to review the configuration
  --secrets-only       only create (or load) DEST/.strata-devstack.env and exit
  --tools-only         only copy verify.sh and deploy-vm.sh to DEST/strata/ and exit
  -h, --help           show this help

Settings, taken from the environment (defaults in brackets):
  STRATA_ADMIN_PASSWORD, STRATA_DATABASE_PASSWORD, STRATA_RABBIT_PASSWORD,
  STRATA_SERVICE_PASSWORD   passwords [generated once, kept in DEST/.strata-devstack.env
                            with mode 0600 and reused by later runs]
  STRATA_HOST_IP            this host's address [the source address of the default route]
  STRATA_FLOATING_RANGE     external (floating IP) network [172.24.4.0/24]
  STRATA_PUBLIC_GATEWAY     its gateway, put on br-ex [172.24.4.1]
  STRATA_TENANT_RANGE       range for project networks [10.0.0.0/22]
  STRATA_VOLUME_BACKING_FILE_SIZE  size of Cinder's LVM backing file [30G]
  STRATA_LIBVIRT_TYPE       qemu or kvm [kvm when /dev/kvm exists, else qemu]
  STRATA_CPU_ALLOCATION_RATIO, STRATA_RAM_ALLOCATION_RATIO  Nova overcommit [4.0, 1.5]
  STRATA_ENABLE_OCTAVIA     true: also run Octavia (load balancers, OVN provider
                            only: no amphora VMs) [false]
  STRATA_STACK_USER         the user DevStack runs as [stack]

Exit status: 0 when stack.sh succeeded, 1 on failure, 2 on a usage error.
After a successful run, as the stack user: source DEST/devstack/openrc admin admin
and run DEST/strata/verify.sh.
USAGE
}

die() {
  printf 'install.sh: %s\n' "$*" >&2
  exit 1
}

script_dir=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
branch=${STRATA_DEVSTACK_BRANCH:-stable/2025.2}
repo=${STRATA_DEVSTACK_REPO:-https://opendev.org/openstack/devstack}
dest=/opt/stack
render_only=""
mode=all

while [[ $# -gt 0 ]]; do
  case $1 in
    --branch) branch=${2:?--branch needs a value}; shift 2 ;;
    --repo) repo=${2:?--repo needs a value}; shift 2 ;;
    --dest) dest=${2:?--dest needs a value}; shift 2 ;;
    --render-only) render_only=${2:?--render-only needs a file}; mode=render; shift 2 ;;
    --secrets-only) mode=secrets; shift ;;
    --tools-only) mode=tools; shift ;;
    -h | --help) usage; exit 0 ;;
    *) printf 'install.sh: unknown argument: %s\n' "$1" >&2; usage >&2; exit 2 ;;
  esac
done

# The placeholders that local.conf may contain; nothing else is substituted.
settings=(
  STRATA_ADMIN_PASSWORD STRATA_DATABASE_PASSWORD STRATA_RABBIT_PASSWORD
  STRATA_SERVICE_PASSWORD STRATA_HOST_IP STRATA_FLOATING_RANGE
  STRATA_PUBLIC_GATEWAY STRATA_TENANT_RANGE STRATA_VOLUME_BACKING_FILE_SIZE
  STRATA_LIBVIRT_TYPE STRATA_CPU_ALLOCATION_RATIO STRATA_RAM_ALLOCATION_RATIO
  STRATA_DEST STRATA_OCTAVIA_SERVICES
)
passwords=(STRATA_ADMIN_PASSWORD STRATA_DATABASE_PASSWORD STRATA_RABBIT_PASSWORD STRATA_SERVICE_PASSWORD)

if [[ $dest != /* || $dest =~ [[:space:]\'\"\$] ]]; then
  printf 'install.sh: --dest must be an absolute path without spaces or quotes: %s\n' "$dest" >&2
  exit 2
fi
[[ $dest == / ]] || dest=${dest%/}
secrets_file="$dest/.strata-devstack.env"
tools_dir="$dest/strata"

if [[ $(id -u) -eq 0 ]]; then
  sudo_cmd=()
else
  sudo_cmd=(sudo -n)
  if [[ $mode != render ]] && ! sudo -n true 2>/dev/null; then
    die "needs root or passwordless sudo"
  fi
fi
as_root() { "${sudo_cmd[@]}" "$@"; }

new_password() {
  # 24 characters from [A-Za-z0-9]: safe in every config file DevStack writes.
  local pw=""
  while [[ ${#pw} -lt 24 ]]; do
    pw+=$(head -c 64 /dev/urandom | tr -dc 'A-Za-z0-9')
  done
  printf '%s\n' "${pw:0:24}"
}

default_host_ip() {
  local ip
  ip=$(ip -4 route get 192.0.2.1 2>/dev/null | sed -n 's/.* src \([0-9.]*\).*/\1/p' | head -n1)
  [[ -n $ip ]] || die "cannot find this host's IP address; set STRATA_HOST_IP"
  printf '%s\n' "$ip"
}

is_ipv4() {
  local re='^([0-9]{1,3})\.([0-9]{1,3})\.([0-9]{1,3})\.([0-9]{1,3})$' i
  [[ $1 =~ $re ]] || return 1
  for i in 1 2 3 4; do
    ((BASH_REMATCH[i] <= 255)) || return 1
  done
}

is_cidr() {
  [[ $1 == */* ]] || return 1
  is_ipv4 "${1%/*}" || return 1
  [[ ${1#*/} =~ ^[0-9]+$ ]] && ((${1#*/} <= 32))
}

load_settings() {
  local name kept=""
  # Passwords: environment first, then those kept by an earlier run, then new.
  # The file belongs to the stack user (mode 0600): a rerun by another user
  # with sudo reads it through sudo instead of generating new passwords that
  # MySQL and RabbitMQ would refuse.
  if [[ $mode != render ]] && as_root test -e "$secrets_file"; then
    kept=$(as_root cat "$secrets_file") || die "cannot read $secrets_file (run as root or with passwordless sudo)"
  fi
  if [[ -n $kept ]]; then
    local line key value
    while IFS= read -r line; do
      key=${line%%=*}
      value=${line#*=}
      [[ " ${passwords[*]} " == *" $key "* ]] || continue
      if [[ -z ${!key:-} ]]; then
        printf -v "$key" '%s' "$value"
      fi
    done <<<"$kept"
  fi
  for name in "${passwords[@]}"; do
    if [[ -z ${!name:-} ]]; then
      printf -v "$name" '%s' "$(new_password)"
    fi
    [[ ${!name} =~ ^[A-Za-z0-9._-]{8,}$ ]] ||
      die "$name must be at least 8 characters of [A-Za-z0-9._-] (other characters break DevStack's config files)"
  done

  STRATA_HOST_IP=${STRATA_HOST_IP:-$(default_host_ip)}
  STRATA_FLOATING_RANGE=${STRATA_FLOATING_RANGE:-172.24.4.0/24}
  STRATA_PUBLIC_GATEWAY=${STRATA_PUBLIC_GATEWAY:-172.24.4.1}
  STRATA_TENANT_RANGE=${STRATA_TENANT_RANGE:-10.0.0.0/22}
  STRATA_VOLUME_BACKING_FILE_SIZE=${STRATA_VOLUME_BACKING_FILE_SIZE:-30G}
  if [[ -z ${STRATA_LIBVIRT_TYPE:-} ]]; then
    if [[ -e /dev/kvm ]]; then STRATA_LIBVIRT_TYPE=kvm; else STRATA_LIBVIRT_TYPE=qemu; fi
  fi
  STRATA_CPU_ALLOCATION_RATIO=${STRATA_CPU_ALLOCATION_RATIO:-4.0}
  STRATA_RAM_ALLOCATION_RATIO=${STRATA_RAM_ALLOCATION_RATIO:-1.5}
  # shellcheck disable=SC2034 # read by render through ${!name}
  STRATA_DEST=$dest
  # shellcheck disable=SC2034 # read by render through ${!name}
  case ${STRATA_ENABLE_OCTAVIA:-false} in
    # The OVN provider driver needs no amphora image or management network.
    true) STRATA_OCTAVIA_SERVICES=$(<"$script_dir/octavia.conf") ;;
    false) STRATA_OCTAVIA_SERVICES="# Octavia is off; see install.sh --help to enable it" ;;
    *) die "STRATA_ENABLE_OCTAVIA must be true or false: $STRATA_ENABLE_OCTAVIA" ;;
  esac

  is_ipv4 "$STRATA_HOST_IP" || die "STRATA_HOST_IP is not an IPv4 address: $STRATA_HOST_IP"
  is_cidr "$STRATA_FLOATING_RANGE" || die "STRATA_FLOATING_RANGE is not a CIDR: $STRATA_FLOATING_RANGE"
  is_ipv4 "$STRATA_PUBLIC_GATEWAY" || die "STRATA_PUBLIC_GATEWAY is not an IPv4 address: $STRATA_PUBLIC_GATEWAY"
  is_cidr "$STRATA_TENANT_RANGE" || die "STRATA_TENANT_RANGE is not a CIDR: $STRATA_TENANT_RANGE"
  [[ $STRATA_VOLUME_BACKING_FILE_SIZE =~ ^[1-9][0-9]*[MG]$ ]] ||
    die "STRATA_VOLUME_BACKING_FILE_SIZE must look like 30G or 20480M: $STRATA_VOLUME_BACKING_FILE_SIZE"
  [[ $STRATA_LIBVIRT_TYPE == qemu || $STRATA_LIBVIRT_TYPE == kvm ]] ||
    die "STRATA_LIBVIRT_TYPE must be qemu or kvm: $STRATA_LIBVIRT_TYPE"
  for name in STRATA_CPU_ALLOCATION_RATIO STRATA_RAM_ALLOCATION_RATIO; do
    [[ ${!name} =~ ^[0-9]+(\.[0-9]+)?$ ]] || die "$name must be a number: ${!name}"
  done
}

# render TEMPLATE OUTPUT: replaces each ${STRATA_*} placeholder of the list.
render() {
  local content name
  content=$(<"$1")
  for name in "${settings[@]}"; do
    content=${content//"\${$name}"/${!name}}
  done
  # shellcheck disable=SC2016 # literal placeholders, not expansions
  if [[ $content == *'${STRATA_'* ]]; then
    die "local.conf has a placeholder that install.sh does not know: $(grep -o 'STRATA_[A-Z_]*' <<<"$content" | head -n1)"
  fi
  (umask 077 && printf '%s\n' "$content" >"$2")
}

# secrets_content: the passwords as the secrets file holds them.
secrets_content() {
  local name
  for name in "${passwords[@]}"; do
    printf '%s=%s\n' "$name" "${!name}"
  done
}

# save_secrets: writes the secrets file for the stack user, mode 0600, unless
# it already holds exactly these passwords.
save_secrets() {
  local tmp
  if as_root test -e "$secrets_file" && [[ $(as_root cat "$secrets_file") == "$(secrets_content)" ]]; then
    printf 'passwords kept in %s\n' "$secrets_file"
    return 0
  fi
  tmp=$(mktemp)
  (umask 077 && secrets_content >"$tmp")
  as_root install -d -m 0755 "$dest"
  as_root install -m 0600 -o "$stack_user" -g "$(id -g "$stack_user")" "$tmp" "$secrets_file"
  rm -f "$tmp"
  printf 'passwords written to %s\n' "$secrets_file"
}

# install_tools: copies the scripts the stack user runs out of this checkout,
# which may sit in a home directory of mode 0750 that the stack user cannot
# enter (the default for new users since Ubuntu 21.04).
install_tools() {
  as_root install -d -m 0755 "$dest" "$tools_dir"
  as_root install -m 0755 "$script_dir/verify.sh" "$script_dir/deploy-vm.sh" "$tools_dir/"
  printf 'installed verify.sh and deploy-vm.sh in %s\n' "$tools_dir"
}

stack_user=${STRATA_STACK_USER:-stack}
[[ $stack_user =~ ^[a-z_][a-z0-9_-]*$ ]] || die "STRATA_STACK_USER is not a user name: $stack_user"

if [[ $mode == tools ]]; then
  install_tools
  exit 0
fi

load_settings

case $mode in
  render)
    render "$script_dir/local.conf" "$render_only"
    printf 'rendered local.conf into %s\n' "$render_only"
    exit 0
    ;;
  secrets)
    id "$stack_user" >/dev/null 2>&1 || die "user $stack_user does not exist"
    save_secrets
    exit 0
    ;;
esac

# --- Preconditions ------------------------------------------------------------
# shellcheck source=/dev/null
. /etc/os-release
[[ ${ID:-} == ubuntu ]] || die "DevStack is supported here on Ubuntu only (found ${ID:-unknown})"
case ${VERSION_ID:-} in
  22.04 | 24.04) ;;
  *) printf 'install.sh: warning: Ubuntu %s is untested; 22.04 and 24.04 are\n' "${VERSION_ID:-?}" >&2 ;;
esac

# --- The stack user -------------------------------------------------------------
if ! id "$stack_user" >/dev/null 2>&1; then
  as_root useradd --shell /bin/bash --home-dir "$dest" --create-home "$stack_user"
fi
as_root mkdir -p "$dest"
as_root chown "$stack_user:$stack_user" "$dest"
as_root chmod 0755 "$dest"
printf '%s ALL=(ALL) NOPASSWD: ALL\n' "$stack_user" | as_root tee "/etc/sudoers.d/$stack_user" >/dev/null
as_root chmod 0440 "/etc/sudoers.d/$stack_user"

as_root apt-get update
as_root apt-get install -y git sudo

# Keep the passwords for later runs and for the operator (root and stack only).
save_secrets
install_tools

# --- DevStack checkout and configuration ------------------------------------------
if [[ ! -d $dest/devstack/.git ]]; then
  as_root sudo -u "$stack_user" -H git clone --branch "$branch" "$repo" "$dest/devstack"
fi
tmp_conf=$(mktemp)
trap 'rm -f "$tmp_conf"' EXIT
render "$script_dir/local.conf" "$tmp_conf"
as_root install -m 0600 -o "$stack_user" -g "$stack_user" "$tmp_conf" "$dest/devstack/local.conf"

# --- Install ------------------------------------------------------------------------
printf 'Running stack.sh as user stack; this takes 20-40 minutes. Log: %s/logs/stack.sh.log\n' "$dest"
start=$SECONDS
if ! as_root sudo -u "$stack_user" -H bash -c "cd '$dest/devstack' && ./stack.sh"; then
  die "stack.sh failed; read $dest/logs/stack.sh.log, fix the cause, then run $dest/devstack/unstack.sh and this script again"
fi
printf 'DevStack finished in %d minutes.\n' "$(((SECONDS - start) / 60))"
cat <<DONE
Next steps:
  sudo -u $stack_user -H bash -c 'source $dest/devstack/openrc admin admin && $tools_dir/verify.sh'
  Dashboard: http://$STRATA_HOST_IP/dashboard (user admin; password in $secrets_file)
DONE
