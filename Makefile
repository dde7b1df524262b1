# Strata — the two commands are `make run` and `make test`.
SHELL := /usr/bin/env bash
.SHELLFLAGS := -euo pipefail -c

CARGO ?= cargo

.PHONY: run test bench deps lint test-rust test-fuzz test-sdk-go test-testenv test-infra test-deploy openapi check-openapi images

## run: start Strata (`strata serve`) with its embedded defaults
run: deps
	$(CARGO) run --release --bin strata -- serve

## test: every check CI runs
test: deps lint check-openapi test-rust test-fuzz test-sdk-go test-testenv test-infra test-deploy

deps:
	scripts/deps.sh

lint:
	$(CARGO) fmt --all --check
	$(CARGO) clippy --workspace --all-targets --locked -- -D warnings
	shellcheck scripts/*.sh testenv/*.sh
	cd testenv && GOTOOLCHAIN=local GOFLAGS=-mod=readonly go vet ./cmd/...

## openapi: regenerate the committed OpenAPI document
openapi:
	$(CARGO) run -q --locked --bin strata -- openapi > api/openapi.json

check-openapi:
	@tmp=$$(mktemp); $(CARGO) run -q --locked --bin strata -- openapi > "$$tmp"; \
	if ! diff -u api/openapi.json "$$tmp"; then \
	  echo "api/openapi.json is stale: run 'make openapi' and commit it" >&2; rm -f "$$tmp"; exit 1; fi; \
	rm -f "$$tmp"; echo "api/openapi.json matches the code"

# The operator's tests run against a real kube-apiserver built from Go modules
# (cached after the first build; see docs/testenv.md); the end-to-end test on
# testenv's real node builds the container images around the binary under test
# (docs/images.md) and installs the chart with helm (built once by deploy/test.sh).
test-rust:
	bin_dir=$$(testenv/build.sh | tail -n 1); \
	deploy/test.sh --helm-path >/dev/null; \
	STRATA_TESTENV_BIN_DIR="$$bin_dir" $(CARGO) test --workspace --locked

# The API as a contract: schemathesis (pinned, from PyPI) against a real
# `strata serve`, every check but use-after-free (docs/api-contract.md), every phase, a fixed seed.
test-fuzz:
	scripts/fuzz-api.sh

# The Go SDK: gofmt, go vet, staticcheck, and go test against a real `strata serve` that
# the tests start; every operation of the document, retries behind a proxy
# that answers 503 first, the event stream's reconnection, the README's
# quick start over TLS (docs/sdk.md).
test-sdk-go:
	scripts/test-sdk-go.sh

test-testenv:
	testenv/smoke.sh
	testenv/node-smoke.sh

test-infra:
	infra/test.sh

# The Helm chart and the plain manifests, rendered and dry-run applied
# against a real API server from testenv (see docs/deploy.md).
test-deploy:
	shellcheck -x deploy/test.sh
	deploy/test.sh

## images: build the container images and save them as archives (docs/images.md)
images:
	scripts/images.sh

## bench: measure and write docs/benchmarks.md
bench: deps
	scripts/bench.sh
