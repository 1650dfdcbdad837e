#!/usr/bin/env bash
# Measures the daemon's CPU per request and latency against a null HTTP
# server and a bare enclave round trip, and the pool's scaling, in one run
# (see scripts/perfratios and docs/performance.md).
#
#   scripts/perf-ratios.sh [BINDIR] [-- extra perfratios flags]
#
# With no BINDIR, builds sigil, sigil-enclave and sigil-load from this tree
# into a temporary directory. Give BINDIR to measure other builds (e.g. an
# older commit built with `go build -o DIR ./cmd/...`).
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=${1:-}
[ $# -gt 0 ] && shift
[ "${1:-}" = "--" ] && shift
if [ -z "$BIN" ]; then
  BIN=$(mktemp -d)
  trap 'rm -rf "$BIN"' EXIT
  go build -o "$BIN/" ./cmd/sigil ./cmd/sigil-enclave ./cmd/sigil-load
fi
go build -o "$BIN/perfratios" ./scripts/perfratios
"$BIN/perfratios" -bin "$BIN" "$@"
