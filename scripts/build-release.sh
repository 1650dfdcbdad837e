#!/usr/bin/env bash
# Builds release binaries of sigil and sigil-enclave (or the commands named)
# into OUT_DIR: statically linked, so that they run on any Linux of the same
# architecture and FROM scratch in an image, and stamped with what
# `sigil version`, `sigil-enclave --version` and the sigil_build_info metric
# print.
#
# Usage: scripts/build-release.sh [OUT_DIR [PACKAGE...]]
#        (default: bin/release ./cmd/sigil ./cmd/sigil-enclave)
#
# What the binary says about itself:
#   - module version, VCS revision, commit time, "modified": Go's build
#     information (-buildvcs=auto: stamped when building inside a git clone).
#     Where Go could not stamp them (a git worktree, no git), the revision and
#     commit time are passed with -ldflags -X from git instead;
#   - build time: SOURCE_DATE_EPOCH (seconds since 1970) when set, so that
#     two builds of one commit are identical (the image scripts set it to the
#     commit time), else now;
#   - branch: the current git branch, if any;
#   - SIGIL_VERSION, when set, overrides the module version (a release tag).
#
# sigil and sigil-enclave link blst (BLS12-381) through cgo, so this is a
# static cgo build: the pure-Go resolver and user lookup (netgo, osusergo)
# keep glibc's NSS out, and the external linker links libc statically.
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
out=${1:-$root/bin/release}
shift || true
pkgs=("$@")
[ ${#pkgs[@]} -gt 0 ] || pkgs=(./cmd/sigil ./cmd/sigil-enclave)
mkdir -p "$out"

bi=github.com/sigil-signer/sigil/adapters/buildinfo
if [ -n "${SOURCE_DATE_EPOCH:-}" ]; then
  build_time=$(date -u -d "@$SOURCE_DATE_EPOCH" +%Y-%m-%dT%H:%M:%SZ)
else
  build_time=$(date -u +%Y-%m-%dT%H:%M:%SZ)
fi
ldflags="-s -w -buildid= -linkmode external -extldflags -static -X $bi.BuildTime=$build_time"
if git -C "$root" rev-parse --git-dir >/dev/null 2>&1; then
  rev=$(git -C "$root" rev-parse HEAD)
  if [ -n "$(git -C "$root" status --porcelain --untracked-files=no)" ]; then
    rev="$rev-dirty"
  fi
  ldflags="$ldflags -X $bi.Revision=$rev -X $bi.CommitTime=$(TZ=UTC git -C "$root" log -1 --format=%cd --date=format-local:%Y-%m-%dT%H:%M:%SZ)"
  if branch=$(git -C "$root" symbolic-ref --short -q HEAD); then
    ldflags="$ldflags -X $bi.Branch=$branch"
  fi
fi
if [ -n "${SIGIL_VERSION:-}" ]; then
  ldflags="$ldflags -X $bi.Version=$SIGIL_VERSION"
fi

for pkg in "${pkgs[@]}"; do
  CGO_ENABLED=1 go build -C "$root" -buildvcs=auto -tags netgo,osusergo -trimpath \
    -ldflags "$ldflags" -o "$out/$(basename "$pkg")" "$pkg"
done
echo "built ${pkgs[*]} into $out (build time $build_time)"
