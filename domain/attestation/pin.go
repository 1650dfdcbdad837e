package attestation

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"strings"
)

// PinPrefix starts the text form of a Pin.
const PinPrefix = "sha256:"

// Pin identifies a public key by the SHA-256 of its DER SubjectPublicKeyInfo
// (the bytes `openssl pkey -pubout -outform DER` prints). Its text form is
// "sha256:" followed by 64 lowercase hex digits.
type Pin [sha256.Size]byte

// PinOf returns the pin of a DER SubjectPublicKeyInfo.
func PinOf(spkiDER []byte) Pin { return sha256.Sum256(spkiDER) }

// String returns "sha256:<64 lowercase hex digits>".
func (p Pin) String() string { return PinPrefix + hex.EncodeToString(p[:]) }

// Nonce returns the hex form of the hash (the pin without its prefix): the
// nonce an enclave asks the launcher to put in a token bound to this key.
func (p Pin) Nonce() string { return hex.EncodeToString(p[:]) }

// NonceOf returns the token nonce that binds a token to the key whose DER
// SubjectPublicKeyInfo is spkiDER: the lowercase hex SHA-256 of those
// bytes (64 characters, within the launcher's 8 to 88 bytes per nonce).
func NonceOf(spkiDER []byte) string { return PinOf(spkiDER).Nonce() }

// ParsePin parses "sha256:" followed by 64 hex digits (either case). The
// error names the text it could not read.
func ParsePin(s string) (Pin, error) {
	var p Pin
	rest, ok := strings.CutPrefix(s, PinPrefix)
	if !ok {
		return p, fmt.Errorf("key pin %q: want %s followed by 64 hex digits", s, PinPrefix)
	}
	if len(rest) != 2*len(p) {
		return p, fmt.Errorf("key pin %q: want 64 hex digits after %s, got %d characters", s, PinPrefix, len(rest))
	}
	if _, err := hex.Decode(p[:], []byte(rest)); err != nil {
		return Pin{}, fmt.Errorf("key pin %q: not hex after %s", s, PinPrefix)
	}
	return p, nil
}

// ParsePins parses a list of pins separated by commas and/or white space
// (an environment variable's value). Empty entries are skipped and a pin
// listed twice counts once, so the result may be empty; the error names
// the entry and its position (1-based).
func ParsePins(s string) ([]Pin, error) {
	fields := strings.FieldsFunc(s, func(r rune) bool {
		return r == ',' || r == ' ' || r == '\t' || r == '\n' || r == '\r'
	})
	out := make([]Pin, 0, len(fields))
	seen := make(map[Pin]bool, len(fields))
	for i, f := range fields {
		p, err := ParsePin(f)
		if err != nil {
			return nil, fmt.Errorf("entry %d: %w", i+1, err)
		}
		if !seen[p] {
			seen[p] = true
			out = append(out, p)
		}
	}
	return out, nil
}

// FormatPins is the inverse of ParsePins: the pins separated by commas.
func FormatPins(pins []Pin) string {
	parts := make([]string, len(pins))
	for i, p := range pins {
		parts[i] = p.String()
	}
	return strings.Join(parts, ",")
}

// ContainsPin reports whether pins lists p.
func ContainsPin(pins []Pin, p Pin) bool {
	for _, q := range pins {
		if q == p {
			return true
		}
	}
	return false
}
