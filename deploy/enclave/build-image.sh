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
# The build is reproducible: the binary is built with -trimpath and no build
# id, and buildah's --timestamp 0 fixes every date in the image, so the same
# source, Go toolchain and static C library (the Debian release's glibc) give
# the same digest.
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

# sigil-enclave links blst (BLS12-381) through cgo, so this is a static cgo
# build: the pure-Go resolver and user lookup (netgo, osusergo) keep glibc's
# NSS out, and the external linker links libc statically.
rm -rf "$out/context"
mkdir -p "$out/context"
CGO_ENABLED=1 go build -C "$root" -tags netgo,osusergo -trimpath \
  -ldflags '-s -w -buildid= -linkmode external -extldflags -static' \
  -o "$out/context/sigil-enclave" ./cmd/sigil-enclave
cp "$root/deploy/enclave/Containerfile" "$out/context/Containerfile"

buildah "${storage[@]}" bud --quiet --isolation chroot --timestamp 0 --layers=false \
  -f "$out/context/Containerfile" -t "$image" "$out/context" >/dev/null
rm -f "$out/sigil-enclave.oci.tar" "$out/sigil-enclave.digest"
buildah "${storage[@]}" push --quiet --digestfile "$out/sigil-enclave.digest" \
  "$image" "oci-archive:$out/sigil-enclave.oci.tar:${image##*:}"

echo "image:  $image"
echo "archive: $out/sigil-enclave.oci.tar"
echo "digest: $(cat "$out/sigil-enclave.digest")"
