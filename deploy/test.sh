#!/usr/bin/env bash
# Checks the Helm chart and the plain manifests (`make test-deploy`).
set -euo pipefail

HELM_MODULE="helm.sh/helm/v3"
HELM_VERSION="3.22.0"

usage() {
    cat <<'EOF'
Usage: deploy/test.sh [--help] [--helm-path]

Checks deploy/helm/strata and the plain manifests under deploy/:

  1. helm lint --strict, with the default and with non-default values;
  2. drift: the chart's CRD is deploy/crds/postgresinstances.strata.dev.yaml,
     and the rules of the rendered RBAC are those of deploy/rbac/*.yaml;
     every CEL function the CRD uses is in deploy/cel-versions.txt, and the
     chart's kubeVersion is at least the newest minimum among them;
  3. helm template with default values, with non-default values (names,
     namespace, replicas, watch namespace, Secrets, RBAC in the release
     namespace), with components turned off, and a missing required value
     failing with a message that names it;
  4. a fresh kube-apiserver + etcd from testenv/ (started and stopped by this
     script, on loopback): kubectl apply --dry-run=server of every rendering
     and of deploy/crds and deploy/rbac;
  5. the oldest Kubernetes the chart claims (its kubeVersion): a real
     kube-apiserver of that minor (testenv/oldest/go.mod, built by
     testenv/build.sh --oldest) accepts the CRD (server-side apply: its CEL
     rules compile) and every rendering (server-side dry-run), stores a valid
     PostgresInstance and refuses invalid ones with the CEL rules' messages;
     helm refuses to render for the minor below the claim.

helm is built from the Go module proxy on first use ($HELM_MODULE
v$HELM_VERSION) and cached under ${XDG_CACHE_HOME:-~/.cache}/strata/tools.

Options:
  --helm-path   Only build (or find) helm and print its path
  -h, --help    This help
EOF
}

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
# shellcheck source-path=SCRIPTDIR source=../infra/lib/tools.sh
source "$root/infra/lib/tools.sh"

# helm_binary prints the path of the cached helm, building it first if needed.
helm_binary() {
    strata_require_go || return 1
    local dir
    dir="$(strata_tools_dir)/helm-$HELM_VERSION"
    STRATA_GO_LDFLAGS="-X helm.sh/helm/v3/internal/version.version=v$HELM_VERSION" \
        _strata_build_once "$dir" helm \
        _strata_build_wrapped "$dir" helm "$HELM_MODULE" "v$HELM_VERSION" "$HELM_MODULE/cmd/helm" || return 1
    printf '%s\n' "$dir/helm"
}

case "${1:-}" in
    -h | --help) usage; exit 0 ;;
    --helm-path) helm_binary; exit 0 ;;
    "") ;;
    *) echo "deploy/test.sh: unknown argument '$1' (see --help)" >&2; exit 2 ;;
esac

passed=0
failed=0
ok() { echo "ok   $*"; passed=$((passed + 1)); }
fail() { echo "FAIL $*"; failed=$((failed + 1)); }
# quiet COMMAND...: runs COMMAND, shows its output only when it fails.
quiet() {
    local out
    if out="$("$@" 2>&1)"; then return 0; fi
    echo "$out" >&2
    return 1
}
# check DESCRIPTION COMMAND...: runs COMMAND, counts the outcome.
check() {
    local what="$1"
    shift
    if "$@"; then ok "$what"; else fail "$what"; fi
}

chart="$root/deploy/helm/strata"
work="$(mktemp -d "${TMPDIR:-/tmp}/strata-deploy-test.XXXXXX")"
testenv_dirs=()
cleanup() {
    local status=$?
    local dir
    for dir in "${testenv_dirs[@]}"; do
        "$root/testenv/stop.sh" --dir "$dir" || status=1
    done
    rm -rf "$work"
    exit "$status"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

helm="$(helm_binary)"
export HELM_CACHE_HOME="$work/helm/cache" HELM_CONFIG_HOME="$work/helm/config" HELM_DATA_HOME="$work/helm/data"
"$helm" version --short
# Render for the Kubernetes version testenv runs (the chart's kubeVersion
# constraint is checked against it).
kube_version="$("$root/testenv/build.sh" --versions | sed -n 's/^KUBERNETES_VERSION=//p')"
[[ -n "$kube_version" ]] || { echo "deploy/test.sh: testenv/build.sh --versions named no Kubernetes version" >&2; exit 1; }
template() { "$helm" template --kube-version "$kube_version" "$@"; }

# Non-default values: another release name and namespace, one operator
# watching one namespace with service events, a named admin-password Secret,
# no admin port on the Service, extra labels.
cat >"$work/custom-values.yaml" <<'EOF'
fullnameOverride: pg
logFormat: text
namespacePrefix: pg-
clusterDomain: k8s.example.internal
commonLabels:
  team: platform
image:
  repository: registry.example/strata
  tag: "1.2.3"
operator:
  replicas: 1
  watchNamespace: team-a
  monitoringNamespace: monitoring
  database:
    existingSecret: strata-store
    key: dsn
  metricsService:
    enabled: false
api:
  replicas: 3
  issuer: https://strata.example.com
  database:
    existingSecret: strata-store
    key: dsn
  adminPassword:
    existingSecret: strata-admin
  storeKey:
    existingSecret: strata-store-key
  service:
    type: LoadBalancer
    exposeAdmin: false
EOF

# --- 1. lint ---------------------------------------------------------------
check "helm lint --strict (default values)" quiet "$helm" lint --strict --kube-version "$kube_version" "$chart"
check "helm lint --strict (non-default values)" quiet "$helm" lint --strict --kube-version "$kube_version" "$chart" -f "$work/custom-values.yaml"

# --- 2. drift --------------------------------------------------------------
"$helm" show crds "$chart" >"$work/chart-crds.yaml"
check "the chart's CRD is deploy/crds/postgresinstances.strata.dev.yaml" \
    diff -u -B "$root/deploy/crds/postgresinstances.strata.dev.yaml" "$work/chart-crds.yaml"

# --- CEL: the Kubernetes version the CRD needs -----------------------------
# cel_used: every CEL function, transition rule (oldSelf) and rule field
# (fieldPath, reason) the CRD's validation rules use, one a line. String
# literals are dropped first ('small', a regular expression).
cel_used() {
    local crd="$root/deploy/crds/postgresinstances.strata.dev.yaml"
    {
        sed -n 's/^ *-\{0,1\} *rule: //p' "$crd" |
            sed -e "s/^'\(.*\)'\$/\1/" -e "s/''/'/g" -e "s/'[^']*'//g" |
            grep -oE "[A-Za-z_][A-Za-z0-9_]*\(|oldSelf" | tr -d '('
        if grep -qE '^ *-? *fieldPath: ' "$crd"; then echo fieldPath; fi
        if grep -qE '^ *-? *reason: FieldValue' "$crd"; then echo reason; fi
    } | sort -u
}
# version_le A B: Kubernetes minor A is at most B.
version_le() { [[ "$(printf '%s\n%s\n' "$1" "$2" | sort -V | head -n 1)" == "$1" ]]; }
cel_table="$root/deploy/cel-versions.txt"
cel_needed="1.0"
cel_unlisted=""
cel_count=0
while read -r name; do
    cel_count=$((cel_count + 1))
    minimum="$(awk -v n="$name" '!/^#/ && $1 == n { print $2 }' "$cel_table")"
    if [[ -z "$minimum" ]]; then
        cel_unlisted+=" $name"
    elif ! version_le "$minimum" "$cel_needed"; then
        cel_needed="$minimum"
    fi
done < <(cel_used)
chart_kube="$(sed -n 's/^kubeVersion: *">= *\([0-9]*\.[0-9]*\).*/\1/p' "$chart/Chart.yaml")"
check "the CRD's CEL rules are read ($cel_count names), each with a minimum version in deploy/cel-versions.txt${cel_unlisted:+ (missing:$cel_unlisted)}" \
    test "$cel_count" -gt 0 -a -z "$cel_unlisted"
check "the chart's kubeVersion (>=${chart_kube:-?}) is at least what the CRD's CEL needs ($cel_needed)" \
    version_le "$cel_needed" "${chart_kube:-0.0}"

# --- 3. template -----------------------------------------------------------
template strata "$chart" --namespace strata-system --include-crds >"$work/default.yaml"
template prod "$chart" --namespace strata-prod -f "$work/custom-values.yaml" >"$work/custom.yaml"
template strata "$chart" --namespace strata-system --set api.enabled=false --set rbac.create=false >"$work/operator-only.yaml"

# kinds FILE: "Kind/name" of every object, sorted.
kinds() { awk '/^kind:/ { k = $2 } /^  name:/ && k { print k "/" $2; k = "" }' "$1" | sort; }
# has FILE PATTERN: FILE contains a line matching PATTERN (grep -E).
has() { grep -Eq -- "$2" "$1"; }

expected_default="ClusterRole/strata-api
ClusterRole/strata-operator
ClusterRoleBinding/strata-api
ClusterRoleBinding/strata-operator
CustomResourceDefinition/postgresinstances.strata.dev
Deployment/strata-api
Deployment/strata-operator
Service/strata-api
Service/strata-operator-metrics
ServiceAccount/strata-api
ServiceAccount/strata-operator"
# Roles and RoleBindings of deploy/rbac/operator.yaml, renamed like the rest.
rolenames="$(awk '/^kind: (Role|RoleBinding)$/ { k = $2; next } /^  name:/ && k { print k "/" $2; k = "" }' \
    "$root/deploy/rbac/operator.yaml")"
expected_default="$(printf '%s\n%s\n' "$expected_default" "$rolenames" | sed '/^$/d' | sort)"
check "default values render the CRD, both Deployments, Services, ServiceAccounts and RBAC" \
    diff -u <(echo "$expected_default") <(kinds "$work/default.yaml")
check "default: the operator elects a leader in its namespace and serves metrics and probes" \
    bash -c "grep -q 'fieldPath: metadata.namespace' '$work/default.yaml' &&
        grep -q -- '--admin-listen=0.0.0.0:9090' '$work/default.yaml' &&
        grep -q 'path: /healthz' '$work/default.yaml' && grep -q 'replicas: 2' '$work/default.yaml'"
check "default: the API runs the Kubernetes runtime with the store URL from a Secret" \
    bash -c "grep -q -- '--runtime=kubernetes' '$work/default.yaml' &&
        grep -A4 'name: STRATA_DATABASE_URL' '$work/default.yaml' | grep -q 'name: strata-database' &&
        grep -q 'value: \"http://strata-api.strata-system.svc\"' '$work/default.yaml' &&
        grep -q 'path: /readyz' '$work/default.yaml'"
check "default: pods run as non-root with a read-only root filesystem and no capabilities" \
    bash -c "[[ \$(grep -c 'runAsNonRoot: true' '$work/default.yaml') -eq 2 &&
        \$(grep -c 'readOnlyRootFilesystem: true' '$work/default.yaml') -eq 2 &&
        \$(grep -c 'allowPrivilegeEscalation: false' '$work/default.yaml') -eq 2 ]]"
check "default: every ServiceAccount subject is in the release namespace" \
    bash -c "! grep -A3 'kind: ServiceAccount$' '$work/default.yaml' | grep 'namespace:' | grep -v 'namespace: strata-system'"

check "non-default: names, namespace, replicas and image follow the values" \
    bash -c "grep -q 'name: pg-operator$' '$work/custom.yaml' && grep -q 'name: pg-api$' '$work/custom.yaml' &&
        grep -q 'replicas: 3' '$work/custom.yaml' && grep -q 'image: registry.example/strata:1.2.3' '$work/custom.yaml' &&
        ! grep -q 'strata-system' '$work/custom.yaml' && grep -q 'team: platform' '$work/custom.yaml'"
check "non-default: RBAC subjects and Roles move to the release namespace" \
    bash -c "[[ \$(grep -c 'namespace: strata-prod' '$work/custom.yaml') -ge 6 ]] &&
        grep -B2 -A2 'kind: ServiceAccount$' '$work/custom.yaml' | grep -q 'name: pg-api'"
check "non-default: watch namespace, Secrets and Service type follow the values" \
    bash -c "grep -A1 'name: STRATA_WATCH_NAMESPACE' '$work/custom.yaml' | grep -q 'value: \"team-a\"' &&
        grep -A4 'name: STRATA_ADMIN_PASSWORD' '$work/custom.yaml' | grep -q 'name: strata-admin' &&
        grep -q 'key: dsn' '$work/custom.yaml' && grep -q 'type: LoadBalancer' '$work/custom.yaml' &&
        grep -q 'value: \"pg-\"' '$work/custom.yaml' && grep -q 'value: \"https://strata.example.com\"' '$work/custom.yaml' &&
        ! grep -q 'targetPort: admin' '$work/custom.yaml' && ! grep -q 'operator-metrics' '$work/custom.yaml'"
check "the operator grants the API's ServiceAccount its Secrets, per release" \
    bash -c "grep -A1 'name: STRATA_API_SERVICE_ACCOUNT' '$work/default.yaml' | grep -q 'value: \"strata-system/strata-api\"' &&
        grep -A1 'name: STRATA_API_SERVICE_ACCOUNT' '$work/custom.yaml' | grep -q 'value: \"strata-prod/pg-api\"' &&
        ! grep -q 'STRATA_API_SERVICE_ACCOUNT' '$work/operator-only.yaml'"
check "the store key Secret is mounted as a file only when named" \
    bash -c "grep -A1 'name: STRATA_STORE_KEY_FILE' '$work/custom.yaml' | grep -q 'value: /etc/strata-store-key/key' &&
        grep -A1 'secretName: strata-store-key' '$work/custom.yaml' | grep -q 'defaultMode: 0440' &&
        ! grep -q 'store-key' '$work/default.yaml'"
template strata "$chart" --namespace strata-system --set api.storeKey.allowUnsealed=true \
    --set 'api.trustedProxies={10.0.0.0/8,192.0.2.10}' >"$work/unsealed.yaml"
check "keys in clear only when asked, never beside a store key; trusted proxies only when named" \
    bash -c "grep -A1 'name: STRATA_ALLOW_UNSEALED_KEYS' '$work/unsealed.yaml' | grep -q 'value: \"true\"' &&
        ! grep -q 'STRATA_ALLOW_UNSEALED_KEYS' '$work/default.yaml' && ! grep -q 'STRATA_ALLOW_UNSEALED_KEYS' '$work/custom.yaml' &&
        grep -A1 'name: STRATA_TRUSTED_PROXIES' '$work/unsealed.yaml' | grep -q 'value: \"10.0.0.0/8,192.0.2.10\"' &&
        ! grep -q 'STRATA_TRUSTED_PROXIES' '$work/default.yaml'"
check "components off: only the operator's Deployment and Service, no RBAC, no CRD without --include-crds" \
    diff -u <(printf 'Deployment/strata-operator\nService/strata-operator-metrics\n') <(kinds "$work/operator-only.yaml")
# env_values FILE NAME: the value of every env var NAME in FILE, one a line.
env_values() { { grep -A1 -- "- name: $2\$" "$1" || true; } | sed -n 's/^ *value: //p'; }
check "default: API and operator take one namespace prefix, the operator the cluster domain" \
    diff -u <(printf '"strata-"\n"strata-"\n"cluster.local"\n') \
    <(env_values "$work/default.yaml" STRATA_NAMESPACE_PREFIX; env_values "$work/default.yaml" STRATA_CLUSTER_DOMAIN)
check "non-default: namespacePrefix and clusterDomain reach both components" \
    diff -u <(printf '"pg-"\n"pg-"\n"k8s.example.internal"\n') \
    <(env_values "$work/custom.yaml" STRATA_NAMESPACE_PREFIX; env_values "$work/custom.yaml" STRATA_CLUSTER_DOMAIN)
check "the metrics port is open to the monitoring namespace only when one is named" \
    diff -u <(echo '"monitoring"') \
    <(env_values "$work/default.yaml" STRATA_MONITORING_NAMESPACE; env_values "$work/custom.yaml" STRATA_MONITORING_NAMESPACE)
if template strata "$chart" --set api.database.existingSecret=x --set api.namespacePrefix=pg- >"$work/old-prefix.out" 2>&1; then
    fail "the API-only api.namespacePrefix is refused"
else
    check "the API-only api.namespacePrefix is refused, naming namespacePrefix" \
        grep -q "api.namespacePrefix is now namespacePrefix" "$work/old-prefix.out"
fi
if template strata "$chart" --set api.database.existingSecret= >"$work/missing.out" 2>&1; then
    fail "a missing store Secret is refused"
else
    check "a missing store Secret is refused, naming the value" grep -q "api.database.existingSecret" "$work/missing.out"
fi

# --- 4. against a real API server ------------------------------------------
bin_dir="$("$root/testenv/build.sh" | tail -n 1)"
# And the oldest claimed release's (section 5): built now, before any server runs.
oldest_bin_dir="$("$root/testenv/build.sh" --oldest | tail -n 1)"
testenv_dir="$work/testenv"
testenv_dirs+=("$testenv_dir")
"$root/testenv/start.sh" --dir "$testenv_dir" --bin-dir "$bin_dir" --owner-pid $$ >/dev/null
kubectl=("$bin_dir/kubectl" --kubeconfig "$testenv_dir/kubeconfig")
for ns in strata-system strata-prod; do
    "${kubectl[@]}" create namespace "$ns" >/dev/null
done

# The RBAC rules the chart renders are those of the files: compare the rules
# of each ClusterRole and Role, as the API server normalises them.
rules() {
    "${kubectl[@]}" apply --dry-run=server -o jsonpath='{range .items[*]}{.kind}{" "}{.rules}{"\n"}{end}' -f "$1" |
        grep -E '^(ClusterRole|Role) ' | sort
}
template strata "$chart" --namespace strata-system --show-only templates/rbac.yaml >"$work/rbac.yaml"
check "the chart's RBAC rules are deploy/rbac/*.yaml's" \
    diff -u <(cat "$root/deploy/rbac/operator.yaml" <(echo ---) "$root/deploy/rbac/api.yaml" >"$work/plain-rbac.yaml" && rules "$work/plain-rbac.yaml") \
    <(rules "$work/rbac.yaml")

check "kubectl apply --dry-run=server: default rendering" \
    quiet "${kubectl[@]}" apply --dry-run=server -f "$work/default.yaml"
check "kubectl apply --dry-run=server: non-default rendering" \
    quiet "${kubectl[@]}" apply --dry-run=server -f "$work/custom.yaml"
check "kubectl apply --dry-run=server: operator-only rendering" \
    quiet "${kubectl[@]}" apply --dry-run=server -f "$work/operator-only.yaml"
check "kubectl apply --dry-run=server: deploy/crds and deploy/rbac" \
    quiet "${kubectl[@]}" apply --dry-run=server -f "$root/deploy/crds" -f "$root/deploy/rbac"

# --- 5. against the oldest Kubernetes the chart claims -----------------------
# kubeVersion is a claim: prove it on a real API server of that minor (the
# newest patch of it), built from testenv/oldest/go.mod like testenv's own.
# kubectl is testenv's (v1.35): what is proven is what the server accepts.
# (Reading the CEL library's versions was not enough: v1.31.14 knows every
# function the CRD uses and still refused it, on its cost estimate.)
oldest_version="$("$root/testenv/build.sh" --oldest --versions | sed -n 's/^KUBERNETES_VERSION=//p')"
check "testenv/oldest pins the chart's oldest claimed minor ${chart_kube:-?}: Kubernetes $oldest_version" \
    test "${oldest_version%.*}" = "v${chart_kube:-none}"
oldest_dir="$work/testenv-oldest"
testenv_dirs+=("$oldest_dir")
"$root/testenv/start.sh" --dir "$oldest_dir" --bin-dir "$oldest_bin_dir" --owner-pid $$ >/dev/null
old=("$bin_dir/kubectl" --kubeconfig "$oldest_dir/kubeconfig")
served="$("${old[@]}" get --raw /version | sed -n 's/^ *"gitVersion": "\(.*\)",$/\1/p')"
check "the oldest API server reports $oldest_version (got ${served:-nothing})" test "$served" = "$oldest_version"

# helm checks kubeVersion against the version it renders for.
below="v${chart_kube%.*}.$((${chart_kube#*.} - 1)).0"
if "$helm" template --kube-version "$below" strata "$chart" >"$work/below.out" 2>&1; then
    fail "helm refuses to render for Kubernetes $below, below the claim"
else
    check "helm refuses to render for Kubernetes $below, below the claim" \
        grep -q "incompatible with Kubernetes $below" "$work/below.out"
fi
for values in default custom operator-only; do
    case "$values" in
        default) args=(strata "$chart" --namespace strata-system --include-crds) ;;
        custom) args=(prod "$chart" --namespace strata-prod -f "$work/custom-values.yaml") ;;
        operator-only) args=(strata "$chart" --namespace strata-system --set api.enabled=false --set rbac.create=false) ;;
    esac
    "$helm" template --kube-version "$oldest_version" "${args[@]}" >"$work/oldest-$values.yaml"
done
for ns in strata-system strata-prod strata-shop; do
    "${old[@]}" create namespace "$ns" >/dev/null
done
# Before the CRD exists: the dry-run of the default rendering creates it
# (CEL rules compiled) without storing it.
for values in default custom operator-only; do
    check "$oldest_version: kubectl apply --dry-run=server: $values rendering" \
        quiet "${old[@]}" apply --dry-run=server -f "$work/oldest-$values.yaml"
done
check "$oldest_version: kubectl apply --dry-run=server: deploy/crds and deploy/rbac" \
    quiet "${old[@]}" apply --dry-run=server -f "$root/deploy/crds" -f "$root/deploy/rbac"
# The real thing: a CRD whose rules do not compile is refused here.
crd_established() {
    "${old[@]}" apply --server-side --field-manager strata-deploy-test \
        -f "$root/deploy/crds/postgresinstances.strata.dev.yaml" &&
        "${old[@]}" wait --for condition=Established --timeout 60s crd/postgresinstances.strata.dev
}
check "$oldest_version: the CRD is created by server-side apply and becomes Established" quiet crd_established

# instance NAME SPEC: a PostgresInstance in strata-shop, as YAML.
instance() {
    printf 'apiVersion: strata.dev/v1alpha1\nkind: PostgresInstance\nmetadata:\n  name: %s\n  namespace: strata-shop\nspec:\n%s\n' "$1" "$2"
}
# ssa NAME SPEC: server-side apply of that instance to the oldest API server;
# the server's answer is in $work/ssa.out.
ssa() {
    instance "$1" "$2" >"$work/ssa.yaml"
    "${old[@]}" apply --server-side --field-manager strata-deploy-test -f "$work/ssa.yaml" >"$work/ssa.out" 2>&1
}
# stored NAME SPEC: the apply succeeds.
stored() { ssa "$@" || { cat "$work/ssa.out" >&2; return 1; }; }
# refused WHAT NAME SPEC MESSAGE: the apply fails, with MESSAGE in the answer.
refused() {
    local what="$1" message="$4" answer
    if ssa "$2" "$3"; then
        fail "$oldest_version refuses $what (it was stored)"
        return
    fi
    answer="$(grep -F -- "$message" "$work/ssa.out" | sed 's/^Error from server (Invalid): //' | head -n 1 || true)"
    if [[ -n "$answer" ]]; then
        ok "$oldest_version refuses $what: $answer"
    else
        cat "$work/ssa.out" >&2
        fail "$oldest_version refuses $what, naming '$message'"
    fi
}
valid="  version: \"16\"
  plan: micro
  storageGb: 5
  storageClass: fast
  externalAccess: true
  acl: [10.0.0.0/8, 192.168.1.0/24, \"2001:db8::/32\"]"
check "$oldest_version stores a valid PostgresInstance (IPv4 and IPv6 ACL, storageClass, externalAccess)" stored orders "$valid"
cidr_message="must be a CIDR block without host bits, such as 10.0.0.0/8"
# Both values pass the schema's pattern: only the CEL rule can refuse them.
refused "an ACL entry with host bits (isCIDR, cidr, masked)" host-bits \
    "${valid/10.0.0.0\/8/10.0.0.1/8}" "$cidr_message"
refused "an ACL entry that is no CIDR but passes the pattern (isCIDR)" not-cidr \
    "${valid/2001:db8::\/32/1:::2/64}" "$cidr_message"
refused "a storageClass change (oldSelf, fieldPath, reason)" orders \
    "${valid/storageClass: fast/storageClass: slow}" \
    "spec.storageClass: Forbidden: storageClass cannot be changed after creation"
check "$oldest_version kept storageClass fast after the refused change" \
    test "$("${old[@]}" -n strata-shop get postgresinstance orders -o jsonpath='{.spec.storageClass}')" = fast
refused "externalAccess without an ACL (has, size)" open-door \
    "  version: \"16\"
  plan: micro
  storageGb: 5
  externalAccess: true" "externalAccess needs at least one acl entry"
refused "a name of 41 characters (size, matches)" "$(printf 'a%.0s' {1..41})" \
    "  version: \"16\"
  plan: micro
  storageGb: 5" "metadata.name must be at most 40 characters"
check "$oldest_version stored only the valid instance" \
    test "$("${old[@]}" -n strata-shop get postgresinstances -o name)" = postgresinstance.strata.dev/orders

echo "$passed passed, $failed failed"
[[ $failed -eq 0 ]]
