package gcpkms_test

import (
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/sigil-signer/sigil/adapters/kms/gcpkms"
)

// fastRetry keeps the retry policy's attempts (3) with short waits.
func fastRetry(c *gcpkms.Config) {
	c.Retry.Initial, c.Retry.Max, c.Retry.Attempts = time.Millisecond, 2*time.Millisecond, 3
}

// TestIntegrityFailuresAreRetried: Google's guidance for a reply whose
// CRC32C does not match (or that did not verify the request's) is to
// discard it and retry a bounded number of times: two corrupted replies in
// a row are absorbed, three are an error after exactly three calls.
func TestIntegrityFailuresAreRetried(t *testing.T) {
	f := newFakes(t, time.Hour)
	s := f.session(t, f.provider(t, fastRetry), keyRes)
	plain := []byte("a private key")
	blob, err := s.Seal(ctx(t), plain)
	require.NoError(t, err)

	for _, op := range []struct {
		name string
		call func() error
	}{
		{"Encrypt", func() error { _, err := s.Seal(ctx(t), plain); return err }},
		{"Decrypt", func() error {
			got, err := s.Open(ctx(t), blob)
			if err == nil {
				require.Equal(t, plain, got)
			}
			return err
		}},
	} {
		t.Run(op.name, func(t *testing.T) {
			before := f.kms.Calls()
			f.kms.CorruptNext(2)
			require.NoError(t, op.call(), "two corrupted replies are discarded and retried")
			require.EqualValues(t, 3, f.kms.Calls()-before)

			before = f.kms.Calls()
			f.kms.CorruptNext(3)
			err := op.call()
			require.ErrorIs(t, err, gcpkms.ErrIntegrity)
			require.EqualValues(t, 3, f.kms.Calls()-before, "the retries are bounded")
			f.kms.CorruptNext(0)
		})
	}

	// verified_plaintext_crc32c false: the request was damaged on the way;
	// retried the same way.
	before := f.kms.Calls()
	f.kms.SkipVerify(true)
	_, err = s.Seal(ctx(t), plain)
	require.ErrorIs(t, err, gcpkms.ErrIntegrity)
	require.EqualValues(t, 3, f.kms.Calls()-before)
	f.kms.SkipVerify(false)
}

// TestEncryptReplyNamesTheKey: the key version an Encrypt reply names must
// be a version of the configured key; a reply naming anything else is
// refused at once (not retried, nothing returned to store).
func TestEncryptReplyNamesTheKey(t *testing.T) {
	f := newFakes(t, time.Hour)
	s := f.session(t, f.provider(t, fastRetry), keyRes)
	other := "projects/sigil-test/locations/us-west1/keyRings/sigil/cryptoKeys/other"
	for name, ok := range map[string]bool{
		keyRes + "/cryptoKeyVersions/1":       true,
		keyRes + "/cryptoKeyVersions/17":      true,
		other + "/cryptoKeyVersions/1":        false,
		keyRes:                                false,
		keyRes + "/cryptoKeyVersions/":        false,
		keyRes + "/cryptoKeyVersions/0":       false,
		keyRes + "/cryptoKeyVersions/01":      false,
		keyRes + "/cryptoKeyVersions/1/x":     false,
		keyRes + "/cryptoKeyVersions/-1":      false,
		keyRes + "x/cryptoKeyVersions/1":      false,
		"x" + keyRes + "/cryptoKeyVersions/1": false,
	} {
		f.kms.ReplyName(name)
		before := f.kms.Calls()
		blob, err := s.Seal(ctx(t), []byte("plain"))
		if ok {
			require.NoError(t, err, name)
			require.NotEmpty(t, blob)
			continue
		}
		require.ErrorIs(t, err, gcpkms.ErrWrongKey, name)
		require.Nil(t, blob)
		require.EqualValues(t, 1, f.kms.Calls()-before, "%s: not retried", name)
	}
	f.kms.ReplyName("")
}
