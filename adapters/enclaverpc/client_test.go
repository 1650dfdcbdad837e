package enclaverpc

import (
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/sigil-signer/sigil/adapters/enclavewire"
	"github.com/sigil-signer/sigil/domain"
)

func TestBLSVersionRefusedByEnclave(t *testing.T) {
	// The enclave's own refusal (here forced through the worker directly)
	// maps to KindInvalid.
	err := mapError(enclavewire.NewError("signer error", "Invalid signing     version"))
	require.Equal(t, domain.KindInvalid, domain.KindOf(err))
	err = mapError(enclavewire.NewError("signer error", "invalid handle"))
	require.Equal(t, domain.KindNotFound, domain.KindOf(err))
	err = mapError(enclavewire.NewError("encryption error", "kms"))
	require.Equal(t, domain.KindInternal, domain.KindOf(err))
	require.ErrorContains(t, err, "encryption error: kms")
}
