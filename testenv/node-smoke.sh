#!/usr/bin/env bash
# Smoke test of testenv's real node: pods start, get addresses and volumes.
set -euo pipefail

usage() {
	cat <<'EOF'
Usage: testenv/node-smoke.sh [--help] [--keep]

Starts testenv with a real node (testenv/start.sh --node; needs root) and
checks what Strata's end-to-end tests rely on: the node turns Ready with
the pinned kubelet, the scheduler places a pod, the kubelet runs it through
containerd and runc, CNI gives it an address on the node's bridge that the
host reaches, the controller-manager creates ServiceAccounts and their
tokens, the local provisioner binds and grows a claim and deletes its
volume with it, kube-proxy answers a Service, and stop.sh leaves no
process, mount, cgroup or network namespace behind. Ends with
"N passed, M failed" and exits non-zero when a check failed.

Options:
  --keep   keep the temp directory (logs, kubeconfig) for inspection
EOF
}

keep=0
for arg in "$@"; do
	case "$arg" in
	-h | --help)
		usage
		exit 0
		;;
	--keep) keep=1 ;;
	*)
		echo "node-smoke.sh: unknown argument '$arg'" >&2
		usage >&2
		exit 2
		;;
	esac
done

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
# shellcheck source=testenv/lib.sh
source "$here/lib.sh"

eval "$("$here/build.sh" --versions)"
bin_dir="$("$here/build.sh" | tail -n 1)"
kubectl="$bin_dir/kubectl"

dir="$(mktemp -d "${TMPDIR:-/tmp}/strata-node-smoke.XXXXXX")"
stopped=0
finish() {
	if [[ $stopped -eq 0 ]]; then
		"$here/stop.sh" --dir "$dir" >/dev/null 2>&1 || true
	fi
	if [[ $keep -eq 1 ]]; then
		echo "kept $dir" >&2
	else
		rm -rf "$dir"
	fi
}
trap finish EXIT

netns_before="$(ip netns list | awk '{ print $1 }' | sort)"
started=$SECONDS
if ! "$here/start.sh" --node --dir "$dir" --bin-dir "$bin_dir" >"$dir/start.out" 2>"$dir/start.err"; then
	fail "start.sh --node brings up the control plane and a Ready node" "$(tail -n 40 "$dir/start.err")"
	summary
	exit 1
fi
pass "start.sh --node brings up the control plane and a Ready node ($((SECONDS - started)) s)"
# shellcheck source=/dev/null
source "$dir/env"
export KUBECONFIG
k() { "$kubectl" "$@"; }

# eventually NAME SECONDS COMMAND...: COMMAND succeeds within SECONDS.
eventually() {
	local name="$1" until=$((SECONDS + $2))
	shift 2
	while ! "$@" >/dev/null 2>&1; do
		if ((SECONDS >= until)); then
			fail "$name" "$("$@" 2>&1 | tail -n 5)"
			return 0
		fi
		sleep 0.5
	done
	pass "$name"
}
jsonpath() { k get "$@" 2>/dev/null; }

got="$(jsonpath node "$STRATA_TESTENV_NODE_NAME" -o jsonpath='{.status.nodeInfo.kubeletVersion} {.status.nodeInfo.containerRuntimeVersion}')"
if [[ "$got" == "$KUBERNETES_VERSION containerd://"* ]]; then
	pass "the node runs kubelet $KUBERNETES_VERSION on containerd ($got)"
else
	fail "the node runs kubelet $KUBERNETES_VERSION on containerd" "$got"
fi

# --- a pod with a claim ------------------------------------------------------------
k apply -f - >/dev/null <<EOF
apiVersion: v1
kind: PersistentVolumeClaim
metadata: {name: data, namespace: default}
spec:
  accessModes: [ReadWriteOnce]
  resources: {requests: {storage: 1Gi}}
---
apiVersion: v1
kind: Pod
metadata: {name: sleeper, namespace: default, labels: {app: sleeper}}
spec:
  securityContext: {runAsNonRoot: true, runAsUser: 65535, fsGroup: 999}
  containers:
  - name: pause
    image: registry.k8s.io/pause:3.10
    imagePullPolicy: Never
    volumeMounts: [{name: data, mountPath: /data}]
  volumes:
  - name: data
    persistentVolumeClaim: {claimName: data}
---
apiVersion: v1
kind: Pod
metadata: {name: keeper, namespace: default}
spec:
  securityContext: {runAsNonRoot: true, runAsUser: 65535}
  containers:
  - {name: pause, image: "registry.k8s.io/pause:3.10", imagePullPolicy: Never}
---
apiVersion: v1
kind: Service
metadata: {name: sleeper, namespace: default}
spec:
  selector: {app: sleeper}
  ports: [{port: 80, targetPort: 9}]
EOF
claim_bound() { [[ "$(jsonpath pvc data -o jsonpath='{.status.phase}')" == Bound ]]; }
eventually "the default StorageClass's provisioner binds the claim" 30 claim_bound
eventually "the pod is scheduled, started and Ready" 60 \
	k wait --for=condition=Ready pod/sleeper --timeout=2s
pod_ip="$(jsonpath pod sleeper -o jsonpath='{.status.podIP}')"
if [[ "$pod_ip" == 10.200.0.* ]]; then
	pass "the pod has an address on the node's pod network ($pod_ip)"
else
	fail "the pod has an address on the node's pod network" "podIP=$pod_ip"
fi
# A refused connection (the pod answers with a reset) proves the route; an
# unreachable address would time out instead.
reachable() {
	local out
	out="$(timeout 3 bash -c ": </dev/tcp/$1/$2" 2>&1 || true)"
	[[ "$out" == *"Connection refused"* ]]
}
if reachable "$pod_ip" 9; then
	pass "the host reaches the pod over the node's link"
else
	fail "the host reaches the pod over the node's link" "no answer from $pod_ip:9"
fi
token_secret_projected() {
	k get pod sleeper -o jsonpath='{.spec.volumes[*].projected.sources[*].serviceAccountToken.path}' | grep -q token
}
eventually "the ServiceAccount admission plugin projects a token into the pod" 5 token_secret_projected
cluster_ip="$(jsonpath service sleeper -o jsonpath='{.spec.clusterIP}')"
endpoint_ready() { k get endpointslices -l kubernetes.io/service-name=sleeper -o jsonpath='{.items[*].endpoints[*].addresses[*]}' | grep -qx "$pod_ip"; }
eventually "the controller-manager lists the pod as the Service's endpoint" 30 endpoint_ready
eventually "kube-proxy forwards the Service's ClusterIP $cluster_ip to the pod" 30 reachable "$cluster_ip" 80

grow() {
	k patch pvc data --type merge -p '{"spec":{"resources":{"requests":{"storage":"2Gi"}}}}' >/dev/null &&
		[[ "$(jsonpath pvc data -o jsonpath='{.status.capacity.storage}')" == 2Gi ]]
}
eventually "a claim of the default class grows" 30 grow

volume="$(jsonpath pvc data -o jsonpath='{.spec.volumeName}')"
k delete pod sleeper --wait=true --timeout=60s >/dev/null
k delete pvc data --wait=true --timeout=60s >/dev/null
volume_gone() { ! k get pv "$volume" >/dev/null 2>&1 && [[ ! -e "$dir/node/volumes/$volume" ]]; }
eventually "deleting the claim deletes its volume and directory" 30 volume_gone

# A pod still running when the node stops: its sandbox's network namespace
# (CRI names them cni-<id>) must go too, though CRI never stops the pod.
eventually "a second pod is Ready" 60 k wait --for=condition=Ready pod/keeper --timeout=2s
sandbox_netns="$(comm -13 <(echo "$netns_before") <(ip netns list | awk '{ print $1 }' | sort) | grep '^cni-' | head -n1 || true)"

# --- stop ------------------------------------------------------------------------
if "$here/stop.sh" --dir "$dir" 2>"$dir/stop.err"; then
	stopped=1
	pass "stop.sh stops the node and the control plane"
else
	fail "stop.sh stops the node and the control plane" "$(tail -n 20 "$dir/stop.err")"
fi
left="$(pgrep -a -f -- "$dir/" || true)"
if [[ -z "$left" ]]; then
	pass "no node process is left"
else
	fail "no node process is left" "$left"
fi
mounts="$(awk -v p="$dir/" 'index($5, p) == 1 { print $5 }' /proc/self/mountinfo)"
if [[ -z "$mounts" ]]; then
	pass "no mount is left under the state directory"
else
	fail "no mount is left under the state directory" "$mounts"
fi
if ! ip netns list | grep -q "^$STRATA_TESTENV_NODE_NETNS\b" && ! ip link show strata-host0 >/dev/null 2>&1; then
	pass "the node's network namespace and link are gone"
else
	fail "the node's network namespace and link are gone"
fi
if [[ -n "$sandbox_netns" ]] && ! ip netns list | grep -q "^$sandbox_netns\b"; then
	pass "the pod's network namespace is gone"
else
	fail "the pod's network namespace is gone" "$sandbox_netns is still there"
fi
if ! compgen -G '/sys/fs/cgroup/*/strata-testenv-node' >/dev/null; then
	pass "the node's cgroups are gone"
else
	fail "the node's cgroups are gone" "$(ls -d /sys/fs/cgroup/*/strata-testenv-node)"
fi

summary
