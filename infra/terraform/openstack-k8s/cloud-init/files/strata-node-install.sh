#!/usr/bin/env bash
# Prepares an Ubuntu node for Kubernetes: kernel settings, containerd, and
# kubelet/kubeadm/kubectl at the cluster's version. Run by cloud-init on every
# node before it joins or creates the cluster; safe to run twice.
set -euo pipefail

usage() {
  cat <<'USAGE'
Usage: strata-node-install [--env FILE]

Installs containerd and kubelet, kubeadm and kubectl (from pkgs.k8s.io) at
KUBERNETES_VERSION read from FILE (default /etc/strata/node.env), disables
swap, sets the kernel modules and sysctls Kubernetes networking needs, and
drops traffic from pods (POD_CIDR) to the metadata service 169.254.169.254
at every boot, before the kubelet starts.
USAGE
}

env_file=/etc/strata/node.env
while [[ $# -gt 0 ]]; do
  case $1 in
    --env) env_file=${2:?--env needs a file}; shift 2 ;;
    -h | --help) usage; exit 0 ;;
    *) echo "strata-node-install: unknown argument: $1" >&2; exit 2 ;;
  esac
done
# shellcheck source=/dev/null
. "$env_file"
: "${KUBERNETES_VERSION:?missing in $env_file}" "${POD_CIDR:?missing in $env_file}"
minor=${KUBERNETES_VERSION%.*}

export DEBIAN_FRONTEND=noninteractive

# Swap must be off for the kubelet.
swapoff -a
sed -i -E 's@^([^#].*[[:space:]]swap[[:space:]].*)$@# \1@' /etc/fstab

# Bridged pod traffic must pass iptables; the node must forward packets.
cat >/etc/modules-load.d/kubernetes.conf <<'CONF'
overlay
br_netfilter
CONF
modprobe overlay
modprobe br_netfilter
cat >/etc/sysctl.d/90-kubernetes.conf <<'CONF'
net.bridge.bridge-nf-call-iptables = 1
net.bridge.bridge-nf-call-ip6tables = 1
net.ipv4.ip_forward = 1
CONF
sysctl --system >/dev/null

apt-get update
apt-get install -y apt-transport-https ca-certificates curl gpg containerd iptables

# Pods must not reach the OpenStack metadata service: the user data there
# holds the bootstrap token (and, on the control plane, the CA key and the
# cloud credential). Pod traffic is dropped in mangle/PREROUTING, before any
# CNI or kube-proxy chain can accept it; the node itself (and hostNetwork
# pods, which Pod Security "baseline" forbids) still reaches it.
cat >/etc/systemd/system/strata-block-metadata.service <<UNIT
[Unit]
Description=Drop traffic from pods to the OpenStack metadata service
After=network-pre.target
Before=kubelet.service containerd.service

[Service]
Type=oneshot
RemainAfterExit=yes
ExecStart=/bin/sh -c 'iptables -w -t mangle -C PREROUTING -s ${POD_CIDR} -d 169.254.169.254/32 -j DROP 2>/dev/null || iptables -w -t mangle -I PREROUTING 1 -s ${POD_CIDR} -d 169.254.169.254/32 -j DROP'

[Install]
WantedBy=multi-user.target
UNIT
systemctl daemon-reload
systemctl enable --now strata-block-metadata.service

# containerd with the systemd cgroup driver, as the kubelet expects.
mkdir -p /etc/containerd
containerd config default >/etc/containerd/config.toml
sed -i 's/SystemdCgroup = false/SystemdCgroup = true/' /etc/containerd/config.toml
grep -q 'SystemdCgroup = true' /etc/containerd/config.toml || {
  echo "strata-node-install: could not enable the systemd cgroup driver in containerd" >&2
  exit 1
}
systemctl restart containerd
systemctl enable containerd

# Kubernetes packages from the community repository of this minor release.
install -d -m 0755 /etc/apt/keyrings
curl -fsSL --retry 5 "https://pkgs.k8s.io/core:/stable:/v${minor}/deb/Release.key" |
  gpg --dearmor --yes -o /etc/apt/keyrings/kubernetes-apt-keyring.gpg
printf 'deb [signed-by=/etc/apt/keyrings/kubernetes-apt-keyring.gpg] https://pkgs.k8s.io/core:/stable:/v%s/deb/ /\n' "$minor" \
  >/etc/apt/sources.list.d/kubernetes.list
apt-get update
apt-get install -y --allow-change-held-packages \
  "kubelet=${KUBERNETES_VERSION}-*" "kubeadm=${KUBERNETES_VERSION}-*" "kubectl=${KUBERNETES_VERSION}-*"
apt-mark hold kubelet kubeadm kubectl
systemctl enable kubelet
echo "strata-node-install: containerd and Kubernetes ${KUBERNETES_VERSION} installed"
