// Package signer is Sigil's key lifecycle and signing service: it loads the
// sealed keys of every vault into its enclave at start, generates and imports
// keys (enclave first, storage second, visible only once both succeeded),
// lists them, and signs requests and BLS proofs of possession. It depends
// only on the ports and on the pure domain packages.
package signer
