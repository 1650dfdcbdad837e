#!/usr/bin/env bash
# Measures a legitimate client's latency while another host keeps N
# connections trickling request headers one byte at a time (a slowloris;
# issue 18: 1,100 of them pushed requests to 7.6–9.0 s). Builds the
# binaries (or takes SIGIL_BIN: a directory holding another sigil, e.g. an
# older build to compare), runs the mock enclave and the daemon on
# loopback with its default listener settings, then runs sigil-load with
# --trickle N from 127.0.0.2 and the measured clients from 127.0.0.1, a new
# connection per request (so each goes through the accept queue).
#
#   scripts/trickle-load.sh [N] [DURATION]      # N=0: the same load without trickling
#
# OP=attestation sends consensus requests instead of generic ones (every
# signature then commits a watermark: the file backend and the witness).
set -euo pipefail
cd "$(dirname "$0")/.."
N=${1:-1100}
DUR=${2:-10s}
OP=${OP:-generic}
D=$(mktemp -d)
trap 'kill $SP $EP 2>/dev/null || true; rm -rf "$D"' EXIT
go build -o "$D/" ./cmd/sigil ./cmd/sigil-enclave ./cmd/sigil-load
SIGIL="$D/sigil"
if [ -n "${SIGIL_BIN:-}" ]; then SIGIL="$SIGIL_BIN/sigil"; fi
ulimit -n 65536 2>/dev/null || true
cd "$D"
./sigil-enclave --listen 127.0.0.1:0 --kms passthrough --log-level warn >enc.out 2>enc.log &
EP=$!
for _ in $(seq 200); do grep -q "listening on" enc.out 2>/dev/null && break; sleep 0.05; done
PORT=$(sed -n 's/listening on 127.0.0.1:\([0-9]*\)/\1/p' enc.out)
cat >sigil.yaml <<EOC
base_dir: $D
server: {address: 127.0.0.1:0, utility_address: 127.0.0.1:0}
vaults:
  cs:
    driver: confidentialspace
    config: {host: 127.0.0.1, port: "$PORT", wip_provider_path: w, encryption_key_path: k}
EOC
PKH=$("$SIGIL" -c sigil.yaml generate -t tz1 2>/dev/null | tail -1)
printf "tezos:\n  %s:\n    allow:\n      generic: [transaction]\n      attestation:\n" "$PKH" >>sigil.yaml
"$SIGIL" -c sigil.yaml serve --no-list >sigil.log 2>&1 &
SP=$!
for _ in $(seq 200); do grep -q "signer ready" sigil.log && break; sleep 0.05; done
API=$(sed -n 's/.*msg="signer ready" address=\([^ ]*\) utility_address=.*/\1/p' sigil.log | head -1)
echo "load before: $(cut -d' ' -f1-3 /proc/loadavg)"
TRICKLE=()
if [ "$N" -gt 0 ]; then TRICKLE=(--trickle "$N" --trickle-from 127.0.0.2); fi
./sigil-load --url "http://$API" --key "$PKH" --op "$OP" --concurrency 4 --new-connections --duration "$DUR" --timeout 30s "${TRICKLE[@]}"
echo "daemon CPU: $(awk '{printf "%.2f s", ($14+$15)/100}' /proc/$SP/stat); log lines: $(wc -l <sigil.log), of which refusals: $(grep -c 'connection' sigil.log || true)"
