package enclavecli

import (
	"os"

	"github.com/spf13/pflag"

	"github.com/sigil-signer/sigil/adapters/guardstate/firestore"
	"github.com/sigil-signer/sigil/app/enclaveapp"
)

// defineGuard adds the guard's flags (issue 21). The policy and the
// Workload Identity provider may instead come from the launch environment
// (enclaveapp.GuardPolicyEnv, enclaveapp.GuardWIPProviderEnv), which the
// attestation token carries.
func (f *options) defineGuard(fs *pflag.FlagSet) {
	g := &f.o.Guard
	g.Policy = os.Getenv(enclaveapp.GuardPolicyEnv)
	fs.StringVar(&g.PolicyFile, "guard-policy", "",
		"turn the guard on with the policy in this JSON file (or in $"+enclaveapp.GuardPolicyEnv+"): what each key may sign, with watermarks kept in --guard-state")
	fs.StringVar(&g.State, "guard-state", enclaveapp.GuardStateFirestore,
		"where the guard keeps its watermarks: firestore, or memory (lost at every restart: tests only)")
	fs.StringVar(&g.Project, "guard-firestore-project", "", "GCP project of the guard's Firestore database")
	fs.StringVar(&g.Database, "guard-firestore-database", firestore.DefaultDatabase, "the guard's Firestore database id")
	fs.StringVar(&g.Collection, "guard-firestore-collection", firestore.DefaultCollection, "the guard's root collection")
	fs.StringVar(&g.WIPProvider, "guard-wip-provider", os.Getenv(enclaveapp.GuardWIPProviderEnv),
		"Workload Identity provider (projects/NUMBER/locations/global/workloadIdentityPools/POOL/providers/PROVIDER) whose attested principal writes the guard's state (default $"+enclaveapp.GuardWIPProviderEnv+")")
	fs.DurationVar(&g.Timeout, "guard-timeout", 0, "bound of the guard's work on its state per request (default 5s)")
}
