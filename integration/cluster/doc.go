// Package cluster holds Sigil's multi-process integration tests: real
// `sigil` daemons and CLI runs, mock enclaves (cmd/sigil-enclave) and the
// Firestore emulator, started through integration/harness. They cover keys
// kept in Firestore (generate, import, sign, restart), two daemons sharing
// one key collection, double-signing protection across daemons with the
// Firestore watermark backend, durability of file watermarks across kill -9,
// and a Firestore outage during key generation. The package has no
// non-test code besides this comment.
package cluster
