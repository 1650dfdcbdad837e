#!/usr/bin/env bash
# Measures the enclave link at rest and across one enclave restart on real
# processes (see scripts/linksoak and docs/performance.md):
#
#   scripts/link-soak.sh [BINDIR] [-- linksoak flags]
#   scripts/link-soak.sh -- -mode idle -idle 1h        # the one-hour idle soak
#   scripts/link-soak.sh -- -mode restart              # one enclave restart
#
# With no BINDIR, builds sigil and sigil-enclave from this tree into a
# temporary directory.
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=${1:-}
[ $# -gt 0 ] && [ "$1" != "--" ] && shift
[ "${1:-}" = "--" ] && shift
if [ -z "$BIN" ] || [ "$BIN" = "--" ]; then
  BIN=$(mktemp -d)
  trap 'rm -rf "$BIN"' EXIT
  go build -o "$BIN/" ./cmd/sigil ./cmd/sigil-enclave
fi
go build -o "$BIN/linksoak" ./scripts/linksoak
"$BIN/linksoak" -bin "$BIN" "$@"
