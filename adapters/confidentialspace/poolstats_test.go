package confidentialspace

import (
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/sigil-signer/sigil/adapters/enclavetest"
	"github.com/sigil-signer/sigil/adapters/kms/localstandin"
	"github.com/sigil-signer/sigil/domain/tezos"
	"github.com/sigil-signer/sigil/ports"
)

// rpcLog records the observed enclave requests.
type rpcLog struct {
	mu sync.Mutex
	ev []ports.EnclaveRPCEvent
}

func (l *rpcLog) ObserveEnclaveRPC(e ports.EnclaveRPCEvent) {
	l.mu.Lock()
	l.ev = append(l.ev, e)
	l.mu.Unlock()
}

// count returns how many requests of method ended with failure ("" for
// success).
func (l *rpcLog) count(method, failure string) int {
	l.mu.Lock()
	defer l.mu.Unlock()
	n := 0
	for _, e := range l.ev {
		if e.Method == method && e.Failure == failure {
			n++
		}
	}
	return n
}

func TestPoolStatsAndRPCObserver(t *testing.T) {
	keyFile := filepath.Join(t.TempDir(), "kms.key")
	kms, err := localstandin.New(keyFile)
	require.NoError(t, err)
	srv, addr := startEnclave(t, "127.0.0.1:0", enclavetest.ServerOptions{KMS: kms})
	e := newClient(t, addr, 3)
	var log rpcLog
	var pool ports.EnclavePool = e
	pool.SetRPCObserver(&log)
	ctx := ctxT(t, 60*time.Second)

	require.Eventually(t, func() bool { return e.PoolStats().Up == 3 }, 10*time.Second, 10*time.Millisecond)
	st := e.PoolStats()
	require.Equal(t, ports.EnclavePoolStats{Connections: 3, Up: 3}, st, "a fresh pool: every connection up, no redial, no key")

	sealed, err := e.Generate(ctx, tezos.Ed25519)
	require.NoError(t, err)
	msg := []byte("observed")
	_, err = e.Sign(ctx, sealed.PublicKey.Hash(), msg, 2)
	require.NoError(t, err)
	require.Equal(t, 1, e.PoolStats().KeysLoaded)
	require.Equal(t, 1, log.count("GenerateAndImport", ""))
	require.GreaterOrEqual(t, log.count("Sign", ""), 1)
	// A blob the enclave cannot open: an error reply.
	_, err = e.Load(ctx, []byte("not a sealed key"))
	require.Error(t, err)
	require.Equal(t, 1, log.count("Import", ports.EnclaveFailureError))
	log.mu.Lock()
	for _, ev := range log.ev {
		require.Positive(t, ev.Duration, "%+v", ev)
	}
	log.mu.Unlock()

	// The enclave goes away: connections go down and are redialled.
	srv.Close()
	require.Eventually(t, func() bool {
		s := e.PoolStats()
		return s.Up == 0 && s.Redials > 0
	}, 10*time.Second, 10*time.Millisecond)
	_, err = e.Sign(ctx, sealed.PublicKey.Hash(), msg, 2)
	require.Error(t, err)

	// It comes back: every connection up again, the key reloaded.
	kms2, err := localstandin.New(keyFile)
	require.NoError(t, err)
	srv2, _ := startEnclave(t, addr, enclavetest.ServerOptions{KMS: kms2})
	require.Eventually(t, func() bool { return e.PoolStats().Up == 3 }, 20*time.Second, 10*time.Millisecond)
	_, err = e.Sign(ctx, sealed.PublicKey.Hash(), msg, 2)
	require.NoError(t, err)
	st = e.PoolStats()
	require.Equal(t, 1, st.KeysLoaded)
	require.Zero(t, st.KeysUnopened)

	// Without an observer nothing more is recorded.
	pool.SetRPCObserver(nil)
	n := log.count("Sign", "")
	_, err = e.Sign(ctx, sealed.PublicKey.Hash(), msg, 2)
	require.NoError(t, err)
	require.Equal(t, n, log.count("Sign", ""))

	// An enclave initialized with another KMS key cannot open the key.
	srv2.Close()
	other, err := localstandin.New(filepath.Join(t.TempDir(), "other.key"))
	require.NoError(t, err)
	startEnclave(t, addr, enclavetest.ServerOptions{KMS: other})
	require.Eventually(t, func() bool {
		s := e.PoolStats()
		return s.Up == 3 && s.KeysUnopened == 1 && s.KeysLoaded == 0
	}, 20*time.Second, 10*time.Millisecond, "%+v", e.PoolStats())
}
