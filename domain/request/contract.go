package request

import (
	"bytes"
	"fmt"

	"github.com/sigil-signer/sigil/domain"
	"github.com/sigil-signer/sigil/domain/tezos"
)

// Contract is a contract id as the protocol encodes it (Octez
// contract_repr.ml): tag 0 then a tagged key hash (an implicit account,
// tz1…tz4), or tag 1 then a 20-byte contract hash and one padding byte (an
// originated contract, KT1…). The padding byte is always zero in a
// Contract, so that two encodings of one contract compare equal.
type Contract [22]byte

var prefixKT1 = []byte{2, 90, 121}

// IsZero reports whether c is the zero value (no contract).
func (c Contract) IsZero() bool { return c == Contract{} }

// String returns the contract's address: tz1…tz4 or KT1….
func (c Contract) String() string {
	switch c[0] {
	case 0:
		h := tezos.PublicKeyHash{Type: tezos.KeyType(c[1] + 1)}
		copy(h.Hash[:], c[2:])
		return h.String()
	case 1:
		return tezos.EncodeBase58Check(prefixKT1, c[1:21])
	}
	return ""
}

// ParseContract parses a contract address: an implicit account (tz1…tz4)
// or an originated contract (KT1…), checksum verified.
func ParseContract(s string) (Contract, error) {
	var c Contract
	if h, err := tezos.ParsePublicKeyHash(s); err == nil {
		c[0] = 0
		copy(c[1:], h.Tagged())
		return c, nil
	}
	raw, err := tezos.DecodeBase58Check(s)
	if err != nil || len(raw) != len(prefixKT1)+20 || !bytes.HasPrefix(raw, prefixKT1) {
		return Contract{}, domain.Errorf(domain.KindInvalid, "invalid contract address %s: want tz1…, tz2…, tz3…, tz4… or KT1… with a valid checksum", domain.EchoName(s))
	}
	c[0] = 1
	copy(c[1:21], raw[len(prefixKT1):])
	return c, nil
}

// contractFrom returns the Contract of an encoded contract id b (22 bytes,
// as reader.contract accepted it).
func contractFrom(b []byte) Contract {
	var c Contract
	if len(b) != len(c) {
		panic(fmt.Sprintf("request: contract id of %d bytes", len(b)))
	}
	copy(c[:], b)
	if c[0] == 1 {
		c[21] = 0 // padding
	}
	return c
}
