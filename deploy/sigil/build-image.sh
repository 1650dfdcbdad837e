#!/usr/bin/env bash
# Builds the image of the Sigil daemon with buildah and prints its digest.
#
# Usage: deploy/sigil/build-image.sh [OUT_DIR]    (default: bin/image)
#
# Writes OUT_DIR/sigil-context/ (the build context: Containerfile, the static
# binary, the state directory), OUT_DIR/sigil.oci.tar (the image as an
# OCI archive: `skopeo copy oci-archive:… docker://REGISTRY/sigil:TAG`, or
# `docker load` after `skopeo copy … docker-archive:…`) and OUT_DIR/sigil.digest,
# and tags the image SIGIL_IMAGE (default localhost/sigil:latest) in buildah's
# store. With a Docker engine and a registry, `docker build` works too (see
# docs/operations.md).
#
# The binary comes from scripts/build-release.sh with SOURCE_DATE_EPOCH set
# to the commit time (unless set), and buildah's --timestamp 0 fixes every
# date in the image, so that one commit gives one digest.
#
# Environment:
#   SIGIL_IMAGE      image name and tag in buildah's store
#   BUILDAH_STORAGE  buildah's global storage flags (default "--storage-driver vfs")
set -euo pipefail

root=$(cd "$(dirname "$0")/../.." && pwd)
out=${1:-$root/bin/image}
mkdir -p "$out"
out=$(cd "$out" && pwd)
image=${SIGIL_IMAGE:-localhost/sigil:latest}
read -r -a storage <<< "${BUILDAH_STORAGE:---storage-driver vfs}"

command -v buildah >/dev/null || { echo "build-image: buildah is not installed (Debian: apt-get install buildah)" >&2; exit 1; }

if [ -z "${SOURCE_DATE_EPOCH:-}" ] && git -C "$root" rev-parse --git-dir >/dev/null 2>&1; then
  SOURCE_DATE_EPOCH=$(git -C "$root" log -1 --format=%ct)
  export SOURCE_DATE_EPOCH
fi
ctx=$out/sigil-context
rm -rf "$ctx"
mkdir -p "$ctx/state"
# A COPY of an empty directory creates nothing: the state directory holds a
# note, so that it exists in the image with its owner.
printf 'Sigil base directory (base_dir): key file, watermarks. Keep it on a volume.\n' > "$ctx/state/README"
touch -d @0 "$ctx/state/README"
bash "$root/scripts/build-release.sh" "$ctx" ./cmd/sigil >/dev/null
cp "$root/deploy/sigil/Containerfile" "$ctx/Containerfile"

buildah "${storage[@]}" bud --quiet --isolation chroot --timestamp 0 --layers=false \
  -f "$ctx/Containerfile" -t "$image" "$ctx" >/dev/null
rm -f "$out/sigil.oci.tar" "$out/sigil.digest"
buildah "${storage[@]}" push --quiet --digestfile "$out/sigil.digest" \
  "$image" "oci-archive:$out/sigil.oci.tar:${image##*:}"

echo "image:  $image"
echo "archive: $out/sigil.oci.tar"
echo "digest: $(cat "$out/sigil.digest")"
