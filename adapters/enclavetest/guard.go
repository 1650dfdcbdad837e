package enclavetest

import (
	"path/filepath"
	"testing"

	"github.com/sigil-signer/sigil/domain/enclave"
)

// StartGuardedMock is StartMock with the enclave's guard g seated in the
// enclave (and in every enclave Restart starts: the guard, and so its
// state, survives the restarts, as its Firestore state does).
func StartGuardedMock(t testing.TB, mode enclave.Platform, g enclave.Guard) *Mock {
	t.Helper()
	m := &Mock{KMSFile: filepath.Join(t.TempDir(), "kms.key"), mode: mode, guard: g}
	m.start(t, "127.0.0.1:0", m.KMSFile)
	t.Cleanup(func() { m.Stop() })
	return m
}
