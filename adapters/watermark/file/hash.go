package file

import (
	"bytes"
	"crypto/sha256"
	"errors"
	"math/big"
)

// prefixVh is the base58check prefix of a block payload hash ("vh…"),
// the form Signatory stores digests in.
var prefixVh = []byte{1, 106, 242}

func encodePayloadHash(d [32]byte) string {
	raw := append(append([]byte{}, prefixVh...), d[:]...)
	h := sha256.Sum256(raw)
	h = sha256.Sum256(h[:])
	raw = append(raw, h[:4]...)
	n := new(big.Int).SetBytes(raw)
	radix, mod := big.NewInt(58), new(big.Int)
	var rev []byte
	for n.Sign() > 0 {
		n.DivMod(n, radix, mod)
		rev = append(rev, b58Alphabet[mod.Int64()])
	}
	for i := 0; i < len(raw) && raw[i] == 0; i++ {
		rev = append(rev, '1')
	}
	for i, j := 0, len(rev)-1; i < j; i, j = i+1, j-1 {
		rev[i], rev[j] = rev[j], rev[i]
	}
	return string(rev)
}

const b58Alphabet = "123456789ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz"

func decodePayloadHash(s string) ([32]byte, error) {
	var out [32]byte
	if len(s) > 64 {
		return out, errors.New("not a vh… payload hash")
	}
	n := new(big.Int)
	radix := big.NewInt(58)
	zeros := 0
	for zeros < len(s) && s[zeros] == '1' {
		zeros++
	}
	for i := 0; i < len(s); i++ {
		v := bytes.IndexByte([]byte(b58Alphabet), s[i])
		if v < 0 {
			return out, errors.New("invalid base58 character")
		}
		n.Mul(n, radix)
		n.Add(n, big.NewInt(int64(v)))
	}
	raw := append(make([]byte, zeros), n.Bytes()...)
	if len(raw) != len(prefixVh)+32+4 || !bytes.HasPrefix(raw, prefixVh) {
		return out, errors.New("not a vh… payload hash")
	}
	body, sum := raw[:len(raw)-4], raw[len(raw)-4:]
	h := sha256.Sum256(body)
	h = sha256.Sum256(h[:])
	if !bytes.Equal(h[:4], sum) {
		return out, errors.New("bad base58 checksum")
	}
	copy(out[:], body[len(prefixVh):])
	return out, nil
}
