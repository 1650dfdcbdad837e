// Package cluster holds Sigil's multi-process integration tests: real
// `sigil` daemons and CLI runs, mock enclaves (cmd/sigil-enclave), the
// Firestore emulator and dynalite (a DynamoDB implementation), started
// through integration/harness. They cover keys kept in Firestore (generate,
// import, sign, restart), two daemons sharing one key collection,
// double-signing protection across daemons (one test over the Firestore
// and the DynamoDB backends), durability of file watermarks across kill
// -9, a Firestore outage during key generation and a DynamoDB outage while
// signing. The package has no non-test code besides this comment.
package cluster
