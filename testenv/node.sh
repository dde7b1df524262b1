#!/usr/bin/env bash
# A real Kubernetes node for Strata's tests: containerd + runc + CNI, kubelet,
# kube-scheduler, kube-controller-manager, kube-proxy and a local volume
# provisioner, inside a network namespace of the test's own.
set -euo pipefail

usage() {
	cat <<'EOF'
Usage: testenv/node.sh network --dir DIR
       testenv/node.sh start   --dir DIR [--timeout SECONDS] [--image ARCHIVE]...
       testenv/node.sh stop    --dir DIR
       testenv/node.sh network-down --dir DIR
       testenv/node.sh --help

The node half of `testenv/start.sh --node` and `testenv/stop.sh`; both call
it, so tests rarely need to.

  network  creates the node's network namespace and the link to it:
           host 10.200.255.1/30 <-> node 10.200.255.2/30 (a veth pair), pods
           on a bridge inside the namespace (10.200.0.0/24). The host gets
           routes to the pod network and to the Service range through the
           link; nothing inside the namespace has a route anywhere else, and
           nothing is masqueraded. One node per machine at a time: a second
           caller waits for the first to stop (flock). Prints KEY=VALUE lines.
  start    starts containerd (own root, state and socket in DIR), imports
           the pause image and every --image archive, then kubelet,
           kube-proxy (iptables), kube-scheduler, kube-controller-manager and
           the local volume provisioner (StorageClass "strata-local",
           default), and waits until the node is Ready and the "default"
           ServiceAccount exists. Needs the control plane of DIR running
           (start.sh --node) and the node binaries from testenv/build.sh.
  stop     stops all of it: every pod's containers, the node's processes,
           mounts and cgroups. Safe to run twice.
  network-down
           removes the network namespace, the link and the routes, and
           releases the lock; after the API server stopped (it listens on
           the link, and does not stop promptly once its address is gone).

The pause image is packed from testenv/cmd/pause (a static Go program that
testenv/build.sh builds with the rest) by testenv/oci-image.sh.

Logs: DIR/node/*.log.
EOF
}

log() { echo "testenv/node.sh: $*" >&2; }
die() {
	log "$*"
	exit 1
}

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"

# The node's addresses. Fixed, so one node runs per machine at a time.
readonly HOST_IP=10.200.255.1
readonly NODE_IP=10.200.255.2
readonly LINK_PREFIX=30
readonly LINK_NET=10.200.255.0
readonly POD_CIDR=10.200.0.0/24
readonly NODE_NAME=strata-node
readonly NETNS=strata-testenv-node
readonly HOST_LINK=strata-host0
readonly NODE_LINK=strata-node0
readonly BRIDGE=strata-cni0
readonly STORAGE_CLASS=strata-local
readonly LOCK_FILE=/run/lock/strata-testenv-node.lock

command="${1:-}"
case "$command" in
-h | --help)
	usage
	exit 0
	;;
network | start | stop | network-down) shift ;;
*)
	usage >&2
	exit 2
	;;
esac

dir=""
timeout=120
images=()
while [[ $# -gt 0 ]]; do
	case "$1" in
	--dir)
		dir="${2:?--dir needs a value}"
		shift 2
		;;
	--timeout)
		timeout="${2:?--timeout needs a value}"
		shift 2
		;;
	--image)
		images+=("${2:?--image needs a value}")
		shift 2
		;;
	*)
		log "unknown argument '$1'"
		usage >&2
		exit 2
		;;
	esac
done
[[ -n "$dir" ]] || die "--dir is required"
[[ "$timeout" =~ ^[0-9]+$ ]] || die "--timeout must be a number of seconds"
node="$dir/node"
in_node() { nsenter --net="/run/netns/$NETNS" -- "$@"; }

# --- network -------------------------------------------------------------------
teardown_network() {
	ip route del "$POD_CIDR" dev "$HOST_LINK" 2>/dev/null || true
	if [[ -f "$node/service-cidr" ]]; then
		ip route del "$(cat "$node/service-cidr")" dev "$HOST_LINK" 2>/dev/null || true
	fi
	ip link del "$HOST_LINK" 2>/dev/null || true
	ip netns del "$NETNS" 2>/dev/null || true
}

network() {
	local service_cidr="${STRATA_TESTENV_SERVICE_CIDR:?}"
	for tool in ip nsenter iptables flock; do
		command -v "$tool" >/dev/null || die "$tool is missing (Debian: apt-get install -y iproute2 util-linux iptables)"
	done
	mkdir -p "$node"
	# Hold the machine-wide node lock for the node's whole life: a holder
	# process keeps the descriptor; stop kills it.
	mkdir -p "$(dirname "$LOCK_FILE")"
	exec 8>>"$LOCK_FILE"
	if ! flock -n 8; then
		log "another test node is running on this machine; waiting for it to stop"
		flock -w "$timeout" 8 || die "the other test node did not stop within ${timeout}s"
	fi
	setsid sleep infinity 8>&8 </dev/null >/dev/null 2>&1 &
	echo $! >"$node/lock-holder.pid"
	exec 8>&-
	# A node of a run that died without stopping leaves its namespace behind.
	teardown_network
	echo "$service_cidr" >"$node/service-cidr"

	ip netns add "$NETNS"
	ip link add "$HOST_LINK" type veth peer name "$NODE_LINK"
	ip link set "$NODE_LINK" netns "$NETNS"
	ip addr add "$HOST_IP/$LINK_PREFIX" dev "$HOST_LINK"
	ip link set "$HOST_LINK" up
	in_node ip link set lo up
	in_node ip addr add "$NODE_IP/$LINK_PREFIX" dev "$NODE_LINK"
	in_node ip link set "$NODE_LINK" up
	# Inside the namespace only: route between the link and the pod bridge,
	# and let the bridge's traffic pass iptables (Service NAT for pod-to-pod).
	in_node sysctl -qw net.ipv4.ip_forward=1
	in_node sysctl -qw net.bridge.bridge-nf-call-iptables=1 2>/dev/null ||
		log "net.bridge.bridge-nf-call-iptables is not available; pod-to-Service-to-pod on one node may not answer"
	ip route add "$POD_CIDR" via "$NODE_IP" dev "$HOST_LINK"
	ip route add "$service_cidr" via "$NODE_IP" dev "$HOST_LINK"
	cat <<EOF
STRATA_TESTENV_NODE_HOST_IP=$HOST_IP
STRATA_TESTENV_NODE_IP=$NODE_IP
STRATA_TESTENV_POD_CIDR=$POD_CIDR
STRATA_TESTENV_NODE_NAME=$NODE_NAME
STRATA_TESTENV_NODE_NETNS=$NETNS
STRATA_TESTENV_STORAGE_CLASS=$STORAGE_CLASS
EOF
}

# --- start -----------------------------------------------------------------------
deadline=$((SECONDS + timeout))
# wait_for WHAT PIDFILE COMMAND...: poll COMMAND until it succeeds; fail when
# the process of PIDFILE died or the deadline passed.
wait_for() {
	local what="$1" pidfile="$2"
	shift 2
	while ! "$@" >/dev/null 2>&1; do
		if [[ -n "$pidfile" ]] && ! kill -0 "$(cat "$pidfile")" 2>/dev/null; then
			die "$what: the process exited (see $node/$(basename "$pidfile" .pid).log)"
		fi
		((SECONDS < deadline)) || die "$what: not ready after ${timeout}s"
		sleep 0.2
	done
}

# spawn NAME COMMAND...: start a node process in the node's namespace, in a
# process group of its own, logging to NAME.log.
spawn() {
	local name="$1"
	shift
	setsid nsenter --net="/run/netns/$NETNS" -- "$@" </dev/null >>"$node/$name.log" 2>&1 &
	echo $! >"$node/$name.pid"
}

sign_cert() { # NAME SUBJECT EXT...: a key and certificate signed by the testenv CA
	local name="$1" subject="$2"
	shift 2
	openssl req -new -nodes -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 \
		-keyout "$node/pki/$name.key" -out "$node/pki/$name.csr" -subj "$subject" 2>/dev/null
	printf '%s\n' "$@" >"$node/pki/$name.ext"
	openssl x509 -req -in "$node/pki/$name.csr" -CA "$certs/ca.crt" -CAkey "$certs/ca.key" \
		-CAcreateserial -days 3650 -extfile "$node/pki/$name.ext" -out "$node/pki/$name.crt" 2>/dev/null
	rm -f "$node/pki/$name.csr" "$node/pki/$name.ext" "$certs/ca.srl"
	chmod 600 "$node/pki/$name.key"
}

kubeconfig_for() { # FILE TOKEN
	cat >"$1" <<EOF
apiVersion: v1
kind: Config
clusters:
- name: strata-testenv
  cluster:
    server: $STRATA_TESTENV_SERVER
    certificate-authority: $certs/ca.crt
users:
- name: node
  user:
    token: $2
contexts:
- name: node
  context: {cluster: strata-testenv, user: node}
current-context: node
EOF
	chmod 600 "$1"
}

# The pause image: testenv's static pause binary as an OCI archive.
pause_image() {
	local out="$node/pause.tar"
	if [[ ! -s "$out" ]]; then
		mkdir -p "$node/pause-rootfs"
		cp "$STRATA_TESTENV_BIN_DIR/pause" "$node/pause-rootfs/pause"
		"$here/oci-image.sh" --rootfs "$node/pause-rootfs" --name "$PAUSE_IMAGE" \
			--entrypoint /pause --user 65535:65535 --out "$out"
		rm -rf "$node/pause-rootfs"
	fi
	echo "$out"
}
readonly PAUSE_IMAGE=registry.k8s.io/pause:3.10

start() {
	# shellcheck source=/dev/null
	source "$dir/env"
	local bin="$STRATA_TESTENV_BIN_DIR" certs
	certs="$(dirname "$STRATA_TESTENV_CA_FILE")"
	for b in kubelet kube-proxy kube-scheduler kube-controller-manager local-provisioner pause; do
		[[ -x "$bin/$b" ]] || die "$bin/$b not found; run testenv/build.sh"
	done
	for tool in containerd ctr runc containerd-shim-runc-v2; do
		command -v "$tool" >/dev/null || die "$tool is missing (Debian: apt-get install -y containerd runc)"
	done
	[[ -x /usr/lib/cni/bridge ]] || die "CNI plugins are missing (Debian: apt-get install -y containernetworking-plugins)"
	[[ -e "/run/netns/$NETNS" ]] || die "no node network; run: testenv/node.sh network --dir $dir"
	mkdir -p "$node"/{pki,cni/net.d,cni/ipam,containerd,kubelet,pod-logs,volumes}
	chmod 700 "$node"

	# containerd: its own root, state and socket; CRI with runc (cgroupfs),
	# overlayfs, the Debian CNI plugins, the locally built pause image.
	local sock="$node/containerd/containerd.sock"
	cat >"$node/cni/net.d/10-strata.conflist" <<EOF
{
  "cniVersion": "1.0.0",
  "name": "strata-testenv",
  "plugins": [
    {
      "type": "bridge",
      "bridge": "$BRIDGE",
      "isGateway": true,
      "ipMasq": false,
      "hairpinMode": true,
      "ipam": {
        "type": "host-local",
        "dataDir": "$node/cni/ipam",
        "ranges": [[{ "subnet": "$POD_CIDR" }]],
        "routes": [
          { "dst": "$(cat "$node/service-cidr")" },
          { "dst": "$LINK_NET/$LINK_PREFIX" }
        ]
      }
    },
    { "type": "portmap", "capabilities": { "portMappings": true } }
  ]
}
EOF
	cat >"$node/containerd/config.toml" <<EOF
version = 2
root = "$node/containerd/root"
state = "$node/containerd/state"
[grpc]
  address = "$sock"
[ttrpc]
  address = "$sock.ttrpc"
[debug]
  address = ""
[metrics]
  address = ""
[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = "$PAUSE_IMAGE"
  restrict_oom_score_adj = true
  disable_apparmor = true
  disable_hugetlb_controller = true
  tolerate_missing_hugetlb_controller = true
  [plugins."io.containerd.grpc.v1.cri".containerd]
    snapshotter = "overlayfs"
    default_runtime_name = "runc"
    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
      [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]
        SystemdCgroup = false
        Root = "$node/containerd/runc"
  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = "/usr/lib/cni"
    conf_dir = "$node/cni/net.d"
EOF
	spawn containerd containerd --config "$node/containerd/config.toml"
	wait_for containerd "$node/containerd.pid" ctr --address "$sock" version

	local archive started=$SECONDS
	for archive in "$(pause_image)" "${images[@]}"; do
		[[ -s "$archive" ]] || die "image archive $archive not found"
		ctr --address "$sock" -n k8s.io images import --snapshotter overlayfs "$archive" >/dev/null ||
			die "could not import $archive"
	done
	log "imported $((${#images[@]} + 1)) image(s) in $((SECONDS - started)) s"

	# Identities: the kubelet as a node (Node authorizer), the other
	# components with testenv's admin token; certificates from testenv's CA.
	kubeconfig_for "$node/admin.kubeconfig" "$STRATA_TESTENV_ADMIN_TOKEN"
	kubeconfig_for "$node/kubelet.kubeconfig" "$(cat "$dir/node-token")"
	sign_cert kubelet "/CN=system:node:$NODE_NAME/O=system:nodes" \
		"basicConstraints=critical,CA:FALSE" "keyUsage=critical,digitalSignature" \
		"extendedKeyUsage=serverAuth" "subjectAltName=IP:$NODE_IP,DNS:$NODE_NAME"

	# The cgroups of every pod live under one parent per node, so stop can
	# find (and kill) whatever a container left behind.
	local cgroup_root="/strata-testenv-node" controller
	for controller in /sys/fs/cgroup/*/; do
		[[ -e "$controller/cgroup.procs" ]] && mkdir -p "$controller$cgroup_root"
	done
	cat >"$node/kubelet.yaml" <<EOF
apiVersion: kubelet.config.k8s.io/v1beta1
kind: KubeletConfiguration
address: $NODE_IP
port: 10250
readOnlyPort: 0
healthzBindAddress: 127.0.0.1
healthzPort: 10248
tlsCertFile: $node/pki/kubelet.crt
tlsPrivateKeyFile: $node/pki/kubelet.key
authentication:
  anonymous: {enabled: false}
  webhook: {enabled: true}
  x509: {clientCAFile: $certs/ca.crt}
authorization: {mode: Webhook}
cgroupDriver: cgroupfs
cgroupRoot: $cgroup_root
failCgroupV1: false
failSwapOn: false
containerRuntimeEndpoint: unix://$sock
enforceNodeAllocatable: []
localStorageCapacityIsolation: false
podLogsDir: $node/pod-logs
clusterDomain: cluster.local
resolvConf: ""
serializeImagePulls: false
evictionHard: {memory.available: "100Mi"}
imageGCHighThresholdPercent: 100
syncFrequency: 10s
fileCheckFrequency: 10s
rotateCertificates: false
EOF
	spawn kubelet "$bin/kubelet" \
		--config "$node/kubelet.yaml" \
		--kubeconfig "$node/kubelet.kubeconfig" \
		--root-dir "$node/kubelet" \
		--cert-dir "$node/pki" \
		--hostname-override "$NODE_NAME" \
		--node-ip "$NODE_IP" \
		--v 1
	spawn kube-proxy "$bin/kube-proxy" \
		--kubeconfig "$node/admin.kubeconfig" \
		--hostname-override "$NODE_NAME" \
		--proxy-mode iptables \
		--cluster-cidr "$POD_CIDR" \
		--conntrack-max-per-core 0 \
		--metrics-bind-address 127.0.0.1:10249 \
		--healthz-bind-address 127.0.0.1:10256
	spawn kube-scheduler "$bin/kube-scheduler" \
		--kubeconfig "$node/admin.kubeconfig" \
		--authentication-kubeconfig "$node/admin.kubeconfig" \
		--authorization-kubeconfig "$node/admin.kubeconfig" \
		--leader-elect=false \
		--bind-address 127.0.0.1 --secure-port 10259
	spawn kube-controller-manager "$bin/kube-controller-manager" \
		--kubeconfig "$node/admin.kubeconfig" \
		--authentication-kubeconfig "$node/admin.kubeconfig" \
		--authorization-kubeconfig "$node/admin.kubeconfig" \
		--service-account-private-key-file "$certs/sa.key" \
		--root-ca-file "$certs/ca.crt" \
		--use-service-account-credentials=false \
		--service-cluster-ip-range "$(cat "$node/service-cidr")" \
		--leader-elect=false \
		--bind-address 127.0.0.1 --secure-port 10257
	spawn local-provisioner "$bin/local-provisioner" \
		--kubeconfig "$node/admin.kubeconfig" \
		--node "$NODE_NAME" \
		--storage-class "$STORAGE_CLASS" \
		--root "$node/volumes"

	local kubectl=("$bin/kubectl" --kubeconfig "$node/admin.kubeconfig")
	wait_for "the node to be Ready" "$node/kubelet.pid" \
		"${kubectl[@]}" wait --for=condition=Ready "node/$NODE_NAME" --timeout=2s
	wait_for "the default ServiceAccount" "$node/kube-controller-manager.pid" \
		"${kubectl[@]}" get serviceaccount default -n default
	wait_for "kube-proxy" "$node/kube-proxy.pid" in_node curl -fsS http://127.0.0.1:10256/healthz
	log "node $NODE_NAME Ready ($NODE_IP, pods on $POD_CIDR)"
}

# --- stop ------------------------------------------------------------------------
# shellcheck source=testenv/lib.sh
source "$here/lib.sh"

stop_process() { # NAME [EXE]
	local name="$1" exe="${2:-$1}" pidfile="$node/$1.pid" pid until
	[[ -f "$pidfile" ]] || return 0
	pid="$(cat "$pidfile")"
	if alive "$pid" "$exe"; then
		kill -TERM "$pid" 2>/dev/null || true
		until=$((SECONDS + 15))
		while alive "$pid" "$exe" && ((SECONDS < until)); do sleep 0.1; done
		alive "$pid" "$exe" && kill -KILL "$pid" 2>/dev/null
	fi
	rm -f "$pidfile"
}

stop() {
	[[ -d "$node" ]] || return 0
	# Control loops first, so nothing recreates what is being removed.
	stop_process local-provisioner
	stop_process kube-controller-manager
	stop_process kube-scheduler
	stop_process kubelet
	stop_process kube-proxy
	# The pods' network namespaces, which CRI would remove when it stops a
	# sandbox: read from the containers' specs while containerd answers.
	local sock="$node/containerd/containerd.sock" pod_netns=()
	if [[ -S "$sock" ]]; then
		mapfile -t pod_netns < <(
			ctr --address "$sock" -n k8s.io containers list -q 2>/dev/null |
				while read -r id; do
					ctr --address "$sock" -n k8s.io containers info "$id" 2>/dev/null |
						grep -o '/var/run/netns/cni-[0-9a-f-]*' || true
				done | sort -u
		)
	fi
	# Every container of every pod: kill through runc, then whatever is left
	# in the node's cgroups (a container's children included).
	local runc_root="$node/containerd/runc/k8s.io" id
	if [[ -d "$runc_root" ]]; then
		for id in $(runc --root "$runc_root" list -q 2>/dev/null); do
			runc --root "$runc_root" kill -a "$id" KILL 2>/dev/null || true
		done
	fi
	local procs pid
	for procs in /sys/fs/cgroup/*/strata-testenv-node; do
		[[ -d "$procs" ]] || continue
		while read -r pid; do
			kill -KILL "$pid" 2>/dev/null || true
		done < <(find "$procs" -name cgroup.procs -exec cat {} + 2>/dev/null)
	done
	stop_process containerd
	# Shims outlive containerd; each names its socket address.
	pkill -KILL -f "containerd-shim-runc-v2 .*-address $node/containerd/containerd.sock" 2>/dev/null || true
	# Mounts the kubelet (volumes) and containerd (rootfs, shm) made.
	local mnt
	while read -r mnt; do
		umount -l "$mnt" 2>/dev/null || true
	done < <(awk -v p="$node/" 'index($5, p) == 1 { print $5 }' /proc/self/mountinfo | sort -r)
	# Empty cgroups, deepest first.
	for procs in /sys/fs/cgroup/*/strata-testenv-node; do
		[[ -d "$procs" ]] && find "$procs" -depth -type d -exec rmdir {} + 2>/dev/null
	done
	local ns
	for ns in "${pod_netns[@]}"; do
		ip netns del "$(basename "$ns")" 2>/dev/null || true
	done
	log "stopped the node in $dir"
}

network_down() {
	[[ -d "$node" ]] || return 0
	teardown_network
	if [[ -f "$node/lock-holder.pid" ]]; then
		kill "$(cat "$node/lock-holder.pid")" 2>/dev/null || true
		rm -f "$node/lock-holder.pid"
	fi
}

case "$command" in
network) network ;;
start) start ;;
stop) stop ;;
network-down) network_down ;;
esac
