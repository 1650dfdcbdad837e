// Package enclavetest is the contract every vault backend passes (the
// Confidential Space and Nitro enclave clients, the in-process file and mem
// vaults): Run opens the backend through its vault.Opener-made Instance and
// checks key generation and import where the backend supports them,
// signatures of every key type verified with independent libraries (see
// Verify), BLS signing versions and proofs of possession, unknown keys,
// 64 concurrent signers, keys surviving a close and reopen, a restart of a
// remote enclave under load, a restarted enclave that cannot open the
// stored keys showing in Ready, and the domain error kinds of failures.
// A new backend calls Run from its tests with a Backend describing it.
package enclavetest

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/sigil-signer/sigil/adapters/vault"
	"github.com/sigil-signer/sigil/domain"
	rt "github.com/sigil-signer/sigil/domain/request/requesttest"
	"github.com/sigil-signer/sigil/domain/tezos"
	"github.com/sigil-signer/sigil/ports"
)

// Backend describes the backend under test and what it can do.
type Backend struct {
	// Open opens the vault. Every call opens the same vault (same
	// configuration, same key storage): a second Open after Close is a
	// restart of the daemon.
	Open func(t *testing.T) vault.Instance
	// Preloaded are keys the vault holds from its configuration (the
	// in-process vaults); the suite signs with them.
	Preloaded []tezos.PublicKey
	// CanGenerate and CanImport say whether Generate and Import work; when
	// they do not they must fail as domain.KindInvalid.
	CanGenerate, CanImport bool
	// KeysPersist says that generated and imported keys survive a reopen
	// (their blobs are in the key storage).
	KeysPersist bool
	// Restart restarts the remote enclave with the same KMS key (nil: the
	// vault is in-process). RestartOtherKMS restarts it sealing with
	// another KMS key, so that it cannot open the stored keys.
	Restart         func(t *testing.T)
	RestartOtherKMS func(t *testing.T)
	// Lie makes the remote enclave return signatures that do not verify
	// (on) or honest ones (off). Every remote backend must give it: the
	// suite checks that such signatures never come out of the backend. An
	// in-process vault (Restart nil) signs with the daemon's own code, in
	// its own memory: there is no boundary for a reply to cross, and so
	// nothing to check that the signing code itself would not get wrong
	// the same way.
	Lie func(t *testing.T, on bool)
}

func ctxT(t *testing.T, d time.Duration) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	t.Cleanup(cancel)
	return ctx
}

// msg is a well-formed generic operation (a transaction), so that an
// enclave whose guard classifies what it signs (issue 21) signs it under a
// policy that allows transactions; to every other backend it is bytes.
var msg = rt.Generic(0x5e, rt.Transaction(tezos.PublicKeyHash{Type: tezos.Ed25519}, rt.Originated(1), 1, 0))

// op is a distinct well-formed transaction for each (series, g, i).
func op(series, g, i int) []byte {
	return rt.Generic(byte(series), rt.Transaction(tezos.PublicKeyHash{Type: tezos.Ed25519}, rt.Originated(byte(g)), uint64(i+1), 0))
}

// Run runs the contract against b.
func Run(t *testing.T, b Backend) {
	if b.Restart != nil && b.Lie == nil {
		t.Fatal("enclavetest: a remote backend must give Lie (its signatures are verified before they leave it)")
	}
	top := t // instances opened in subtests live until the end of Run
	inst := open(top, b)
	ctx := ctxT(t, 2*time.Minute)
	waitReady(t, inst)

	// Keys to work with: one of each type, from Generate or Import (stored
	// as the service stores them) or from the configuration.
	keys := map[tezos.KeyType]tezos.PublicKey{}
	for _, pk := range b.Preloaded {
		keys[pk.Type] = pk
	}

	t.Run("generate", func(t *testing.T) {
		for _, kt := range tezos.KeyTypes {
			sealed, err := inst.Enclave.Generate(ctx, kt)
			if !b.CanGenerate {
				require.Error(t, err)
				require.Equal(t, domain.KindInvalid, domain.KindOf(err), "%v", err)
				continue
			}
			require.NoError(t, err, "%v", kt)
			require.Equal(t, kt, sealed.PublicKey.Type)
			require.NotEmpty(t, sealed.Blob)
			require.NoError(t, inst.Store.Put(ctx, ports.StoredKey{PKH: sealed.PublicKey.Hash().String(), Blob: sealed.Blob}))
			signVerify(t, inst, sealed.PublicKey, 2)
			keys[kt] = sealed.PublicKey
		}
	})

	t.Run("import", func(t *testing.T) {
		for _, kt := range tezos.KeyTypes {
			sk, err := tezos.GeneratePrivateKey(kt, nil)
			require.NoError(t, err)
			want, err := sk.Public()
			require.NoError(t, err)
			sealed, err := inst.Enclave.Import(ctx, sk)
			if !b.CanImport {
				require.Error(t, err)
				require.Equal(t, domain.KindInvalid, domain.KindOf(err), "%v", err)
				continue
			}
			require.NoError(t, err, "%v", kt)
			require.True(t, want.Equal(sealed.PublicKey))
			require.NotContains(t, string(sealed.Blob), sk.Base58(), "the blob holds the plain key")
			require.NoError(t, inst.Store.Put(ctx, ports.StoredKey{PKH: want.Hash().String(), Blob: sealed.Blob}))
			signVerify(t, inst, want, 2)
			if _, ok := keys[kt]; !ok {
				keys[kt] = want
			}
		}
	})
	require.Len(t, keys, len(tezos.KeyTypes), "the backend offers no key of some type: give Preloaded keys")

	t.Run("sign every type", func(t *testing.T) {
		for _, kt := range tezos.KeyTypes {
			signVerify(t, inst, keys[kt], 2)
		}
	})

	t.Run("BLS versions and proof of possession", func(t *testing.T) {
		bls := keys[tezos.BLS]
		for _, v := range []uint8{1, 2, 255} {
			signVerify(t, inst, bls, v)
		}
		for _, v := range []uint8{0, 3} {
			_, err := inst.Enclave.Sign(ctx, bls.Hash(), msg, v)
			require.Equal(t, domain.KindInvalid, domain.KindOf(err), "version %d: %v", v, err)
		}
		proof, err := inst.Enclave.ProvePossession(ctx, bls.Hash())
		require.NoError(t, err)
		require.NoError(t, VerifyPossession(bls, proof))
		_, err = inst.Enclave.ProvePossession(ctx, keys[tezos.Ed25519].Hash())
		require.Equal(t, domain.KindInvalid, domain.KindOf(err), "%v", err)
	})

	if b.Lie != nil {
		t.Run("signatures that do not verify never leave the backend", func(t *testing.T) {
			b.Lie(t, true)
			for _, kt := range tezos.KeyTypes {
				sig, err := inst.Enclave.Sign(ctxT(t, 30*time.Second), keys[kt].Hash(), msg, 2)
				require.Error(t, err, "%v: a signature that does not verify was returned", kt)
				require.Zero(t, sig.Bytes)
				require.Equal(t, domain.KindUnavailable, domain.KindOf(err), "%v", err)
				require.ErrorIs(t, err, ports.ErrEnclaveBadSignature)
			}
			_, err := inst.Enclave.ProvePossession(ctxT(t, 30*time.Second), keys[tezos.BLS].Hash())
			require.ErrorIs(t, err, ports.ErrEnclaveBadSignature)
			b.Lie(t, false)
			waitReady(t, inst)
			for _, kt := range tezos.KeyTypes {
				signVerify(t, inst, keys[kt], 2)
			}
		})
	}

	t.Run("errors", func(t *testing.T) {
		unknown := tezos.PublicKeyHash{Type: tezos.Ed25519}
		_, err := inst.Enclave.Sign(ctx, unknown, msg, 2)
		require.Equal(t, domain.KindNotFound, domain.KindOf(err), "%v", err)
		_, err = inst.Enclave.ProvePossession(ctx, tezos.PublicKeyHash{Type: tezos.BLS})
		require.Equal(t, domain.KindNotFound, domain.KindOf(err), "%v", err)
		_, err = inst.Enclave.Load(ctx, nil)
		require.Equal(t, domain.KindInvalid, domain.KindOf(err), "%v", err)
		_, err = inst.Enclave.Load(ctx, []byte("not a key blob"))
		require.Error(t, err)
		require.Contains(t, []domain.Kind{domain.KindInvalid, domain.KindInternal}, domain.KindOf(err), "%v", err)
		_, err = inst.Enclave.Generate(ctx, tezos.KeyType(99))
		require.Equal(t, domain.KindInvalid, domain.KindOf(err), "%v", err)
	})

	t.Run("64 concurrent signers", func(t *testing.T) {
		var wg sync.WaitGroup
		errs := make(chan error, 64*4)
		for g := range 64 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				pk := keys[tezos.KeyTypes[g%len(tezos.KeyTypes)]]
				for i := range 4 {
					m := op(1, g, i)
					sig, err := inst.Enclave.Sign(ctx, pk.Hash(), m, 2)
					if err == nil {
						err = Verify(pk, m, sig, 2)
					}
					errs <- err
				}
			}()
		}
		wg.Wait()
		close(errs)
		for err := range errs {
			require.NoError(t, err)
		}
	})

	// Keys that must be there after a reopen.
	stored, err := inst.Store.List(ctx)
	require.NoError(t, err)
	t.Run("close and reopen keeps keys", func(t *testing.T) {
		require.NoError(t, closeInst(inst))
		inst = open(top, b)
		waitReady(t, inst)
		again, err := inst.Store.List(ctx)
		require.NoError(t, err)
		want := map[string]bool{}
		for _, k := range stored {
			want[k.PKH] = true
		}
		got := map[string]bool{}
		for _, k := range again {
			got[k.PKH] = true
		}
		if b.KeysPersist {
			require.Equal(t, want, got)
		} else {
			for _, pk := range b.Preloaded {
				require.True(t, got[pk.Hash().String()], "%s lost", pk.Hash())
			}
		}
		for _, k := range again {
			pk, err := inst.Enclave.Load(ctx, k.Blob)
			require.NoError(t, err, k.PKH)
			require.Equal(t, k.PKH, pk.Hash().String())
			signVerify(t, inst, pk, 2)
			keys[pk.Type] = pk
		}
	})

	if b.Restart != nil {
		t.Run("enclave restart under load", func(t *testing.T) { restartUnderLoad(t, b, inst, keys) })
	}
	if b.RestartOtherKMS != nil {
		t.Run("Ready reports keys a restarted enclave cannot open", func(t *testing.T) { otherKMS(t, b, inst, keys) })
	}
	require.NoError(t, closeInst(inst))
}

func open(t *testing.T, b Backend) vault.Instance {
	t.Helper()
	inst := b.Open(t)
	require.NotNil(t, inst.Enclave)
	require.NotNil(t, inst.Store)
	t.Cleanup(func() { _ = closeInst(inst) })
	return inst
}

func closeInst(inst vault.Instance) error {
	if inst.Close == nil {
		return nil
	}
	return inst.Close()
}

func waitReady(t *testing.T, inst vault.Instance) {
	t.Helper()
	require.Eventually(t, func() bool { return inst.Enclave.Ready(context.Background()) == nil }, 20*time.Second, 10*time.Millisecond)
}

func signVerify(t *testing.T, inst vault.Instance, pk tezos.PublicKey, version uint8) {
	t.Helper()
	sig, err := inst.Enclave.Sign(ctxT(t, 30*time.Second), pk.Hash(), msg, version)
	require.NoError(t, err, "%s", pk.Hash())
	require.NoError(t, Verify(pk, msg, sig, version), "%s version %d", pk.Hash(), version)
}

// restartUnderLoad: 16 signers run while the enclave restarts. Failures are
// only KindUnavailable, every signature verifies, and signing works again
// after the restart for every key.
func restartUnderLoad(t *testing.T, b Backend, inst vault.Instance, keys map[tezos.KeyType]tezos.PublicKey) {
	ctx := ctxT(t, time.Minute)
	stop := make(chan struct{})
	var ok, unavailable atomic.Int64
	var wg sync.WaitGroup
	errs := make(chan error, 16)
	for g := range 16 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			pk := keys[tezos.KeyTypes[g%len(tezos.KeyTypes)]]
			for i := 0; ; i++ {
				select {
				case <-stop:
					return
				default:
				}
				m := op(2, g, i)
				c, cancel := context.WithTimeout(ctx, 5*time.Second)
				sig, err := inst.Enclave.Sign(c, pk.Hash(), m, 2)
				cancel()
				switch {
				case err == nil:
					if err := Verify(pk, m, sig, 2); err != nil {
						errs <- err
						return
					}
					ok.Add(1)
				case domain.KindOf(err) == domain.KindUnavailable:
					if unavailable.Add(1)%500 == 1 {
						t.Logf("unavailable during the restart: %v", err)
					}
					time.Sleep(5 * time.Millisecond)
				default:
					errs <- fmt.Errorf("during a restart: %v (kind %v)", err, domain.KindOf(err))
					return
				}
			}
		}()
	}
	time.Sleep(200 * time.Millisecond)
	before := ok.Load()
	b.Restart(t)
	require.Eventually(t, func() bool { return ok.Load() > before+50 }, 20*time.Second, 10*time.Millisecond, "signing did not resume")
	close(stop)
	wg.Wait()
	close(errs)
	for err := range errs {
		require.NoError(t, err)
	}
	t.Logf("restart under load: %d signatures, %d unavailable", ok.Load(), unavailable.Load())
	waitReady(t, inst)
	for _, pk := range keys {
		signVerify(t, inst, pk, 2)
	}
}

// otherKMS: an enclave that comes back sealing with another KMS key cannot
// open the stored keys; Ready must say so, naming a key address and not a
// blob, until the enclave can open them again.
func otherKMS(t *testing.T, b Backend, inst vault.Instance, keys map[tezos.KeyType]tezos.PublicKey) {
	b.RestartOtherKMS(t)
	var err error
	require.Eventually(t, func() bool {
		err = inst.Enclave.Ready(context.Background())
		return err != nil && strings.Contains(err.Error(), "cannot open")
	}, 20*time.Second, 10*time.Millisecond, "Ready stayed %v", err)
	require.Equal(t, domain.KindUnavailable, domain.KindOf(err))
	stored, lerr := inst.Store.List(context.Background())
	require.NoError(t, lerr)
	named := false
	for _, k := range stored {
		named = named || strings.Contains(err.Error(), k.PKH)
	}
	require.True(t, named, "Ready does not name the key: %v", err)
	require.NotContains(t, err.Error(), "/", "Ready's reason shows a path: %v", err)
	t.Logf("Ready: %v", err)
	_, serr := inst.Enclave.Sign(ctxT(t, 10*time.Second), keys[tezos.Ed25519].Hash(), msg, 2)
	require.Error(t, serr)

	b.Restart(t) // the right KMS key again
	waitReady(t, inst)
	for _, pk := range keys {
		signVerify(t, inst, pk, 2)
	}
}
