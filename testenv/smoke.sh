#!/usr/bin/env bash
# Smoke test of testenv: a real kube-apiserver answers like Strata's tests need.
set -euo pipefail

usage() {
	cat <<'EOF'
Usage: testenv/smoke.sh [--help] [--keep]

Builds (or reuses) kube-apiserver, kubectl and etcd, starts them in a temp
directory, and checks what Strata's operator tests rely on: the pinned
version, a CRD that becomes Established, custom resources with a status
subresource and schema validation, a StatefulSet whose status is patched by
hand (no kubelet or controller-manager runs), RBAC for an unprivileged user,
token authentication, and a clean stop. Ends with "N passed, M failed" and
exits non-zero when a check failed.

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
		echo "smoke.sh: unknown argument '$arg'" >&2
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

dir="$(mktemp -d "${TMPDIR:-/tmp}/strata-testenv-smoke.XXXXXX")"
stopped=0
owner=""
finish() {
	if [[ -n "$owner" ]]; then
		kill "$owner" 2>/dev/null || true
	fi
	if [[ -d "$dir/second" ]]; then
		"$here/stop.sh" --dir "$dir/second" >/dev/null 2>&1 || true
	fi
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

started=$SECONDS
if ! "$here/start.sh" --dir "$dir" --bin-dir "$bin_dir" >"$dir/start.out"; then
	fail "start.sh brings up etcd and kube-apiserver"
	summary
	exit 1
fi
pass "start.sh brings up etcd and kube-apiserver ($((SECONDS - started)) s)"
# shellcheck source=/dev/null
source "$dir/env"
export KUBECONFIG

# expect NAME WANT COMMAND...: the command succeeds and prints exactly WANT.
expect() {
	local name="$1" want="$2" got
	shift 2
	if got="$("$@" 2>&1)" && [[ "$got" == "$want" ]]; then
		pass "$name"
	else
		fail "$name" "wanted: $want"$'\n'"got:    $got"
	fi
}
# expect_failure NAME PATTERN COMMAND...: the command fails and its output
# matches the extended regular expression PATTERN.
expect_failure() {
	local name="$1" pattern="$2" got
	shift 2
	if got="$("$@" 2>&1)"; then
		fail "$name" "succeeded, but should have failed:"$'\n'"$got"
	elif grep -Eq -- "$pattern" <<<"$got"; then
		pass "$name"
	else
		fail "$name" "failed without matching /$pattern/:"$'\n'"$got"
	fi
}
# running PID: the process exists and is not a zombie awaiting its reaper.
running() { [[ -d "/proc/$1" && "$(awk '{ print $3 }' "/proc/$1/stat" 2>/dev/null)" != Z ]]; }
as_user() { "$kubectl" --context "$STRATA_TESTENV_USER_CONTEXT" "$@"; }

# --- version ------------------------------------------------------------------
got="$("$kubectl" version 2>&1 || true)"
if grep -qx "Server Version: $KUBERNETES_VERSION" <<<"$got" &&
	grep -qx "Client Version: $KUBERNETES_VERSION" <<<"$got"; then
	pass "kubectl version reports $KUBERNETES_VERSION for client and server"
else
	fail "kubectl version reports $KUBERNETES_VERSION for client and server" "$got"
fi
expect "etcd reports $ETCD_VERSION" "${ETCD_VERSION#v}" \
	bash -c "'$bin_dir/etcd' --version | awk -F': ' '/^etcd Version/ { print \$2 }'"

# --- CRD with status subresource and validation --------------------------------
cat >"$dir/crd.yaml" <<'EOF'
apiVersion: apiextensions.k8s.io/v1
kind: CustomResourceDefinition
metadata:
  name: smokewidgets.testenv.strata.dev
spec:
  group: testenv.strata.dev
  scope: Namespaced
  names:
    plural: smokewidgets
    singular: smokewidget
    kind: SmokeWidget
  versions:
  - name: v1alpha1
    served: true
    storage: true
    subresources:
      status: {}
    additionalPrinterColumns:
    - name: Size
      type: integer
      jsonPath: .spec.size
    - name: Phase
      type: string
      jsonPath: .status.phase
    schema:
      openAPIV3Schema:
        type: object
        properties:
          spec:
            type: object
            required: [size]
            properties:
              size:
                type: integer
                minimum: 1
          status:
            type: object
            properties:
              phase:
                type: string
EOF
expect "the CRD is accepted" "customresourcedefinition.apiextensions.k8s.io/smokewidgets.testenv.strata.dev created" \
	"$kubectl" apply -f "$dir/crd.yaml"
expect "the CRD becomes Established" "customresourcedefinition.apiextensions.k8s.io/smokewidgets.testenv.strata.dev condition met" \
	"$kubectl" wait --for condition=Established --timeout 30s crd/smokewidgets.testenv.strata.dev

widget() {
	printf 'apiVersion: testenv.strata.dev/v1alpha1\nkind: SmokeWidget\nmetadata:\n  name: %s\nspec:\n  size: %s\n' "$1" "$2"
}
expect "a custom resource is created" "smokewidget.testenv.strata.dev/alpha created" \
	"$kubectl" apply -f <(widget alpha 3)
expect_failure "the CRD schema rejects an invalid spec" "should be greater than or equal to 1" \
	"$kubectl" apply -f <(widget broken 0)
expect "the status subresource accepts a status patch" "smokewidget.testenv.strata.dev/alpha patched" \
	"$kubectl" patch smokewidget alpha --subresource status --type merge -p '{"status":{"phase":"Ready"}}'
expect "the status is stored and generation stays 1" "Ready 1" \
	"$kubectl" get smokewidget alpha -o jsonpath='{.status.phase} {.metadata.generation}'
"$kubectl" patch smokewidget alpha --type merge -p '{"spec":{"size":5},"status":{"phase":"Bogus"}}' >/dev/null 2>&1 || true
expect "a patch of the main resource changes spec, bumps generation, ignores status" "5 2 Ready" \
	"$kubectl" get smokewidget alpha -o jsonpath='{.spec.size} {.metadata.generation} {.status.phase}'
expect "printer columns are served" "alpha 5 Ready" \
	bash -c "'$kubectl' get smokewidget alpha --no-headers | awk '{ print \$1, \$2, \$3 }'"

# --- StatefulSet without a kubelet ------------------------------------------------
cat >"$dir/sts.yaml" <<'EOF'
apiVersion: apps/v1
kind: StatefulSet
metadata:
  name: db
spec:
  replicas: 1
  serviceName: db
  selector:
    matchLabels: {app: db}
  template:
    metadata:
      labels: {app: db}
    spec:
      containers:
      - name: postgres
        image: postgres:17
EOF
expect "a StatefulSet is created" "statefulset.apps/db created" "$kubectl" apply -f "$dir/sts.yaml"
expect "no Pod appears (no controller-manager or kubelet runs)" "" \
	"$kubectl" get pods -o name
expect "the StatefulSet status subresource accepts a ready status" "statefulset.apps/db patched" \
	"$kubectl" patch statefulset db --subresource status --type merge \
	-p '{"status":{"observedGeneration":1,"replicas":1,"readyReplicas":1,"availableReplicas":1,"currentReplicas":1,"updatedReplicas":1}}'
expect "the StatefulSet reads back as ready" "1/1" \
	"$kubectl" get statefulset db -o jsonpath='{.status.readyReplicas}/{.spec.replicas}'

# --- authentication and RBAC -----------------------------------------------------
expect "the admin token authenticates as $STRATA_TESTENV_ADMIN_USER in system:masters" "$STRATA_TESTENV_ADMIN_USER system:masters" \
	bash -c "'$kubectl' auth whoami -o jsonpath='{.status.userInfo.username} {.status.userInfo.groups[0]}'"
expect_failure "RBAC denies the unprivileged user listing StatefulSets" "Forbidden|forbidden" \
	as_user get statefulsets
expect_failure "RBAC denies the unprivileged user creating a custom resource" "Forbidden|forbidden" \
	as_user apply -f <(widget beta 1)
code="$(curl -s -o /dev/null -w '%{http_code}' --cacert "$STRATA_TESTENV_CA_FILE" \
	-H "Authorization: Bearer not-a-valid-token" "$STRATA_TESTENV_SERVER/api")"
if [[ "$code" == 401 ]]; then
	pass "an unknown token is rejected with 401"
else
	fail "an unknown token is rejected with 401" "got HTTP $code"
fi
"$kubectl" create role sts-reader --verb get,list --resource statefulsets.apps >/dev/null
"$kubectl" create rolebinding sts-reader --role sts-reader --user "$STRATA_TESTENV_USER" >/dev/null
expect "a RoleBinding lets the user list StatefulSets" "statefulset.apps/db" \
	as_user get statefulsets -o name
expect_failure "but not delete them" "Forbidden|forbidden" \
	as_user delete statefulset db

# --- a second environment, tied to an owner process -------------------------------
# Tests run in parallel, each with its own environment; a fixture passes its
# own pid as --owner-pid so that a killed test run leaves nothing behind.
sleep 600 &
owner=$!
dir2="$dir/second"
if "$here/start.sh" --dir "$dir2" --bin-dir "$bin_dir" --owner-pid "$owner" >"$dir/start2.out" 2>&1; then
	pass "a second environment starts beside the first"
	expect_failure "the second environment has its own etcd (no CRD there)" "NotFound" \
		"$kubectl" --kubeconfig "$dir2/kubeconfig" get crd smokewidgets.testenv.strata.dev
	api2="$(cat "$dir2/kube-apiserver.pid")"
	etcd2="$(cat "$dir2/etcd.pid")"
	kill "$owner"
	wait "$owner" 2>/dev/null || true
	gone_by=$((SECONDS + 30))
	while [[ -f "$dir2/kube-apiserver.pid" || -f "$dir2/etcd.pid" ]] && ((SECONDS < gone_by)); do
		sleep 0.2
	done
	if [[ ! -f "$dir2/kube-apiserver.pid" && ! -f "$dir2/etcd.pid" ]] && ! running "$api2" && ! running "$etcd2"; then
		pass "the second environment stops by itself when its owner process exits"
	else
		fail "the second environment stops by itself when its owner process exits" "$(cat "$dir2/watchdog.log" 2>/dev/null)"
		"$here/stop.sh" --dir "$dir2" >/dev/null 2>&1 || true
	fi
else
	fail "a second environment starts beside the first" "$(cat "$dir/start2.out")"
	kill "$owner" 2>/dev/null || true
fi

# --- stop ---------------------------------------------------------------------------
if "$here/stop.sh" --dir "$dir" 2>/dev/null; then
	stopped=1
	pass "stop.sh stops the environment"
else
	fail "stop.sh stops the environment"
fi
left=""
for pid in "$STRATA_TESTENV_APISERVER_PID" "$STRATA_TESTENV_ETCD_PID"; do
	if running "$pid"; then
		left+="$pid: $(tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null)"$'\n'
	fi
done
# Any other process still using the state directory (pgrep only reads).
while read -r pid; do
	[[ -n "$pid" && "$pid" != "$$" ]] && left+="$pid: $(tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null)"$'\n'
done < <(pgrep -f -- "--data-dir $dir/|--cert-dir $dir/" || true)
if [[ -z "$left" ]]; then
	pass "no etcd or kube-apiserver process is left"
else
	fail "no etcd or kube-apiserver process is left" "$left"
fi
if ! curl -s -o /dev/null --max-time 5 --cacert "$STRATA_TESTENV_CA_FILE" "$STRATA_TESTENV_SERVER/readyz"; then
	pass "the API port is closed"
else
	fail "the API port is closed" "$STRATA_TESTENV_SERVER still answers"
fi

summary
