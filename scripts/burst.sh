#!/usr/bin/env bash
# Measures the consensus burst of 100 tz4 delegates (a preattestation and
# an attestation each, at once; file watermarks) against its crypto limit
# 200 × (BLS sign + verify) ÷ cores, in one run (see scripts/burst and
# docs/performance.md):
#
#   scripts/burst.sh [BINDIR] [-- burst flags]
#
# With no BINDIR, builds sigil and sigil-enclave from this tree into a
# temporary directory. Give BINDIR to measure another build.
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
go build -o "$BIN/burst" ./scripts/burst
"$BIN/burst" -bin "$BIN" "$@"
