// Package guardstate is the home of the enclave guard's state adapters
// (ports.GuardState): firestore, the production store (a Firestore database
// only the attested workload may write, reached with the enclave's own
// attested credentials), and memory, for tests and development (marks are
// lost at every restart). They are the enclave's own and import nothing of
// the daemon's watermark stores, so that sigil-enclave holds no daemon
// adapter.
package guardstate
