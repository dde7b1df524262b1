#!/usr/bin/env bash
# Measures Strata in one run and writes docs/benchmarks.md (`make bench`).
set -euo pipefail

usage() {
    cat <<'EOF'
Usage: scripts/bench.sh [--out FILE] [--no-build] [-- STRATA-BENCH-OPTIONS...]

Builds `strata` and `strata-bench` in release mode, starts `strata serve` on a
fresh temporary data directory with loopback listeners on free ports, and runs
strata-bench against it, all in one run:

  1. create -> Ready latency over 20 sequential creates (p50, p95, max),
     then deletes them;
  2. GET /v1/projects/default/instances/{name} at 64 keep-alive connections,
     against Strata and against a bare axum handler returning the same bytes
     (requests/s, p50, p99, ratio), plus cheaper routes to show where the
     time goes;
  3. idle RSS of `strata serve` (without its PostgreSQL children).

Prints the figures and writes them, with the goals and verdicts, to FILE
(default docs/benchmarks.md); hand-written notes below the file's notes
marker are kept. The server and its PostgreSQL servers are stopped and the
data directory removed on exit, whatever happens.

Options:
  --out FILE    Markdown file to write (default: docs/benchmarks.md)
  --no-build    Use the release binaries already in target/release
  -h, --help    This help
Anything after `--` goes to strata-bench (see `strata-bench --help`), e.g.
  scripts/bench.sh -- --creates 5 --duration 3 --rounds 1

Needs PostgreSQL server binaries (Debian: apt-get install postgresql).
EOF
}

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
out="$root/docs/benchmarks.md"
build=1
bench_args=()
while [[ $# -gt 0 ]]; do
    case "$1" in
        -h | --help) usage; exit 0 ;;
        --out) out="$2"; shift 2 ;;
        --no-build) build=0; shift ;;
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

cleanup() {
    local status=$?
    if [[ -n "$server_pid" ]] && kill -0 "$server_pid" 2>/dev/null; then
        echo "==> stopping strata serve (pid $server_pid)"
        kill -TERM "$server_pid" 2>/dev/null || true
        for _ in $(seq 1 300); do
            kill -0 "$server_pid" 2>/dev/null || break
            sleep 0.1
        done
        if kill -0 "$server_pid" 2>/dev/null; then
            echo "bench.sh: strata serve did not stop in 30 s; killing it" >&2
            kill -KILL "$server_pid" 2>/dev/null || true
        fi
        wait "$server_pid" 2>/dev/null || true
    fi
    # PostgreSQL servers left behind (only if strata serve was SIGKILLed) hold
    # a postmaster.pid under the data dir: stop them by that pid, then remove all.
    if [[ -d "$work/data" ]]; then
        while IFS= read -r pidfile; do
            pg_pid="$(head -n1 "$pidfile" 2>/dev/null || true)"
            if [[ "$pg_pid" =~ ^[0-9]+$ ]] && kill -0 "$pg_pid" 2>/dev/null; then
                kill -INT "$pg_pid" 2>/dev/null || true
            fi
        done < <(find "$work/data" -name postmaster.pid 2>/dev/null)
    fi
    if [[ $status -ne 0 && -f "$work/strata.log" ]]; then
        echo "bench.sh: failed; last lines of the server's log:" >&2
        tail -n 20 "$work/strata.err" "$work/strata.log" >&2 || true
    fi
    rm -rf "$work"
    echo "==> bench.sh took $((SECONDS - start_time)) s"
    exit "$status"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

password="$(head -c 24 /dev/urandom | base64 | tr -d '/+=')"
export STRATA_ADMIN_PASSWORD="$password"
echo "==> starting strata serve (data dir under $work)"
"$strata" serve --data-dir "$work/data" --listen 127.0.0.1:0 --admin-listen 127.0.0.1:0 \
    >"$work/strata.log" 2>"$work/strata.err" &
server_pid=$!

url=""
for _ in $(seq 1 600); do
    if ! kill -0 "$server_pid" 2>/dev/null; then
        echo "bench.sh: strata serve exited during start-up" >&2
        exit 1
    fi
    url="$(sed -n 's/^Strata is serving on \(http:\/\/[0-9.:]*\).*/\1/p' "$work/strata.err" | head -n1)"
    [[ -n "$url" ]] && break
    sleep 0.1
done
if [[ -z "$url" ]]; then
    echo "bench.sh: strata serve did not start listening in 60 s" >&2
    exit 1
fi
echo "==> strata serve is listening on $url (pid $server_pid)"

commit="$(git rev-parse --short HEAD 2>/dev/null || echo unknown)"
if [[ -n "$(git status --porcelain --untracked-files=no -- crates Cargo.toml Cargo.lock 2>/dev/null)" ]]; then
    commit="$commit (with uncommitted changes)"
fi

mkdir -p "$(dirname "$out")"
"$bench" --url "$url" --server-pid "$server_pid" --commit "$commit" --out "$out" \
    ${bench_args[@]+"${bench_args[@]}"}
