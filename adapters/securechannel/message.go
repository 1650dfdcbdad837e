package securechannel

import (
	"bytes"
	"crypto/x509"
	"encoding/asn1"
	"errors"
	"fmt"
	"unicode/utf8"

	"github.com/sigil-signer/sigil/adapters/enclavewire"
)

// TokenOID identifies the certificate extension that carries the enclave's
// attestation token: its value is the DER UTF8String of the compact JWT.
// Sigil has no IANA Private Enterprise Number, so the OID sits in the arc
// 1.2.840.113556.1.8000.2554 that Microsoft provides for self-allocated
// identifiers, made unique by the GUID f4b5b0cf-8a2b-4481-a148-3d2d8fe03257
// (split into 16, 16, 16, 16, 16, 24 and 24 bits). The extension is not
// critical. Never change it: daemons and enclaves of different releases
// must agree on it.
var TokenOID = asn1.ObjectIdentifier{1, 2, 840, 113556, 1, 8000, 2554, 62645, 45263, 35371, 17537, 41288, 4009359, 14692951}

// maxToken bounds a token carried in a certificate or a reply.
const maxToken = 64 << 10

// TokenFromCertificate returns the token a certificate of the enclave
// carries (not verified).
func TokenFromCertificate(c *x509.Certificate) (string, error) {
	var tok string
	found := false
	for _, e := range c.Extensions {
		if !e.Id.Equal(TokenOID) {
			continue
		}
		if found {
			return "", errors.New("the enclave's certificate carries two attestation token extensions")
		}
		found = true
		rest, err := asn1.UnmarshalWithParams(e.Value, &tok, "utf8")
		if err != nil || len(rest) != 0 {
			return "", fmt.Errorf("the enclave's certificate: attestation token extension %v is not one UTF8String", TokenOID)
		}
	}
	if !found {
		return "", fmt.Errorf("the server's certificate carries no attestation token (extension %v): not a Sigil enclave on the attested channel, or a man in the middle", TokenOID)
	}
	if len(tok) > maxToken {
		return "", fmt.Errorf("the enclave's certificate: attestation token of %d bytes (at most %d)", len(tok), maxToken)
	}
	return tok, nil
}

// The AttestationToken request fits the enclave protocol: a CBOR map with
// one entry naming the call, here with an empty map as its value (room for
// optional fields later), encoded canonically. The reply is {"Ok":
// {"token": text}} with the enclave's current token (bound to the same TLS
// key as the connection's), or {"Err": …} when the enclave holds no valid
// token, or when the request came over a plain connection.
var attestationTokenRequest = []byte{
	0xa1,                                                                                 // map, 1 entry
	0x70, 'A', 't', 't', 'e', 's', 't', 'a', 't', 'i', 'o', 'n', 'T', 'o', 'k', 'e', 'n', // text(16)
	0xa0, // map, 0 entries
}

// MethodAttestationToken is the request's name.
const MethodAttestationToken = "AttestationToken"

// AttestationTokenRequest returns the payload (without the length prefix)
// of an AttestationToken request.
func AttestationTokenRequest() []byte { return bytes.Clone(attestationTokenRequest) }

// IsAttestationTokenRequest reports whether payload is an AttestationToken
// request. It compares bytes (no decoding), so a server can ask it of every
// frame before enclavewire.DecodeRequest at no cost; any other encoding is left to
// enclavewire.DecodeRequest, which refuses it as an unknown call.
func IsAttestationTokenRequest(payload []byte) bool {
	return bytes.Equal(payload, attestationTokenRequest)
}

// AttestationTokenResult is the Ok value of the reply.
type AttestationTokenResult struct {
	Token string `cbor:"token"`
}

// EncodeAttestationTokenReply encodes the reply carrying token.
func EncodeAttestationTokenReply(token string) ([]byte, error) {
	return enclavewire.EncodeOk(AttestationTokenResult{Token: token})
}

// DecodeAttestationTokenReply decodes a reply: the token, a *enclavewire.RPCError
// for an {"Err": …} reply, or an error wrapping enclavewire.ErrMalformed.
func DecodeAttestationTokenReply(payload []byte) (string, error) {
	var r AttestationTokenResult
	if err := enclavewire.DecodeReply(payload, &r); err != nil {
		return "", err
	}
	switch {
	case r.Token == "":
		return "", fmt.Errorf("%w: AttestationToken reply: empty token", enclavewire.ErrMalformed)
	case len(r.Token) > maxToken:
		return "", fmt.Errorf("%w: AttestationToken reply: token of %d bytes", enclavewire.ErrMalformed, len(r.Token))
	case !utf8.ValidString(r.Token):
		return "", fmt.Errorf("%w: AttestationToken reply: token is not UTF-8", enclavewire.ErrMalformed)
	}
	return r.Token, nil
}

// ErrPlainChannel is the message of the error reply to AttestationToken on
// a connection that is not the attested channel.
const ErrPlainChannel = "AttestationToken: this connection is not the attested channel"

// HandlePlainFrame is what a server of the plain protocol answers before
// decoding a frame: for an AttestationToken request, an error reply (there
// is no token to give on a plain connection) and true; for anything else,
// false.
func HandlePlainFrame(payload []byte) ([]byte, bool) {
	if !IsAttestationTokenRequest(payload) {
		return nil, false
	}
	reply, err := enclavewire.EncodeErr(enclavewire.NewError(ErrPlainChannel))
	if err != nil {
		panic(err) // a constant message; cannot fail
	}
	return reply, true
}
