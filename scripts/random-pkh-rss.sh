#!/usr/bin/env bash
# Measures what 20,000 sign requests naming keys the signer does not hold do
# to the daemon: RSS, number of metric series, size of /metrics (issue #10:
# they used to grow without bound). Builds the binaries into a temporary
# directory, runs the mock enclave and the daemon on loopback, warms up with
# real signatures, then sends the requests over one keep-alive connection.
#
#   scripts/random-pkh-rss.sh [N]
set -euo pipefail
cd "$(dirname "$0")/.."
N=${1:-20000}
D=$(mktemp -d)
trap 'kill $SP $EP 2>/dev/null || true; rm -rf "$D"' EXIT
go build -o "$D/" ./cmd/sigil ./cmd/sigil-enclave ./cmd/sigil-load
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
watermark: {driver: mem}
EOC
PKH=$(./sigil -c sigil.yaml generate -t tz1 2>/dev/null | tail -1)
printf "tezos:\n  %s:\n    allow:\n      generic: [transaction]\n" "$PKH" >>sigil.yaml
./sigil -c sigil.yaml serve --no-list >sigil.log 2>&1 &
SP=$!
for _ in $(seq 200); do grep -q "signer ready" sigil.log && break; sleep 0.05; done
API=$(sed -n 's/.*msg="signer ready" address=\([^ ]*\) utility_address=\([^ ]*\).*/\1/p' sigil.log | head -1)
UT=$(sed -n 's/.*msg="signer ready" address=\([^ ]*\) utility_address=\([^ ]*\).*/\2/p' sigil.log | head -1)
./sigil-load --url "http://$API" --key "$PKH" --concurrency 8 --duration 2s >/dev/null 2>&1
# One request of each kind first (an unknown address: 404, a malformed one:
# 400): their statuses create the bounded address="unknown" series once.
curl -s -o /dev/null -X POST -d '"03"' "http://$API/keys/tz1VSUr8wwNhLAzempoch5d6hLRiTh8Cjcjb"
curl -s -o /dev/null -X POST -d '"03"' "http://$API/keys/x1"
sleep 1
snap() { echo "$(grep VmRSS /proc/$SP/status | awk '{print $2}') $(curl -s "http://$UT/metrics" | grep -vc '^#') $(curl -s "http://$UT/metrics" | wc -c)"; }
read -r R0 S0 M0 <<<"$(snap)"
python3 - "$API" "$N" <<'PY'
import http.client, random, sys
host, port = sys.argv[1].split(':')
c = http.client.HTTPConnection(host, int(port))
alpha = "123456789ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz"
for i in range(int(sys.argv[2])):
    pkh = "tz1" + "".join(random.choice(alpha) for _ in range(33)) if i % 2 else "x%d" % random.getrandbits(64)
    c.request("POST", "/keys/" + pkh, body='"03"', headers={"Content-Type": "application/json"})
    c.getresponse().read()
PY
sleep 1
read -r R1 S1 M1 <<<"$(snap)"
echo "$N requests to unknown keys: RSS ${R0} kB -> ${R1} kB; metric series ${S0} -> ${S1}; /metrics ${M0} -> ${M1} bytes"
