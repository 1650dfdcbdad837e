package enclave

import (
	"context"
	"errors"
	"sync"

	"github.com/sigil-signer/sigil/domain/tezos"
	"github.com/sigil-signer/sigil/ports/enclaveside"
)

// loadedKey is one entry of a session's key chain.
type loadedKey struct {
	sk  tezos.PrivateKey
	pk  tezos.PublicKey
	pkh tezos.PublicKeyHash
}

// Session is one connection's state: the enclave keeps nothing global.
// Every request but Initialize and AttestationToken fails with
// ErrUninitialized until Initialize succeeded; Initialize succeeds once.
// Its methods are called by the connection's goroutine, one at a time;
// Info may be called from any goroutine. Every error they return is an
// *Error.
type Session struct {
	e  *Enclave
	ch Channel

	mu          sync.Mutex // guards what Info reads, and Close
	initialized bool
	closed      bool
	keys        []loadedKey
	kms         enclaveside.SessionKMS // set by Initialize
}

// Key is what a request that makes or loads a key answers: its public key
// always; the sealed blob when the request sealed it (Generate,
// GenerateAndImport, ImportUnencrypted); its handle when the request
// loaded it into the session's chain (Import, GenerateAndImport,
// ImportUnencrypted).
type Key struct {
	PublicKey tezos.PublicKey
	Blob      []byte
	Handle    uint64
}

// SessionInfo describes a session, for tests and statistics.
type SessionInfo struct {
	Initialized bool
	Keys        []tezos.PublicKeyHash // the key chain, by handle
}

// Channel returns what carries the session.
func (s *Session) Channel() Channel { return s.ch }

// Initialized reports whether Initialize succeeded.
func (s *Session) Initialized() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.initialized
}

// Info returns the session's state and key chain.
func (s *Session) Info() SessionInfo {
	s.mu.Lock()
	defer s.mu.Unlock()
	info := SessionInfo{Initialized: s.initialized}
	for _, k := range s.keys {
		info.Keys = append(info.Keys, k.pkh)
	}
	return info
}

// Initialize checks the platform's payload and gets the session's KMS from
// it. A refused Initialize leaves the session uninitialized: it may try
// again.
func (s *Session) Initialize(ctx context.Context, creds enclaveside.Credentials) error {
	if s.Initialized() {
		return ErrAlreadyInitialized
	}
	if err := s.e.checkInitialize(creds); err != nil {
		return err
	}
	kctx, cancel := s.e.kmsContext(ctx)
	kms, err := s.e.cfg.KMS.ForSession(kctx, creds)
	cancel()
	if err != nil {
		return NewError(CategoryEncryption, err.Error())
	}
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		_ = kms.Close()
		return NewError(CategoryEncryption, "session closed")
	}
	s.kms, s.initialized = kms, true
	s.mu.Unlock()
	return nil
}

func (s *Session) ready() error {
	if !s.Initialized() {
		return ErrUninitialized
	}
	return nil
}

// Import opens a sealed blob and loads its key into the chain.
func (s *Session) Import(ctx context.Context, blob []byte) (Key, error) {
	if err := s.ready(); err != nil {
		return Key{}, err
	}
	k, err := s.open(ctx, blob)
	if err != nil {
		return Key{}, err
	}
	return Key{PublicKey: k.pk, Handle: s.add(k)}, nil
}

// ImportUnencrypted seals a plain private key (the 32 bytes of a key of
// type kt, copied) and loads it into the chain. An enclave that serves
// the attested channel refuses it on any other connection
// (ErrPlainImport). The caller zeroes secret.
func (s *Session) ImportUnencrypted(ctx context.Context, kt tezos.KeyType, secret []byte) (Key, error) {
	if err := s.ready(); err != nil {
		return Key{}, err
	}
	if s.e.Attested() && !s.ch.Attested {
		return Key{}, ErrPlainImport
	}
	sk, err := tezos.NewPrivateKey(kt, secret)
	if err != nil {
		return Key{}, NewError(CategoryDeserialization, "invalid "+kt.String()+" private key")
	}
	return s.seal(ctx, sk, true)
}

// Generate makes a key of type kt and returns it sealed, without loading
// it.
func (s *Session) Generate(ctx context.Context, kt tezos.KeyType) (Key, error) {
	return s.generate(ctx, kt, false)
}

// GenerateAndImport makes a key of type kt, seals it and loads it.
func (s *Session) GenerateAndImport(ctx context.Context, kt tezos.KeyType) (Key, error) {
	return s.generate(ctx, kt, true)
}

func (s *Session) generate(ctx context.Context, kt tezos.KeyType, load bool) (Key, error) {
	if err := s.ready(); err != nil {
		return Key{}, err
	}
	sk, err := tezos.GeneratePrivateKey(kt, nil)
	if err != nil {
		return Key{}, NewError(CategorySigner, "key generation failed")
	}
	return s.seal(ctx, sk, load)
}

// Sign signs msg with the key of handle h, with BLS signing version v, if
// the Guard lets the signature leave.
func (s *Session) Sign(ctx context.Context, h uint64, msg []byte, v uint8) (tezos.Signature, error) {
	if err := s.ready(); err != nil {
		return tezos.Signature{}, err
	}
	k, ok := s.key(h)
	if !ok {
		return tezos.Signature{}, ErrInvalidHandle
	}
	return s.sign(ctx, k, msg, v, false)
}

// SignWith opens blob and signs msg with its key (not loaded), with BLS
// signing version v, if the Guard lets the signature leave.
func (s *Session) SignWith(ctx context.Context, blob, msg []byte, v uint8) (tezos.Signature, error) {
	if err := s.ready(); err != nil {
		return tezos.Signature{}, err
	}
	k, err := s.open(ctx, blob)
	if err != nil {
		return tezos.Signature{}, err
	}
	defer k.sk.Zero()
	return s.sign(ctx, k, msg, v, true)
}

// PublicKey returns the public key of handle h.
func (s *Session) PublicKey(h uint64) (tezos.PublicKey, error) {
	if err := s.ready(); err != nil {
		return tezos.PublicKey{}, err
	}
	k, ok := s.key(h)
	if !ok {
		return tezos.PublicKey{}, ErrInvalidHandle
	}
	return k.pk, nil
}

// PublicKeyFrom opens blob and returns its public key (nothing is loaded).
func (s *Session) PublicKeyFrom(ctx context.Context, blob []byte) (tezos.PublicKey, error) {
	if err := s.ready(); err != nil {
		return tezos.PublicKey{}, err
	}
	k, err := s.open(ctx, blob)
	if err != nil {
		return tezos.PublicKey{}, err
	}
	k.sk.Zero()
	return k.pk, nil
}

// ProvePossession returns the BLS proof of possession of handle h's key.
func (s *Session) ProvePossession(h uint64) (tezos.Signature, error) {
	if err := s.ready(); err != nil {
		return tezos.Signature{}, err
	}
	k, ok := s.key(h)
	if !ok {
		return tezos.Signature{}, ErrInvalidHandle
	}
	if k.sk.Type != tezos.BLS {
		return tezos.Signature{}, ErrPopUnsupported
	}
	proof, err := k.sk.ProvePossession()
	if err != nil {
		return tezos.Signature{}, NewError(CategorySigner, "BLST error")
	}
	return proof, nil
}

// AttestationToken returns the enclave's current attestation token, bound
// to the key of the attested channel: on that channel only (ErrPlainChannel
// elsewhere), and only while the enclave holds a valid token. It needs no
// Initialize (the token is public: the channel's handshake shows it).
func (s *Session) AttestationToken() (string, error) {
	if !s.ch.Attested {
		return "", ErrPlainChannel
	}
	src := s.e.cfg.Tokens
	if src == nil {
		return "", NewError(MethodAttestationToken, "this enclave has no attestation token source")
	}
	tok, err := src.CurrentToken()
	if err != nil {
		return "", NewError(MethodAttestationToken, err.Error())
	}
	return tok, nil
}

// Close zeroes the key chain and releases the session's KMS; the session
// refuses an Initialize after it. The KMS's error, if any, is returned.
func (s *Session) Close() error {
	s.mu.Lock()
	for i := range s.keys {
		s.keys[i].sk.Zero()
	}
	s.keys = nil
	kms := s.kms
	s.kms, s.closed, s.initialized = nil, true, false
	s.mu.Unlock()
	if kms != nil {
		return kms.Close()
	}
	return nil
}

func (s *Session) key(h uint64) (loadedKey, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if h >= uint64(len(s.keys)) {
		return loadedKey{}, false
	}
	return s.keys[h], true
}

func (s *Session) add(k loadedKey) uint64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.keys = append(s.keys, k)
	return uint64(len(s.keys) - 1)
}

func (s *Session) sessionKMS() enclaveside.SessionKMS {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.kms
}

// open unseals a blob into a key; the caller owns (and zeroes) k.sk.
func (s *Session) open(ctx context.Context, blob []byte) (loadedKey, error) {
	kms := s.sessionKMS()
	if kms == nil {
		return loadedKey{}, ErrUninitialized
	}
	s.e.kmsCalls.Add(1)
	kctx, cancel := s.e.kmsContext(ctx)
	plain, err := kms.Open(kctx, blob)
	cancel()
	if err != nil {
		return loadedKey{}, NewError(CategoryEncryption, err.Error())
	}
	sk, err := s.e.cfg.Keys.UnmarshalKey(plain)
	clear(plain)
	if err != nil {
		return loadedKey{}, NewError(CategoryDeserialization, "sealed blob does not hold a private key")
	}
	return newLoaded(sk)
}

func newLoaded(sk tezos.PrivateKey) (loadedKey, error) {
	pk, err := sk.Public()
	if err != nil {
		sk.Zero()
		return loadedKey{}, NewError(CategorySigner, "invalid private key")
	}
	return loadedKey{sk: sk, pk: pk, pkh: pk.Hash()}, nil
}

// seal seals sk; with load it also loads it into the chain (and keeps sk
// there), else it zeroes sk.
func (s *Session) seal(ctx context.Context, sk tezos.PrivateKey, load bool) (Key, error) {
	kms := s.sessionKMS()
	if kms == nil {
		sk.Zero()
		return Key{}, ErrUninitialized
	}
	k, err := newLoaded(sk)
	if err != nil {
		return Key{}, err
	}
	plain, err := s.e.cfg.Keys.MarshalKey(sk)
	if err != nil {
		sk.Zero()
		return Key{}, NewError(CategorySerialization, err.Error())
	}
	s.e.kmsCalls.Add(1)
	kctx, cancel := s.e.kmsContext(ctx)
	blob, err := kms.Seal(kctx, plain)
	cancel()
	clear(plain)
	if err != nil {
		sk.Zero()
		return Key{}, NewError(CategoryEncryption, err.Error())
	}
	if !load {
		sk.Zero()
		return Key{PublicKey: k.pk, Blob: blob}, nil
	}
	return Key{PublicKey: k.pk, Blob: blob, Handle: s.add(k)}, nil
}

// sign signs msg with k, through the Guard if there is one.
func (s *Session) sign(ctx context.Context, k loadedKey, msg []byte, v uint8, withBlob bool) (tezos.Signature, error) {
	g := s.e.cfg.Guard
	if g == nil {
		return signMessage(k.sk, msg, v)
	}
	sig, err := g.Sign(ctx, SignRequest{Key: k.pk, Message: msg, Version: v, Channel: s.ch, WithBlob: withBlob},
		func() (tezos.Signature, error) { return signMessage(k.sk, msg, v) })
	if err != nil {
		var e *Error
		if errors.As(err, &e) {
			return tezos.Signature{}, e
		}
		return tezos.Signature{}, NewError(CategorySigner, err.Error())
	}
	return sig, nil
}

func signMessage(sk tezos.PrivateKey, msg []byte, v uint8) (tezos.Signature, error) {
	sig, err := sk.Sign(msg, v)
	if errors.Is(err, tezos.ErrInvalidSigningVersion) {
		return tezos.Signature{}, ErrSigningVersion
	}
	if err != nil {
		return tezos.Signature{}, NewError(CategorySigner, "signature error")
	}
	return sig, nil
}
