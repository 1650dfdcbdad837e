package securechannel

import (
	"crypto/x509"
	"encoding/asn1"
	"errors"
	"fmt"
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

// maxToken bounds a token carried in a certificate.
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
