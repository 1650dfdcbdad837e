package enclavecli

import (
	"context"
	"io"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/sigil-signer/sigil/app/enclaveapp"
)

// TestGuardFlagsFromEnv: each guard setting comes from its flag, or from
// its launch environment variable when the flag is absent; the flag wins.
func TestGuardFlagsFromEnv(t *testing.T) {
	f, _ := parse(t, nil)
	require.False(t, f.o.Guard.Enabled())
	require.Equal(t, enclaveapp.GuardOptions{State: "firestore", Database: "(default)", Collection: "sigil-guard", CheckTimeout: 30 * time.Second}, f.o.Guard)

	t.Setenv(enclaveapp.GuardPolicyEnv, `{"key_types":{"tz4":{"allow":{"attestation":[]}}}}`)
	t.Setenv(enclaveapp.GuardWIPProviderEnv, "projects/1/locations/global/workloadIdentityPools/p/providers/q")
	t.Setenv(envGuardState, "memory")
	t.Setenv(envGuardProject, "proj")
	t.Setenv(envGuardDatabase, "guard-db")
	t.Setenv(envGuardCollection, "marks")
	f, _ = parse(t, nil)
	require.Equal(t, enclaveapp.GuardOptions{
		Policy: `{"key_types":{"tz4":{"allow":{"attestation":[]}}}}`, State: "memory", Project: "proj", Database: "guard-db",
		Collection: "marks", WIPProvider: "projects/1/locations/global/workloadIdentityPools/p/providers/q", CheckTimeout: 30 * time.Second,
	}, f.o.Guard)
	f, _ = parse(t, []string{"--guard-firestore-project", "other", "--guard-state", "firestore", "--guard-policy", "/p.json"})
	require.Equal(t, "other", f.o.Guard.Project)
	require.Equal(t, "firestore", f.o.Guard.State)
	require.Equal(t, "/p.json", f.o.Guard.PolicyFile)
}

// TestGuardStartRefused: sigil-enclave does not start with a guard it
// cannot build, and says why.
func TestGuardStartRefused(t *testing.T) {
	dir := t.TempDir()
	good := filepath.Join(dir, "good.json")
	require.NoError(t, os.WriteFile(good, []byte(`{"key_types":{"tz4":{"allow":{"attestation":[]}}}}`), 0o600))
	bad := filepath.Join(dir, "bad.json")
	require.NoError(t, os.WriteFile(bad, []byte(`{"key_types":{"tz4":{"allow":{"atestation":[]}}}}`), 0o600))
	t.Setenv("FIRESTORE_EMULATOR_HOST", "")
	for _, c := range []struct {
		args []string
		env  string
		want string
	}{
		{[]string{"--guard-policy", filepath.Join(dir, "absent.json")}, "", "absent.json"},
		{[]string{"--guard-policy", bad, "--guard-state", "memory"}, "", "atestation"},
		{[]string{"--guard-policy", good}, `{"keys":{}}`, "given twice"},
		{[]string{"--guard-policy", good, "--guard-state", "disk"}, "", `invalid --guard-state "disk"`},
		{[]string{"--guard-policy", good}, "", "--guard-wip-provider"},
		{[]string{"--guard-policy", good, "--guard-wip-provider", "projects/x"}, "", "invalid resource name"},
	} {
		t.Setenv(enclaveapp.GuardPolicyEnv, c.env)
		args := append([]string{"--listen", "127.0.0.1:0", "--kms-key-file", filepath.Join(dir, "k"), "--guard-firestore-project", "p"}, c.args...)
		err := Run(context.Background(), args, io.Discard, io.Discard)
		require.ErrorContains(t, err, c.want, "%v", c.args)
	}
}
