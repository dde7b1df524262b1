#!/usr/bin/env bash
# Pack a directory into a one-layer OCI image archive that `ctr images
# import` (and podman load) accept, without a container engine or registry.
set -euo pipefail

usage() {
	cat <<'USAGE'
Usage: testenv/oci-image.sh --rootfs DIR --name REF --out FILE
                            [--entrypoint PATH] [--user UID:GID]

Writes FILE, an OCI image layout as a tar: one uncompressed layer holding
DIR (owned by root, timestamps zeroed, so the same DIR gives the same
digest), a config with the entrypoint and user, and an index whose entry
carries REF as its name (io.containerd.image.name). For small images of
testenv's own, such as the pod sandbox ("pause") image.
USAGE
}

rootfs="" name="" out="" entrypoint="" user=""
while [[ $# -gt 0 ]]; do
	case "$1" in
	-h | --help)
		usage
		exit 0
		;;
	--rootfs | --name | --out | --entrypoint | --user)
		[[ $# -ge 2 ]] || {
			echo "oci-image.sh: $1 needs a value" >&2
			exit 2
		}
		declare "${1#--}=$2"
		shift 2
		;;
	*)
		echo "oci-image.sh: unknown argument '$1'" >&2
		usage >&2
		exit 2
		;;
	esac
done
[[ -d "$rootfs" && -n "$name" && -n "$out" ]] || {
	usage >&2
	exit 2
}
[[ "$name" == *:* ]] || {
	echo "oci-image.sh: --name needs a tag, e.g. registry.k8s.io/pause:3.10" >&2
	exit 2
}

work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
mkdir -p "$work/blobs/sha256"

blob() { # FILE MEDIATYPE: store FILE as a blob, print its descriptor
	local digest size
	digest="$(sha256sum "$1" | cut -d' ' -f1)"
	size="$(stat -c %s "$1")"
	mv "$1" "$work/blobs/sha256/$digest"
	printf '{"mediaType":"%s","digest":"sha256:%s","size":%s}' "$2" "$digest" "$size"
}

tar --sort=name --mtime=@0 --owner=0 --group=0 --numeric-owner -C "$rootfs" -cf "$work/layer.tar" .
diff_id="sha256:$(sha256sum "$work/layer.tar" | cut -d' ' -f1)"
layer="$(blob "$work/layer.tar" application/vnd.oci.image.layer.v1.tar)"

process=""
[[ -n "$entrypoint" ]] && process+="\"Entrypoint\":[\"$entrypoint\"],"
[[ -n "$user" ]] && process+="\"User\":\"$user\","
printf '{"architecture":"amd64","os":"linux","config":{%s"Env":["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"]},"rootfs":{"type":"layers","diff_ids":["%s"]}}' \
	"$process" "$diff_id" >"$work/config.json"
config="$(blob "$work/config.json" application/vnd.oci.image.config.v1+json)"

printf '{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":%s,"layers":[%s]}' \
	"$config" "$layer" >"$work/manifest.json"
manifest="$(blob "$work/manifest.json" application/vnd.oci.image.manifest.v1+json)"

printf '{"schemaVersion":2,"manifests":[%s]}' \
	"${manifest%\}},\"platform\":{\"architecture\":\"amd64\",\"os\":\"linux\"},\"annotations\":{\"io.containerd.image.name\":\"$name\",\"org.opencontainers.image.ref.name\":\"${name##*:}\"}}" \
	>"$work/index.json"
echo '{"imageLayoutVersion":"1.0.0"}' >"$work/oci-layout"

tar --sort=name --mtime=@0 --owner=0 --group=0 --numeric-owner -C "$work" -cf "$out.tmp" oci-layout index.json blobs
mv "$out.tmp" "$out"
