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

// Policy violation types (PolicyEvent.Violation).
const (
	ViolationNotConfigured = "not_configured"  // the key is not in the tezos section
	ViolationRequestKind   = "request_kind"    // the request kind is not allowed
	ViolationOperation     = "operation_kind"  // a generic operation kind is not allowed
	ViolationChain         = "chain"           // the chain is not in allowed_chains
	ViolationClient        = "authorized_keys" // the client key may not use this key
	ViolationJWTUser       = "jwt_user"        // the JWT user may not use this key
	ViolationPolicyHook    = "policy_hook"     // the policy hook refused
)

// PolicyEvent is a request the signing policy refused.
type PolicyEvent struct {
	Address   string // the key's tz address
	Request   string // the request kind
	Violation string // one of the Violation* constants
}

// Watermark outcomes (WatermarkEvent.Outcome).
const (
	WatermarkAccepted = "accepted" // above the recorded mark: signed and recorded
	WatermarkReplayed = "replayed" // identical repeat: the recorded signature answered
	WatermarkRejected = "rejected" // at or below the mark: refused
	WatermarkFailed   = "failed"   // the store could not decide or record
)

// Watermark rejection reasons (WatermarkEvent.Reason).
const (
	ReasonNotAbove        = "not_above_watermark" // level/round at or below the recorded mark
	ReasonVersionMismatch = "version_mismatch"    // identical message, other BLS signing version
)

// WatermarkEvent is the high-watermark decision on one consensus request.
type WatermarkEvent struct {
	Address  string
	Request  string // block, preattestation, attestation
	ChainID  string
	Round    int32
	Outcome  string        // one of the Watermark* constants
	Reason   string        // for WatermarkRejected
	Duration time.Duration // time spent checking and recording the mark
}

// SignObserver receives the signer's events (metrics, audit).
// Implementations must be fast and must not block.
type SignObserver interface {
	// ObserveSign is called for every signing attempt that reached a vault.
	ObserveSign(SignEvent)
	// ObservePolicy is called for every request the policy refused.
	ObservePolicy(PolicyEvent)
	// ObserveWatermark is called for every consensus request's watermark
	// decision.
	ObserveWatermark(WatermarkEvent)
}
