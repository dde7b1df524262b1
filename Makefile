# Strata — the two commands are `make run` and `make test`.
SHELL := /usr/bin/env bash
.SHELLFLAGS := -euo pipefail -c

.PHONY: run test bench deps test-rust test-infra

## run: start Strata (`strata serve`) with its embedded defaults
run: deps
	cargo run --release --bin strata -- serve

## test: every check CI runs
test: deps test-rust test-infra

test-infra:
	infra/test.sh

## bench: measure and write docs/benchmarks.md
bench: deps
	scripts/bench.sh
