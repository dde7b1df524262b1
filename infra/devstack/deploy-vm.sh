#!/usr/bin/env bash
# Deploys a virtual machine on OpenStack, checks that it is reachable, and
# removes it again.
set -euo pipefail

usage() {
  cat <<'USAGE'
Usage: deploy-vm.sh [options] up|check|down|cycle

Creates everything one reachable VM needs, in this order, reusing what exists:
  image (CirrOS by default) -> flavor -> network + subnet -> router with an
  external gateway -> security group (ICMP + SSH) -> key pair -> server ->
  floating IP; then checks that the VM answers on its floating IP.

Commands:
  up       create (or reuse) all resources, then run the reachability check
  check    run the reachability check against an existing deployment
  down     delete every resource this script created for --name
  cycle    up, then down; down also runs when up or check fails (default use
           in tests and smoke checks)

Options:
  --name NAME            prefix of every resource name (default: strata-demo)
  --image NAME           Glance image to boot (default: the first image whose
                         name starts with "cirros")
  --image-file FILE      upload FILE (qcow2) as image NAME-image when no --image
                         is given and no CirrOS image exists
  --flavor NAME          flavor to use (default: create NAME-flavor, 1 vCPU,
                         512 MiB RAM, 1 GiB disk; needs admin rights)
  --external-network N   network that provides floating IPs (default: public)
  --cidr CIDR            subnet of the VM network (default: 10.42.0.0/24)
  --dns IP               DNS server for the subnet (default: none)
  --ssh-user USER        login user of the image (default: cirros)
  --check-port PORT      TCP port that must answer on the floating IP (default: 22)
  --skip-ssh             only check the TCP port, do not log in over SSH
  --key-dir DIR          where the generated private key is kept
                         (default: ${XDG_CACHE_HOME:-~/.cache}/strata/deploy-vm/NAME)
  --timeout SECONDS      how long to wait for the VM to answer (default: 300)
  -h, --help             show this help

Credentials come from the environment as for the openstack CLI (OS_CLOUD, or
`source /opt/stack/devstack/openrc admin admin` on the DevStack host).

Exit status: 0 on success, 1 when a step or the check failed, 2 on a usage error.
USAGE
}

name=strata-demo
image=""
image_file=""
flavor=""
external_network=public
cidr=10.42.0.0/24
dns=""
ssh_user=cirros
check_port=22
skip_ssh=false
key_dir=""
timeout=300
command=""

while [[ $# -gt 0 ]]; do
  case $1 in
    --name) name=${2:?--name needs a value}; shift 2 ;;
    --image) image=${2:?--image needs a value}; shift 2 ;;
    --image-file) image_file=${2:?--image-file needs a value}; shift 2 ;;
    --flavor) flavor=${2:?--flavor needs a value}; shift 2 ;;
    --external-network) external_network=${2:?--external-network needs a value}; shift 2 ;;
    --cidr) cidr=${2:?--cidr needs a value}; shift 2 ;;
    --dns) dns=${2:?--dns needs a value}; shift 2 ;;
    --ssh-user) ssh_user=${2:?--ssh-user needs a value}; shift 2 ;;
    --check-port) check_port=${2:?--check-port needs a value}; shift 2 ;;
    --skip-ssh) skip_ssh=true; shift ;;
    --key-dir) key_dir=${2:?--key-dir needs a value}; shift 2 ;;
    --timeout) timeout=${2:?--timeout needs a value}; shift 2 ;;
    -h | --help) usage; exit 0 ;;
    up | check | down | cycle)
      [[ -z $command ]] || { printf 'deploy-vm.sh: only one command allowed\n' >&2; exit 2; }
      command=$1
      shift
      ;;
    *) printf 'deploy-vm.sh: unknown argument: %s\n' "$1" >&2; usage >&2; exit 2 ;;
  esac
done
if [[ -z $command ]]; then
  usage >&2
  exit 2
fi
[[ $name =~ ^[a-z][a-z0-9-]{0,40}$ ]] || { printf 'deploy-vm.sh: --name must match [a-z][a-z0-9-]*\n' >&2; exit 2; }
if ! [[ $check_port =~ ^[0-9]+$ ]] || ((check_port < 1 || check_port > 65535)); then
  printf 'deploy-vm.sh: bad --check-port\n' >&2
  exit 2
fi
[[ $timeout =~ ^[0-9]+$ ]] || { printf 'deploy-vm.sh: bad --timeout\n' >&2; exit 2; }
command -v openstack >/dev/null 2>&1 || { printf 'deploy-vm.sh: the openstack CLI is not on PATH\n' >&2; exit 2; }
if [[ -z ${OS_CLOUD:-} && -z ${OS_AUTH_URL:-} ]]; then
  printf 'deploy-vm.sh: no OpenStack credentials: set OS_CLOUD or source openrc first\n' >&2
  exit 2
fi

key_dir=${key_dir:-${XDG_CACHE_HOME:-$HOME/.cache}/strata/deploy-vm/$name}
net="$name-net"
subnet="$name-subnet"
router="$name-router"
secgroup="$name-sg"
keypair="$name-key"
server="$name-vm"
own_flavor="$name-flavor"

step() { printf '==> %s\n' "$*"; }
die() {
  printf 'deploy-vm.sh: %s\n' "$*" >&2
  exit 1
}

# exists KIND... NAME: true when `openstack KIND... show NAME` finds it.
exists() {
  local name=${!#}
  openstack "${@:1:$#-1}" show -f value -c id "$name" >/dev/null 2>&1
}

find_image() {
  if [[ -n $image ]]; then
    exists image "$image" || die "image $image not found"
    printf '%s\n' "$image"
    return
  fi
  local found
  found=$(openstack image list --status active -f value -c Name | grep -m1 '^cirros' || true)
  if [[ -n $found ]]; then
    printf '%s\n' "$found"
    return
  fi
  [[ -n $image_file ]] || die "no CirrOS image found; pass --image or --image-file"
  if ! exists image "$name-image"; then
    openstack image create --disk-format qcow2 --container-format bare \
      --file "$image_file" "$name-image" -f value -c id >/dev/null
  fi
  printf '%s\n' "$name-image"
}

floating_ips() {
  openstack floating ip list --tags "$name" -f value -c "Floating IP Address"
}

do_up() {
  local img fl ip status
  step "image"
  img=$(find_image)
  printf '    using image %s\n' "$img"

  step "flavor"
  fl=${flavor:-$own_flavor}
  if ! exists flavor "$fl"; then
    [[ -z $flavor ]] || die "flavor $flavor not found"
    openstack flavor create --vcpus 1 --ram 512 --disk 1 --private "$fl" -f value -c id >/dev/null
    printf '    created flavor %s\n' "$fl"
  fi

  step "network $net and subnet $subnet ($cidr)"
  exists network "$net" || openstack network create "$net" -f value -c id >/dev/null
  if ! exists subnet "$subnet"; then
    local dns_args=()
    [[ -z $dns ]] || dns_args=(--dns-nameserver "$dns")
    openstack subnet create --network "$net" --subnet-range "$cidr" "${dns_args[@]}" \
      "$subnet" -f value -c id >/dev/null
  fi

  step "router $router with gateway on $external_network"
  exists network "$external_network" || die "external network $external_network not found"
  if ! exists router "$router"; then
    openstack router create "$router" -f value -c id >/dev/null
    openstack router set --external-gateway "$external_network" "$router"
    openstack router add subnet "$router" "$subnet"
  fi

  step "security group $secgroup (ICMP, TCP $check_port)"
  if ! exists security group "$secgroup"; then
    openstack security group create --description "Strata demo VM" "$secgroup" -f value -c id >/dev/null
    openstack security group rule create --ingress --ethertype IPv4 --protocol icmp \
      "$secgroup" -f value -c id >/dev/null
    openstack security group rule create --ingress --ethertype IPv4 --protocol tcp \
      --dst-port "$check_port" --remote-ip 0.0.0.0/0 "$secgroup" -f value -c id >/dev/null
  fi

  step "key pair $keypair (private key in $key_dir)"
  mkdir -p "$key_dir"
  chmod 0700 "$key_dir"
  if [[ ! -f $key_dir/id_ed25519 ]]; then
    ssh-keygen -q -t ed25519 -N '' -C "$keypair" -f "$key_dir/id_ed25519"
  fi
  if ! openstack keypair show "$keypair" -f value -c name >/dev/null 2>&1; then
    openstack keypair create --public-key "$key_dir/id_ed25519.pub" "$keypair" -f value -c name >/dev/null
  fi

  step "server $server"
  if ! exists server "$server"; then
    if ! openstack server create --flavor "$fl" --image "$img" --network "$net" \
      --security-group "$secgroup" --key-name "$keypair" --wait \
      "$server" -f value -c id >/dev/null; then
      openstack server show "$server" -f value -c fault 2>/dev/null | sed 's/^/    fault: /' >&2 || true
      die "server $server did not become ACTIVE"
    fi
  fi
  status=$(openstack server show "$server" -f value -c status)
  [[ $status == ACTIVE ]] || die "server $server is $status, not ACTIVE"
  printf '    %s is ACTIVE\n' "$server"

  step "floating IP"
  ip=$(floating_ips | head -n1)
  if [[ -z $ip ]]; then
    ip=$(openstack floating ip create --tag "$name" "$external_network" -f value -c floating_ip_address)
    [[ -n $ip ]] || die "no floating IP returned"
    openstack server add floating ip "$server" "$ip"
  fi
  printf '    %s has floating IP %s\n' "$server" "$ip"
}

tcp_open() {
  # shellcheck disable=SC2016 # $1 and $2 expand in the inner bash
  timeout 3 bash -c 'exec 3<>"/dev/tcp/$1/$2"' _ "$1" "$2" 2>/dev/null
}

do_check() {
  local ip deadline
  ip=$(floating_ips | head -n1)
  [[ -n $ip ]] || die "no floating IP tagged $name: run up first"
  step "reachability of $ip (timeout ${timeout}s)"
  if command -v ping >/dev/null 2>&1; then
    if ping -c 1 -W 2 "$ip" >/dev/null 2>&1; then
      printf '    ICMP: %s answers ping\n' "$ip"
    else
      printf '    ICMP: no answer yet (informational; TCP decides)\n'
    fi
  fi
  deadline=$((SECONDS + timeout))
  until tcp_open "$ip" "$check_port"; do
    if ((SECONDS >= deadline)); then
      openstack console log show --lines 20 "$server" 2>/dev/null | sed 's/^/    console: /' >&2 || true
      die "$ip:$check_port did not answer within ${timeout}s"
    fi
    sleep 3
  done
  printf '    TCP: %s:%s answers\n' "$ip" "$check_port"
  if ! $skip_ssh; then
    local ssh_opts=(-i "$key_dir/id_ed25519" -o BatchMode=yes -o ConnectTimeout=10
      -o StrictHostKeyChecking=no -o UserKnownHostsFile=/dev/null -o LogLevel=ERROR -p "$check_port")
    until ssh "${ssh_opts[@]}" "$ssh_user@$ip" uname -a; do
      ((SECONDS < deadline)) || die "SSH login as $ssh_user@$ip failed"
      sleep 5
    done
    printf '    SSH: logged in as %s\n' "$ssh_user"
  fi
  printf 'VM %s is reachable at %s\n' "$server" "$ip"
}

do_down() {
  local ip
  step "removing resources of $name"
  for ip in $(floating_ips); do
    openstack floating ip delete "$ip"
    printf '    deleted floating IP %s\n' "$ip"
  done
  if exists server "$server"; then
    openstack server delete --wait "$server"
    printf '    deleted server %s\n' "$server"
  fi
  if openstack keypair show "$keypair" -f value -c name >/dev/null 2>&1; then
    openstack keypair delete "$keypair"
    printf '    deleted key pair %s\n' "$keypair"
  fi
  if exists router "$router"; then
    if exists subnet "$subnet"; then
      openstack router remove subnet "$router" "$subnet" 2>/dev/null || true
    fi
    openstack router delete "$router"
    printf '    deleted router %s\n' "$router"
  fi
  if exists network "$net"; then
    openstack network delete "$net"
    printf '    deleted network %s (and its subnet)\n' "$net"
  fi
  if exists security group "$secgroup"; then
    openstack security group delete "$secgroup"
    printf '    deleted security group %s\n' "$secgroup"
  fi
  if [[ -z $flavor ]] && exists flavor "$own_flavor"; then
    openstack flavor delete "$own_flavor"
    printf '    deleted flavor %s\n' "$own_flavor"
  fi
  if exists image "$name-image"; then
    openstack image delete "$name-image"
    printf '    deleted image %s\n' "$name-image"
  fi
  rm -rf "$key_dir"
}

case $command in
  up)
    do_up
    do_check
    ;;
  check) do_check ;;
  down) do_down ;;
  cycle)
    # The subshell keeps errexit (it would be off inside `a && b || c`).
    set +e
    (
      set -e
      do_up
      do_check
    )
    rc=$?
    set -e
    if ! do_down; then
      printf 'deploy-vm.sh: clean-up failed; run "deploy-vm.sh --name %s down" again\n' "$name" >&2
      rc=1
    fi
    exit "$rc"
    ;;
esac
