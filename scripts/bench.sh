#!/usr/bin/env bash
# Measures Strata in one run and writes docs/benchmarks.md (`make bench`).
set -euo pipefail

usage() {
    cat <<'EOF'
Usage: scripts/bench.sh [--out FILE] [--no-build] [--only serve|operator|node]
                        [--operator-args "ARGS"] [--node-args "ARGS"]
                        [-- STRATA-BENCH-SERVE-OPTIONS...]

Builds `strata` and `strata-bench` in release mode and runs three benchmarks.

serve: starts `strata serve` on a fresh temporary data directory with
loopback listeners on free ports, and runs `strata-bench serve` against it:
  1. create -> Ready latency over 20 sequential creates (p50, p95, max),
     then deletes them;
  2. GET /v1/projects/default/instances/{name} at 64 keep-alive connections,
     against Strata and against a bare axum handler returning the same bytes
     (requests/s, p50, p99, ratio), plus cheaper routes to show where the
     time goes;
  3. idle RSS of `strata serve` (without its PostgreSQL children).

operator: builds or reuses testenv (testenv/build.sh), starts a fresh
kube-apiserver + etcd on loopback (testenv/start.sh), installs the CRD
(`strata crd`), starts `strata operator` with testenv's admin kubeconfig and
its metrics on a free loopback port, and runs `strata-bench operator`:
1,000 PostgresInstances created at once; the time until steady state, the
operator's peak RSS, its reconciles per minute at rest, the API requests.

node (needs root): starts `strata serve` as for serve, and runs
`strata-bench node --strata-binary target/release/strata --local-url ...`,
which installs Strata on testenv's real node as the end-to-end test does
(scripts/images.sh with the release binary, testenv/start.sh --node, its own
PostgreSQL as the store, the Helm chart), then times 10 sequential
creates of a `micro` instance -> Ready on the node and 10 on the local
`strata serve` (p50, p95, their ratio), each deleted before the next; the
image sizes; the node's start and the chart's install time.

Prints the figures and writes them, with the goals and verdicts, to FILE
(default docs/benchmarks.md); each benchmark rewrites its own part, and
hand-written notes below the file's notes marker are kept. Everything the
script started is stopped and its temporary directories removed on exit,
whatever happens.

Options:
  --out FILE             Markdown file to write (default: docs/benchmarks.md)
  --no-build             Use the release binaries already in target/release
  --only serve|operator|node
                         Run one of the three benchmarks (default: all)
  --operator-args ARGS   Options for `strata-bench operator` (see its --help),
                         e.g. "--instances 100 --rest 10"
  --node-args ARGS       Options for `strata-bench node` (see its --help),
                         e.g. "--creates 3"
  -h, --help             This help
Anything after `--` goes to `strata-bench serve` (see `strata-bench serve --help`), e.g.
  scripts/bench.sh -- --creates 5 --duration 3 --rounds 1

Needs PostgreSQL server binaries (Debian: apt-get install postgresql), curl,
and Go for the first build of testenv (docs/testenv.md); the node benchmark
needs root, helm (deploy/test.sh --helm-path fetches it) and the images
(scripts/images.sh builds them on first use, docs/images.md).
EOF
}

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
out="$root/docs/benchmarks.md"
build=1
only=""
bench_args=()
operator_args=()
node_args=()
while [[ $# -gt 0 ]]; do
    case "$1" in
        -h | --help) usage; exit 0 ;;
        --out) out="${2:?--out needs a file}"; shift 2 ;;
        --no-build) build=0; shift ;;
        --only)
            only="${2:-}"
            if [[ "$only" != serve && "$only" != operator && "$only" != node ]]; then
                echo "bench.sh: --only takes serve, operator or node" >&2
                exit 2
            fi
            shift 2
            ;;
        --operator-args) read -r -a operator_args <<<"${2:-}"; shift 2 ;;
        --node-args) read -r -a node_args <<<"${2:-}"; shift 2 ;;
        --) shift; bench_args=("$@"); break ;;
        *) echo "bench.sh: unknown option $1 (see --help)" >&2; exit 2 ;;
    esac
done

cd "$root"
start_time=$SECONDS
if [[ $build -eq 1 ]]; then
    echo "==> cargo build --release --bin strata --bin strata-bench"
    cargo build --release --bin strata --bin strata-bench
fi
strata="$root/target/release/strata"
bench="$root/target/release/strata-bench"
for bin in "$strata" "$bench"; do
    [[ -x "$bin" ]] || { echo "bench.sh: $bin is missing; run without --no-build" >&2; exit 1; }
done

# A data dir under /tmp: the PostgreSQL user must be able to traverse its parents.
work="$(mktemp -d /tmp/strata-bench.XXXXXX)"
chmod 711 "$work"
server_pid=""
operator_pid=""
testenv_dir=""

# shellcheck source=scripts/serve-lib.sh
prog=bench.sh
. "$root/scripts/serve-lib.sh"

stop_operator_env() {
    stop_process "$operator_pid" "strata operator"
    operator_pid=""
    if [[ -n "$testenv_dir" ]]; then
        echo "==> stopping the test kube-apiserver and etcd"
        "$root/testenv/stop.sh" --dir "$testenv_dir" || true
        testenv_dir=""
    fi
}

cleanup() {
    local status=$?
    stop_server
    stop_operator_env
    if [[ $status -ne 0 ]]; then
        for log in "$work/strata.err" "$work/strata.log" "$work/operator.log"; do
            if [[ -s "$log" ]]; then
                echo "bench.sh: failed; last lines of $(basename "$log"):" >&2
                tail -n 20 "$log" >&2 || true
            fi
        done
    fi
    rm -rf "$work"
    echo "==> bench.sh took $((SECONDS - start_time)) s"
    exit "$status"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

commit="$(git rev-parse --short HEAD 2>/dev/null || echo unknown)"
if [[ -n "$(git status --porcelain --untracked-files=no -- crates Cargo.toml Cargo.lock 2>/dev/null)" ]]; then
    commit="$commit (with uncommitted changes)"
fi
mkdir -p "$(dirname "$out")"

run_serve_bench() {
    start_serve serve
    STRATA_ADMIN_PASSWORD="$server_password" "$bench" serve --url "$server_url" \
        --server-pid "$server_pid" --metrics-url "$server_metrics" \
        --commit "$commit" --out "$out" \
        ${bench_args[@]+"${bench_args[@]}"}
    stop_server
}

run_operator_bench() {
    local bin_dir kubeconfig kubectl port metrics
    echo "==> testenv/build.sh (cached after the first build)"
    bin_dir="$("$root/testenv/build.sh" | tail -n 1)"
    testenv_dir="$work/testenv"
    echo "==> starting kube-apiserver and etcd (state in $testenv_dir)"
    # 1,000 instances need 1,000 ClusterIPs: a /20 instead of testenv's /24.
    "$root/testenv/start.sh" --dir "$testenv_dir" --bin-dir "$bin_dir" --owner-pid $$ \
        --service-cidr 10.0.0.0/20 >/dev/null
    kubeconfig="$testenv_dir/kubeconfig"
    kubectl=("$bin_dir/kubectl" --kubeconfig "$kubeconfig")
    "$strata" crd | "${kubectl[@]}" apply -f - >/dev/null
    "${kubectl[@]}" wait --for=condition=Established --timeout=60s \
        crd/postgresinstances.strata.dev >/dev/null
    "${kubectl[@]}" create namespace strata-system >/dev/null

    port="$(free_port)"
    metrics="http://127.0.0.1:$port"
    echo "==> starting strata operator (metrics on $metrics)"
    KUBECONFIG="$kubeconfig" "$strata" operator --admin-listen "127.0.0.1:$port" \
        --lease-namespace strata-system --api-service-account strata-system/strata-api \
        --log-format text >"$work/operator.log" 2>&1 &
    operator_pid=$!
    local ready=0
    for _ in $(seq 1 600); do
        if ! kill -0 "$operator_pid" 2>/dev/null; then
            echo "bench.sh: strata operator exited during start-up" >&2
            exit 1
        fi
        if curl -fsS "$metrics/healthz" >/dev/null 2>&1; then
            ready=1
            break
        fi
        sleep 0.1
    done
    if [[ $ready -ne 1 ]]; then
        echo "bench.sh: strata operator did not answer $metrics/healthz in 60 s" >&2
        exit 1
    fi

    KUBECONFIG="$kubeconfig" "$bench" operator --operator-pid "$operator_pid" \
        --metrics-url "$metrics" --lease-namespace strata-system \
        --commit "$commit" --out "$out" ${operator_args[@]+"${operator_args[@]}"}
    stop_operator_env
}

run_node_bench() {
    local bin_dir
    echo "==> testenv/build.sh (cached after the first build)"
    bin_dir="$("$root/testenv/build.sh" | tail -n 1)"
    start_serve node-local
    # strata-bench starts the node (testenv/start.sh --node, --owner-pid: it
    # stops with the benchmark however that ends) and its own PostgreSQL.
    STRATA_TESTENV_BIN_DIR="$bin_dir" "$bench" node --strata-binary "$strata" \
        --local-url "$server_url" --local-password "$server_password" \
        --commit "$commit" --out "$out" ${node_args[@]+"${node_args[@]}"}
    stop_server
}

if [[ -z "$only" || "$only" == serve ]]; then
    run_serve_bench
fi
if [[ -z "$only" || "$only" == operator ]]; then
    run_operator_bench
fi
if [[ -z "$only" || "$only" == node ]]; then
    run_node_bench
fi
