#!/usr/bin/env bash
# Creates the cluster on the control-plane node: kubeadm init, the pod network
# (Calico), the OpenStack cloud controller manager and the Cinder CSI driver.
set -euo pipefail

usage() {
  cat <<'USAGE'
Usage: strata-control-plane [--env FILE]

Runs `kubeadm init` with /etc/strata/kubeadm.yaml, then installs Calico
(CALICO_VERSION, enforcing NetworkPolicy), the OpenStack cloud controller
manager and (when ENABLE_CINDER_CSI=true) the Cinder CSI driver with a
default StorageClass. Settings come from FILE (default /etc/strata/node.env).
Bootstrap secrets are deleted from the node once used: kubeadm.yaml (with the
bootstrap token), cloud.conf (once it is a Secret) and cloud-init's copies of
the user data. Does not run kubeadm init again when the cluster exists.
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
: "${POD_CIDR:?}" "${CLOUD_PROVIDER_OPENSTACK_VERSION:?}" "${CALICO_VERSION:?}" "${ENABLE_CINDER_CSI:?}"
: "${ADMIN_USER:=ubuntu}"

export KUBECONFIG=/etc/kubernetes/admin.conf

if [[ ! -f $KUBECONFIG ]]; then
  kubeadm init --config /etc/strata/kubeadm.yaml
fi
# The configuration holds the bootstrap token; the cluster has it now.
rm -f /etc/strata/kubeadm.yaml

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

# Pod network: Calico (manifest install, Kubernetes API datastore, IP-in-IP
# between nodes), its IP pool set to the cluster's pod CIDR. Calico enforces
# NetworkPolicy, which Strata's tenant isolation relies on.
manifest=$(mktemp --suffix=.yaml)
curl -fsSL --retry 5 -o "$manifest" \
  "https://raw.githubusercontent.com/projectcalico/calico/${CALICO_VERSION}/manifests/calico.yaml"
sed -i -e 's@# - name: CALICO_IPV4POOL_CIDR@- name: CALICO_IPV4POOL_CIDR@' \
  -e "s@#   value: \"192.168.0.0/16\"@  value: \"${POD_CIDR}\"@" "$manifest"
grep -q "value: \"${POD_CIDR}\"" "$manifest" || {
  echo "strata-control-plane: could not set CALICO_IPV4POOL_CIDR in calico.yaml ${CALICO_VERSION}" >&2
  exit 1
}
kubectl apply --server-side --force-conflicts -f "$manifest"
rm -f "$manifest"

# Credentials for the cloud controller manager and Cinder CSI; the file goes
# once the Secret holds it.
if [[ -f /etc/strata/cloud.conf ]]; then
  kubectl -n kube-system create secret generic cloud-config \
    --from-file=cloud.conf=/etc/strata/cloud.conf --dry-run=client -o yaml | kubectl apply -f -
  rm -f /etc/strata/cloud.conf
fi
kubectl -n kube-system get secret cloud-config >/dev/null
# cloud-init's copies of the user data hold the CA key and the credential;
# Nova's metadata service keeps serving it, to the node only (pods are
# blocked by strata-node-install).
rm -f /var/lib/cloud/instance/user-data.txt /var/lib/cloud/instance/user-data.txt.i

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
