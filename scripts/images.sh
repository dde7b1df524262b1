#!/usr/bin/env bash
# Builds Strata's container images on a machine without any container
# registry, and writes each one as an archive that `ctr images import` and
# `podman load` take with its name. Base images come from Debian packages
# (mmdebstrap) and this machine's Rust toolchain, under the public names the
# Dockerfiles use. Each archive is keyed by a hash of its inputs: a run with
# nothing changed only prints the paths. See docs/images.md.
set -euo pipefail

usage() {
  cat <<'USAGE'
Usage: scripts/images.sh [--force] [--rebuild-bases] [--strata-binary PATH] [-h|--help]

Builds (when their inputs changed) and saves as docker-archive files:
  ghcr.io/strata-dev/strata:<workspace version> (also tagged :dev)
  ghcr.io/strata-dev/postgres:<major>            for each major in STRATA_PG_MAJORS
  ghcr.io/strata-dev/postgres-exporter:<upstream version of Debian's package>

The last lines of stdout are one "<image-ref> <archive-path>" per image;
progress goes to stderr.

  --force          build and save again even when an archive for the inputs exists
  --rebuild-bases  make the local base images again from current Debian packages
  --strata-binary PATH
                   put this already built `strata` binary (debug information
                   stripped) into the strata image instead of compiling it in
                   the build stage (the Dockerfile's `prebuilt` target): what
                   Strata's tests do with the binary `cargo test` built

Environment:
  STRATA_IMAGES_CACHE            archives   [${XDG_CACHE_HOME:-$HOME/.cache}/strata/images]
  STRATA_IMAGE_PREFIX            name prefix [ghcr.io/strata-dev]
  STRATA_PG_MAJORS               PostgreSQL majors, space-separated [15]
  STRATA_DEBIAN_MIRROR           [http://deb.debian.org/debian]
  STRATA_DEBIAN_SECURITY_MIRROR  [http://deb.debian.org/debian-security]
  STRATA_OCI_RUNTIME             [runc]
  STRATA_BUILD_CA_FILE           CA bundle for the Rust build's downloads, mounted
                                 only while it runs [/etc/ssl/certs/ca-certificates.crt]

Installs podman, runc and mmdebstrap with apt-get when they are missing.
USAGE
}

force=0
rebuild_bases=0
strata_binary=""
while (($#)); do
  case "$1" in
    -h|--help) usage; exit 0 ;;
    --force) force=1 ;;
    --rebuild-bases) rebuild_bases=1 ;;
    --strata-binary)
      strata_binary="${2:-}"
      [[ -f $strata_binary && -x $strata_binary ]] || { echo "images: --strata-binary needs an executable file" >&2; exit 2; }
      strata_binary="$(cd "$(dirname "$strata_binary")" && pwd)/$(basename "$strata_binary")"
      shift
      ;;
    *) usage >&2; exit 2 ;;
  esac
  shift
done

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cache="${STRATA_IMAGES_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/strata/images}"
prefix="${STRATA_IMAGE_PREFIX:-ghcr.io/strata-dev}"
read -r -a pg_majors <<<"${STRATA_PG_MAJORS:-15}"
mirror="${STRATA_DEBIAN_MIRROR:-http://deb.debian.org/debian}"
security_mirror="${STRATA_DEBIAN_SECURITY_MIRROR:-http://deb.debian.org/debian-security}"
suite=bookworm
debian_base="docker.io/library/debian:${suite}-slim"

log() { printf 'images: %s\n' "$*" >&2; }
die() { log "$*"; exit 1; }

sudo=()
[[ $(id -u) -eq 0 ]] || sudo=(sudo)

# --- what this script needs from Debian ------------------------------------

apt_updated=0
apt_update() {
  if ((!apt_updated)); then
    "${sudo[@]}" apt-get update -qq
    apt_updated=1
  fi
}

missing=()
command -v podman >/dev/null || missing+=(podman)
command -v runc >/dev/null || missing+=(runc)
command -v mmdebstrap >/dev/null || missing+=(mmdebstrap)
if ((${#missing[@]})); then
  log "installing ${missing[*]}"
  apt_update
  DEBIAN_FRONTEND=noninteractive "${sudo[@]}" apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

# The version apt would install from the configured archives: the images pin
# it, so it is part of their cache key and the exporter's tag.
candidate() {
  local v
  v="$(apt-cache policy "$1" 2>/dev/null | awk '/Candidate:/ { print $2 }')"
  if [[ -z $v || $v == "(none)" ]] && ((!apt_updated)); then
    apt_update
    v="$(apt-cache policy "$1" 2>/dev/null | awk '/Candidate:/ { print $2 }')"
  fi
  [[ -n $v && $v != "(none)" ]] || die "no Debian package $1 in the configured apt sources"
  printf '%s\n' "$v"
}

# --- podman on this kind of machine ----------------------------------------
# No systemd, cgroup v1 (crun refuses it: runc), and no CAP_SYS_RESOURCE: a
# container may not raise its rlimits, so ask for at most what we have.
# RLIMIT_NPROC above 32768 was refused here even below the hard limit.

nofile="$(ulimit -Hn)"
[[ $nofile == unlimited ]] && nofile=1048576
nproc="$(ulimit -Hu)"
[[ $nproc == unlimited || $nproc -gt 32768 ]] && nproc=32768
podman=(podman --cgroup-manager cgroupfs)
container_opts=(--runtime "${STRATA_OCI_RUNTIME:-runc}" --ulimit "nofile=$nofile:$nofile" --ulimit "nproc=$nproc:$nproc")
# Build steps reach the Debian mirror and crates.io through the host's
# network (no bridge, no NAT); nothing is ever pulled from a registry.
build_opts=("${container_opts[@]}" --network host --pull=never)

image_id() { "${podman[@]}" image inspect --format '{{.Id}}' "$1"; }
have_image() { "${podman[@]}" image exists "$1"; }

mkdir -p "$cache"
exec 9>"$cache/.lock"
flock 9

work="$(mktemp -d "${TMPDIR:-/var/tmp}/strata-images.XXXXXX")"
trap 'rm -rf "$work"' EXIT

# --- local base images ------------------------------------------------------

# A minimal Debian root filesystem: merged /usr without the usrmerge package
# (and the perl it pulls in), no documentation, man pages or translations,
# apt pointed at the release, its updates and security updates.
rootfs() {
  local out="$1"; shift
  mmdebstrap --quiet --variant=minbase \
    --hook-dir=/usr/share/mmdebstrap/hooks/merged-usr \
    --skip=output/dev \
    --dpkgopt='path-exclude=/usr/share/man/*' \
    --dpkgopt='path-exclude=/usr/share/doc/*' \
    --dpkgopt='path-include=/usr/share/doc/*/copyright' \
    --dpkgopt='path-exclude=/usr/share/info/*' \
    --dpkgopt='path-exclude=/usr/share/locale/*' \
    --dpkgopt='path-include=/usr/share/locale/locale.alias' \
    --aptopt='APT::Install-Recommends "false"' \
    "$@" "$suite" "$out" \
    "deb $mirror $suite main" \
    "deb $mirror $suite-updates main" \
    "deb $security_mirror $suite-security main" >&2
}

# Bases replaced by --rebuild-bases, removed at the end when nothing uses them.
replaced=()
if ((rebuild_bases)) || ! have_image "$debian_base"; then
  replaced+=("$(image_id "$debian_base" 2>/dev/null || true)")
  log "making $debian_base from Debian packages (mmdebstrap, about a minute)"
  rootfs "$work/debian.tar"
  "${podman[@]}" import --quiet --change 'CMD ["bash"]' "$work/debian.tar" "$debian_base" >/dev/null
  rm -f "$work/debian.tar"
fi

# The Rust build base: Debian with a C toolchain, plus this machine's Rust
# toolchain (no other can be fetched here), laid out as in the official
# image (RUSTUP_HOME=/usr/local/rustup, CARGO_HOME=/usr/local/cargo).
command -v rustc >/dev/null || die "rustc is missing: the Rust build base is made from the installed toolchain (rustup.rs)"
rust_version="$(rustc --version | awk '{ print $2 }')"
rust_image="docker.io/library/rust:${rust_version%.*}-$suite"
if ((rebuild_bases)) || ! have_image "$rust_image"; then
  sysroot="$(rustc --print sysroot)"
  host="$(rustc -vV | sed -n 's/^host: //p')"
  toolchain="/usr/local/rustup/toolchains/$rust_version-$host"
  replaced+=("$(image_id "$rust_image" 2>/dev/null || true)")
  log "making $rust_image from Debian packages and the Rust $rust_version toolchain in $sysroot"
  # shellcheck disable=SC2016 # $1 is the chroot, expanded by mmdebstrap's hook shell
  rootfs "$work/rust.tar" \
    --include=build-essential,pkg-config,ca-certificates \
    --customize-hook='mkdir -p "$1'"$toolchain"'" "$1/usr/local/cargo/bin"' \
    --customize-hook='tar -C "'"$sysroot"'" --exclude=./share -cf - . | tar -C "$1'"$toolchain"'" -xf -' \
    --customize-hook='for b in cargo rustc rustdoc; do ln -s "'"$toolchain"'/bin/$b" "$1/usr/local/cargo/bin/$b"; done'
  "${podman[@]}" import --quiet \
    --change 'ENV RUSTUP_HOME=/usr/local/rustup' \
    --change 'ENV CARGO_HOME=/usr/local/cargo' \
    --change 'ENV PATH=/usr/local/cargo/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
    --change "ENV RUST_VERSION=$rust_version" \
    --change 'CMD ["bash"]' \
    "$work/rust.tar" "$rust_image" >/dev/null
  rm -f "$work/rust.tar"
  "${podman[@]}" run --rm "${container_opts[@]}" --network none "$rust_image" cargo --version >&2
fi

# --- the images -------------------------------------------------------------

key() { sha256sum | cut -c1-16; }

# Hash of files and directories under the repository (paths and contents).
hash_tree() {
  (cd "$root" && find "$@" -type f -not -path '*/target/*' -print0 | LC_ALL=C sort -z | xargs -0 sha256sum)
}

results=()

# build_and_save NAME KEY REF [EXTRA_TAG...] -- PODMAN_BUILD_ARGS...
build_and_save() {
  local name="$1" k="$2" ref="$3"; shift 3
  local tags=("$ref")
  while [[ $1 != -- ]]; do tags+=("$1"); shift; done
  shift
  local dir="$cache/$name" archive="$cache/$name/$k.tar"
  if ((force)) || [[ ! -s $archive ]]; then
    local t=() tag start old
    for tag in "${tags[@]}"; do t+=(-t "$tag"); done
    old="$(image_id "$ref" 2>/dev/null || true)"
    log "building $ref"
    start=$SECONDS
    "${podman[@]}" build "${build_opts[@]}" "${t[@]}" "$@" >&2
    log "built $ref in $((SECONDS - start)) s"
    # The image the tags named before goes, unless something still uses it
    # (another tag, a container, a child image).
    if [[ -n $old && $old != "$(image_id "$ref")" ]]; then
      "${podman[@]}" image rm "$old" >/dev/null 2>&1 || true
    fi
    mkdir -p "$dir"
    "${podman[@]}" save --quiet --format docker-archive -o "$archive.tmp" "${tags[@]}"
    mv "$archive.tmp" "$archive"
    # Keep this archive and the one before it.
    find "$dir" -maxdepth 1 -name '*.tar' -printf '%T@ %p\n' | sort -rn | tail -n +3 | cut -d' ' -f2- |
      while read -r old; do rm -f "$old"; done
  else
    log "$ref is up to date"
  fi
  results+=("$ref $archive")
}

# strata: the workspace manifests and crates (the Dockerfile's context, see
# .dockerignore), the Dockerfile, both bases, the version and the commit.
version="$(sed -n '/^\[workspace\.package\]/,/^\[/ s/^version *= *"\(.*\)"/\1/p' "$root/Cargo.toml")"
[[ -n $version ]] || die "no [workspace.package] version in Cargo.toml"
inputs=(Cargo.toml Cargo.lock crates Dockerfile .dockerignore)
revision="$(git -C "$root" log -1 --format=%H -- "${inputs[@]}" 2>/dev/null || true)"
revision="${revision:-unknown}"
if [[ -n $(git -C "$root" status --porcelain -- "${inputs[@]}" 2>/dev/null) ]]; then
  revision+="-dirty"
fi
# Build steps trust what this machine trusts (a TLS-inspecting proxy in front
# of crates.io, say): its CA bundle is mounted over the build stage's for the
# RUN steps only and never becomes part of a layer.
ca_opts=()
host_ca="${STRATA_BUILD_CA_FILE:-/etc/ssl/certs/ca-certificates.crt}"
[[ -r $host_ca ]] && ca_opts=(--volume "$host_ca:/etc/ssl/certs/ca-certificates.crt:ro")
strata_ref="$prefix/strata:$version"
strata_key="$({
  hash_tree "${inputs[@]}"
  echo "$strata_ref $revision $(image_id "$rust_image") $(image_id "$debian_base")"
} | key)"
# buildah's layer cache keys a LABEL step by its text before the build
# arguments are put in: the labels that change are also set with --label,
# which always applies.
created="$(date -u +%Y-%m-%dT%H:%M:%SZ)"
if [[ -n $strata_binary ]]; then
  # The same image around a binary built outside: its context is that one
  # file, without its debug information (a test binary's is most of it).
  mkdir -p "$work/prebuilt"
  if command -v objcopy >/dev/null; then
    objcopy --strip-debug "$strata_binary" "$work/prebuilt/strata"
  else
    cp "$strata_binary" "$work/prebuilt/strata"
  fi
  prebuilt_key="$({
    sha256sum <"$work/prebuilt/strata"
    sha256sum <"$root/Dockerfile"
    echo "$strata_ref $(image_id "$rust_image") $(image_id "$debian_base")"
  } | key)"
  build_and_save strata-prebuilt "$prebuilt_key" "$strata_ref" "$prefix/strata:dev" -- \
    --target prebuilt \
    --layers=false \
    --build-arg "RUST_IMAGE=$rust_image" \
    --build-arg "RUNTIME_IMAGE=$debian_base" \
    --build-arg "VERSION=$version" \
    --build-arg "REVISION=prebuilt" \
    --build-arg "CREATED=$created" \
    --label "org.opencontainers.image.version=$version" \
    --label "org.opencontainers.image.revision=prebuilt" \
    --label "org.opencontainers.image.created=$created" \
    -f "$root/Dockerfile" "$work/prebuilt"
else
  # --layers=false: the cargo caches make the build step incremental already,
  # and intermediate images (1 GB each) would pile up with every change.
  build_and_save strata "$strata_key" "$strata_ref" "$prefix/strata:dev" -- \
    --layers=false \
    "${ca_opts[@]}" \
    --build-arg "RUST_IMAGE=$rust_image" \
    --build-arg "RUNTIME_IMAGE=$debian_base" \
    --build-arg "VERSION=$version" \
    --build-arg "REVISION=$revision" \
    --build-arg "CREATED=$created" \
    --label "org.opencontainers.image.version=$version" \
    --label "org.opencontainers.image.revision=$revision" \
    --label "org.opencontainers.image.created=$created" \
    -f "$root/Dockerfile" "$root"
fi

for major in "${pg_majors[@]}"; do
  pg_version="$(candidate "postgresql-$major")"
  pg_ref="$prefix/postgres:$major"
  pg_key="$({
    hash_tree images/postgres
    echo "$pg_ref $pg_version $(image_id "$debian_base")"
  } | key)"
  build_and_save "postgres-$major" "$pg_key" "$pg_ref" -- \
    --build-arg "BASE_IMAGE=$debian_base" \
    --build-arg "PG_MAJOR=$major" \
    --build-arg "PG_VERSION=$pg_version" \
    --label "org.opencontainers.image.version=$pg_version" \
    "$root/images/postgres"
done

exporter_version="$(candidate prometheus-postgres-exporter)"
upstream="${exporter_version#*:}"
upstream="${upstream%-*}"
exporter_ref="$prefix/postgres-exporter:$upstream"
exporter_key="$({
  hash_tree images/postgres-exporter
  echo "$exporter_ref $exporter_version $(image_id "$debian_base")"
} | key)"
build_and_save postgres-exporter "$exporter_key" "$exporter_ref" -- \
  --build-arg "BASE_IMAGE=$debian_base" \
  --build-arg "EXPORTER_VERSION=$exporter_version" \
  --label "org.opencontainers.image.version=$exporter_version" \
  "$root/images/postgres-exporter"

for id in "${replaced[@]}"; do
  if [[ -n $id ]]; then
    "${podman[@]}" image rm "$id" >/dev/null 2>&1 || true
  fi
done

printf '%s\n' "${results[@]}"
