#!/usr/bin/env bash
# Creates the cluster on the control-plane node: kubeadm init, the pod network
# (flannel), the OpenStack cloud controller manager and the Cinder CSI driver.
set -euo pipefail

usage() {
  cat <<'USAGE'
Usage: strata-control-plane [--env FILE]

Runs `kubeadm init` with /etc/strata/kubeadm.yaml, then installs flannel,
the OpenStack cloud controller manager and (when ENABLE_CINDER_CSI=true) the
Cinder CSI driver with a default StorageClass. Settings come from FILE
(default /etc/strata/node.env). Does nothing when the cluster already exists.
USAGE
}

env_file=/etc/strata/node.env
while [[ $# -gt 0 ]]; do
  case $1 in
    --env) env_file=${2:?--env needs a file}; shift 2 ;;
    -h | --help) usage; exit 0 ;;
    *) echo "strata-control-plane: unknown argument: $1" >&2; exit 2 ;;
  esac
done
# shellcheck source=/dev/null
. "$env_file"
: "${POD_CIDR:?}" "${CLOUD_PROVIDER_OPENSTACK_VERSION:?}" "${FLANNEL_VERSION:?}" "${ENABLE_CINDER_CSI:?}"
: "${ADMIN_USER:=ubuntu}"

export KUBECONFIG=/etc/kubernetes/admin.conf

if [[ ! -f $KUBECONFIG ]]; then
  kubeadm init --config /etc/strata/kubeadm.yaml
fi

# The login user may read the admin kubeconfig (to fetch it over SSH).
if id "$ADMIN_USER" >/dev/null 2>&1; then
  home=$(getent passwd "$ADMIN_USER" | cut -d: -f6)
  install -d -m 0700 -o "$ADMIN_USER" -g "$ADMIN_USER" "$home/.kube"
  install -m 0600 -o "$ADMIN_USER" -g "$ADMIN_USER" "$KUBECONFIG" "$home/.kube/config"
fi

apply_url() {
  local url=$1 attempt
  for attempt in 1 2 3 4 5; do
    if kubectl apply -f "$url"; then
      return 0
    fi
    echo "strata-control-plane: applying $url failed (attempt $attempt), retrying" >&2
    sleep 10
  done
  return 1
}

# Pod network: flannel, with the cluster's pod CIDR.
if [[ $FLANNEL_VERSION == latest ]]; then
  flannel_url=https://github.com/flannel-io/flannel/releases/latest/download/kube-flannel.yml
else
  flannel_url="https://github.com/flannel-io/flannel/releases/download/${FLANNEL_VERSION}/kube-flannel.yml"
fi
manifest=$(mktemp --suffix=.yaml)
curl -fsSL --retry 5 -o "$manifest" "$flannel_url"
sed -i "s@10.244.0.0/16@${POD_CIDR}@" "$manifest"
kubectl apply -f "$manifest"
rm -f "$manifest"

# Credentials for the cloud controller manager and Cinder CSI.
kubectl -n kube-system create secret generic cloud-config \
  --from-file=cloud.conf=/etc/strata/cloud.conf --dry-run=client -o yaml | kubectl apply -f -

cpo="https://raw.githubusercontent.com/kubernetes/cloud-provider-openstack/${CLOUD_PROVIDER_OPENSTACK_VERSION}/manifests"
for f in cloud-controller-manager-roles.yaml cloud-controller-manager-role-bindings.yaml \
  openstack-cloud-controller-manager-ds.yaml; do
  apply_url "$cpo/controller-manager/$f"
done

if [[ $ENABLE_CINDER_CSI == true ]]; then
  for f in cinder-csi-controllerplugin-rbac.yaml cinder-csi-controllerplugin.yaml \
    cinder-csi-nodeplugin-rbac.yaml cinder-csi-nodeplugin.yaml csi-cinder-driver.yaml; do
    apply_url "$cpo/cinder-csi-plugin/$f"
  done
  kubectl apply -f - <<'YAML'
apiVersion: storage.k8s.io/v1
kind: StorageClass
metadata:
  name: cinder
  annotations:
    storageclass.kubernetes.io/is-default-class: "true"
provisioner: cinder.csi.openstack.org
reclaimPolicy: Delete
volumeBindingMode: WaitForFirstConsumer
allowVolumeExpansion: true
YAML
fi

mkdir -p /var/lib/strata
touch /var/lib/strata/control-plane-ready
echo "strata-control-plane: cluster created; nodes:"
kubectl get nodes -o wide
