package file

import (
	"bytes"
	"errors"

	"github.com/sigil-signer/sigil/domain/tezos"
)

// prefixVh is the base58check prefix of a block payload hash ("vh…"),
// the form Signatory stores digests in.
var prefixVh = []byte{1, 106, 242}

func encodePayloadHash(d [32]byte) string { return tezos.EncodeBase58Check(prefixVh, d[:]) }

func decodePayloadHash(s string) ([32]byte, error) {
	var out [32]byte
	raw, err := tezos.DecodeBase58Check(s)
	if err != nil {
		return out, err
	}
	if len(raw) != len(prefixVh)+len(out) || !bytes.HasPrefix(raw, prefixVh) {
		return out, errors.New("not a vh… payload hash")
	}
	copy(out[:], raw[len(prefixVh):])
	return out, nil
}
