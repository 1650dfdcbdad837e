// Package guard tests the enclave's guard (issue 21) as an attacker on the
// daemon's host would meet it: real sigil-enclave processes with the guard
// on (its state in the Firestore emulator), and a raw client that holds
// the sealed blobs (as stolen from the daemon's key store) and speaks the
// enclave protocol directly, bypassing the daemon and its policy and
// watermarks. Every signature that comes back is verified with the
// primitives' own libraries (enclavetest.Verify) and against the mark the
// guard recorded in Firestore.
package guard

import (
	"bytes"
	"context"
	"errors"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	gfs "cloud.google.com/go/firestore"

	"github.com/sigil-signer/sigil/adapters/enclavetest"
	"github.com/sigil-signer/sigil/adapters/enclavewire"
	"github.com/sigil-signer/sigil/adapters/guardstate/firestore"
	"github.com/sigil-signer/sigil/app/enclaveapp"
	"github.com/sigil-signer/sigil/domain"
	"github.com/sigil-signer/sigil/domain/guard"
	"github.com/sigil-signer/sigil/domain/request"
	rt "github.com/sigil-signer/sigil/domain/request/requesttest"
	"github.com/sigil-signer/sigil/domain/tezos"
	"github.com/sigil-signer/sigil/integration/harness"
)

func TestMain(m *testing.M) { harness.Main(m) }

// consensusOnly lets tz1 and tz4 keys sign blocks and (pre)attestations
// only.
const consensusOnly = `{"key_types":{
  "tz1":{"allow":{"block":[],"preattestation":[],"attestation":[]}},
  "tz4":{"allow":{"block":[],"preattestation":[],"attestation":[]}}}}`

// world is one test's Firestore project, KMS key file and enclave binary.
type world struct {
	t       *testing.T
	fs      *harness.Firestore
	project string
	kmsFile string
	policy  string
	bin     string
}

func newWorld(t *testing.T) *world { return newWorldOn(t, harness.StartFirestore(t)) }

func newWorldOn(t *testing.T, fs *harness.Firestore) *world {
	return &world{
		t: t, fs: fs, project: fs.NewProject(t),
		kmsFile: filepath.Join(t.TempDir(), "kms.key"),
		policy:  filepath.Join(t.TempDir(), "guard-policy.json"),
		bin:     harness.BuildBinary(t, "./cmd/sigil-enclave"),
	}
}

// enclave starts a guarded sigil-enclave on the world's database. With
// fromEnv the policy comes from the launch environment, else from a file.
func (w *world) enclave(name string, fromEnv bool, extra ...string) *harness.Enclave {
	t := w.t
	env := w.fs.Env()
	args := append([]string{"--guard-firestore-project", w.project}, extra...)
	if fromEnv {
		env = append(env, enclaveapp.GuardPolicyEnv+"="+consensusOnly)
	} else {
		if err := os.WriteFile(w.policy, []byte(consensusOnly), 0o600); err != nil {
			t.Fatal(err)
		}
		args = append(args, "--guard-policy", w.policy)
	}
	return harness.StartEnclave(t, harness.EnclaveOptions{Name: name, Binary: w.bin, KMSKeyFile: w.kmsFile, Args: args, Env: env})
}

// raw is a client of the enclave protocol that is not the daemon.
type raw struct {
	t *testing.T
	c net.Conn
}

func dial(t *testing.T, addr string) *raw {
	t.Helper()
	c, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	r := &raw{t: t, c: c}
	if err := r.call(enclavewire.NewInitialize(enclavewire.Credentials{WIPProviderPath: "x", EncryptionKeyPath: "y"}), nil); err != nil {
		t.Fatal(err)
	}
	return r
}

func (r *raw) call(req *enclavewire.Request, out any) error {
	b, err := enclavewire.EncodeRequest(req)
	if err != nil {
		return err
	}
	_ = r.c.SetDeadline(time.Now().Add(30 * time.Second))
	if err := enclavewire.WriteFrame(r.c, b); err != nil {
		return err
	}
	reply, err := enclavewire.ReadFrame(r.c, 0)
	if err != nil {
		return err
	}
	return enclavewire.DecodeReply(reply, out)
}

// stolen is a key as a thief holds it: its sealed blob and public key.
type stolen struct {
	blob []byte
	pk   tezos.PublicKey
}

func (r *raw) generate(kt enclavewire.KeyType) stolen {
	r.t.Helper()
	var res enclavewire.GenerateResult
	if err := r.call(enclavewire.NewGenerate(kt), &res); err != nil {
		r.t.Fatal(err)
	}
	pk, err := res.PublicKey.PublicKey()
	if err != nil {
		r.t.Fatal(err)
	}
	return stolen{blob: res.EncryptedPrivateKey, pk: pk}
}

// signWith asks for a signature with the stolen blob; a signature that
// comes back is verified independently before it is returned.
func (r *raw) signWith(k stolen, msg []byte) (tezos.Signature, error) {
	r.t.Helper()
	var tag enclavewire.Tagged
	if err := r.call(enclavewire.NewSignWith(k.blob, msg, tezos.SignVersionLatest), &tag); err != nil {
		return tezos.Signature{}, err
	}
	sig, err := tag.Signature(k.pk.Type)
	if err != nil {
		r.t.Fatal(err)
	}
	if err := enclavetest.Verify(k.pk, msg, sig, tezos.SignVersionLatest); err != nil {
		r.t.Fatalf("the enclave returned a signature that does not verify: %v", err)
	}
	return sig, nil
}

// sign imports the blob on this connection and signs by handle.
func (r *raw) sign(k stolen, msg []byte) (tezos.Signature, error) {
	r.t.Helper()
	var imp enclavewire.ImportResult
	if err := r.call(enclavewire.NewImport(k.blob), &imp); err != nil {
		r.t.Fatal(err)
	}
	var tag enclavewire.Tagged
	if err := r.call(enclavewire.NewSign(imp.Handle, msg, tezos.SignVersionLatest), &tag); err != nil {
		return tezos.Signature{}, err
	}
	sig, err := tag.Signature(k.pk.Type)
	if err != nil {
		r.t.Fatal(err)
	}
	if err := enclavetest.Verify(k.pk, msg, sig, tezos.SignVersionLatest); err != nil {
		r.t.Fatalf("the enclave returned a signature that does not verify: %v", err)
	}
	return sig, nil
}

// refused checks that err is the guard's refusal of kind k, as the daemon
// decodes it (guard.FromWire), naming each of says.
func refused(t *testing.T, what string, err error, k domain.Kind, says ...string) {
	t.Helper()
	var re *enclavewire.RPCError
	if !errors.As(err, &re) || re.Source == nil {
		t.Fatalf("%s: %v, want the guard's refusal", what, err)
	}
	got, ok := guard.FromWire(re.Message, re.Source.Message)
	if !ok || domain.KindOf(got) != k {
		t.Fatalf("%s: %q / %q, want a %v refusal by the guard", what, re.Message, re.Source.Message, k)
	}
	for _, s := range says {
		if !strings.Contains(got.Error(), s) {
			t.Fatalf("%s: %q does not name %q", what, got, s)
		}
	}
}

// recorded reads the mark the guard recorded in Firestore.
func (w *world) recorded(chain request.ChainID, kind string, pk tezos.PublicKey) map[string]any {
	t := w.t
	t.Setenv(firestore.EmulatorEnv, w.fs.Host())
	ctx := context.Background()
	c, err := gfs.NewClient(ctx, w.project)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	snap, err := c.Collection(firestore.DefaultCollection).Doc(chain.String()).Collection(kind).Doc(pk.Hash().String()).Get(ctx)
	if err != nil {
		t.Fatalf("the guard's mark of %s %s: %v", kind, pk.Hash(), err)
	}
	return snap.Data()
}

// TestGuardRawClient: a client holding stolen blobs, bypassing the daemon,
// gets a block and an attestation signed once, the identical requests
// answered with the recorded signatures, and is refused a conflicting
// block, a conflicting attestation (tz1 and tz4), a block below the mark,
// and a transfer from the consensus-only keys.
func TestGuardRawClient(t *testing.T) {
	w := newWorld(t)
	e := w.enclave("enclave", false)
	thief := dial(t, e.Addr())
	baker := thief.generate(enclavewire.KeyEd25519)
	bls := thief.generate(enclavewire.KeyBLS)

	block := rt.Block(rt.Mainnet, 100, 0, 1)
	sig, err := thief.signWith(baker, block)
	if err != nil {
		t.Fatalf("the first block: %v", err)
	}
	doc := w.recorded(rt.Mainnet, "block", baker.pk)
	if doc["signature"] != sig.String() || doc["lvl"] != int64(100) {
		t.Fatalf("recorded mark %v, want level 100 and the signature %s", doc, sig)
	}
	// The identical request, on another connection and by handle: the
	// recorded signature.
	other := dial(t, e.Addr())
	again, err := other.sign(baker, block)
	if err != nil || again.String() != sig.String() {
		t.Fatalf("identical retry: %v %v, want %s", again, err, sig)
	}
	_, err = thief.signWith(baker, rt.Block(rt.Mainnet, 100, 0, 2))
	refused(t, "a conflicting block", err, domain.KindConflict, "level 100")
	_, err = other.sign(baker, rt.Block(rt.Mainnet, 99, 3, 2))
	refused(t, "a block below the mark", err, domain.KindConflict, "level 99")

	for _, c := range []struct {
		k    stolen
		make func(request.ChainID, int32, int32, byte) []byte
	}{{baker, rt.Attestation}, {bls, rt.AttestationTz4}} {
		att := c.make(rt.Mainnet, 100, 0, 1)
		first, err := thief.signWith(c.k, att)
		if err != nil {
			t.Fatalf("%v attestation: %v", c.k.pk.Type, err)
		}
		if got, err := other.signWith(c.k, att); err != nil || got.String() != first.String() {
			t.Fatalf("%v attestation, identical retry: %v %v", c.k.pk.Type, got, err)
		}
		if doc := w.recorded(rt.Mainnet, "attestation", c.k.pk); doc["signature"] != first.String() {
			t.Fatalf("%v attestation: recorded %v, returned %s", c.k.pk.Type, doc["signature"], first)
		}
		_, err = thief.signWith(c.k, c.make(rt.Mainnet, 100, 0, 2))
		refused(t, c.k.pk.Type.String()+": a conflicting attestation", err, domain.KindConflict, "level 100")
	}

	transfer := rt.Generic(7, rt.Transaction(baker.pk.Hash(), rt.Originated(9), 1_000_000, 0))
	_, err = thief.signWith(baker, transfer)
	refused(t, "a transfer from a consensus-only key", err, domain.KindForbidden, "generic", "key_types.tz1")
	_, err = other.sign(bls, rt.Generic(7, rt.Transaction(bls.pk.Hash(), rt.Originated(9), 1, 0)))
	refused(t, "a transfer from a consensus-only tz4 key", err, domain.KindForbidden, "generic", "key_types.tz4")
	// A key type with no rule signs nothing.
	p256 := thief.generate(enclavewire.KeyNistP256)
	_, err = thief.signWith(p256, rt.Block(rt.Mainnet, 1, 0, 1))
	refused(t, "a tz3 key (no rule)", err, domain.KindForbidden, "no rule")
}

// TestGuardRestart: the marks are in Firestore, not in the enclave: a new
// enclave process (the policy now from its launch environment) refuses what
// conflicts with its predecessor's signatures and returns their recorded
// signatures for identical requests.
func TestGuardRestart(t *testing.T) {
	w := newWorld(t)
	e := w.enclave("enclave-1", false)
	c := dial(t, e.Addr())
	baker := c.generate(enclavewire.KeyEd25519)
	bls := c.generate(enclavewire.KeyBLS)
	block := rt.Block(rt.Ghostnet, 500, 1, 1)
	pre := rt.PreattestationTz4(rt.Ghostnet, 500, 1, 1)
	sigBlock, err := c.signWith(baker, block)
	if err != nil {
		t.Fatal(err)
	}
	sigPre, err := c.signWith(bls, pre)
	if err != nil {
		t.Fatal(err)
	}
	e.Stop()
	if err := e.Wait(); err != nil {
		t.Fatalf("the enclave did not stop cleanly: %v", err)
	}

	e2 := w.enclave("enclave-2", true)
	c2 := dial(t, e2.Addr())
	_, err = c2.signWith(baker, rt.Block(rt.Ghostnet, 500, 1, 2))
	refused(t, "a conflicting block after the restart", err, domain.KindConflict, "level 500")
	_, err = c2.sign(bls, rt.PreattestationTz4(rt.Ghostnet, 500, 1, 2))
	refused(t, "a conflicting preattestation after the restart", err, domain.KindConflict, "level 500")
	_, err = c2.signWith(baker, rt.Block(rt.Ghostnet, 499, 0, 1))
	refused(t, "a lower block after the restart", err, domain.KindConflict, "level 499")
	if got, err := c2.signWith(baker, block); err != nil || got.String() != sigBlock.String() {
		t.Fatalf("the identical block after the restart: %v %v, want %s", got, err, sigBlock)
	}
	if got, err := c2.sign(bls, pre); err != nil || got.String() != sigPre.String() {
		t.Fatalf("the identical preattestation after the restart: %v %v, want %s", got, err, sigPre)
	}
	if _, err := c2.signWith(baker, rt.Block(rt.Ghostnet, 501, 0, 1)); err != nil {
		t.Fatalf("the next block after the restart: %v", err)
	}
}

// TestGuardTwoEnclaves: two enclave processes sharing the database, 64
// conflicting blocks at one level and round asked at once (half of each,
// one connection each): exactly one signature leaves; every other request
// is refused as a conflict; the signature is the recorded one.
func TestGuardTwoEnclaves(t *testing.T) {
	w := newWorld(t)
	a, b := w.enclave("enclave-a", false), w.enclave("enclave-b", true)
	baker := dial(t, a.Addr()).generate(enclavewire.KeyEd25519)
	const n = 64
	conns := make([]*raw, n)
	for i := range conns {
		addr := a.Addr()
		if i%2 == 1 {
			addr = b.Addr()
		}
		conns[i] = dial(t, addr)
	}
	var (
		wg    sync.WaitGroup
		start = make(chan struct{})
		sigs  = make([]tezos.Signature, n)
		errs  = make([]error, n)
		msgs  = make([][]byte, n)
	)
	for i := range n {
		msgs[i] = rt.Block(rt.Mainnet, 4242, 0, byte(i+1))
		wg.Go(func() {
			<-start
			sigs[i], errs[i] = conns[i].signWith(baker, msgs[i])
		})
	}
	close(start)
	wg.Wait()
	winner := -1
	for i := range n {
		if errs[i] == nil {
			if winner >= 0 {
				t.Fatalf("two conflicting blocks signed: payloads %d and %d", winner+1, i+1)
			}
			winner = i
			continue
		}
		refused(t, "a conflicting block", errs[i], domain.KindConflict)
	}
	if winner < 0 {
		t.Fatalf("no block signed at all; first error: %v", errs[0])
	}
	doc := w.recorded(rt.Mainnet, "block", baker.pk)
	if doc["signature"] != sigs[winner].String() {
		t.Fatalf("recorded %v, the winner got %s", doc["signature"], sigs[winner])
	}
	// Both enclaves now answer the winner's request with its signature.
	for _, addr := range []string{a.Addr(), b.Addr()} {
		if got, err := dial(t, addr).signWith(baker, msgs[winner]); err != nil || !bytes.Equal(got.Bytes, sigs[winner].Bytes) {
			t.Fatalf("%s: the winner's retry: %v %v", addr, got, err)
		}
	}
	// 64 identical blocks at the next level, at once through both
	// enclaves: every one gets the one recorded signature.
	next := rt.Block(rt.Mainnet, 4243, 0, 1)
	start = make(chan struct{})
	for i := range n {
		wg.Go(func() {
			<-start
			sigs[i], errs[i] = conns[i].signWith(baker, next)
		})
	}
	close(start)
	wg.Wait()
	doc = w.recorded(rt.Mainnet, "block", baker.pk)
	for i := range n {
		if errs[i] != nil || sigs[i].String() != doc["signature"] {
			t.Fatalf("identical block %d: %v %v, want the recorded %v", i, sigs[i], errs[i], doc["signature"])
		}
	}
}
