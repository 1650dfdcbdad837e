package memory_test

import (
	"testing"

	"github.com/sigil-signer/sigil/adapters/guardstate/guardstatetest"
	"github.com/sigil-signer/sigil/adapters/guardstate/memory"
	"github.com/sigil-signer/sigil/adapters/watermark/watermarktest"
)

// TestGuardMemoryContract: the daemon's concurrency contract (one mark wins
// among conflicting commits; identical commits replay it) holds for the
// guard's in-memory state.
func TestGuardMemoryContract(t *testing.T) {
	s := guardstatetest.Store{GuardState: memory.New()}
	t.Run("Concurrent", func(t *testing.T) { watermarktest.Concurrent(t, s) })
	t.Run("ConcurrentReplay", func(t *testing.T) { watermarktest.ConcurrentReplay(t, s) })
}
