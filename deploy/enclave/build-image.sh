#!/usr/bin/env bash
# Builds the Confidential Space workload image of sigil-enclave with buildah
# and prints its digest (the value the Workload Identity Pool provider's
# attestation condition and the KMS key's IAM binding name).
#
# Usage: deploy/enclave/build-image.sh [--attested] [OUT_DIR]    (default: bin/image)
#
# Writes OUT_DIR/context/ (the build context: Containerfile and the static
# binary), OUT_DIR/sigil-enclave.oci.tar (the image as an OCI archive, ready
# to push with `skopeo copy --preserve-digests`) and
# OUT_DIR/sigil-enclave.digest (its manifest digest), and tags the image
# SIGIL_IMAGE (default localhost/sigil-enclave:latest) in buildah's store.
#
# With --attested it builds the attested channel's image instead
# (Containerfile.attested: the same binary, entrypoint with --attested, the
# launch policy allowing SIGIL_ENCLAVE_CLIENT_PINS): OUT_DIR/context-attested/,
# OUT_DIR/sigil-enclave-attested.oci.tar and .digest, tagged
# localhost/sigil-enclave-attested:latest unless SIGIL_IMAGE is set. The
# two images have different digests; both can be built into one OUT_DIR.
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
name=sigil-enclave
containerfile=Containerfile
if [ "${1:-}" = "--attested" ]; then
  name=sigil-enclave-attested
  containerfile=Containerfile.attested
  shift
fi
case "${1:-}" in -*) echo "build-image: unknown option $1 (usage: build-image.sh [--attested] [OUT_DIR])" >&2; exit 2;; esac
out=${1:-$root/bin/image}
mkdir -p "$out"
out=$(cd "$out" && pwd)
image=${SIGIL_IMAGE:-localhost/$name:latest}
context=$out/context
[ "$name" = sigil-enclave ] || context=$out/context-attested
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
rm -rf "$context"
mkdir -p "$context"
bash "$root/scripts/build-release.sh" "$context" ./cmd/sigil-enclave >/dev/null
cp "$root/deploy/enclave/$containerfile" "$context/Containerfile"

buildah "${storage[@]}" bud --quiet --isolation chroot --timestamp 0 --layers=false \
  -f "$context/Containerfile" -t "$image" "$context" >/dev/null
rm -f "$out/$name.oci.tar" "$out/$name.digest"
buildah "${storage[@]}" push --quiet --digestfile "$out/$name.digest" \
  "$image" "oci-archive:$out/$name.oci.tar:${image##*:}"

echo "image:  $image"
echo "archive: $out/$name.oci.tar"
echo "digest: $(cat "$out/$name.digest")"
