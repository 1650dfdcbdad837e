package signer

import (
	"encoding/binary"
	"sync"
	"time"

	"github.com/sigil-signer/sigil/domain"
	"github.com/sigil-signer/sigil/domain/tezos"
)

// reloadTag begins every reload message: 0xff, then "sigil:reload:v1".
const reloadTag = "\xffsigil:reload:v1"

// ReloadTagHex is reloadTag in hex, as the documentation gives it to
// shell scripts.
const ReloadTagHex = "ff736967696c3a72656c6f61643a7631"

// ReloadAuthWindow is how far a signed reload request's timestamp may be
// from the signer's clock, either way.
const ReloadAuthWindow = 5 * time.Minute

// ReloadMessage returns the bytes a client signs to ask for a reload
// (POST /reload when server.authorized_keys is configured):
//
//	0xff ‖ "sigil:reload:v1" ‖ Unix time in seconds (8 bytes, big-endian)
//
// 24 bytes in all. No sign request starts with 0xff (request.Parse
// refuses it: Tezos's watermarks are small numbers, and Sigil signs only
// 0x03, 0x05 and 0x11 to 0x13), and Signatory's authentication message
// starts with 0x04 0x01: a reload signature is never valid as either, and
// neither is ever valid as a reload signature.
func ReloadMessage(unix int64) []byte {
	b := make([]byte, 0, len(reloadTag)+8)
	b = append(b, reloadTag...)
	return binary.BigEndian.AppendUint64(b, uint64(unix))
}

// ReloadAuth authenticates reload requests by the server-wide authorized
// client keys. Each signed request is good once: its timestamp must be
// within ReloadAuthWindow of now and later than that of every request
// accepted before, so an observed request cannot be replayed.
type ReloadAuth struct {
	mu   sync.Mutex
	last int64 // Unix time of the last accepted request
}

// Verify checks that auth (base58, as the `authentication` query
// parameter carries it) is the signature by one of keys of
// ReloadMessage(unix), and that the timestamp is fresh and unused, as of
// now. It returns the signing key's hash. Errors are domain errors:
// missing authentication, a stale or reused timestamp KindUnauthorized; an
// unreadable signature KindInvalid; a signature by none of keys
// KindForbidden. Each wraps ErrAuthentication.
func (a *ReloadAuth) Verify(keys []tezos.PublicKey, unix int64, auth string, now time.Time) (tezos.PublicKeyHash, error) {
	if auth == "" {
		return tezos.PublicKeyHash{}, authError(domain.KindUnauthorized, "authentication required: sign the reload message with an authorized key and pass it as ?authentication= with its ?timestamp= (see docs/operations.md)")
	}
	if d := now.Sub(time.Unix(unix, 0)); d > ReloadAuthWindow || d < -ReloadAuthWindow {
		return tezos.PublicKeyHash{}, authError(domain.KindUnauthorized, "the signed timestamp %d is %s away from the signer's clock (at most %s either way): sign a fresh one", unix, d.Round(time.Second).Abs(), ReloadAuthWindow)
	}
	sig, err := tezos.ParseSignature(auth)
	if err != nil {
		return tezos.PublicKeyHash{}, authError(domain.KindInvalid, "authentication: %v", err)
	}
	msg := ReloadMessage(unix)
	var signer *tezos.PublicKey
	for i := range keys {
		if keys[i].Verify(msg, sig, tezos.SignVersion2) == nil {
			signer = &keys[i]
			break
		}
	}
	if signer == nil {
		return tezos.PublicKeyHash{}, authError(domain.KindForbidden, "authentication failed: the reload message is not signed by an authorized key")
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	if unix <= a.last {
		return tezos.PublicKeyHash{}, authError(domain.KindUnauthorized, "the signed timestamp %d was already used, or is older than one already used: sign a fresh one", unix)
	}
	a.last = unix
	return signer.Hash(), nil
}
