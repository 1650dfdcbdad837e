package signatory_test

import (
	"context"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"sync"
	"testing"

	"github.com/sigil-signer/sigil/adapters/watermark/mem"
	"github.com/sigil-signer/sigil/domain"
	"github.com/sigil-signer/sigil/domain/request"
	"github.com/sigil-signer/sigil/domain/signer"
	"github.com/sigil-signer/sigil/domain/tezos"
	"github.com/sigil-signer/sigil/ports"
)

// This file is the Sigil side of the policy tests: a signing service built
// from the loaded policies over an in-memory enclave, and the sign requests
// it is asked to sign.

// memEnclave keeps keys in memory; a sealed blob is the key's index.
type memEnclave struct {
	mu     sync.Mutex
	sealed []tezos.PrivateKey
	loaded map[tezos.PublicKeyHash]tezos.PrivateKey
}

func newMemEnclave() *memEnclave {
	return &memEnclave{loaded: map[tezos.PublicKeyHash]tezos.PrivateKey{}}
}

func (e *memEnclave) seal(sk tezos.PrivateKey) (ports.SealedKey, error) {
	sk = tezos.PrivateKey{Type: sk.Type, Bytes: append([]byte(nil), sk.Bytes...)}
	pk, err := sk.Public()
	if err != nil {
		return ports.SealedKey{}, err
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	e.sealed = append(e.sealed, sk)
	e.loaded[pk.Hash()] = sk
	return ports.SealedKey{PublicKey: pk, Blob: binary.BigEndian.AppendUint32(nil, uint32(len(e.sealed)-1))}, nil
}

func (e *memEnclave) Load(_ context.Context, blob []byte) (tezos.PublicKey, error) {
	e.mu.Lock()
	defer e.mu.Unlock()
	if len(blob) != 4 || int(binary.BigEndian.Uint32(blob)) >= len(e.sealed) {
		return tezos.PublicKey{}, errors.New("unknown blob")
	}
	sk := e.sealed[binary.BigEndian.Uint32(blob)]
	pk, err := sk.Public()
	if err != nil {
		return tezos.PublicKey{}, err
	}
	e.loaded[pk.Hash()] = sk
	return pk, nil
}

func (e *memEnclave) Generate(_ context.Context, t tezos.KeyType) (ports.SealedKey, error) {
	sk, err := tezos.GeneratePrivateKey(t, nil)
	if err != nil {
		return ports.SealedKey{}, err
	}
	return e.seal(sk)
}

func (e *memEnclave) Import(_ context.Context, sk tezos.PrivateKey) (ports.SealedKey, error) {
	return e.seal(sk)
}

func (e *memEnclave) key(h tezos.PublicKeyHash) (tezos.PrivateKey, error) {
	e.mu.Lock()
	defer e.mu.Unlock()
	sk, ok := e.loaded[h]
	if !ok {
		return tezos.PrivateKey{}, domain.Errorf(domain.KindNotFound, "no key %s", h)
	}
	return sk, nil
}

func (e *memEnclave) Sign(_ context.Context, h tezos.PublicKeyHash, msg []byte, version uint8) (tezos.Signature, error) {
	sk, err := e.key(h)
	if err != nil {
		return tezos.Signature{}, err
	}
	return sk.Sign(msg, version)
}

func (e *memEnclave) ProvePossession(_ context.Context, h tezos.PublicKeyHash) (tezos.Signature, error) {
	sk, err := e.key(h)
	if err != nil {
		return tezos.Signature{}, err
	}
	return sk.ProvePossession()
}

func (e *memEnclave) Ready(context.Context) error { return nil }

type memStore struct {
	mu   sync.Mutex
	keys []ports.StoredKey
}

func (m *memStore) List(context.Context) ([]ports.StoredKey, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	return append([]ports.StoredKey(nil), m.keys...), nil
}

func (m *memStore) Put(_ context.Context, k ports.StoredKey) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.keys = append(m.keys, k)
	return nil
}

// testKey is a generated key standing for an address or a client key of a
// configuration.
type testKey struct {
	sk   tezos.PrivateKey
	pk   tezos.PublicKey
	addr string
}

func newTestKey(t testing.TB, typ tezos.KeyType) testKey {
	t.Helper()
	sk, err := tezos.GeneratePrivateKey(typ, nil)
	if err != nil {
		t.Fatal(err)
	}
	pk, err := sk.Public()
	if err != nil {
		t.Fatal(err)
	}
	return testKey{sk: sk, pk: pk, addr: pk.Hash().String()}
}

// keyTypeOfAddress is the key type of a tz address.
func keyTypeOfAddress(t testing.TB, addr string) tezos.KeyType {
	h, err := tezos.ParsePublicKeyHash(addr)
	if err != nil {
		t.Fatalf("%s: %v", addr, err)
	}
	return h.Type
}

// keyTypeOfPublicKey is the key type of a base58 public key.
func keyTypeOfPublicKey(t testing.TB, s string) tezos.KeyType {
	pk, err := tezos.ParsePublicKey(s)
	if err != nil {
		t.Fatalf("%s: %v", s, err)
	}
	return pk.Type
}

// sigilSigner is a signing service over an in-memory enclave holding keys.
type sigilSigner struct {
	svc   *signer.Service
	level int32
}

func newSigilSigner(t testing.TB, pols map[string]*signer.Policy, server []tezos.PublicKey, keys []testKey) *sigilSigner {
	t.Helper()
	svc, err := signer.New([]signer.Vault{{Name: "v", Enclave: newMemEnclave(), Store: &memStore{}}},
		signer.Options{Policies: pols, AuthorizedKeys: server, Watermarks: mem.New(mem.Config{})})
	if err != nil {
		t.Fatal(err)
	}
	for _, k := range keys {
		sk := tezos.PrivateKey{Type: k.sk.Type, Bytes: append([]byte(nil), k.sk.Bytes...)}
		if _, err := svc.Import(context.Background(), "v", sk); err != nil {
			t.Fatal(err)
		}
	}
	return &sigilSigner{svc: svc, level: 1000}
}

// sign asks the service to sign m with key k (authenticated by client when
// not nil). It returns whether Sigil signed; an error other than a policy
// refusal fails the test.
func (s *sigilSigner) sign(t testing.TB, k testKey, m message, client *testKey) bool {
	t.Helper()
	s.level++
	msg := m.build(s.level)
	req := signer.SignRequest{PKH: k.addr, Message: msg}
	if client != nil {
		auth, err := client.sk.Sign(signer.AuthenticationData(k.pk.Hash(), msg), tezos.SignVersion2)
		if err != nil {
			t.Fatal(err)
		}
		req.Authentication = auth.String()
	}
	sig, err := s.svc.Sign(context.Background(), req)
	if err != nil {
		if domain.KindOf(err) != domain.KindForbidden {
			t.Errorf("%s with %s: unexpected error (want a signature or a policy refusal): %v", m.name, k.addr, err)
		}
		return false
	}
	if err := k.pk.Verify(msg, sig, tezos.SignVersion2); err != nil {
		t.Errorf("%s with %s: the signature does not verify: %v", m.name, k.addr, err)
	}
	return true
}

// message is one sign request of the tables: its bytes (built for a given
// level) and what Signatory reads in it (the oracle's input).
type message struct {
	name    string
	kind    string   // Signatory's request kind (SignRequestKind)
	ops     []string // generic: Signatory's operation kinds
	ballots []string // generic: each ballot's vote at its index in ops
	chain   string   // consensus: base58 chain id
	blsOnly bool     // the tz4-only encodings (tags 40, 41)
	build   func(level int32) []byte
}

var (
	mainnet = mustChain("NetXdQprcVkpaWU")
	ghost   = request.ChainID{0x01, 0x02, 0x03, 0x04}
)

func mustChain(s string) request.ChainID {
	c, err := request.ParseChainID(s)
	if err != nil {
		panic(err)
	}
	return c
}

func filler(n int, seed byte) []byte {
	b := make([]byte, n)
	for i := range b {
		b[i] = seed + byte(i*7)
	}
	return b
}

func be32(v int32) []byte { return binary.BigEndian.AppendUint32(nil, uint32(v)) }

func elem(b []byte) []byte { return append(be32(int32(len(b))), b...) }

// blockBytes is a Tenderbake block sign request (Octez
// block_header_repr.ml): 0x11 ‖ chain ‖ shell header (level, proto,
// predecessor, timestamp, validation pass, operations hash, fitness,
// context) ‖ payload hash, payload round, proof of work nonce, seed nonce
// hash (none), per block votes.
func blockBytes(chain request.ChainID, level int32) []byte {
	var fit []byte
	fit = append(fit, elem([]byte{2})...)
	fit = append(fit, elem(be32(level))...)
	fit = append(fit, elem(nil)...)
	fit = append(fit, elem(be32(0))...)
	fit = append(fit, elem(be32(0))...)
	m := []byte{request.MagicBlock}
	m = append(m, chain[:]...)
	m = append(m, be32(level)...)
	m = append(m, 23)
	m = append(m, filler(32, 1)...)
	m = append(m, 0, 0, 0, 0, 0x68, 1, 2, 3)
	m = append(m, 4)
	m = append(m, filler(32, 2)...)
	m = append(m, elem(fit)...)
	m = append(m, filler(32, 3)...)
	m = append(m, filler(32, 150)...)
	m = append(m, be32(0)...)
	m = append(m, filler(8, 4)...)
	m = append(m, 0x00)
	return append(m, 0x05)
}

// consensusBytes is a preattestation (0x12) or attestation (0x13): chain ‖
// branch ‖ tag ‖ [slot] ‖ level ‖ round ‖ payload hash [‖ DAL content].
func consensusBytes(magic, tag byte, chain request.ChainID, level int32, payload byte) []byte {
	m := []byte{magic}
	m = append(m, chain[:]...)
	m = append(m, filler(32, 1)...)
	m = append(m, tag)
	if tag != 40 && tag != 41 {
		m = append(m, 0, 1)
	}
	m = append(m, be32(level)...)
	m = append(m, be32(0)...)
	ph := filler(32, 150)
	ph[0] = payload
	m = append(m, ph...)
	if tag == 23 {
		m = append(m, 0x05)
	}
	return m
}

// consensusMessages are a block and every consensus encoding on chain.
func consensusMessages(chain request.ChainID) []message {
	c := chain.String()
	cons := func(name, kind string, magic, tag byte, bls bool) message {
		return message{name: name + "@" + c, kind: kind, chain: c, blsOnly: bls, build: func(l int32) []byte {
			return consensusBytes(magic, tag, chain, l, 1)
		}}
	}
	return []message{
		{name: "block@" + c, kind: "block", chain: c, build: func(l int32) []byte { return blockBytes(chain, l) }},
		cons("preattestation", "preattestation", request.MagicPreattestation, 20, false),
		cons("attestation", "attestation", request.MagicAttestation, 21, false),
		cons("attestation_with_dal", "attestation_with_dal", request.MagicAttestation, 23, false),
		cons("bls-preattestation", "preattestation", request.MagicPreattestation, 40, true),
		cons("bls-attestation", "attestation", request.MagicAttestation, 41, true),
	}
}

// vector is an entry of domain/request/testdata/vectors.json (forged by
// Taquito; ops are the operation kinds Signatory names in it).
type vector struct {
	Name    string   `json:"name"`
	Hex     string   `json:"hex"`
	Kind    string   `json:"kind"`
	Ops     []string `json:"ops"`
	Ballots []string `json:"ballots"`
}

func loadVectors(t testing.TB) []vector {
	t.Helper()
	data, err := os.ReadFile(filepath.Join("..", "..", "domain", "request", "testdata", "vectors.json"))
	if err != nil {
		t.Fatal(err)
	}
	var f struct{ Vectors []vector }
	if err := json.Unmarshal(data, &f); err != nil {
		t.Fatal(err)
	}
	if len(f.Vectors) < 50 {
		t.Fatalf("only %d vectors", len(f.Vectors))
	}
	return f.Vectors
}

// genericMessages are every generic-operation vector and the packed data
// ones.
func genericMessages(t testing.TB) []message {
	t.Helper()
	var out []message
	for _, v := range loadVectors(t) {
		raw, err := hex.DecodeString(v.Hex)
		if err != nil {
			t.Fatal(err)
		}
		switch v.Kind {
		case "generic":
			out = append(out, message{name: v.Name, kind: "generic", ops: v.Ops, ballots: v.Ballots, build: func(int32) []byte { return raw }})
		case "pack":
			out = append(out, message{name: v.Name, kind: "pack", build: func(int32) []byte { return raw }})
		}
	}
	return out
}
