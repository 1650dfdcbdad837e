package ports

import "time"

// SignEvent describes one signing attempt that reached a vault.
type SignEvent struct {
	Vault   string
	Address string // tz address of the signing key
	Request string // request kind: block, preattestation, attestation, generic, …
	ChainID string // base58 chain id for consensus requests, else empty
	// Ops counts the operation kinds inside a generic request.
	Ops      map[string]int
	Duration time.Duration
	Err      error
}

// SignObserver receives an event per signing attempt (metrics, audit).
// Implementations must be fast and must not block.
type SignObserver interface {
	ObserveSign(SignEvent)
}
