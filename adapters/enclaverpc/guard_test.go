package enclaverpc

import (
	"errors"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/sigil-signer/sigil/adapters/enclavewire"
	"github.com/sigil-signer/sigil/domain"
	"github.com/sigil-signer/sigil/domain/guard"
)

// TestGuardRefusalKinds: an Err reply in the enclave guard's wire form maps
// to the refusal's kind (so to 403, 409, 503 or 400 at the HTTP API) with
// the guard's text and guard.ErrRefused in the chain; a message that only
// resembles it stays an enclave error.
func TestGuardRefusalKinds(t *testing.T) {
	for _, k := range []domain.Kind{domain.KindForbidden, domain.KindConflict, domain.KindUnavailable, domain.KindInvalid} {
		err := mapError(enclavewire.NewError(guard.WirePrefix+k.String(), "guard: the reason"))
		require.Equal(t, k, domain.KindOf(err), "%v", err)
		require.True(t, errors.Is(err, guard.ErrRefused))
		require.ErrorContains(t, err, "guard: the reason")
	}
	for _, msg := range []string{guard.WirePrefix + "internal", guard.WirePrefix + "Forbidden", "signer error"} {
		err := mapError(enclavewire.NewError(msg, "guard: invalid signing version"))
		require.False(t, errors.Is(err, guard.ErrRefused), "%q", msg)
	}
}
