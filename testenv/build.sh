#!/usr/bin/env bash
# Build (or reuse) kube-apiserver, kubectl, etcd and the node binaries for Strata's tests.
set -euo pipefail

usage() {
	cat <<'EOF'
Usage: testenv/build.sh [--help] [--oldest] [--versions]

Builds kube-apiserver, kubectl, etcd and the node's binaries (kubelet,
kube-scheduler, kube-controller-manager, kube-proxy, and testenv's own
local-provisioner and pause from testenv/cmd) from the Go module proxy at the
versions pinned in testenv/go.mod, unless a cached build already exists:

  <tools>/kube-apiserver-<k8s version>/{kube-apiserver,kubectl,kubelet,...}
  <tools>/etcd-<etcd version>/etcd
  <tools>/testenv-<k8s version>/{all of the above}   (symlinks)

where <tools> is $STRATA_TOOLS_DIR, by default
${XDG_CACHE_HOME:-$HOME/.cache}/strata/tools. Only the first run on a machine
builds; concurrent runs wait for each other (flock).

The last line on stdout is the directory holding the binaries
(<tools>/testenv-<k8s version>); progress goes to stderr.

With --oldest, builds only kube-apiserver and etcd of the oldest Kubernetes
release the Helm chart claims, pinned in testenv/oldest/go.mod (deploy/test.sh
applies the CRD and the chart to it), into the same layout:

  <tools>/kube-apiserver-<oldest version>/kube-apiserver
  <tools>/etcd-<its etcd version>/etcd
  <tools>/testenv-<oldest version>/{kube-apiserver,etcd}   (symlinks)

Options:
  --oldest     the oldest claimed release (see above) instead of testenv/go.mod's
  --versions   print "KUBERNETES_VERSION=..." and "ETCD_VERSION=..." and exit

Environment:
  STRATA_TOOLS_DIR        cache root (see above)
  STRATA_TESTENV_REBUILD  set to 1 to rebuild even when a cached build exists
EOF
}

print_versions=0
oldest=0
for arg in "$@"; do
	case "$arg" in
	-h | --help)
		usage
		exit 0
		;;
	--versions) print_versions=1 ;;
	--oldest) oldest=1 ;;
	*)
		echo "build.sh: unknown argument '$arg'" >&2
		usage >&2
		exit 2
		;;
	esac
done

log() { echo "testenv/build.sh: $*" >&2; }

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
if [[ $oldest -eq 1 ]]; then
	# The wrapper module of the oldest release the chart claims: no node, no
	# kubectl (testenv/go.mod's kubectl talks to it), nothing of testenv/cmd.
	module_dir="$here/oldest"
	module_name=testenv/oldest/go.mod
	kube_bins=(kube-apiserver)
	packages=(k8s.io/kubernetes/cmd/kube-apiserver go.etcd.io/etcd/server/v3)
	sources=()
	what="kube-apiserver"
else
	module_dir="$here"
	module_name=testenv/go.mod
	# The control plane, kubectl, and the node's binaries (docs/testenv.md).
	# testenv's own two: the node's volume provisioner and pause (sandbox) binary.
	kube_bins=(kube-apiserver kubectl kubelet kube-scheduler kube-controller-manager kube-proxy local-provisioner pause)
	packages=(
		k8s.io/kubernetes/cmd/kube-apiserver
		k8s.io/kubernetes/cmd/kubectl
		k8s.io/kubernetes/cmd/kubelet
		k8s.io/kubernetes/cmd/kube-scheduler
		k8s.io/kubernetes/cmd/kube-controller-manager
		k8s.io/kubernetes/cmd/kube-proxy
		./cmd/local-provisioner
		./cmd/pause
		go.etcd.io/etcd/server/v3
	)
	sources=("$here"/cmd/*/*.go)
	what="control plane, kubectl, node"
fi
kube_version="$(awk '$1 == "k8s.io/kubernetes" && $2 ~ /^v1\./ { print $2; exit }' "$module_dir/go.mod")"
etcd_version="$(awk '$1 == "go.etcd.io/etcd/server/v3" && $2 ~ /^v3\./ { print $2; exit }' "$module_dir/go.mod")"
# etcd reports the version of go.etcd.io/etcd/api/v3, where its version
# string lives. The two can differ: Kubernetes v1.31.14, for one, pins the
# server at v3.5.13 but the api and client modules at v3.5.14 (that etcd
# says 3.5.14).
etcd_api_version="$(awk '$1 == "go.etcd.io/etcd/api/v3" && $2 ~ /^v3\./ { print $2; exit }' "$module_dir/go.mod")"
if [[ ! "$kube_version" =~ ^v([0-9]+)\.([0-9]+)\.[0-9]+$ || -z "$etcd_version" || -z "$etcd_api_version" ]]; then
	log "cannot read the pinned versions from $module_name"
	exit 1
fi
kube_major="${BASH_REMATCH[1]}"
kube_minor="${BASH_REMATCH[2]}"

if [[ $print_versions -eq 1 ]]; then
	echo "KUBERNETES_VERSION=$kube_version"
	echo "ETCD_VERSION=$etcd_version"
	exit 0
fi

command -v go >/dev/null || {
	log "go is not installed; install Go >= $(awk '$1 == "go" { print $2; exit }' "$module_dir/go.mod") (Debian: apt-get install golang-go, or the official tarball)"
	exit 1
}

tools="${STRATA_TOOLS_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/strata/tools}"
kube_dir="$tools/kube-apiserver-$kube_version"
etcd_dir="$tools/etcd-$etcd_version"
bin_dir="$tools/testenv-$kube_version"

# Both trees are fully determined by go.mod, go.sum and the flags below; a
# stamp of those decides whether a cached binary may be reused.
version_flags=()
for pkg in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
	version_flags+=(
		"-X $pkg.gitVersion=$kube_version"
		"-X $pkg.gitMajor=$kube_major"
		"-X $pkg.gitMinor=$kube_minor"
		"-X $pkg.gitTreeState=clean"
	)
done
ldflags="-s -w ${version_flags[*]}"
build_env=(GOTOOLCHAIN=local GOFLAGS=-mod=readonly CGO_ENABLED=0)
stamp="$(cat "$module_dir/go.mod" "$module_dir/go.sum" "${sources[@]}" <(echo "$ldflags ${build_env[*]} -trimpath") | sha256sum | cut -d' ' -f1)"

cached() {
	local b
	[[ "${STRATA_TESTENV_REBUILD:-0}" != 1 ]] || return 1
	for b in "${kube_bins[@]}"; do
		[[ -x "$kube_dir/$b" ]] || return 1
	done
	[[ -x "$etcd_dir/etcd" ]] &&
		[[ "$(cat "$kube_dir/.stamp" 2>/dev/null)" == "$stamp" ]] &&
		[[ "$(cat "$etcd_dir/.stamp" 2>/dev/null)" == "$stamp" ]]
}

link_bin_dir() {
	mkdir -p "$bin_dir"
	local b
	for b in "${kube_bins[@]}"; do
		ln -sfn "$kube_dir/$b" "$bin_dir/$b"
	done
	ln -sfn "$etcd_dir/etcd" "$bin_dir/etcd"
}

if cached; then
	log "reusing kube-apiserver $kube_version and etcd $etcd_version from $tools"
	link_bin_dir
	echo "$bin_dir"
	exit 0
fi

mkdir -p "$tools"
exec 9>"$tools/.testenv-build.lock"
if ! flock -n 9; then
	log "another build is running; waiting for it"
	flock 9
fi
# The build we waited for may have produced what we need.
if cached; then
	log "reusing kube-apiserver $kube_version and etcd $etcd_version from $tools"
	link_bin_dir
	echo "$bin_dir"
	exit 0
fi

work="$(mktemp -d "$tools/.build.XXXXXX")"
trap 'rm -rf "$work"' EXIT

log "building Kubernetes $kube_version ($what) and etcd $etcd_version (cold builds take minutes; see docs/testenv.md)"
started=$SECONDS
(
	cd "$module_dir"
	env "${build_env[@]}" go build -trimpath -ldflags "$ldflags" -o "$work/" "${packages[@]}"
)
# The etcd main package is its module root, go.etcd.io/etcd/server/v3, so go
# names the binary after the element before the major-version suffix.
mv "$work/server" "$work/etcd"
log "go build finished in $((SECONDS - started)) s"

# Refuse binaries that do not report the pinned versions.
got="$("$work/kube-apiserver" --version)"
if [[ "$got" != "Kubernetes $kube_version" ]]; then
	log "kube-apiserver reports '$got', expected 'Kubernetes $kube_version'"
	exit 1
fi
got="$("$work/etcd" --version | awk -F': ' '/^etcd Version/ { print $2 }')"
if [[ "v$got" != "$etcd_api_version" ]]; then
	log "etcd reports version '$got', expected '$etcd_api_version' (go.etcd.io/etcd/api/v3)"
	exit 1
fi

install_tree() { # dir binaries...
	local dir="$1"
	shift
	local fresh="$dir.new.$$"
	rm -rf "$fresh"
	mkdir -p "$fresh"
	for b in "$@"; do mv "$work/$b" "$fresh/$b"; done
	echo "$stamp" >"$fresh/.stamp"
	rm -rf "$dir"
	mv "$fresh" "$dir"
}
install_tree "$kube_dir" "${kube_bins[@]}"
install_tree "$etcd_dir" etcd
link_bin_dir
log "installed into $kube_dir and $etcd_dir"
echo "$bin_dir"
