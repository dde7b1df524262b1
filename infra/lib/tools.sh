# shellcheck shell=bash
# Strata infrastructure tooling: builds Terraform providers (and, when no
# `terraform` is installed, OpenTofu) from the Go module proxy, caches them per
# machine and serves the providers to Terraform through a filesystem mirror.
#
# Source this file; it defines functions only. Versions are pinned here and
# nowhere else, so that a bump is one reviewed line.

STRATA_OPENSTACK_PROVIDER_MODULE="github.com/terraform-provider-openstack/terraform-provider-openstack/v3"
STRATA_OPENSTACK_PROVIDER_VERSION="3.4.0"
STRATA_STACKIT_PROVIDER_MODULE="github.com/stackitcloud/terraform-provider-stackit"
STRATA_STACKIT_PROVIDER_VERSION="0.93.0"
STRATA_OPENTOFU_MODULE="github.com/opentofu/opentofu"
STRATA_OPENTOFU_VERSION="1.10.10"
# tflint bundles its "terraform" ruleset; no OpenStack or STACKIT ruleset is
# published as a Go module (the proxy has none), so those are not used.
STRATA_TFLINT_MODULE="github.com/terraform-linters/tflint"
STRATA_TFLINT_VERSION="0.64.0"
# checkov's version and its dependencies are pinned in infra/tests/checkov-requirements.txt.

strata_log() { printf '[infra] %s\n' "$*" >&2; }

strata_tools_dir() {
  printf '%s/strata/tools\n' "${XDG_CACHE_HOME:-$HOME/.cache}"
}

strata_require_go() {
  if ! command -v go >/dev/null 2>&1; then
    strata_log "Go is required to build the Terraform providers: install it (apt-get install golang-go, or the Go release the project uses) and retry"
    return 1
  fi
}

# strata_platform prints Terraform's name for this platform, e.g. linux_amd64.
strata_platform() {
  printf '%s_%s\n' "$(go env GOOS)" "$(go env GOARCH)"
}

# _strata_build_once DIR BINARY CMD...: runs CMD (which must leave BINARY in
# "$DIR.tmp") unless DIR/BINARY exists; the result is moved into place
# atomically and the elapsed seconds are written to DIR/build-seconds.
_strata_build_once() {
  local dir=$1 binary=$2
  shift 2
  if [[ -x "$dir/$binary" ]]; then
    return 0
  fi
  mkdir -p "$(dirname "$dir")"
  local lock="$dir.lock"
  exec {lockfd}>"$lock"
  flock "$lockfd"
  if [[ ! -x "$dir/$binary" ]]; then
    local start=$SECONDS
    rm -rf "$dir.tmp"
    mkdir -p "$dir.tmp"
    strata_log "building $binary (first run on this machine; cached in $dir)"
    if ! "$@"; then
      exec {lockfd}>&-
      rm -rf "$dir.tmp"
      strata_log "build of $binary failed"
      return 1
    fi
    printf '%s\n' "$((SECONDS - start))" >"$dir.tmp/build-seconds"
    rm -rf "$dir"
    mv "$dir.tmp" "$dir"
    strata_log "built $binary in $((SECONDS - start))s"
  fi
  exec {lockfd}>&-
}

# _strata_build_wrapped DIR BINARY MODULE VERSION PACKAGE [REPLACE]: builds
# PACKAGE from a generated wrapper module that requires MODULE at VERSION.
# A wrapper (rather than `go install PACKAGE@VERSION`) is needed because the
# proxy does not list every module's versions, which `go install` asks for,
# and because OpenTofu's own replace directive must be repeated by its users.
_strata_build_wrapped() {
  local dir=$1 binary=$2 module=$3 version=$4 package=$5 replace=${6:-}
  local wrap="$dir.tmp/wrapper"
  mkdir -p "$wrap"
  {
    printf 'module strata.invalid/build-%s\n\ngo 1.24\n\nrequire %s %s\n' "$binary" "$module" "$version"
    [[ -z $replace ]] || printf '\nreplace %s\n' "$replace"
  } >"$wrap/go.mod"
  (
    cd "$wrap" &&
      GOFLAGS="${GOFLAGS:-} -mod=mod -trimpath" go build \
        -ldflags "-s -w ${STRATA_GO_LDFLAGS:-}" -o "$dir.tmp/$binary" "$package"
  ) || return 1
  rm -rf "$wrap"
}

# strata_provider_binary NAME prints the path of the cached provider binary,
# building it first if needed. NAME is openstack or stackit.
strata_provider_binary() {
  local name=$1 module version
  case $name in
    openstack)
      module=$STRATA_OPENSTACK_PROVIDER_MODULE
      version=$STRATA_OPENSTACK_PROVIDER_VERSION
      ;;
    stackit)
      module=$STRATA_STACKIT_PROVIDER_MODULE
      version=$STRATA_STACKIT_PROVIDER_VERSION
      ;;
    *)
      strata_log "unknown provider: $name"
      return 1
      ;;
  esac
  strata_require_go || return 1
  local dir binary
  dir="$(strata_tools_dir)/terraform-provider-$name-$version"
  binary="terraform-provider-$name"
  _strata_build_once "$dir" "$binary" \
    _strata_build_wrapped "$dir" "$binary" "$module" "v$version" "$module" || return 1
  printf '%s\n' "$dir/$binary"
}

# _strata_build_tofu DIR: OpenTofu's go.mod replaces hashicorp/hcl/v2 with its
# own fork; the wrapper carries the same replace, read from the release's go.mod.
_strata_build_tofu() {
  local dir=$1 gomod replace
  gomod=$(go mod download -json "$STRATA_OPENTOFU_MODULE@v$STRATA_OPENTOFU_VERSION" |
    sed -n 's/^[[:space:]]*"GoMod": "\(.*\)",$/\1/p')
  replace=$(sed -n 's#^replace \(github.com/hashicorp/hcl/v2\) [^=]*=> \(github.com/opentofu/hcl/v2 [^[:space:]]*\)$#\1 => \2#p' "$gomod")
  if [[ -z $replace ]]; then
    strata_log "could not find the hcl/v2 replace in OpenTofu's go.mod ($gomod)"
    return 1
  fi
  STRATA_GO_LDFLAGS="-X $STRATA_OPENTOFU_MODULE/version.dev=no" \
    _strata_build_wrapped "$dir" tofu "$STRATA_OPENTOFU_MODULE" "v$STRATA_OPENTOFU_VERSION" \
    "$STRATA_OPENTOFU_MODULE/cmd/tofu" "$replace"
}

strata_tofu_binary() {
  strata_require_go || return 1
  local dir
  dir="$(strata_tools_dir)/opentofu-$STRATA_OPENTOFU_VERSION"
  _strata_build_once "$dir" tofu _strata_build_tofu "$dir" || return 1
  printf '%s\n' "$dir/tofu"
}

# strata_tflint_binary prints the path of the cached tflint, building it
# first if needed (tflint has no replace directives: a plain wrapper works).
strata_tflint_binary() {
  strata_require_go || return 1
  local dir
  dir="$(strata_tools_dir)/tflint-$STRATA_TFLINT_VERSION"
  _strata_build_once "$dir" tflint \
    _strata_build_wrapped "$dir" tflint "$STRATA_TFLINT_MODULE" "v$STRATA_TFLINT_VERSION" \
    "$STRATA_TFLINT_MODULE" || return 1
  printf '%s\n' "$dir/tflint"
}

# _strata_install_checkov DIR PINS: a virtual environment in DIR.tmp with
# exactly the packages of PINS (checkov and its dependencies), installed
# without resolving, so every machine runs the same versions.
_strata_install_checkov() {
  local dir=$1 pins=$2
  python3 -m venv "$dir.tmp/venv" || return 1
  "$dir.tmp/venv/bin/python" -m pip install --quiet --disable-pip-version-check --no-deps \
    -r "$pins" || return 1
  "$dir.tmp/venv/bin/python" -m pip check --disable-pip-version-check >/dev/null || return 1
  # The venv moves from DIR.tmp to DIR: call it through its python, whose
  # path is not baked into entry point scripts.
  cat >"$dir.tmp/checkov" <<'SH' || return 1
#!/usr/bin/env bash
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
exec "$here/venv/bin/python" -c 'import sys; from checkov.main import Checkov; sys.exit(Checkov().run())' "$@"
SH
  chmod +x "$dir.tmp/checkov"
}

# strata_checkov_binary prints the path of a checkov command from a cached
# virtual environment, installing it from PyPI first if needed. The cache is
# keyed by checkov's version and a hash of all pins.
strata_checkov_binary() {
  if ! python3 -c 'import venv, ensurepip' 2>/dev/null; then
    strata_log "python3 with venv is required for checkov: apt-get install python3-venv"
    return 1
  fi
  local pins dir version hash
  pins="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)/tests/checkov-requirements.txt"
  version=$(sed -n 's/^checkov==//p' "$pins")
  hash=$(grep -v '^#' "$pins" | sha256sum | cut -c1-12)
  dir="$(strata_tools_dir)/checkov-$version-$hash"
  _strata_build_once "$dir" checkov _strata_install_checkov "$dir" "$pins" || return 1
  printf '%s\n' "$dir/checkov"
}

# strata_tf_binary prints the Terraform-compatible CLI to use:
#   STRATA_TF=terraform  the `terraform` on PATH (fails when there is none)
#   STRATA_TF=tofu       OpenTofu, built from the Go module proxy
#   unset / auto         terraform when on PATH, otherwise OpenTofu
strata_tf_binary() {
  case ${STRATA_TF:-auto} in
    terraform)
      command -v terraform || {
        strata_log "STRATA_TF=terraform but no terraform on PATH"
        return 1
      }
      ;;
    tofu) strata_tofu_binary ;;
    auto)
      if command -v terraform >/dev/null 2>&1; then
        command -v terraform
      else
        strata_tofu_binary
      fi
      ;;
    *)
      strata_log "STRATA_TF must be terraform, tofu or auto (got '${STRATA_TF}')"
      return 1
      ;;
  esac
}

# strata_tf_cli_config DIR: builds both providers, lays them out as an
# unpacked filesystem mirror under DIR/mirror and writes DIR/terraformrc.
# Prints the path of the CLI config file, for TF_CLI_CONFIG_FILE.
# Provider addresses are mirrored under both registry host names, because an
# unqualified source such as "stackitcloud/stackit" means registry.terraform.io
# to Terraform and registry.opentofu.org to OpenTofu.
strata_tf_cli_config() {
  local out=$1 platform name namespace version binary host target
  platform=$(strata_platform) || return 1
  mkdir -p "$out/mirror"
  for name in openstack stackit; do
    case $name in
      openstack)
        namespace=terraform-provider-openstack
        version=$STRATA_OPENSTACK_PROVIDER_VERSION
        ;;
      stackit)
        namespace=stackitcloud
        version=$STRATA_STACKIT_PROVIDER_VERSION
        ;;
    esac
    binary=$(strata_provider_binary "$name") || return 1
    for host in registry.terraform.io registry.opentofu.org; do
      target="$out/mirror/$host/$namespace/$name/$version/$platform"
      mkdir -p "$target"
      ln -f "$binary" "$target/terraform-provider-${name}_v$version" 2>/dev/null ||
        cp -f "$binary" "$target/terraform-provider-${name}_v$version"
    done
  done
  cat >"$out/terraformrc" <<CFG
# Generated by infra/lib/tools.sh: providers come from a local mirror only.
disable_checkpoint = true

provider_installation {
  filesystem_mirror {
    path = "$out/mirror"
  }
}
CFG
  printf '%s\n' "$out/terraformrc"
}
