package app

import (
	"context"
	"fmt"
	"slices"
	"strings"

	"github.com/sigil-signer/sigil/adapters/httpapi"
	"github.com/sigil-signer/sigil/domain/signer"
	"github.com/sigil-signer/sigil/ports"
)

// moreReadiness are the readiness checks beyond the enclaves, the loaded
// keys and the watermark store's own probe: what else every sign request
// depends on. Each names its reason in the /healthz body.
func moreReadiness(p ServeParams) []httpapi.Readiness {
	checks := []httpapi.Readiness{keysNamedReady(p.Signer)}
	// Every request the policy allows goes to the hook: while it cannot be
	// reached, every one of them fails (500). The hook is the one in force
	// (a reload may change it).
	checks = append(checks, func(ctx context.Context) error {
		hc, ok := p.Signer.Snapshot().Settings().PolicyHook.(ports.HealthChecker)
		if !ok {
			return nil
		}
		if err := hc.Healthy(ctx); err != nil {
			return fmt.Errorf("policy hook: every sign request would fail: %w", err)
		}
		return nil
	})
	if w, ok := p.Watermarks.(interface{ Ready() error }); ok {
		checks = append(checks, func(context.Context) error { return w.Ready() })
	}
	return checks
}

// keysNamedReady reports a vault that yields no key while the tezos section
// names keys that no vault holds: a key file that is empty ([]) or not the
// one meant, a storage pointing at the wrong place. Every request for those
// keys would fail; the daemon is not ready, and says which keys are
// missing. (A vault may legitimately be empty when every key the policies
// name is held elsewhere.)
func keysNamedReady(svc *signer.Service) httpapi.Readiness {
	return func(context.Context) error {
		if svc.Ready() != nil {
			return nil // still loading: reported by the loading check
		}
		held := map[string]int{}
		for _, k := range svc.List() {
			held[k.Vault]++
		}
		var empty []string
		for _, name := range svc.Vaults() {
			if held[name] == 0 {
				empty = append(empty, name)
			}
		}
		if len(empty) == 0 {
			return nil
		}
		var missing []string
		for pkh := range svc.Snapshot().Settings().Policies { // the tezos section in force
			if !svc.Has(pkh) {
				missing = append(missing, pkh)
			}
		}
		if len(missing) == 0 {
			return nil
		}
		slices.Sort(missing)
		more := ""
		if len(missing) > 3 {
			more = fmt.Sprintf(" and %d more", len(missing)-3)
			missing = missing[:3]
		}
		return fmt.Errorf("vault %s holds no key, while the tezos section names keys no vault holds (%s%s): is the key file or storage the one meant?",
			strings.Join(empty, ", "), strings.Join(missing, ", "), more)
	}
}
