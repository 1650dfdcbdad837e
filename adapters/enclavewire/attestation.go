package enclavewire

import (
	"bytes"
	"fmt"
	"unicode/utf8"
)

// The AttestationToken request of Sigil's attested channel
// (adapters/securechannel) fits the enclave protocol: a CBOR map with one
// entry naming the call, here with an empty map as its value (room for
// optional fields later). The reply is {"Ok": {"token": text}} with the
// enclave's current token (bound to the same TLS key as the connection's),
// or {"Err": …} when the enclave holds no valid token, or when the request
// came over a plain connection. An enclave that does not know the call
// (ECAD Labs' enclave-signer) answers it as a malformed request.

// MethodAttestationToken is the request's name.
const MethodAttestationToken = "AttestationToken"

// attestationTokenRequest is EncodeRequest(NewAttestationToken()).
var attestationTokenRequest = []byte{
	0xa1,                                                                                 // map, 1 entry
	0x70, 'A', 't', 't', 'e', 's', 't', 'a', 't', 'i', 'o', 'n', 'T', 'o', 'k', 'e', 'n', // text(16)
	0xa0, // map, 0 entries
}

// AttestationTokenRequest returns the payload (without the length prefix)
// of an AttestationToken request: 19 bytes, encoded once.
func AttestationTokenRequest() []byte { return bytes.Clone(attestationTokenRequest) }

// maxToken bounds a token carried in a reply.
const maxToken = 64 << 10

// AttestationTokenResult is the Ok value of the reply.
type AttestationTokenResult struct {
	Token string `cbor:"token"`
}

// EncodeAttestationTokenReply encodes the reply carrying token.
func EncodeAttestationTokenReply(token string) ([]byte, error) {
	return EncodeOk(AttestationTokenResult{Token: token})
}

// DecodeAttestationTokenReply decodes a reply: the token, a *RPCError for
// an {"Err": …} reply, or an error wrapping ErrMalformed.
func DecodeAttestationTokenReply(payload []byte) (string, error) {
	var r AttestationTokenResult
	if err := DecodeReply(payload, &r); err != nil {
		return "", err
	}
	switch {
	case r.Token == "":
		return "", fmt.Errorf("%w: AttestationToken reply: empty token", ErrMalformed)
	case len(r.Token) > maxToken:
		return "", fmt.Errorf("%w: AttestationToken reply: token of %d bytes", ErrMalformed, len(r.Token))
	case !utf8.ValidString(r.Token):
		return "", fmt.Errorf("%w: AttestationToken reply: token is not UTF-8", ErrMalformed)
	}
	return r.Token, nil
}
