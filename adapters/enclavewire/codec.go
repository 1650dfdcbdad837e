package enclavewire

import (
	"bytes"
	"errors"
	"fmt"
	"reflect"

	"github.com/fxamacker/cbor/v2"
)

// Encoding: fxamacker/cbor's defaults, which is what Signatory's Go client
// uses (cbor.Marshal): struct fields in declaration order (no sorting),
// shortest integer forms, definite lengths. The only deviation is that a nil
// byte slice encodes as an empty byte string rather than null (the Rust
// enclave would reject null where it expects bytes); Signatory never sends
// nil slices, so its bytes are unaffected.
var encMode = func() cbor.EncMode {
	em, err := cbor.EncOptions{
		Sort:          cbor.SortNone,
		IndefLength:   cbor.IndefLengthForbidden,
		NilContainers: cbor.NilContainerAsEmpty,
		TagsMd:        cbor.TagsForbidden,
	}.EncMode()
	if err != nil {
		panic(err) // constant options; cannot fail
	}
	return em
}()

// Decoding is strict: duplicate map keys, unknown struct fields, tags,
// indefinite lengths, invalid UTF-8 and case-insensitive field matches are
// all errors, and nesting and sizes are bounded.
var decMode = func() cbor.DecMode {
	dm, err := cbor.DecOptions{
		DupMapKey:         cbor.DupMapKeyEnforcedAPF,
		MaxNestedLevels:   32,
		MaxArrayElements:  1 << 16,
		MaxMapPairs:       64,
		IndefLength:       cbor.IndefLengthForbidden,
		TagsMd:            cbor.TagsForbidden,
		ExtraReturnErrors: cbor.ExtraDecErrorUnknownField,
		UTF8:              cbor.UTF8RejectInvalid,
		FieldNameMatching: cbor.FieldNameMatchingCaseSensitive,
		DefaultMapType:    reflect.TypeOf(map[string]any(nil)),
	}.DecMode()
	if err != nil {
		panic(err) // constant options; cannot fail
	}
	return dm
}()

// EncodeRequest encodes r. It checks that exactly one call is set.
func EncodeRequest(r *Request) ([]byte, error) {
	if n := r.count(); n != 1 {
		return nil, fmt.Errorf("rpc: a request must name exactly one call, this one names %d", n)
	}
	if r.Import != nil && len(r.Import) == 0 || r.PublicKeyFrom != nil && len(r.PublicKeyFrom) == 0 {
		return nil, errors.New("rpc: empty sealed key blob")
	}
	if r.InitializeAWS != nil {
		return encMode.Marshal(struct {
			Initialize *AWSCredentials `cbor:"Initialize"`
		}{r.InitializeAWS})
	}
	return encMode.Marshal(r)
}

func (r *Request) count() int {
	if r == nil {
		return 0
	}
	n := 0
	for _, set := range []bool{
		r.Initialize != nil, r.InitializeAWS != nil, r.Import != nil, r.ImportUnencrypted != nil, r.Generate != nil,
		r.GenerateAndImport != nil, r.Sign != nil, r.SignWith != nil, r.PublicKey != nil,
		r.PublicKeyFrom != nil, r.ProvePossession != nil, r.AttestationToken != nil,
	} {
		if set {
			n++
		}
	}
	return n
}

// DecodeRequest decodes a request as a server does. It requires a map with
// exactly one known entry, and validates the entry's shape: key type names,
// one-entry private keys, signing versions 0, 1, 2 or 255. A missing Sign or
// SignWith version is left nil (the server treats it as latest).
func DecodeRequest(data []byte) (*Request, error) {
	var top map[string]cbor.RawMessage
	if err := decMode.Unmarshal(data, &top); err != nil {
		return nil, malformed("request: %v", err)
	}
	if len(top) != 1 {
		return nil, malformed("request: a map with exactly one entry expected, got %d", len(top))
	}
	var r Request
	if raw, ok := top["Initialize"]; ok && isAWSCredentials(raw) {
		var c AWSCredentials
		if err := decMode.Unmarshal(raw, &c); err != nil {
			return nil, malformed("request: Initialize: %v", err)
		}
		if err := requireFields(raw, "access_key_id", "secret_access_key", "encryption_key_id", "region"); err != nil {
			return nil, err
		}
		r.InitializeAWS = &c
		return &r, nil
	}
	if err := decMode.Unmarshal(data, &r); err != nil {
		return nil, malformed("request: %v", err)
	}
	// A null value decodes to a nil field; treat that as garbage.
	if r.count() != 1 {
		for k := range top {
			return nil, malformed("request: invalid %q entry", k)
		}
	}
	switch {
	case r.Generate != nil && !r.Generate.Valid():
		return nil, malformed("request: unknown key type %q", string(*r.Generate))
	case r.GenerateAndImport != nil && !r.GenerateAndImport.Valid():
		return nil, malformed("request: unknown key type %q", string(*r.GenerateAndImport))
	case r.Initialize != nil:
		if err := requireFields(top["Initialize"], "wip_provider_path", "encryption_key_path"); err != nil {
			return nil, err
		}
	case r.ImportUnencrypted != nil:
		n := 0
		for _, b := range [][]byte{r.ImportUnencrypted.Secp256k1, r.ImportUnencrypted.NistP256, r.ImportUnencrypted.Ed25519, r.ImportUnencrypted.Bls} {
			if b != nil {
				n++
			}
		}
		if n != 1 {
			r.ImportUnencrypted.Zero()
			return nil, malformed("request: private key must have exactly one entry")
		}
	case r.Sign != nil:
		if err := requireFields(top["Sign"], "handle", "message"); err != nil {
			return nil, err
		}
		if err := checkVersion(r.Sign.Version); err != nil {
			return nil, err
		}
	case r.SignWith != nil:
		if err := requireFields(top["SignWith"], "encrypted_private_key", "message"); err != nil {
			return nil, err
		}
		if err := checkVersion(r.SignWith.Version); err != nil {
			return nil, err
		}
	}
	return &r, nil
}

// isAWSCredentials reports whether an Initialize value is the Nitro form (a
// map with an access_key_id entry).
func isAWSCredentials(raw cbor.RawMessage) bool {
	var m map[string]cbor.RawMessage
	if err := decMode.Unmarshal(raw, &m); err != nil {
		return false
	}
	_, ok := m["access_key_id"]
	return ok
}

func checkVersion(v *uint8) error {
	if v == nil {
		return nil
	}
	switch *v {
	case 0, 1, 2, 255:
		return nil
	}
	return malformed("request: invalid signing version %d (want 0, 1, 2 or 255)", *v)
}

// requireFields checks that the map raw holds every named key.
func requireFields(raw cbor.RawMessage, names ...string) error {
	var m map[string]cbor.RawMessage
	if err := decMode.Unmarshal(raw, &m); err != nil {
		return malformed("request: %v", err)
	}
	for _, n := range names {
		if _, ok := m[n]; !ok {
			return malformed("request: missing field %q", n)
		}
	}
	return nil
}

// EncodeOk encodes the reply {"Ok": v}; v nil encodes {"Ok": null}.
func EncodeOk(v any) ([]byte, error) {
	return encMode.Marshal(map[string]any{"Ok": v})
}

// EncodeErr encodes the reply {"Err": e}, with "source": null ending the
// chain as the Rust enclave writes it.
func EncodeErr(e *RPCError) ([]byte, error) {
	if e == nil {
		e = &RPCError{Message: "unknown error"}
	}
	return encMode.Marshal(map[string]any{"Err": e})
}

// DecodeReply decodes a reply. An {"Err": …} reply is returned as a
// *RPCError. An {"Ok": v} reply is decoded into out, which must be a pointer
// to one of *Tagged, *ImportResult, *GenerateResult,
// *GenerateAndImportResult, or nil when the Ok value must be null. Any other
// shape is an error wrapping ErrMalformed.
func DecodeReply(data []byte, out any) error {
	var top map[string]cbor.RawMessage
	if err := decMode.Unmarshal(data, &top); err != nil {
		return malformed("reply: %v", err)
	}
	if len(top) != 1 {
		return malformed("reply: a map with exactly one entry expected, got %d", len(top))
	}
	if raw, ok := top["Err"]; ok {
		var e RPCError
		if err := decodeError(raw, &e); err != nil {
			return err
		}
		return &e
	}
	raw, ok := top["Ok"]
	if !ok {
		for k := range top {
			return malformed("reply: unknown entry %q", k)
		}
	}
	if out == nil {
		if !bytes.Equal(raw, []byte{0xf6}) {
			return malformed("reply: Ok value must be null")
		}
		return nil
	}
	if len(raw) == 1 && (raw[0] == 0xf6 || raw[0] == 0xf7) {
		return malformed("reply: Ok value is null")
	}
	if err := decMode.Unmarshal(raw, out); err != nil {
		if errors.Is(err, ErrMalformed) {
			return err
		}
		return malformed("reply: %v", err)
	}
	return nil
}

func decodeError(raw cbor.RawMessage, e *RPCError) error {
	if err := decMode.Unmarshal(raw, e); err != nil {
		if errors.Is(err, ErrMalformed) {
			return err
		}
		return malformed("error reply: %v", err)
	}
	return nil
}

// UnmarshalCBOR decodes an error object, requiring a text message and a
// source that is null, absent or another error object (checked likewise).
func (e *RPCError) UnmarshalCBOR(data []byte) error {
	var m map[string]cbor.RawMessage
	if err := decMode.Unmarshal(data, &m); err != nil {
		return malformed("error reply: %v", err)
	}
	msg, ok := m["message"]
	if !ok {
		return malformed("error reply: missing message")
	}
	var out RPCError
	if err := decMode.Unmarshal(msg, &out.Message); err != nil {
		return malformed("error reply: message: %v", err)
	}
	for k, v := range m {
		switch k {
		case "message":
		case "source":
			if len(v) == 1 && (v[0] == 0xf6 || v[0] == 0xf7) {
				continue
			}
			out.Source = new(RPCError)
			if err := out.Source.UnmarshalCBOR(v); err != nil {
				return err
			}
		default:
			return malformed("error reply: unknown field %q", k)
		}
	}
	*e = out
	return nil
}

// Tagged encodes as {type: bytes}.
func (t Tagged) MarshalCBOR() ([]byte, error) {
	if !t.Type.Valid() {
		return nil, fmt.Errorf("rpc: unknown key type %q", string(t.Type))
	}
	b := t.Bytes
	if b == nil {
		b = []byte{}
	}
	return encMode.Marshal(map[string][]byte{string(t.Type): b})
}

// UnmarshalCBOR requires a map with exactly one entry whose key is a known
// key type name and whose value is a byte string (or, as serde emits some
// fixed-size types, an array of byte values).
func (t *Tagged) UnmarshalCBOR(data []byte) error {
	var m map[string]cbor.RawMessage
	if err := decMode.Unmarshal(data, &m); err != nil {
		return malformed("key map: %v", err)
	}
	if len(m) != 1 {
		return malformed("key map: exactly one entry expected, got %d", len(m))
	}
	for k, v := range m {
		if !KeyType(k).Valid() {
			return malformed("key map: unknown key type %q", k)
		}
		b, err := decodeBytes(v)
		if err != nil {
			return err
		}
		t.Type, t.Bytes = KeyType(k), b
	}
	return nil
}

// decodeBytes accepts a CBOR byte string, or an array of unsigned integers
// 0..255 (serde's encoding of fixed-size byte arrays such as ed25519
// signatures).
func decodeBytes(raw cbor.RawMessage) ([]byte, error) {
	if len(raw) == 0 {
		return nil, malformed("empty item")
	}
	switch raw[0] >> 5 {
	case 2: // byte string
		var b []byte
		if err := decMode.Unmarshal(raw, &b); err != nil {
			return nil, malformed("bytes: %v", err)
		}
		if b == nil {
			b = []byte{}
		}
		return b, nil
	case 4: // array
		var a []uint8
		if err := decMode.Unmarshal(raw, &a); err != nil {
			return nil, malformed("byte array: %v", err)
		}
		if a == nil {
			a = []byte{}
		}
		return a, nil
	}
	return nil, malformed("bytes expected, got CBOR major type %d", raw[0]>>5)
}

// resultFields decodes a result map, requiring exactly the named fields.
func resultFields(data []byte, names ...string) (map[string]cbor.RawMessage, error) {
	var m map[string]cbor.RawMessage
	if err := decMode.Unmarshal(data, &m); err != nil {
		return nil, malformed("result: %v", err)
	}
	for _, n := range names {
		if _, ok := m[n]; !ok {
			return nil, malformed("result: missing field %q", n)
		}
	}
	if len(m) != len(names) {
		for k := range m {
			known := false
			for _, n := range names {
				known = known || k == n
			}
			if !known {
				return nil, malformed("result: unknown field %q", k)
			}
		}
	}
	return m, nil
}

func decodeHandle(raw cbor.RawMessage) (uint64, error) {
	var h uint64
	if err := decMode.Unmarshal(raw, &h); err != nil {
		return 0, malformed("handle: %v", err)
	}
	return h, nil
}

// MarshalCBOR encodes {public_key, handle} in the Rust field order.
func (r ImportResult) MarshalCBOR() ([]byte, error) {
	return encMode.Marshal(struct {
		PublicKey Tagged `cbor:"public_key"`
		Handle    uint64 `cbor:"handle"`
	}{r.PublicKey, r.Handle})
}

// UnmarshalCBOR requires both fields.
func (r *ImportResult) UnmarshalCBOR(data []byte) error {
	m, err := resultFields(data, "public_key", "handle")
	if err != nil {
		return err
	}
	if err := r.PublicKey.UnmarshalCBOR(m["public_key"]); err != nil {
		return err
	}
	r.Handle, err = decodeHandle(m["handle"])
	return err
}

// MarshalCBOR encodes {encrypted_private_key, public_key}.
func (r GenerateResult) MarshalCBOR() ([]byte, error) {
	return encMode.Marshal(struct {
		EncryptedPrivateKey []byte `cbor:"encrypted_private_key"`
		PublicKey           Tagged `cbor:"public_key"`
	}{r.EncryptedPrivateKey, r.PublicKey})
}

// UnmarshalCBOR requires both fields.
func (r *GenerateResult) UnmarshalCBOR(data []byte) error {
	m, err := resultFields(data, "encrypted_private_key", "public_key")
	if err != nil {
		return err
	}
	if r.EncryptedPrivateKey, err = decodeBytes(m["encrypted_private_key"]); err != nil {
		return err
	}
	return r.PublicKey.UnmarshalCBOR(m["public_key"])
}

// MarshalCBOR encodes {encrypted_private_key, public_key, handle}.
func (r GenerateAndImportResult) MarshalCBOR() ([]byte, error) {
	return encMode.Marshal(struct {
		EncryptedPrivateKey []byte `cbor:"encrypted_private_key"`
		PublicKey           Tagged `cbor:"public_key"`
		Handle              uint64 `cbor:"handle"`
	}{r.EncryptedPrivateKey, r.PublicKey, r.Handle})
}

// UnmarshalCBOR requires all three fields.
func (r *GenerateAndImportResult) UnmarshalCBOR(data []byte) error {
	m, err := resultFields(data, "encrypted_private_key", "public_key", "handle")
	if err != nil {
		return err
	}
	if r.EncryptedPrivateKey, err = decodeBytes(m["encrypted_private_key"]); err != nil {
		return err
	}
	if err := r.PublicKey.UnmarshalCBOR(m["public_key"]); err != nil {
		return err
	}
	r.Handle, err = decodeHandle(m["handle"])
	return err
}

// MarshalPrivateKey encodes a private key map on its own: the plaintext a
// sealed blob holds. The caller should zero the result after use.
func MarshalPrivateKey(sk *PrivateKey) ([]byte, error) {
	if sk == nil {
		return nil, errors.New("rpc: nil private key")
	}
	return encMode.Marshal(sk)
}

// UnmarshalPrivateKey decodes a private key map (one entry, bytes value).
func UnmarshalPrivateKey(data []byte) (Tagged, error) {
	var t Tagged
	if err := t.UnmarshalCBOR(data); err != nil {
		clear(t.Bytes)
		return Tagged{}, errors.New("rpc: invalid private key encoding")
	}
	return t, nil
}
