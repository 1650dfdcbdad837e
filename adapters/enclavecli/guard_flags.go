package enclavecli

import (
	"os"
	"time"

	"github.com/spf13/pflag"

	"github.com/sigil-signer/sigil/adapters/guardstate/firestore"
	"github.com/sigil-signer/sigil/app/enclaveapp"
)

// Launch environment variables that set the guard's flags' defaults: a
// Confidential Space image's launch policy allows overriding chosen
// environment variables (and the attestation token's container claims
// carry their values), so that an operator configures the guard with VM
// metadata (tee-env-NAME) without a command-line override.
const (
	envGuardState      = "SIGIL_ENCLAVE_GUARD_STATE"
	envGuardProject    = "SIGIL_ENCLAVE_GUARD_FIRESTORE_PROJECT"
	envGuardDatabase   = "SIGIL_ENCLAVE_GUARD_FIRESTORE_DATABASE"
	envGuardCollection = "SIGIL_ENCLAVE_GUARD_FIRESTORE_COLLECTION"
)

// envOr returns the environment variable name's value, or def when it is
// unset or empty.
func envOr(name, def string) string {
	if v := os.Getenv(name); v != "" {
		return v
	}
	return def
}

// defineGuard adds the guard's flags (issue 21). The policy may instead be
// the value of enclaveapp.GuardPolicyEnv, and every other flag takes its
// default from a launch environment variable (SIGIL_ENCLAVE_GUARD_…), which
// the attestation token carries.
func (f *options) defineGuard(fs *pflag.FlagSet) {
	g := &f.o.Guard
	g.Policy = os.Getenv(enclaveapp.GuardPolicyEnv)
	fs.StringVar(&g.PolicyFile, "guard-policy", "",
		"turn the guard on with the policy in this JSON file (or in $"+enclaveapp.GuardPolicyEnv+"): what each key may sign, with watermarks kept in --guard-state")
	fs.StringVar(&g.State, "guard-state", envOr(envGuardState, enclaveapp.GuardStateFirestore),
		"where the guard keeps its watermarks: firestore, or memory (lost at every restart: tests only) ($"+envGuardState+" sets the default)")
	fs.StringVar(&g.Project, "guard-firestore-project", os.Getenv(envGuardProject), "GCP project of the guard's Firestore database ($"+envGuardProject+" sets the default)")
	fs.StringVar(&g.Database, "guard-firestore-database", envOr(envGuardDatabase, firestore.DefaultDatabase), "the guard's Firestore database id ($"+envGuardDatabase+" sets the default)")
	fs.StringVar(&g.Collection, "guard-firestore-collection", envOr(envGuardCollection, firestore.DefaultCollection), "the guard's root collection ($"+envGuardCollection+" sets the default)")
	fs.StringVar(&g.WIPProvider, "guard-wip-provider", os.Getenv(enclaveapp.GuardWIPProviderEnv),
		"Workload Identity provider (projects/NUMBER/locations/global/workloadIdentityPools/POOL/providers/PROVIDER) whose attested principal writes the guard's state ($"+enclaveapp.GuardWIPProviderEnv+" sets the default)")
	fs.DurationVar(&g.Timeout, "guard-timeout", 0, "bound of the guard's work on its state per request (default 5s)")
	fs.DurationVar(&g.CheckTimeout, "guard-start-timeout", 30*time.Second, "bound of the start's check of the guard's state (credentials, database reachable); the enclave does not start without it")
}
