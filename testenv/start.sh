#!/usr/bin/env bash
# Start etcd and kube-apiserver on free loopback ports for Strata's tests.
set -euo pipefail

usage() {
	cat <<'EOF'
Usage: testenv/start.sh [--help] [--dir DIR] [--bin-dir DIR] [--timeout SECONDS]
                        [--owner-pid PID] [--service-cidr CIDR]
                        [--node [--image ARCHIVE]...]

Starts etcd and kube-apiserver on free 127.0.0.1 ports, with RBAC on, static
token authentication and generated TLS and service-account keys; writes a
kubeconfig; waits until /readyz answers ok and the "default" namespace exists.
The processes keep running after this script exits: stop them with
testenv/stop.sh --dir DIR.

On success, stdout holds only KEY=VALUE lines (also written to DIR/env, which
a shell can source):

  STRATA_TESTENV_DIR                 the state directory
  KUBECONFIG                         kubeconfig; current context is the admin
  STRATA_TESTENV_SERVER              https://127.0.0.1:<port>
  STRATA_TESTENV_CA_FILE             CA certificate of the serving certificate
  STRATA_TESTENV_ADMIN_USER          admin user name (group system:masters)
  STRATA_TESTENV_ADMIN_TOKEN         its bearer token
  STRATA_TESTENV_USER                unprivileged user name (no RBAC grants)
  STRATA_TESTENV_USER_TOKEN          its bearer token
  STRATA_TESTENV_USER_CONTEXT        kubeconfig context of that user
  STRATA_TESTENV_ETCD_URL            http://127.0.0.1:<port>
  STRATA_TESTENV_KUBERNETES_VERSION  e.g. v1.35.4
  STRATA_TESTENV_BIN_DIR             directory with kube-apiserver, kubectl, etcd
  STRATA_TESTENV_ETCD_PID            process ids (also in DIR/*.pid)
  STRATA_TESTENV_APISERVER_PID

With --node, a real node runs beside the API server (testenv/node.sh):
containerd, kubelet, kube-proxy, kube-scheduler, kube-controller-manager
and a local volume provisioner in a network namespace of their own. The
API server then listens on the host end of the node's link (10.200.255.1)
instead of 127.0.0.1, runs the ServiceAccount admission plugin and the Node
authorizer, and these are printed too:

  STRATA_TESTENV_NODE_HOST_IP        10.200.255.1 (the API server's address)
  STRATA_TESTENV_NODE_IP             10.200.255.2 (the kubelet's)
  STRATA_TESTENV_POD_CIDR            10.200.0.0/24
  STRATA_TESTENV_NODE_NAME, STRATA_TESTENV_NODE_NETNS,
  STRATA_TESTENV_STORAGE_CLASS       the default StorageClass

Options:
  --dir DIR          state directory (created if missing; default: a new temp
                     directory). Must not contain whitespace.
  --bin-dir DIR      directory holding kube-apiserver and etcd (default:
                     $STRATA_TESTENV_BIN_DIR, else the output of testenv/build.sh,
                     which builds them on first use)
  --timeout SECONDS  deadline for both servers to become ready (default 90)
  --owner-pid PID    stop the servers when process PID exits (for test
                     fixtures that may be killed without running cleanup)
  --service-cidr CIDR
                     Service ClusterIP range, within 10.0.0.0/12 (default
                     10.0.0.0/24: ~250 Services; the 1,000-instance benchmark
                     needs more)
  --node             start a real node too (see above; needs root)
  --image ARCHIVE    with --node: an image archive (OCI or docker) to load
                     into the node's containerd; repeatable

Logs: DIR/etcd.log and DIR/kube-apiserver.log.
EOF
}

log() { echo "testenv/start.sh: $*" >&2; }
die() {
	log "$*"
	exit 1
}

dir=""
bin_dir="${STRATA_TESTENV_BIN_DIR:-}"
timeout=90
owner_pid=""
service_cidr="10.0.0.0/24"
with_node=0
images=()
while [[ $# -gt 0 ]]; do
	case "$1" in
	-h | --help)
		usage
		exit 0
		;;
	--dir)
		dir="${2:?--dir needs a value}"
		shift 2
		;;
	--bin-dir)
		bin_dir="${2:?--bin-dir needs a value}"
		shift 2
		;;
	--timeout)
		timeout="${2:?--timeout needs a value}"
		shift 2
		;;
	--owner-pid)
		owner_pid="${2:?--owner-pid needs a value}"
		shift 2
		;;
	--service-cidr)
		service_cidr="${2:?--service-cidr needs a value}"
		shift 2
		;;
	--node)
		with_node=1
		shift
		;;
	--image)
		images+=(--image "${2:?--image needs a value}")
		shift 2
		;;
	*)
		log "unknown argument '$1'"
		usage >&2
		exit 2
		;;
	esac
done
[[ "$timeout" =~ ^[0-9]+$ ]] || die "--timeout must be a number of seconds"
# The serving certificate names 10.0.0.1, the first address of the range.
[[ "$service_cidr" =~ ^10\.0\.0\.0/(1[2-9]|2[0-4])$ ]] || die "--service-cidr must be 10.0.0.0/12 ... 10.0.0.0/24"
if [[ -n "$owner_pid" ]]; then
	if [[ ! "$owner_pid" =~ ^[0-9]+$ ]] || ! kill -0 "$owner_pid" 2>/dev/null; then
		die "--owner-pid $owner_pid is not a running process"
	fi
fi

for tool in openssl curl; do
	command -v "$tool" >/dev/null || die "$tool is missing (Debian: apt-get install -y $tool)"
done

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
if [[ -z "$bin_dir" ]]; then
	bin_dir="$("$here/build.sh" | tail -n 1)"
fi
for b in etcd kube-apiserver; do
	[[ -x "$bin_dir/$b" ]] || die "$bin_dir/$b not found; run testenv/build.sh"
done

if [[ -z "$dir" ]]; then
	dir="$(mktemp -d "${TMPDIR:-/tmp}/strata-testenv.XXXXXX")"
fi
mkdir -p "$dir"
dir="$(cd "$dir" && pwd)"
[[ "$dir" =~ ^[^[:space:]\"\'\\]+$ ]] || die "state directory '$dir' must not contain whitespace or quotes"
for name in etcd kube-apiserver; do
	if [[ -f "$dir/$name.pid" ]] && kill -0 "$(cat "$dir/$name.pid")" 2>/dev/null; then
		die "$name from an earlier start is still running in $dir; run testenv/stop.sh --dir $dir"
	fi
done

begun=$SECONDS
deadline=$((SECONDS + timeout))
# The API server's address: loopback, or the host end of the node's link.
listen=127.0.0.1
node_vars=""
if [[ $with_node -eq 1 ]]; then
	[[ $(id -u) -eq 0 ]] || die "--node needs root (network namespaces, containers, mounts)"
	# The node takes longer: containerd, image import, kubelet registration.
	deadline=$((deadline + 120))
fi
ok=0
cleanup() {
	if [[ $ok -ne 1 ]]; then
		log "start failed; stopping what was started (logs stay in $dir)"
		"$here/stop.sh" --dir "$dir" >&2 || true
	fi
}
trap cleanup EXIT

if [[ $with_node -eq 1 ]]; then
	node_vars="$(STRATA_TESTENV_SERVICE_CIDR="$service_cidr" "$here/node.sh" network --dir "$dir" --timeout "$timeout")" ||
		die "could not set up the node's network"
	listen="$(awk -F= '$1 == "STRATA_TESTENV_NODE_HOST_IP" { print $2 }' <<<"$node_vars")"
fi

# --- Keys and certificates ---------------------------------------------------
certs="$dir/certs"
mkdir -p "$certs"
chmod 700 "$dir" "$certs"
(
	cd "$certs"
	openssl req -x509 -new -nodes -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 \
		-keyout ca.key -out ca.crt -days 3650 -subj "/CN=strata-testenv-ca" \
		-addext "basicConstraints=critical,CA:TRUE" \
		-addext "keyUsage=critical,keyCertSign,cRLSign" 2>/dev/null
	# kube-apiserver uses cert-dir/apiserver.{crt,key} when they exist.
	openssl req -new -nodes -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 \
		-keyout apiserver.key -out apiserver.csr -subj "/CN=kube-apiserver" 2>/dev/null
	printf '%s\n' \
		"basicConstraints=critical,CA:FALSE" \
		"keyUsage=critical,digitalSignature" \
		"extendedKeyUsage=serverAuth" \
		"subjectAltName=IP:127.0.0.1,IP:$listen,DNS:localhost,IP:10.0.0.1,DNS:kubernetes,DNS:kubernetes.default,DNS:kubernetes.default.svc" \
		>apiserver.ext
	openssl x509 -req -in apiserver.csr -CA ca.crt -CAkey ca.key -CAcreateserial \
		-days 3650 -extfile apiserver.ext -out apiserver.crt 2>/dev/null
	rm -f apiserver.csr apiserver.ext ca.srl
	# Service-account token signing key pair.
	openssl genpkey -algorithm RSA -pkeyopt rsa_keygen_bits:2048 -out sa.key 2>/dev/null
	openssl pkey -in sa.key -pubout -out sa.pub 2>/dev/null
	if [[ $with_node -eq 1 ]]; then
		# The API server's client certificate towards the kubelet.
		openssl req -new -nodes -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 \
			-keyout kubelet-client.key -out kubelet-client.csr \
			-subj "/CN=kube-apiserver-kubelet-client/O=system:masters" 2>/dev/null
		printf '%s\n' "basicConstraints=critical,CA:FALSE" "keyUsage=critical,digitalSignature" \
			"extendedKeyUsage=clientAuth" >kubelet-client.ext
		openssl x509 -req -in kubelet-client.csr -CA ca.crt -CAkey ca.key -CAcreateserial \
			-days 3650 -extfile kubelet-client.ext -out kubelet-client.crt 2>/dev/null
		rm -f kubelet-client.csr kubelet-client.ext ca.srl
	fi
	chmod 600 ./*.key
)

admin_user=strata-testenv-admin
admin_token="$(openssl rand -hex 32)"
user_name=strata-testenv-user
user_token="$(openssl rand -hex 32)"
# token,user,uid,"group1,group2"
printf '%s\n' \
	"$admin_token,$admin_user,$admin_user,\"system:masters\"" \
	"$user_token,$user_name,$user_name" >"$dir/tokens.csv"
if [[ $with_node -eq 1 ]]; then
	# The kubelet's identity: a node, authorised by the Node authorizer.
	openssl rand -hex 32 >"$dir/node-token"
	chmod 600 "$dir/node-token"
	echo "$(cat "$dir/node-token"),system:node:strata-node,system:node:strata-node,\"system:nodes\"" >>"$dir/tokens.csv"
fi
chmod 600 "$dir/tokens.csv"

# --- Ports -------------------------------------------------------------------
# Ports come from 20000-32767, below Linux's ephemeral range (32768-60999), so
# outgoing connections do not take them. A port is free when nothing accepts
# a connection on it; the race with other processes is handled by retrying.
taken=" "
pick_port() {
	local port
	for _ in $(seq 200); do
		port=$((20000 + (RANDOM * 32768 + RANDOM) % 12768))
		[[ "$taken" == *" $port "* ]] && continue
		if ! (: <"/dev/tcp/$listen/$port") 2>/dev/null; then
			taken+="$port "
			echo "$port"
			return 0
		fi
	done
	die "found no free port on 127.0.0.1"
}

# wait_until NAME PID LOG COMMAND...: poll COMMAND until it succeeds, the
# process dies (returns 1) or the deadline passes (exits).
wait_until() {
	local name="$1" pid="$2" logfile="$3"
	shift 3
	local delay=0.05
	while ! "$@" >/dev/null 2>&1; do
		if ! kill -0 "$pid" 2>/dev/null; then
			return 1
		fi
		if ((SECONDS >= deadline)); then
			log "$name not ready after ${timeout}s; last lines of $logfile:"
			tail -n 30 "$logfile" >&2 || true
			exit 1
		fi
		sleep "$delay"
		# Back off gently: fast first answers, little load while a cold start runs.
		[[ "$delay" == 0.05 ]] && delay=0.1 || delay=0.25
	done
}

address_in_use() { grep -q -i 'address already in use' "$1"; }

# --- etcd ----------------------------------------------------------------------
etcd_log="$dir/etcd.log"
for attempt in 1 2 3 4 5; do
	etcd_port="$(pick_port)"
	peer_port="$(pick_port)"
	etcd_url="http://127.0.0.1:$etcd_port"
	: >"$etcd_log"
	"$bin_dir/etcd" \
		--name strata-testenv \
		--data-dir "$dir/etcd" \
		--listen-client-urls "$etcd_url" \
		--advertise-client-urls "$etcd_url" \
		--listen-peer-urls "http://127.0.0.1:$peer_port" \
		--initial-advertise-peer-urls "http://127.0.0.1:$peer_port" \
		--initial-cluster "strata-testenv=http://127.0.0.1:$peer_port" \
		--unsafe-no-fsync \
		--log-level warn \
		</dev/null >>"$etcd_log" 2>&1 &
	etcd_pid=$!
	echo "$etcd_pid" >"$dir/etcd.pid"
	if wait_until etcd "$etcd_pid" "$etcd_log" curl -fsS "$etcd_url/health"; then
		break
	fi
	if address_in_use "$etcd_log" && [[ $attempt -lt 5 ]]; then
		log "etcd port taken meanwhile; retrying on other ports"
		rm -rf "$dir/etcd"
		continue
	fi
	tail -n 30 "$etcd_log" >&2 || true
	die "etcd exited during start-up (log: $etcd_log)"
done

# --- kube-apiserver --------------------------------------------------------------
api_log="$dir/kube-apiserver.log"
ca="$certs/ca.crt"
for attempt in 1 2 3 4 5; do
	api_port="$(pick_port)"
	server="https://$listen:$api_port"
	: >"$api_log"
	node_flags=(--disable-admission-plugins ServiceAccount --authorization-mode RBAC)
	if [[ $with_node -eq 1 ]]; then
		node_flags=(
			--authorization-mode "Node,RBAC"
			--kubelet-client-certificate "$certs/kubelet-client.crt"
			--kubelet-client-key "$certs/kubelet-client.key"
			--kubelet-certificate-authority "$certs/ca.crt"
			--kubelet-preferred-address-types InternalIP
		)
	fi
	"$bin_dir/kube-apiserver" \
		--etcd-servers "$etcd_url" \
		--cert-dir "$certs" \
		--secure-port "$api_port" \
		--bind-address "$listen" \
		--advertise-address "$listen" \
		--service-cluster-ip-range "$service_cidr" \
		--allow-privileged=true \
		"${node_flags[@]}" \
		--token-auth-file "$dir/tokens.csv" \
		--service-account-issuer https://kubernetes.default.svc.cluster.local \
		--service-account-key-file "$certs/sa.pub" \
		--service-account-signing-key-file "$certs/sa.key" \
		</dev/null >>"$api_log" 2>&1 &
	api_pid=$!
	echo "$api_pid" >"$dir/kube-apiserver.pid"
	if wait_until kube-apiserver "$api_pid" "$api_log" \
		curl -fsS --cacert "$ca" -H "Authorization: Bearer $admin_token" "$server/readyz"; then
		break
	fi
	if address_in_use "$api_log" && [[ $attempt -lt 5 ]]; then
		log "kube-apiserver port taken meanwhile; retrying on another port"
		continue
	fi
	tail -n 30 "$api_log" >&2 || true
	die "kube-apiserver exited during start-up (log: $api_log)"
done
# /readyz can answer before the bootstrap controller has created "default".
wait_until kube-apiserver "$api_pid" "$api_log" \
	curl -fsS --cacert "$ca" -H "Authorization: Bearer $admin_token" "$server/api/v1/namespaces/default" ||
	die "kube-apiserver exited after start-up (log: $api_log)"

# --- kubeconfig and env ------------------------------------------------------------
kubeconfig="$dir/kubeconfig"
cat >"$kubeconfig" <<EOF
apiVersion: v1
kind: Config
clusters:
- name: strata-testenv
  cluster:
    server: $server
    certificate-authority-data: $(base64 -w0 "$ca")
users:
- name: $admin_user
  user:
    token: $admin_token
- name: $user_name
  user:
    token: $user_token
contexts:
- name: strata-testenv
  context:
    cluster: strata-testenv
    user: $admin_user
    namespace: default
- name: strata-testenv-user
  context:
    cluster: strata-testenv
    user: $user_name
    namespace: default
current-context: strata-testenv
EOF
chmod 600 "$kubeconfig"

kube_version="$("$bin_dir/kube-apiserver" --version | awk '{ print $2 }')"
if [[ -n "$owner_pid" ]]; then
	# A watchdog in its own process group: waits for the owner to exit, then
	# becomes stop.sh (same pid, so stop.sh knows not to kill it).
	# shellcheck disable=SC2016 # the inner script expands its own arguments
	setsid bash -c 'tail --pid="$1" -f /dev/null; exec "$2" --dir "$3"' \
		strata-testenv-watchdog "$owner_pid" "$here/stop.sh" "$dir" \
		</dev/null >>"$dir/watchdog.log" 2>&1 &
	echo $! >"$dir/watchdog.pid"
fi

cat >"$dir/env" <<EOF
STRATA_TESTENV_DIR=$dir
KUBECONFIG=$kubeconfig
STRATA_TESTENV_SERVER=$server
STRATA_TESTENV_CA_FILE=$ca
STRATA_TESTENV_ADMIN_USER=$admin_user
STRATA_TESTENV_ADMIN_TOKEN=$admin_token
STRATA_TESTENV_USER=$user_name
STRATA_TESTENV_USER_TOKEN=$user_token
STRATA_TESTENV_USER_CONTEXT=strata-testenv-user
STRATA_TESTENV_ETCD_URL=$etcd_url
STRATA_TESTENV_KUBERNETES_VERSION=$kube_version
STRATA_TESTENV_BIN_DIR=$bin_dir
STRATA_TESTENV_ETCD_PID=$etcd_pid
STRATA_TESTENV_APISERVER_PID=$api_pid
EOF
chmod 600 "$dir/env"
if [[ $with_node -eq 1 ]]; then
	"$here/node.sh" start --dir "$dir" --timeout "$((deadline - SECONDS))" "${images[@]}" ||
		die "the node did not start (logs in $dir/node)"
	echo "$node_vars" >>"$dir/env"
fi
ok=1
log "kube-apiserver $kube_version ready at $server (etcd $etcd_url) in $((SECONDS - begun)) s; state in $dir"
cat "$dir/env"
