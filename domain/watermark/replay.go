package watermark

import (
	"errors"
	"fmt"

	"github.com/sigil-signer/sigil/domain"
	"github.com/sigil-signer/sigil/domain/tezos"
)

// ErrVersionMismatch is in the chain of the error of ReplaySignature when the
// recorded signature was made with another BLS signing version.
var ErrVersionMismatch = errors.New("signing version differs from the recorded signature's")

// ReplaySignature returns the signature m records for an identical earlier request
// (Decide said Replay, or a store's Commit returned another signature for
// the same message), for the key pk, the message msg and the BLS signing
// version asked for now. The replay identity is the whole request: the
// recorded signature is handed out only if it verifies for this message
// under this version (a BLS key signs the same message differently under
// versions 1 and 2, and a client must never receive a signature in a
// scheme it did not ask for). Otherwise the request is refused as a
// domain.KindConflict: signing again would be a second signature at the
// same level and round.
func ReplaySignature(pk tezos.PublicKey, k Key, m Mark, msg []byte, version uint8) (tezos.Signature, error) {
	sig, err := tezos.ParseSignature(m.Signature)
	if err != nil {
		return tezos.Signature{}, domain.Errorf(domain.KindInternal, "recorded signature at %s is unreadable: %w", m, err)
	}
	if pk.Verify(msg, sig, version) == nil {
		return sig, nil
	}
	if pk.Type == tezos.BLS {
		for _, v := range []uint8{tezos.SignVersion1, tezos.SignVersion2} {
			if v != version && !(version == tezos.SignVersionLatest && v == tezos.SignVersion2) && pk.Verify(msg, sig, v) == nil {
				return tezos.Signature{}, &domain.Error{Kind: domain.KindConflict, Err: ErrVersionMismatch, Msg: fmt.Sprintf(
					"%s %s for %s on %s was already signed with BLS signing version %d; this identical request asks for version %d, which would be a second signature at the same level and round",
					k.Kind, m, k.PKH, k.ChainID, v, version)}
			}
		}
	}
	return tezos.Signature{}, domain.Errorf(domain.KindConflict,
		"%s %s for %s on %s: the recorded signature does not verify for this request; refusing to sign again at the same level and round",
		k.Kind, m, k.PKH, k.ChainID)
}
