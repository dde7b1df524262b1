#!/usr/bin/env bash
# Installs what building, running and testing Strata needs, when it is missing:
# PostgreSQL server binaries (for the local runtime and its tests), and checks
# for the Rust and Go toolchains. Safe to run again; does nothing when all is there.
set -euo pipefail

usage() {
  cat <<'USAGE'
Usage: scripts/deps.sh [-h|--help]

Installs missing system packages with apt-get (postgresql, openssl, curl,
shellcheck; containerd, runc, CNI plugins, iptables and iproute2 for
testenv's real node)
and fails with the install command when a toolchain (cargo, go) is missing.
USAGE
}

case "${1:-}" in
  -h|--help) usage; exit 0 ;;
  "") ;;
  *) usage >&2; exit 2 ;;
esac

have_postgres() {
  compgen -G '/usr/lib/postgresql/*/bin/postgres' >/dev/null || command -v postgres >/dev/null
}

missing=()
have_postgres || missing+=(postgresql)
command -v openssl >/dev/null || missing+=(openssl)
command -v curl >/dev/null || missing+=(curl)
command -v shellcheck >/dev/null || missing+=(shellcheck)
# testenv's real node (testenv/node.sh): containers, CNI, Service routing.
command -v containerd >/dev/null || missing+=(containerd)
command -v runc >/dev/null || missing+=(runc)
[[ -x /usr/lib/cni/bridge ]] || missing+=(containernetworking-plugins)
command -v iptables >/dev/null || missing+=(iptables)
command -v ip >/dev/null || missing+=(iproute2)

if ((${#missing[@]})); then
  echo "deps: installing ${missing[*]}" >&2
  sudo=()
  [[ $(id -u) -eq 0 ]] || sudo=(sudo)
  "${sudo[@]}" apt-get update -qq
  DEBIAN_FRONTEND=noninteractive "${sudo[@]}" apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
  # Debian starts a cluster of its own on install; Strata runs its own servers.
  "${sudo[@]}" systemctl disable --now postgresql >/dev/null 2>&1 || true
fi

command -v cargo >/dev/null || { echo "deps: cargo is missing; install Rust with rustup (https://rustup.rs)" >&2; exit 1; }
command -v go >/dev/null || { echo "deps: go is missing; install Go 1.25 or newer (apt-get install golang, or go.dev/dl)" >&2; exit 1; }
