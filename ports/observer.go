package ports

import "time"

// SignEvent describes one request that reached the signing step: after its
// authentication, its policy and the policy hook, the high-watermark check
// and the vault (where Signatory's SignInterceptor measures).
type SignEvent struct {
	// Vault is the vault's driver display name, as Signatory's vaults name
	// themselves (File, Mem, ConfidentialSpace, NitroEnclave).
	Vault   string
	Address string // tz address of the signing key
	// Request is the request kind as Signatory names it: block,
	// preattestation, attestation, attestation_with_dal, generic, pack.
	Request string
	// Consensus is set for block, preattestation and attestation requests,
	// which carry ChainID (base58) and Round.
	Consensus bool
	ChainID   string
	Round     int32
	// Ops counts the operation kinds inside a generic request; nil for
	// other requests.
	Ops map[string]int
	// Duration is the time of the whole step (watermark and vault).
	Duration time.Duration
	// Err is why the step failed (a watermark refusal is a
	// domain.KindConflict error); nil when the request was signed.
	Err error
}

// Policy violation types (PolicyEvent.Violation) besides the refused
// request kind or operation kind, as Signatory's policy_violation_total
// names them.
const (
	ViolationAuthentication = "authentication" // the client may not use this key (its authorized_keys)
	ViolationPolicyHook     = "policy_hook"    // the policy hook refused or failed
)

// PolicyEvent is a request the signing policy or the policy hook refused.
type PolicyEvent struct {
	Address string // the key's tz address
	// Violation is the refused request kind (block, generic, pack, …), the
	// refused operation kind (transaction, ballot:nay, …), or one of the
	// Violation* constants.
	Violation string
}

// Watermark outcomes (WatermarkEvent.Outcome).
const (
	WatermarkAccepted = "accepted" // above the recorded mark (or the very message of a mark without signature): to be signed and recorded
	WatermarkReplayed = "replayed" // identical repeat: the recorded signature answered
	WatermarkRejected = "rejected" // at or below the mark: refused (409)
	WatermarkFailed   = "failed"   // the store could not decide or record
	WatermarkNone     = "none"     // the request carries no watermark (generic, pack)
)

// WatermarkEvent is the high-watermark step of one request that reached
// the signing step (every request kind, as Signatory counts them).
type WatermarkEvent struct {
	Address  string
	Request  string        // request kind, as in SignEvent
	ChainID  string        // consensus requests, else ""
	Outcome  string        // one of the Watermark* constants
	Duration time.Duration // time spent checking and recording the mark
}

// SignObserver receives the signer's events (metrics, audit).
// Implementations must be fast and must not block.
type SignObserver interface {
	// ObserveSign is called once for every request that reached the
	// signing step.
	ObserveSign(SignEvent)
	// ObservePolicy is called for every request the policy or the policy
	// hook refused (but for the reasons Signatory does not count: a key
	// not listed, allowed_chains, jwt_users).
	ObservePolicy(PolicyEvent)
	// ObserveWatermark is called once for every request that reached the
	// signing step, before ObserveSign.
	ObserveWatermark(WatermarkEvent)
}
