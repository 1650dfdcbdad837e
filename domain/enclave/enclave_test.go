package enclave_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"

	"github.com/sigil-signer/sigil/adapters/enclavetest"
	"github.com/sigil-signer/sigil/domain/attestation"
	"github.com/sigil-signer/sigil/domain/enclave"
	"github.com/sigil-signer/sigil/domain/tezos"
	"github.com/sigil-signer/sigil/ports/enclaveside"
)

// fakeKMS seals by prefixing the session's key path (so that a blob opens
// only in a session initialized with the same key) and counts its calls.
type fakeKMS struct {
	mu       sync.Mutex
	seals    int
	opens    int
	closed   int
	refuse   error // ForSession's error
	failSeal error
	sessions []enclaveside.Credentials
}

func (f *fakeKMS) ForSession(_ context.Context, c enclaveside.Credentials) (enclaveside.SessionKMS, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.refuse != nil {
		return nil, f.refuse
	}
	f.sessions = append(f.sessions, c)
	key := "aws"
	if c.ConfidentialSpace != nil {
		key = c.ConfidentialSpace.EncryptionKeyPath
	}
	return &fakeSession{f: f, prefix: []byte(key + ":")}, nil
}

type fakeSession struct {
	f      *fakeKMS
	prefix []byte
}

func (s *fakeSession) Seal(ctx context.Context, plain []byte) ([]byte, error) {
	if _, ok := ctx.Deadline(); !ok {
		return nil, errors.New("no deadline")
	}
	s.f.mu.Lock()
	defer s.f.mu.Unlock()
	s.f.seals++
	if s.f.failSeal != nil {
		return nil, s.f.failSeal
	}
	return append(bytes.Clone(s.prefix), plain...), nil
}

func (s *fakeSession) Open(_ context.Context, blob []byte) ([]byte, error) {
	s.f.mu.Lock()
	defer s.f.mu.Unlock()
	s.f.opens++
	if !bytes.HasPrefix(blob, s.prefix) {
		return nil, errors.New("sealed under another key")
	}
	return bytes.Clone(blob[len(s.prefix):]), nil
}

func (s *fakeSession) Close() error {
	s.f.mu.Lock()
	defer s.f.mu.Unlock()
	s.f.closed++
	return nil
}

func (f *fakeKMS) counts() (seals, opens, closed int) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.seals, f.opens, f.closed
}

// codec is a plain key codec: type byte ‖ 32 bytes.
type codec struct{}

func (codec) MarshalKey(sk tezos.PrivateKey) ([]byte, error) {
	return append([]byte{byte(sk.Type)}, sk.Bytes...), nil
}

func (codec) UnmarshalKey(p []byte) (tezos.PrivateKey, error) {
	if len(p) != 33 {
		return tezos.PrivateKey{}, errors.New("not a key")
	}
	return tezos.NewPrivateKey(tezos.KeyType(p[0]), p[1:])
}

type tokens struct {
	tok string
	err error
}

func (t tokens) CurrentToken() (string, error) { return t.tok, t.err }

var (
	cs    = enclaveside.Credentials{ConfidentialSpace: &enclaveside.ConfidentialSpaceCredentials{WIPProviderPath: "w", EncryptionKeyPath: "k1"}}
	other = enclaveside.Credentials{ConfidentialSpace: &enclaveside.ConfidentialSpaceCredentials{WIPProviderPath: "w", EncryptionKeyPath: "k2"}}
	aws   = enclaveside.Credentials{AWS: &enclaveside.AWSCredentials{AccessKeyID: "AKIA", SecretAccessKey: "s", EncryptionKeyID: "k", Region: "r"}}
	msg   = []byte("\x03enclave domain test")
	ctx   = context.Background()
)

func newEnclave(t testing.TB, mod func(*enclave.Config)) (*enclave.Enclave, *fakeKMS) {
	t.Helper()
	kms := &fakeKMS{}
	cfg := enclave.Config{KMS: kms, Keys: codec{}}
	if mod != nil {
		mod(&cfg)
	}
	e, err := enclave.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return e, kms
}

func wantErr(t *testing.T, err error, want *enclave.Error) {
	t.Helper()
	var e *enclave.Error
	if !errors.As(err, &e) || e.Error() != want.Error() {
		t.Fatalf("got %v, want %q", err, want.Error())
	}
}

// TestEveryRequestNeedsInitialize: every request but Initialize and
// AttestationToken fails with the Rust enclave's "uninitialized" before a
// successful Initialize, and a second Initialize with "already
// initialized".
func TestEveryRequestNeedsInitialize(t *testing.T) {
	e, kms := newEnclave(t, nil)
	s := e.NewSession(enclave.Channel{})
	for name, call := range requests(s) {
		wantErr(t, call(), enclave.ErrUninitialized)
		_ = name
	}
	if seals, opens, _ := kms.counts(); seals+opens != 0 {
		t.Fatalf("the KMS was called before Initialize: %d seals, %d opens", seals, opens)
	}
	if err := s.Initialize(ctx, cs); err != nil {
		t.Fatal(err)
	}
	wantErr(t, s.Initialize(ctx, cs), enclave.ErrAlreadyInitialized)
	for name, call := range requests(s) {
		var e *enclave.Error
		if err := call(); errors.As(err, &e) && e.Error() == "uninitialized" {
			t.Errorf("%s: uninitialized after Initialize", name)
		}
	}
}

// requests calls each request kind once with harmless arguments.
func requests(s *enclave.Session) map[string]func() error {
	errOf := func(_ any, err error) error { return err }
	return map[string]func() error{
		"Import":            func() error { return errOf(s.Import(ctx, []byte("k1:x"))) },
		"ImportUnencrypted": func() error { return errOf(s.ImportUnencrypted(ctx, tezos.Ed25519, make([]byte, 32))) },
		"Generate":          func() error { return errOf(s.Generate(ctx, tezos.Ed25519)) },
		"GenerateAndImport": func() error { return errOf(s.GenerateAndImport(ctx, tezos.Ed25519)) },
		"Sign":              func() error { return errOf(s.Sign(ctx, 0, msg, 2)) },
		"SignWith":          func() error { return errOf(s.SignWith(ctx, []byte("k1:x"), msg, 2)) },
		"PublicKey":         func() error { return errOf(s.PublicKey(0)) },
		"PublicKeyFrom":     func() error { return errOf(s.PublicKeyFrom(ctx, []byte("k1:x"))) },
		"ProvePossession":   func() error { return errOf(s.ProvePossession(0)) },
	}
}

// TestInitializePlatforms: each platform accepts its own payload, with the
// fields its KMS needs, and the refusals carry the Rust enclave's
// categories; a KMS refusal leaves the session uninitialized (it may try
// again).
func TestInitializePlatforms(t *testing.T) {
	for _, c := range []struct {
		platform enclave.Platform
		creds    enclaveside.Credentials
		want     string // "" accepted
	}{
		{"", cs, ""},
		{enclave.PlatformConfidentialSpace, cs, ""},
		{enclave.PlatformConfidentialSpace, aws, "deserialization error: invalid credentials: this enclave runs in Confidential Space mode"},
		{enclave.PlatformConfidentialSpace, enclaveside.Credentials{ConfidentialSpace: &enclaveside.ConfidentialSpaceCredentials{WIPProviderPath: "w"}}, "encryption error: invalid credentials: wip_provider_path and encryption_key_path are required"},
		{enclave.PlatformNitro, aws, ""},
		{enclave.PlatformNitro, cs, "deserialization error: invalid credentials: this enclave runs in AWS Nitro mode"},
		{enclave.PlatformNitro, enclaveside.Credentials{AWS: &enclaveside.AWSCredentials{AccessKeyID: "a"}}, "encryption error: invalid credentials: access_key_id, secret_access_key, encryption_key_id and region are required"},
		{enclave.PlatformNitro, enclaveside.Credentials{}, "deserialization error"},
	} {
		t.Run(fmt.Sprintf("%s/%v", c.platform, c.creds.AWS != nil), func(t *testing.T) {
			e, _ := newEnclave(t, func(cfg *enclave.Config) { cfg.Platform = c.platform })
			err := e.NewSession(enclave.Channel{}).Initialize(ctx, c.creds)
			if c.want == "" {
				if err != nil {
					t.Fatal(err)
				}
				return
			}
			if err == nil || !strings.HasPrefix(err.Error(), c.want) {
				t.Fatalf("got %v, want %q", err, c.want)
			}
		})
	}
	e, kms := newEnclave(t, nil)
	kms.refuse = errors.New("token exchange refused")
	s := e.NewSession(enclave.Channel{})
	if err := s.Initialize(ctx, cs); err == nil || err.Error() != "encryption error: token exchange refused" {
		t.Fatalf("got %v", err)
	}
	wantErr(t, func() error { _, err := s.Generate(ctx, tezos.BLS); return err }(), enclave.ErrUninitialized)
	kms.refuse = nil
	if err := s.Initialize(ctx, cs); err != nil {
		t.Fatal(err)
	}
	if _, err := enclave.New(enclave.Config{KMS: kms, Keys: codec{}, Platform: "azure"}); err == nil {
		t.Fatal("an unknown platform was accepted")
	}
	if _, err := enclave.New(enclave.Config{KMS: kms}); err == nil {
		t.Fatal("no key codec was accepted")
	}
}

// TestKeysAndHandles: every key type through every request, signatures
// verified with independent libraries; handles are indexes of the
// session's own chain; a blob opens only in a session with the same KMS
// key.
func TestKeysAndHandles(t *testing.T) {
	e, kms := newEnclave(t, nil)
	s := e.NewSession(enclave.Channel{})
	if err := s.Initialize(ctx, cs); err != nil {
		t.Fatal(err)
	}
	next := uint64(0)
	for _, kt := range tezos.KeyTypes {
		g, err := s.Generate(ctx, kt)
		if err != nil {
			t.Fatal(err)
		}
		if g.Handle != 0 || len(g.Blob) == 0 || g.PublicKey.Type != kt {
			t.Fatalf("Generate: %+v", g)
		}
		pk, err := s.PublicKeyFrom(ctx, g.Blob)
		if err != nil || !pk.Equal(g.PublicKey) {
			t.Fatalf("PublicKeyFrom: %v %v", pk, err)
		}
		for _, v := range []uint8{1, 2, 255} {
			sig, err := s.SignWith(ctx, g.Blob, msg, v)
			if err != nil {
				t.Fatal(err)
			}
			if err := enclavetest.Verify(g.PublicKey, msg, sig, v); err != nil {
				t.Fatalf("%v SignWith version %d: %v", kt, v, err)
			}
		}
		k, err := s.Import(ctx, g.Blob)
		if err != nil || k.Handle != next || !k.PublicKey.Equal(g.PublicKey) {
			t.Fatalf("Import: %+v %v", k, err)
		}
		next++
		sig, err := s.Sign(ctx, k.Handle, msg, 2)
		if err != nil {
			t.Fatal(err)
		}
		if err := enclavetest.Verify(g.PublicKey, msg, sig, 2); err != nil {
			t.Fatalf("%v Sign: %v", kt, err)
		}
		gi, err := s.GenerateAndImport(ctx, kt)
		if err != nil || gi.Handle != next || len(gi.Blob) == 0 {
			t.Fatalf("GenerateAndImport: %+v %v", gi, err)
		}
		next++
		proof, err := s.ProvePossession(gi.Handle)
		if kt == tezos.BLS {
			if err != nil {
				t.Fatal(err)
			}
			if err := gi.PublicKey.VerifyPossession(proof); err != nil {
				t.Fatal(err)
			}
			_, err := s.Sign(ctx, gi.Handle, msg, 0)
			wantErr(t, err, enclave.ErrSigningVersion)
		} else {
			wantErr(t, err, enclave.ErrPopUnsupported)
		}
	}
	_, err := s.Sign(ctx, next, msg, 2)
	wantErr(t, err, enclave.ErrInvalidHandle)
	_, err = s.PublicKey(1 << 63)
	wantErr(t, err, enclave.ErrInvalidHandle)
	if info := s.Info(); !info.Initialized || uint64(len(info.Keys)) != next {
		t.Fatalf("Info: %+v", info)
	}

	// Another session: its own chain, and its own KMS key.
	s2 := e.NewSession(enclave.Channel{})
	if err := s2.Initialize(ctx, other); err != nil {
		t.Fatal(err)
	}
	_, err = s2.Sign(ctx, 0, msg, 2)
	wantErr(t, err, enclave.ErrInvalidHandle)
	g, _ := s.Generate(ctx, tezos.Ed25519)
	if _, err := s2.Import(ctx, g.Blob); err == nil || err.Error() != "encryption error: sealed under another key" {
		t.Fatalf("a blob of k1 opened under k2: %v", err)
	}
	if _, err := s.Import(ctx, []byte("k1:not a key")); err == nil || err.Error() != "deserialization error: sealed blob does not hold a private key" {
		t.Fatalf("got %v", err)
	}
	if got := e.KMSCalls(); got == 0 {
		t.Fatal("KMS calls not counted")
	}
	seals, opens, _ := kms.counts()
	if int64(seals+opens) != e.KMSCalls() {
		t.Fatalf("KMSCalls %d, the KMS saw %d", e.KMSCalls(), seals+opens)
	}

	// Close zeroes the chain and closes the KMS once.
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if _, _, closed := kms.counts(); closed != 1 {
		t.Fatalf("KMS closed %d times", closed)
	}
	if info := s.Info(); info.Initialized || len(info.Keys) != 0 {
		t.Fatalf("after Close: %+v", info)
	}
	_ = s.Close()
	if _, _, closed := kms.counts(); closed != 1 {
		t.Fatalf("KMS closed %d times after a second Close", closed)
	}
	wantErr(t, s.Initialize(ctx, cs), enclave.NewError("encryption error", "session closed"))
}

// TestImportUnencryptedOnlyOverTheAttestedChannel: an enclave that serves
// the attested channel refuses a plain key on any other connection, and
// seals nothing; on the attested channel, and on an enclave without it,
// the key is sealed and loaded.
func TestImportUnencryptedOnlyOverTheAttestedChannel(t *testing.T) {
	sk, err := tezos.GeneratePrivateKey(tezos.Secp256k1, nil)
	if err != nil {
		t.Fatal(err)
	}
	want, _ := sk.Public()
	for _, c := range []struct {
		name     string
		attested bool // the enclave serves the attested channel
		channel  bool // the session is on it
		refused  bool
	}{
		{"plain enclave", false, false, false},
		{"attested enclave, attested channel", true, true, false},
		{"attested enclave, plain connection", true, false, true},
	} {
		t.Run(c.name, func(t *testing.T) {
			e, kms := newEnclave(t, func(cfg *enclave.Config) {
				if c.attested {
					cfg.Tokens = tokens{tok: "a.b.c"}
				}
			})
			s := e.NewSession(enclave.Channel{Attested: c.channel})
			if err := s.Initialize(ctx, cs); err != nil {
				t.Fatal(err)
			}
			k, err := s.ImportUnencrypted(ctx, tezos.Secp256k1, sk.Bytes)
			seals, _, _ := kms.counts()
			if c.refused {
				wantErr(t, err, enclave.ErrPlainImport)
				if seals != 0 || len(s.Info().Keys) != 0 {
					t.Fatalf("a refused key was sealed (%d) or loaded (%v)", seals, s.Info().Keys)
				}
				return
			}
			if err != nil || !k.PublicKey.Equal(want) || len(k.Blob) == 0 || seals != 1 {
				t.Fatalf("%+v %v (%d seals)", k, err, seals)
			}
		})
	}
	e, _ := newEnclave(t, nil)
	s := e.NewSession(enclave.Channel{})
	_ = s.Initialize(ctx, cs)
	if _, err := s.ImportUnencrypted(ctx, tezos.P256, make([]byte, 32)); err == nil || err.Error() != "deserialization error: invalid p256 private key" {
		t.Fatalf("a zero P-256 scalar: %v", err)
	}
}

// TestAttestationToken: on the attested channel only, with or without
// Initialize; the enclave's token source's refusal is passed on.
func TestAttestationToken(t *testing.T) {
	pin := attestation.Pin{1}
	e, _ := newEnclave(t, func(cfg *enclave.Config) { cfg.Tokens = tokens{tok: "h.c.s"} })
	if tok, err := e.NewSession(enclave.Channel{Attested: true, ClientPin: pin}).AttestationToken(); err != nil || tok != "h.c.s" {
		t.Fatalf("%q %v", tok, err)
	}
	_, err := e.NewSession(enclave.Channel{}).AttestationToken()
	wantErr(t, err, enclave.ErrPlainChannel)
	plain, _ := newEnclave(t, nil)
	_, err = plain.NewSession(enclave.Channel{}).AttestationToken()
	wantErr(t, err, enclave.ErrPlainChannel)
	down, _ := newEnclave(t, func(cfg *enclave.Config) {
		cfg.Tokens = tokens{err: errors.New("no valid attestation token: launcher down")}
	})
	_, err = down.NewSession(enclave.Channel{Attested: true}).AttestationToken()
	wantErr(t, err, enclave.NewError("AttestationToken", "no valid attestation token: launcher down"))
	if !e.Attested() || plain.Attested() {
		t.Fatal("Attested()")
	}
}

// guard records what it saw and does what it is told.
type guard struct {
	seen    []enclave.SignRequest
	refuse  error
	replace *tezos.Signature
}

func (g *guard) Sign(_ context.Context, r enclave.SignRequest, sign func() (tezos.Signature, error)) (tezos.Signature, error) {
	g.seen = append(g.seen, r)
	if g.refuse != nil {
		return tezos.Signature{}, g.refuse
	}
	if g.replace != nil {
		return *g.replace, nil
	}
	return sign()
}

// TestGuardSeat: every signature of Sign and SignWith leaves through the
// Guard, which sees the key, the message, the version and the channel, and
// may refuse (its *Error reaches the client as is, another error as a
// signer error) or answer a recorded signature; proofs of possession do
// not go through it.
func TestGuardSeat(t *testing.T) {
	g := &guard{}
	e, _ := newEnclave(t, func(cfg *enclave.Config) { cfg.Guard = g })
	pin := attestation.Pin{7}
	s := e.NewSession(enclave.Channel{Attested: false, ClientPin: pin})
	if err := s.Initialize(ctx, cs); err != nil {
		t.Fatal(err)
	}
	k, err := s.GenerateAndImport(ctx, tezos.BLS)
	if err != nil {
		t.Fatal(err)
	}
	sig, err := s.Sign(ctx, k.Handle, msg, 1)
	if err != nil || enclavetest.Verify(k.PublicKey, msg, sig, 1) != nil {
		t.Fatalf("%v %v", sig, err)
	}
	if _, err := s.SignWith(ctx, k.Blob, msg, 255); err != nil {
		t.Fatal(err)
	}
	if _, err := s.ProvePossession(k.Handle); err != nil {
		t.Fatal(err)
	}
	if len(g.seen) != 2 {
		t.Fatalf("the guard saw %d requests, want 2", len(g.seen))
	}
	r := g.seen[0]
	if !r.Key.Equal(k.PublicKey) || !bytes.Equal(r.Message, msg) || r.Version != 1 || r.WithBlob || r.Channel.ClientPin != pin {
		t.Fatalf("Sign as the guard saw it: %+v", r)
	}
	if r := g.seen[1]; r.Version != 255 || !r.WithBlob {
		t.Fatalf("SignWith as the guard saw it: %+v", r)
	}

	refusal := enclave.NewError("guard", "a conflicting block at level 42 round 0")
	g.refuse = refusal
	_, err = s.Sign(ctx, k.Handle, msg, 2)
	wantErr(t, err, refusal)
	g.refuse = errors.New("state store unavailable")
	_, err = s.SignWith(ctx, k.Blob, msg, 2)
	wantErr(t, err, enclave.NewError("signer error", "state store unavailable"))
	g.refuse = nil
	recorded := tezos.Signature{Type: tezos.BLS, Bytes: bytes.Repeat([]byte{9}, 96)}
	g.replace = &recorded
	if got, err := s.Sign(ctx, k.Handle, msg, 2); err != nil || !bytes.Equal(got.Bytes, recorded.Bytes) {
		t.Fatalf("the guard's recorded signature was not returned: %v %v", got, err)
	}
}

// FuzzSession drives a session with any sequence of requests: no request
// panics, nothing but Initialize and AttestationToken succeeds before a
// successful Initialize, the KMS is not called before it, a handle a
// request returned is the chain's length before it, and a plain
// connection of an attested enclave never gets a plain key sealed.
func FuzzSession(f *testing.F) {
	f.Add([]byte{1, 0, 3, 0, 4, 0, 5, 1, 7, 2, 8, 0})
	f.Add([]byte{2, 3, 0, 1, 0, 1, 2, 9, 9, 6, 0})
	f.Add([]byte{0x80, 1, 0, 2, 3})
	f.Fuzz(func(t *testing.T, ops []byte) {
		if len(ops) == 0 {
			return
		}
		attested, channel := ops[0]&0x80 != 0, ops[0]&0x40 != 0
		e, kms := newEnclave(t, func(cfg *enclave.Config) {
			if attested {
				cfg.Tokens = tokens{tok: "a.b.c"}
			}
		})
		s := e.NewSession(enclave.Channel{Attested: channel})
		initialized := false
		var blobs [][]byte
		chain := uint64(0)
		for i := 1; i+1 < len(ops); i += 2 {
			op, arg := ops[i]%10, ops[i+1]
			kt := tezos.KeyTypes[int(arg)%len(tezos.KeyTypes)]
			blob := []byte("k1:garbage")
			if len(blobs) > 0 {
				blob = blobs[int(arg)%len(blobs)]
			}
			seals, _, _ := kms.counts()
			var k enclave.Key
			var err error
			loads := false
			switch op {
			case 0:
				err = s.Initialize(ctx, cs)
				if err == nil {
					initialized = true
				}
				continue
			case 1:
				k, err = s.GenerateAndImport(ctx, kt)
				loads = true
			case 2:
				k, err = s.Generate(ctx, kt)
			case 3:
				k, err = s.Import(ctx, blob)
				loads = true
			case 4:
				secret := bytes.Repeat([]byte{arg | 1}, 32)
				k, err = s.ImportUnencrypted(ctx, tezos.Ed25519, secret)
				loads = true
				if attested && !channel {
					if after, _, _ := kms.counts(); after != seals || err == nil {
						t.Fatalf("a plain key was sealed on a plain connection of an attested enclave")
					}
				}
			case 5:
				_, err = s.Sign(ctx, uint64(arg), msg, arg%3)
			case 6:
				_, err = s.SignWith(ctx, blob, msg, 2)
			case 7:
				_, err = s.PublicKey(uint64(arg))
			case 8:
				_, err = s.ProvePossession(uint64(arg))
			case 9:
				_, err = s.AttestationToken()
				if (err == nil) != (channel && attested) {
					t.Fatalf("AttestationToken on channel %v of enclave %v: %v", channel, attested, err)
				}
				continue
			}
			if err != nil {
				var ee *enclave.Error
				if !errors.As(err, &ee) {
					t.Fatalf("op %d: not an *enclave.Error: %v", op, err)
				}
			}
			if !initialized {
				if err == nil || err.Error() != "uninitialized" {
					t.Fatalf("op %d before Initialize: %v", op, err)
				}
				if s, o, _ := kms.counts(); s+o != 0 {
					t.Fatal("the KMS was called before Initialize")
				}
				continue
			}
			if err == nil && loads {
				if k.Handle != chain {
					t.Fatalf("op %d: handle %d, chain length %d", op, k.Handle, chain)
				}
				chain++
			}
			if err == nil && len(k.Blob) > 0 {
				blobs = append(blobs, k.Blob)
			}
		}
		if uint64(len(s.Info().Keys)) != chain {
			t.Fatalf("chain of %d keys, %d loads", len(s.Info().Keys), chain)
		}
	})
}
