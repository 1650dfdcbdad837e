// Package attestcost measures what the attested channel costs end to end
// (issue 20): two sigil-enclave processes, one plain and one --attested
// (with attestationtest's fake launcher and issuer), each behind its own
// `sigil serve`, loaded by sigil-load in alternating rounds in one run;
// CPU per signed request of each daemon and each enclave (from
// /proc/PID/stat), and the cost of a new connection (TCP connect and
// Initialize, against TLS 1.3 handshake with the token check and
// Initialize) on each side. Its test runs a short measurement in CI, so
// that the command docs/performance.md gives keeps working:
//
//	go test -run TestAttestCost -v ./scripts/attestcost/ -args -requests 20000 -rounds 3 -connects 500
package attestcost
