#!/usr/bin/env bash
# Builds the Confidential Space workload image of sigil-enclave with buildah
# and prints its digest (the value the Workload Identity Pool provider's
# attestation condition and the KMS key's IAM binding name).
#
# Usage: deploy/enclave/build-image.sh [OUT_DIR]    (default: bin/image)
#
# Writes OUT_DIR/context/ (the build context: Containerfile and the static
# binary), OUT_DIR/sigil-enclave.oci.tar (the image as an OCI archive, ready
# to push with `skopeo copy --preserve-digests`) and
# OUT_DIR/sigil-enclave.digest (its manifest digest), and tags the image
# SIGIL_IMAGE (default localhost/sigil-enclave:latest) in buildah's store.
#
# The build is reproducible: the binary is built with -trimpath, no build id
# and the commit time as build time, and buildah's --timestamp 0 fixes every
# date in the image, so the same source, Go toolchain and static C library
# (the Debian release's glibc) give the same digest.
#
# Environment:
#   SIGIL_IMAGE      image name and tag in buildah's store
#   BUILDAH_STORAGE  buildah's global storage flags (default "--storage-driver vfs",
#                    which works everywhere, including inside containers and CI;
#                    add --root DIR --runroot DIR for a private store)
set -euo pipefail

root=$(cd "$(dirname "$0")/../.." && pwd)
out=${1:-$root/bin/image}
mkdir -p "$out"
out=$(cd "$out" && pwd)
image=${SIGIL_IMAGE:-localhost/sigil-enclave:latest}
read -r -a storage <<< "${BUILDAH_STORAGE:---storage-driver vfs}"

command -v buildah >/dev/null || { echo "build-image: buildah is not installed (Debian: apt-get install buildah)" >&2; exit 1; }

# The static binary comes from scripts/build-release.sh (a static cgo build:
# sigil-enclave links blst), stamped with the revision; its build time is
# the commit time (SOURCE_DATE_EPOCH, unless set), so that one commit gives
# one digest.
if [ -z "${SOURCE_DATE_EPOCH:-}" ] && git -C "$root" rev-parse --git-dir >/dev/null 2>&1; then
  SOURCE_DATE_EPOCH=$(git -C "$root" log -1 --format=%ct)
  export SOURCE_DATE_EPOCH
fi
rm -rf "$out/context"
mkdir -p "$out/context"
bash "$root/scripts/build-release.sh" "$out/context" ./cmd/sigil-enclave >/dev/null
cp "$root/deploy/enclave/Containerfile" "$out/context/Containerfile"

buildah "${storage[@]}" bud --quiet --isolation chroot --timestamp 0 --layers=false \
  -f "$out/context/Containerfile" -t "$image" "$out/context" >/dev/null
rm -f "$out/sigil-enclave.oci.tar" "$out/sigil-enclave.digest"
buildah "${storage[@]}" push --quiet --digestfile "$out/sigil-enclave.digest" \
  "$image" "oci-archive:$out/sigil-enclave.oci.tar:${image##*:}"

echo "image:  $image"
echo "archive: $out/sigil-enclave.oci.tar"
echo "digest: $(cat "$out/sigil-enclave.digest")"
