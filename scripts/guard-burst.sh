#!/usr/bin/env bash
# Measures the 100-delegate tz4 burst (scripts/burst) with the enclave's
# guard off and on, alternating, in one sitting: the guard's state in a
# Firestore emulator started here (Java and the Google Cloud SDK's
# cloud-firestore-emulator), its policy consensus-only for tz4 keys. The
# guard is turned on through sigil-enclave's launch environment
# (SIGIL_ENCLAVE_GUARD_POLICY, SIGIL_ENCLAVE_GUARD_FIRESTORE_PROJECT,
# FIRESTORE_EMULATOR_HOST), which scripts/burst's enclave inherits:
#
#   scripts/guard-burst.sh [ROUNDS] [-- burst flags]
#
# ROUNDS (default 2) is how many off/on pairs to run.
set -euo pipefail
cd "$(dirname "$0")/.."
ROUNDS=${1:-2}
[ $# -gt 0 ] && [ "$1" != "--" ] && shift
[ "${1:-}" = "--" ] && shift
JAR=${SIGIL_FIRESTORE_EMULATOR_JAR:-}
if [ -z "$JAR" ]; then
  for c in /usr/lib/google-cloud-sdk /usr/share/google-cloud-sdk /opt/google-cloud-sdk "$HOME/google-cloud-sdk"; do
    [ -f "$c/platform/cloud-firestore-emulator/cloud-firestore-emulator.jar" ] && JAR="$c/platform/cloud-firestore-emulator/cloud-firestore-emulator.jar" && break
  done
fi
[ -n "$JAR" ] || { echo "guard-burst: no cloud-firestore-emulator.jar (set SIGIL_FIRESTORE_EMULATOR_JAR)" >&2; exit 1; }
BIN=$(mktemp -d)
PORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
java -Duser.language=en -XX:+UseSerialGC -XX:TieredStopAtLevel=1 -cp "$JAR" \
  com.google.cloud.datastore.emulator.firestore.CloudFirestore --host=127.0.0.1 --port="$PORT" >"$BIN/emulator.log" 2>&1 &
EMU=$!
trap 'kill "$EMU" 2>/dev/null || true; wait "$EMU" 2>/dev/null || true; rm -rf "$BIN"' EXIT
for _ in $(seq 1 180); do
  curl -fs "http://127.0.0.1:$PORT/" >/dev/null 2>&1 && break
  sleep 0.5
done
go build -o "$BIN/" ./cmd/sigil ./cmd/sigil-enclave
POLICY='{"key_types":{"tz4":{"allow":{"block":[],"preattestation":[],"attestation":[]}}}}'
for i in $(seq 1 "$ROUNDS"); do
  echo "== guard off (round $i)"
  scripts/burst.sh "$BIN" -- "$@"
  echo "== guard on, Firestore emulator (round $i)"
  FIRESTORE_EMULATOR_HOST=127.0.0.1:$PORT SIGIL_ENCLAVE_GUARD_POLICY=$POLICY \
    SIGIL_ENCLAVE_GUARD_FIRESTORE_PROJECT=guard-burst-$i scripts/burst.sh "$BIN" -- "$@"
done
