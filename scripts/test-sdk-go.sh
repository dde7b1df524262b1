#!/usr/bin/env bash
# The Go SDK's checks (part of `make test`): gofmt, go vet, and go test
# against a real `strata serve` that the tests start themselves.
set -euo pipefail

usage() {
    cat <<'EOF_USAGE'
Usage: scripts/test-sdk-go.sh [--strata PATH] [-- GO-TEST-ARGS...]

Checks sdk/go (and its example modules under sdk/go/examples): gofmt
finds nothing to change, go vet and staticcheck (pinned, run from the Go
module proxy) are clean, and `go test ./...` passes. The
tests start `strata serve` themselves (loopback ports, a temporary data
directory, real PostgreSQL instances) from the binary in $STRATA_BIN,
which this script sets to --strata PATH or to target/debug/strata, built
with cargo first. Go modules come from the Go module proxy (the SDK needs
none; the quick-start example needs the pgx driver).

Options:
  --strata PATH   The strata binary (default: target/debug/strata, built with cargo)
  -h, --help      This help
Arguments after -- go to `go test` (e.g. -run TestFollowEvents -v).
EOF_USAGE
}

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
strata=""
extra=()
while [[ $# -gt 0 ]]; do
    case "$1" in
        -h | --help) usage; exit 0 ;;
        --strata) strata="${2:?--strata needs a path}"; shift 2 ;;
        --) shift; extra=("$@"); break ;;
        *) echo "test-sdk-go.sh: unknown option $1 (see --help)" >&2; exit 2 ;;
    esac
done
start_time=$SECONDS

if [[ -z "$strata" ]]; then
    echo "==> cargo build --locked --bin strata"
    (cd "$root" && cargo build --locked --bin strata)
    strata="$root/target/debug/strata"
fi
[[ -x "$strata" ]] || { echo "test-sdk-go.sh: $strata is not an executable" >&2; exit 1; }
strata="$(cd "$(dirname "$strata")" && pwd)/$(basename "$strata")"

export GOTOOLCHAIN=local GOFLAGS=-mod=readonly
staticcheck_version=v0.8.2
cd "$root/sdk/go"
echo "==> gofmt"
unformatted="$(gofmt -l .)"
if [[ -n "$unformatted" ]]; then
    echo "test-sdk-go.sh: gofmt would change these files:" >&2
    echo "$unformatted" >&2
    exit 1
fi
echo "==> go vet, staticcheck $staticcheck_version"
# staticcheck is a Go module, fetched and built once into Go's caches.
staticcheck=(env GOFLAGS= go run "honnef.co/go/tools/cmd/staticcheck@$staticcheck_version")
go vet ./...
"${staticcheck[@]}" ./...
for example in examples/*/; do
    (cd "$example" && go vet ./... && "${staticcheck[@]}" ./...)
done
echo "==> go test (strata serve from $strata)"
STRATA_BIN="$strata" go test -count=1 -timeout 15m "${extra[@]}" ./...
echo "==> test-sdk-go.sh took $((SECONDS - start_time)) s"
