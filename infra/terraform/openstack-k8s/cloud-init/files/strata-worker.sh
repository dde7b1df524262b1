#!/usr/bin/env bash
# Joins a worker node to the cluster, retrying until the control plane answers.
set -euo pipefail

usage() {
  cat <<'USAGE'
Usage: strata-worker [--timeout SECONDS]

Runs `kubeadm join --config /etc/strata/kubeadm-join.yaml` until it succeeds
or SECONDS (default 1800) have passed; the control plane may still be
installing when a worker boots. Does nothing when the node already joined.
Once joined, the files with the bootstrap token and cloud-init's copies of
the user data are deleted.
USAGE
}

timeout=1800
while [[ $# -gt 0 ]]; do
  case $1 in
    --timeout) timeout=${2:?--timeout needs a value}; shift 2 ;;
    -h | --help) usage; exit 0 ;;
    *) echo "strata-worker: unknown argument: $1" >&2; exit 2 ;;
  esac
done

forget_token() {
  rm -f /etc/strata/kubeadm-join.yaml /etc/strata/discovery.conf \
    /var/lib/cloud/instance/user-data.txt /var/lib/cloud/instance/user-data.txt.i
}

if [[ -f /etc/kubernetes/kubelet.conf ]]; then
  echo "strata-worker: already joined"
  forget_token
  exit 0
fi
deadline=$((SECONDS + timeout))
until kubeadm join --config /etc/strata/kubeadm-join.yaml; do
  if ((SECONDS >= deadline)); then
    echo "strata-worker: could not join within ${timeout}s" >&2
    exit 1
  fi
  echo "strata-worker: join failed; resetting and retrying in 20s" >&2
  kubeadm reset --force >/dev/null 2>&1 || true
  sleep 20
done
forget_token
echo "strata-worker: joined the cluster"
