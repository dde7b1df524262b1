#!/usr/bin/env bash
# The API fuzzer: schemathesis against a real `strata serve` (part of `make test`).
set -euo pipefail

usage() {
    cat <<'EOF'
Usage: scripts/fuzz-api.sh [--strata PATH] [--seed N] [--max-time SECONDS]
                           [--report-dir DIR]

Starts `strata serve` on a fresh temporary data directory (loopback only,
real PostgreSQL instances), signs in as its platform admin, and runs
schemathesis over the document the server serves at /openapi.json with
every check and every phase (examples, coverage, fuzzing, and the stateful
phase that follows the document's links). Exits non-zero on any failure.

schemathesis and everything it needs come from PyPI at the versions pinned
in api/fuzz/requirements.txt, installed once into a virtual environment in
<tools>/schemathesis-<version>-<hash of the pins>, where <tools> is
$STRATA_TOOLS_DIR, by default ${XDG_CACHE_HOME:-$HOME/.cache}/strata/tools.

The run is reproducible: the seed is fixed (1 unless --seed or
$STRATA_FUZZ_SEED says otherwise) and printed, and the reports (NDJSON
events, JUnit, a VCR cassette of every request and response) are kept in
the report directory. `st replay <id>` inside api/fuzz replays a failure
against a server started the same way (docs/api-contract.md).

Options:
  --strata PATH      The strata binary (default: target/debug/strata, built
                     with cargo when missing)
  --seed N           Seed of the generated requests (default 1)
  --max-time S       Time budget of the fuzzing and stateful phases (default 120)
  --report-dir DIR   Where the reports go (default: target/api-fuzz)
  -h, --help         This help
EOF
}

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
strata=""
seed="${STRATA_FUZZ_SEED:-1}"
max_time=120
report_dir="$root/target/api-fuzz"
while [[ $# -gt 0 ]]; do
    case "$1" in
        -h | --help) usage; exit 0 ;;
        --strata) strata="${2:?--strata needs a path}"; shift 2 ;;
        --seed) seed="${2:?--seed needs a number}"; shift 2 ;;
        --max-time) max_time="${2:?--max-time needs seconds}"; shift 2 ;;
        --report-dir) report_dir="${2:?--report-dir needs a directory}"; shift 2 ;;
        *) echo "fuzz-api.sh: unknown option $1 (see --help)" >&2; exit 2 ;;
    esac
done
[[ "$seed" =~ ^[0-9]+$ ]] || { echo "fuzz-api.sh: --seed takes a number" >&2; exit 2; }
[[ "$max_time" =~ ^[0-9]+$ ]] || { echo "fuzz-api.sh: --max-time takes seconds" >&2; exit 2; }
cd "$root"
start_time=$SECONDS

# --- schemathesis, pinned, in a cached virtual environment -------------------
pins="$root/api/fuzz/requirements.txt"
version="$(sed -n 's/^schemathesis==//p' "$pins")"
pins_hash="$(grep -v '^#' "$pins" | sha256sum | cut -c1-12)"
tools="${STRATA_TOOLS_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/strata/tools}"
venv="$tools/schemathesis-$version-$pins_hash"
mkdir -p "$tools"
(
    flock 9
    if [[ ! -f "$venv/.installed" ]]; then
        echo "==> installing schemathesis $version into $venv (once)"
        rm -rf "$venv"
        python3 -m venv "$venv"
        "$venv/bin/pip" install --quiet --disable-pip-version-check --no-deps -r "$pins"
        "$venv/bin/pip" check >/dev/null
        touch "$venv/.installed"
    fi
) 9>"$venv.lock"

# --- the server under test ---------------------------------------------------
if [[ -z "$strata" ]]; then
    strata="$root/target/debug/strata"
    if [[ ! -x "$strata" ]]; then
        echo "==> cargo build --bin strata"
        cargo build --locked --bin strata
    fi
fi
[[ -x "$strata" ]] || { echo "fuzz-api.sh: $strata is not an executable" >&2; exit 1; }

# A data dir under /tmp: the PostgreSQL user must be able to traverse its parents.
work="$(mktemp -d /tmp/strata-fuzz.XXXXXX)"
chmod 711 "$work"
prog=fuzz-api.sh
# shellcheck source=scripts/serve-lib.sh
. "$root/scripts/serve-lib.sh"

# shellcheck disable=SC2317 # run by the EXIT trap
cleanup() {
    local status=$?
    stop_server
    if [[ $status -ne 0 && -s "$work/strata.err" ]]; then
        echo "fuzz-api.sh: last lines of the server's log:" >&2
        tail -n 20 "$work/strata.err" >&2 || true
    fi
    rm -rf "$work"
    echo "==> fuzz-api.sh took $((SECONDS - start_time)) s"
    exit "$status"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

start_serve fuzz --log-format text
token="$(curl -fsS "$server_url/v1/auth/token" -H 'content-type: application/json' \
    -d "{\"username\":\"admin\",\"password\":\"$server_password\"}" |
    python3 -c 'import json, sys; print(json.load(sys.stdin)["access_token"])')"

# --- the run -----------------------------------------------------------------
rm -rf "$report_dir"
mkdir -p "$report_dir"
echo "==> schemathesis $version against $server_url/openapi.json (seed $seed, reports in $report_dir)"
status=0
# use_after_free is left out: deleting an instance is asynchronous (202) and
# the instance stays readable with phase Deleting until its data is gone, so
# a read right after the DELETE is rightly a 200 (docs/api-contract.md). The
# other deletes answer 204 and are checked by crates/api's tests.
(
    cd "$root/api/fuzz"
    "$venv/bin/st" --config-file schemathesis.toml run "$server_url/openapi.json" \
        --header "Authorization: Bearer $token" \
        --checks all --exclude-checks use_after_free --seed "$seed" --max-time "$max_time" --workers 2 \
        --report junit,ndjson,vcr --report-dir "$report_dir" \
        --output-truncate true
) || status=$?
if [[ $status -ne 0 ]]; then
    echo "fuzz-api.sh: the fuzzer found failures (seed $seed); reports in $report_dir" >&2
fi
exit "$status"
