package tezos

import (
	"bytes"
	"crypto/sha256"
	"errors"
	"fmt"
)

const b58Alphabet = "123456789ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz"

var b58Index = func() [256]int8 {
	var t [256]int8
	for i := range t {
		t[i] = -1
	}
	for i := 0; i < len(b58Alphabet); i++ {
		t[b58Alphabet[i]] = int8(i)
	}
	return t
}()

// ErrChecksum is returned when a base58check string's checksum does not match.
var ErrChecksum = errors.New("base58check: bad checksum")

// b58Encode converts src to base58, working in limbs of 58^5 and reading
// the input 32 bits at a time (about 20 times fewer steps than byte by byte:
// signatures are encoded on every request).
func b58Encode(src []byte) string {
	const limb = 58 * 58 * 58 * 58 * 58 // 656,356,768 < 2^32
	zeros := 0
	for zeros < len(src) && src[zeros] == 0 {
		zeros++
	}
	body := src[zeros:]
	limbs := make([]uint32, 0, len(body)*138/500+2) // little-endian, base 58^5
	for i := 0; i < len(body); {
		n := min(4, len(body)-i)
		var chunk uint64
		for _, b := range body[i : i+n] {
			chunk = chunk<<8 | uint64(b)
		}
		i += n
		mult := uint64(1) << (8 * n)
		carry := chunk
		for j := range limbs {
			carry += uint64(limbs[j]) * mult
			limbs[j] = uint32(carry % limb)
			carry /= limb
		}
		for carry > 0 {
			limbs = append(limbs, uint32(carry%limb))
			carry /= limb
		}
	}
	digits := make([]byte, 0, len(limbs)*5)
	for _, l := range limbs {
		for range 5 {
			digits = append(digits, byte(l%58))
			l /= 58
		}
	}
	for len(digits) > 0 && digits[len(digits)-1] == 0 {
		digits = digits[:len(digits)-1]
	}
	out := make([]byte, zeros+len(digits))
	for k := range zeros {
		out[k] = '1'
	}
	for k, d := range digits {
		out[len(out)-1-k] = b58Alphabet[d]
	}
	return string(out)
}

func b58Decode(s string) ([]byte, error) {
	zeros := 0
	for zeros < len(s) && s[zeros] == '1' {
		zeros++
	}
	// log(58)/log(256) ~ 0.733
	buf := make([]byte, (len(s)-zeros)*733/1000+1)
	high := len(buf) - 1
	for i := zeros; i < len(s); i++ {
		v := b58Index[s[i]]
		if v < 0 {
			return nil, fmt.Errorf("base58: invalid character at position %d", i) // the character is not echoed: the input may be a secret
		}
		carry := int(v)
		j := len(buf) - 1
		for ; j > high || carry != 0; j-- {
			carry += 58 * int(buf[j])
			buf[j] = byte(carry)
			carry >>= 8
		}
		high = j
	}
	k := 0
	for k < len(buf) && buf[k] == 0 {
		k++
	}
	out := make([]byte, zeros+len(buf)-k)
	copy(out[zeros:], buf[k:])
	clear(buf) // the input may be a secret key
	return out, nil
}

func checksum(b []byte) []byte {
	h := sha256.Sum256(b)
	h = sha256.Sum256(h[:])
	return h[:4]
}

// EncodeBase58Check encodes payload with the given version prefix and a
// 4-byte double-SHA256 checksum.
func EncodeBase58Check(prefix, payload []byte) string {
	buf := make([]byte, 0, len(prefix)+len(payload)+4)
	buf = append(buf, prefix...)
	buf = append(buf, payload...)
	buf = append(buf, checksum(buf)...)
	return b58Encode(buf)
}

// maxBase58Check bounds the strings decodeBase58Check accepts: the longest
// form we parse (BLsig…) has 142 characters, and decoding is quadratic in
// the length, so a bound keeps hostile input cheap.
const maxBase58Check = 256

// decodeBase58Check returns the bytes (prefix included) of a base58check string.
// DecodeBase58Check decodes a base58check string (checksum verified) into
// its prefix and payload bytes.
func DecodeBase58Check(s string) ([]byte, error) { return decodeBase58Check(s) }

func decodeBase58Check(s string) ([]byte, error) {
	if len(s) > maxBase58Check {
		return nil, fmt.Errorf("base58check: too long (%d characters)", len(s))
	}
	raw, err := b58Decode(s)
	if err != nil {
		return nil, err
	}
	if len(raw) < 4 {
		return nil, errors.New("base58check: too short")
	}
	body, sum := raw[:len(raw)-4], raw[len(raw)-4:]
	if !bytes.Equal(checksum(body), sum) {
		return nil, ErrChecksum
	}
	return body, nil
}
