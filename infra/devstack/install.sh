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
as the unprivileged user "stack" (home /opt/stack), which this script creates.

Options:
  --branch NAME        DevStack branch to check out (default: $STRATA_DEVSTACK_BRANCH
                       or stable/2025.2)
  --repo URL           DevStack git repository
                       (default: $STRATA_DEVSTACK_REPO or https://opendev.org/openstack/devstack)
  --dest DIR           where DevStack and OpenStack are checked out (default: /opt/stack)
  --render-only FILE   only render local.conf into FILE and exit (no changes to
                       the host); useful to review the configuration
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

Exit status: 0 when stack.sh succeeded, 1 on failure, 2 on a usage error.
After a successful run: source DEST/devstack/openrc admin admin and run verify.sh.
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

while [[ $# -gt 0 ]]; do
  case $1 in
    --branch) branch=${2:?--branch needs a value}; shift 2 ;;
    --repo) repo=${2:?--repo needs a value}; shift 2 ;;
    --dest) dest=${2:?--dest needs a value}; shift 2 ;;
    --render-only) render_only=${2:?--render-only needs a file}; shift 2 ;;
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
)
passwords=(STRATA_ADMIN_PASSWORD STRATA_DATABASE_PASSWORD STRATA_RABBIT_PASSWORD STRATA_SERVICE_PASSWORD)

secrets_file="$dest/.strata-devstack.env"

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
  local name
  # Passwords: environment first, then those kept by an earlier run, then new.
  if [[ -z $render_only && -r $secrets_file ]]; then
    local line key value
    while IFS= read -r line; do
      key=${line%%=*}
      value=${line#*=}
      [[ " ${passwords[*]} " == *" $key "* ]] || continue
      if [[ -z ${!key:-} ]]; then
        printf -v "$key" '%s' "$value"
      fi
    done <"$secrets_file"
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

load_settings

if [[ -n $render_only ]]; then
  render "$script_dir/local.conf" "$render_only"
  printf 'rendered local.conf into %s\n' "$render_only"
  exit 0
fi

# --- Preconditions ------------------------------------------------------------
# shellcheck source=/dev/null
. /etc/os-release
[[ ${ID:-} == ubuntu ]] || die "DevStack is supported here on Ubuntu only (found ${ID:-unknown})"
case ${VERSION_ID:-} in
  22.04 | 24.04) ;;
  *) printf 'install.sh: warning: Ubuntu %s is untested; 22.04 and 24.04 are\n' "${VERSION_ID:-?}" >&2 ;;
esac

if [[ $(id -u) -eq 0 ]]; then
  sudo_cmd=()
else
  sudo -n true 2>/dev/null || die "needs root or passwordless sudo"
  sudo_cmd=(sudo)
fi
as_root() { "${sudo_cmd[@]}" "$@"; }

# --- The stack user -------------------------------------------------------------
if ! id stack >/dev/null 2>&1; then
  as_root useradd --shell /bin/bash --home-dir "$dest" --create-home stack
fi
as_root mkdir -p "$dest"
as_root chown stack:stack "$dest"
as_root chmod 0755 "$dest"
printf 'stack ALL=(ALL) NOPASSWD: ALL\n' | as_root tee /etc/sudoers.d/stack >/dev/null
as_root chmod 0440 /etc/sudoers.d/stack

as_root apt-get update
as_root apt-get install -y git sudo

# Keep the passwords for later runs and for the operator (root and stack only).
tmp_secrets=$(mktemp)
trap 'rm -f "$tmp_secrets"' EXIT
for name in "${passwords[@]}"; do
  printf '%s=%s\n' "$name" "${!name}"
done >"$tmp_secrets"
as_root install -m 0600 -o stack -g stack "$tmp_secrets" "$secrets_file"

# --- DevStack checkout and configuration ------------------------------------------
if [[ ! -d $dest/devstack/.git ]]; then
  as_root sudo -u stack -H git clone --branch "$branch" "$repo" "$dest/devstack"
fi
render "$script_dir/local.conf" "$tmp_secrets"
as_root install -m 0600 -o stack -g stack "$tmp_secrets" "$dest/devstack/local.conf"

# --- Install ------------------------------------------------------------------------
printf 'Running stack.sh as user stack; this takes 20-40 minutes. Log: %s/logs/stack.sh.log\n' "$dest"
start=$SECONDS
if ! as_root sudo -u stack -H bash -c "cd '$dest/devstack' && ./stack.sh"; then
  die "stack.sh failed; read $dest/logs/stack.sh.log, fix the cause, then run $dest/devstack/unstack.sh and this script again"
fi
printf 'DevStack finished in %d minutes.\n' "$(((SECONDS - start) / 60))"
cat <<DONE
Next steps:
  sudo -u stack -H bash -c 'source $dest/devstack/openrc admin admin && $script_dir/verify.sh'
  Dashboard: http://$STRATA_HOST_IP/dashboard (user admin; password in $secrets_file)
DONE
