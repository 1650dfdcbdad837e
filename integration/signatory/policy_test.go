package signatory_test

import (
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"testing"

	"github.com/sigil-signer/sigil/adapters/config"
	"github.com/sigil-signer/sigil/app"
	"github.com/sigil-signer/sigil/domain/request"
	"github.com/sigil-signer/sigil/domain/signer"
	"github.com/sigil-signer/sigil/domain/tezos"
	"github.com/sigil-signer/sigil/integration/harness"
)

func TestMain(m *testing.M) { harness.Main(m) }

// configCase is one configuration of testdata/ and what loading it must do.
type configCase struct {
	file string
	// env is set while the case is loaded.
	env map[string]string
	// refuse, when set, is a part of the error Sigil must refuse the
	// configuration with.
	refuse string
	// signatoryRefuses marks configurations that Signatory cannot load
	// either (placeholders instead of addresses, broken YAML).
	signatoryRefuses bool
	// divergence says why Sigil refuses what Signatory loads (a deliberate
	// difference, for docs/migrating-from-signatory.md).
	divergence string
	// knownBug says why Sigil refuses what Signatory loads when that looks
	// like a defect to fix; the test asserts today's refusal so that a fix
	// makes it fail and the mark is removed.
	knownBug string
	// needsDriver names a vault driver this branch does not have yet
	// (another branch adds it): while it is absent, loading must fail
	// naming it; once present the configuration must load.
	needsDriver string
	// pending names a feature being implemented on another branch (jwt,
	// policy_hook): today Sigil refuses the configuration naming pendingErr;
	// once the feature exists the configuration must load (or be refused
	// for refuse) and pass the policy table.
	pending, pendingErr string
}

var cases = []configCase{
	{file: "root-signatory.yaml"},
	{file: "integration_test.yaml"},
	{file: "new_integration_test.yaml"},
	{file: "integration.yaml"},
	{file: "component_test.yaml"},
	{file: "component_test-authorizedkeys.yaml"},
	// failing_noop under allow is no sign request kind: Signatory keeps it
	// and it never matches; Sigil loads it with a warning, matching nothing.
	{file: "docs-start-file.yaml"},
	{file: "docs-start-awskms.yaml"},
	{file: "docs-bakers-local-secret.yaml", refuse: "vaults.tz1YourBakerAddress", signatoryRefuses: true},
	{file: "docs-bakers-local-secret-corrected.yaml"},
	{file: "docs-bakers-dal-tz4.yaml"},
	{file: "docs-bakers-dal-tz1.yaml"},
	{file: "docs-jwt.yaml", pending: "jwt", pendingErr: "server.jwt"},
	{file: "docs-jwt-rotation.yaml", pending: "jwt", pendingErr: "server.jwt"},
	{file: "docs-jwt-users.yaml", pending: "jwt", pendingErr: "jwt_users"},
	{file: "docs-remote-policy.yaml", pending: "policy_hook", pendingErr: "policy_hook", refuse: "pub1", signatoryRefuses: true},
	{file: "docs-watermarks-basic.yaml"},
	{file: "docs-watermarks-file.yaml"},
	{file: "docs-watermarks-mem.yaml"},
	{file: "docs-aws-dynamodb.yaml"},
	{file: "docs-gcp-firestore.yaml"},
	{file: "docs-confidential-space.yaml", env: map[string]string{"HOME": "/home/baker"}},
	{file: "docs-nitro.yaml", env: map[string]string{"HOME": "/home/baker"}},
	{file: "docs-nitro-combined.yaml", env: map[string]string{"ENCLAVE_CID": "16"}, refuse: "tz2YourDelegateKey", signatoryRefuses: true},
	{file: "docs-nitro-combined-corrected.yaml", env: map[string]string{"ENCLAVE_CID": "16"}, refuse: ".vault: unknown field",
		divergence: "Sigil refuses unknown fields (here a per-key `vault:`); Signatory's YAML decoding ignores them"},
	{file: "docs-localsecret.yaml"},
	{file: "docs-dal-bls-tz4.yaml"},
	{file: "docs-dal-bls-tz1.yaml"},
	{file: "docs-pop.yaml", refuse: "invalid key hash", signatoryRefuses: true},
	{file: "docs-pop-corrected.yaml"},
	// Nested lists in authorized_keys ("Nested lists are allowed") are
	// flattened.
	{file: "docs-readme.yaml"},
	// The documented address does not pass its base58 checksum: Signatory,
	// which parses the tezos keys as addresses, refuses it too.
	{file: "docs-gcp-kms.yaml", refuse: `invalid key hash "tz3fK7rVYSg2HTEAmUYdfjJWSDGfsKrxH3xQ"`, signatoryRefuses: true},
	{file: "docs-aws-kms.yaml"},
	{file: "docs-yubihsm.yaml"},
	{file: "sigil-allowed-chains.yaml"},
}

// TestEveryTestdataFileHasACase keeps the table and the directory in step,
// and checks every file's header names its origin and its edits.
func TestEveryTestdataFileHasACase(t *testing.T) {
	files, err := filepath.Glob(filepath.Join("testdata", "*.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	var inTable []string
	for _, c := range cases {
		inTable = append(inTable, c.file)
	}
	for _, f := range files {
		name := filepath.Base(f)
		if !slices.Contains(inTable, name) {
			t.Errorf("testdata/%s has no entry in cases", name)
		}
		data, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		head := string(data[:min(len(data), 1200)])
		if !strings.HasPrefix(head, "# Origin: ") || !strings.Contains(head, "Edits") && !strings.Contains(head, "written for this test") {
			t.Errorf("testdata/%s: the header must start with `# Origin: ` and list the edits", name)
		}
	}
	if len(files) != len(cases) {
		t.Errorf("%d files in testdata, %d cases", len(files), len(cases))
	}
}

var discard = slog.New(slog.NewTextHandler(io.Discard, nil))

// loadSigil loads a configuration as `sigil serve` reads it, without
// opening its drivers: config.Parse (strict YAML, ${VAR} expansion,
// validation), app.Policies (the tezos section as signing policies), and
// the vault and watermark driver names against those this build has.
func loadSigil(t *testing.T, data []byte) (*config.Config, map[string]*signer.Policy, error) {
	t.Helper()
	cfg, err := config.Parse(data, t.TempDir())
	if err != nil {
		return nil, nil, err
	}
	pols, err := app.Policies(cfg, discard)
	if err != nil {
		return nil, nil, err
	}
	vaults, watermarks := app.DriverNames()
	names := make([]string, 0, len(cfg.Vaults))
	for name := range cfg.Vaults {
		names = append(names, name)
	}
	sort.Strings(names)
	for _, name := range names {
		if d := cfg.Vaults[name].Driver; !slices.Contains(vaults, d) {
			return nil, nil, fmt.Errorf("vaults.%s.driver: unknown vault driver %q", name, d)
		}
	}
	if cfg.Watermark != nil && !slices.Contains(watermarks, cfg.Watermark.Driver) {
		return nil, nil, fmt.Errorf("watermark.driver: unknown watermark driver %q", cfg.Watermark.Driver)
	}
	return cfg, pols, nil
}

// TestSignatoryConfigurations loads every configuration and, for each one
// Sigil loads, compares Sigil's decisions with the oracle's (Signatory's
// rules) for every configured key, plus one key the configuration does not
// list, and every sign request of the tables.
func TestSignatoryConfigurations(t *testing.T) {
	vaultDrivers, _ := app.DriverNames()
	messages := append(consensusMessages(mainnet), consensusMessages(ghost)...)
	messages = append(messages, genericMessages(t)...)
	for _, c := range cases {
		t.Run(strings.TrimSuffix(c.file, ".yaml"), func(t *testing.T) {
			for k, v := range c.env {
				t.Setenv(k, v)
			}
			data, err := os.ReadFile(filepath.Join("testdata", c.file))
			if err != nil {
				t.Fatal(err)
			}
			cfg, pols, err := loadSigil(t, data)
			switch {
			case c.needsDriver != "" && !slices.Contains(vaultDrivers, c.needsDriver):
				if err == nil || !strings.Contains(err.Error(), fmt.Sprintf("unknown vault driver %q", c.needsDriver)) {
					t.Fatalf("without the %s vault driver, loading must fail naming it; got %v", c.needsDriver, err)
				}
				t.Logf("needs the %s vault driver (not on this branch): load refused as expected; checking the policies alone", c.needsDriver)
				// The rest of the configuration must load: check it with
				// the vault sections of drivers this build has only.
				cfg, pols, err = loadWithoutVaults(t, data)
				if err != nil {
					t.Fatalf("without its vaults the configuration must load: %v", err)
				}
			case c.pending != "" && err != nil && strings.Contains(err.Error(), c.pendingErr):
				t.Logf("uses %s (pending on another branch): refused as expected: %v", c.pending, err)
				return
			case c.refuse != "":
				if err == nil {
					t.Fatalf("Sigil loads it; want a refusal naming %q", c.refuse)
				}
				if !strings.Contains(err.Error(), c.refuse) {
					t.Fatalf("refused with %q; want an error naming %q", err, c.refuse)
				}
				switch {
				case c.signatoryRefuses:
					t.Logf("refused, as Signatory refuses it: %v", err)
				case c.divergence != "":
					t.Logf("DIVERGENCE (deliberate): %s: %v", c.divergence, err)
				case c.knownBug != "":
					t.Logf("KNOWN BUG: %s: %v", c.knownBug, err)
				default:
					t.Fatalf("refused (%v) with no reason recorded in the case", err)
				}
				return
			case c.pending != "":
				t.Fatalf("uses %s: want either the refusal naming %q (feature absent) or a successful load; got %v", c.pending, c.pendingErr, err)
			case err != nil:
				t.Fatalf("Sigil refuses a configuration Signatory loads: %v", err)
			}
			if c.needsDriver != "" && slices.Contains(vaultDrivers, c.needsDriver) {
				t.Logf("the %s vault driver is present now: the needsDriver mark of %s can go", c.needsDriver, c.file)
			}
			oracle, err := readOracle(data)
			if err != nil {
				t.Fatal(err)
			}
			comparePolicies(t, cfg, pols, oracle, messages)
		})
	}
}

// loadWithoutVaults loads a configuration whose vault driver this branch
// lacks: the vaults section is dropped (it has no bearing on policies), the
// rest goes through loadSigil.
func loadWithoutVaults(t *testing.T, data []byte) (*config.Config, map[string]*signer.Policy, error) {
	t.Helper()
	var kept []string
	skipping := false
	for _, line := range strings.Split(string(data), "\n") {
		top := len(line) > 0 && line[0] != ' ' && line[0] != '#' && line[0] != '\t'
		if top {
			skipping = strings.HasPrefix(line, "vaults:")
		}
		if !skipping {
			kept = append(kept, line)
		}
	}
	return loadSigil(t, []byte(strings.Join(kept, "\n")))
}

// comparePolicies builds a signing service from Sigil's loaded policies,
// with each configured address mapped to a generated key of the same type
// (the configurations name real addresses whose secret keys nobody here
// has): the policy values are Sigil's own, only the map key changes. The
// same is done for authorized client keys. Every message is then signed by
// every key and Sigil's answer compared with the oracle's.
func comparePolicies(t *testing.T, cfg *config.Config, pols map[string]*signer.Policy, oracle *oracleConfig, messages []message) {
	t.Helper()
	if len(pols) != len(oracle.policies) {
		t.Fatalf("Sigil has %d policies, the oracle %d", len(pols), len(oracle.policies))
	}
	// Client keys, by their base58 form in the configuration.
	clients := map[string]testKey{}
	client := func(s string) testKey {
		k, ok := clients[s]
		if !ok {
			k = newTestKey(t, keyTypeOfPublicKey(t, s))
			clients[s] = k
		}
		return k
	}
	remap := func(list []tezos.PublicKey) []tezos.PublicKey {
		var out []tezos.PublicKey
		for _, pk := range list {
			out = append(out, client(pk.String()).pk)
		}
		return out
	}
	server := remap(cfg.Server.AuthorizedKeys)

	keys := map[string]testKey{} // configured address → its stand-in
	mapped := map[string]*signer.Policy{}
	var all []testKey
	addrs := make([]string, 0, len(pols))
	for addr := range pols {
		addrs = append(addrs, addr)
	}
	sort.Strings(addrs)
	for _, addr := range addrs {
		k := newTestKey(t, keyTypeOfAddress(t, addr))
		keys[addr] = k
		p := *pols[addr]
		p.AuthorizedKeys = remap(p.AuthorizedKeys)
		mapped[k.addr] = &p
		all = append(all, k)
	}
	unlisted := newTestKey(t, tezos.Ed25519)
	all = append(all, unlisted)
	s := newSigilSigner(t, mapped, server, all)

	var rows, allowed int
	check := func(label string, k testKey, m message, want bool, c *testKey) {
		if m.blsOnly && k.sk.Type != tezos.BLS {
			return
		}
		rows++
		got := s.sign(t, k, m, c)
		if got {
			allowed++
		}
		if got != want {
			t.Errorf("%s, %s: Sigil allows=%v, Signatory allows=%v", label, m.name, got, want)
		}
	}
	for _, addr := range addrs {
		pol, ok := oracle.policies[addr]
		if !ok {
			t.Fatalf("%s: in Sigil's policies, not in the oracle's", addr)
		}
		ck, need, okClient := oracle.client(pol)
		var c *testKey
		if need {
			cc := client(ck)
			c = &cc
		}
		for _, m := range messages {
			check(addr, keys[addr], m, okClient && pol.allows(m), c)
		}
	}
	var c *testKey
	if len(oracle.server) > 0 {
		cc := client(oracle.server[0])
		c = &cc
	}
	for _, m := range messages {
		check("a key absent from the tezos section", unlisted, m, false, c)
	}
	t.Logf("%d keys, %d requests compared with the oracle, %d allowed", len(addrs)+1, rows, allowed)
}

// TestPolicyMatrix compares Sigil and the oracle for policies naming each
// request kind and each operation kind alone, in the `allow` form and in
// the older allowed_operations / allowed_kinds form, for the bare entry and
// for `allow` winning over the older fields. Names Signatory keeps and never
// matches (unknown ones) are refused by Sigil at load: checked as the
// deliberate difference.
func TestPolicyMatrix(t *testing.T) {
	genericMsgs := genericMessages(t)
	consensusMsgs := append(consensusMessages(mainnet), consensusMessages(ghost)...)
	requestNames := append(request.RequestKinds(), "endorsement", "preendorsement", "failing_noop", "blocks")
	opNames := append(request.GenericOperationKinds(), "endorsement", "preendorsement", "double_endorsement_evidence",
		"double_preendorsement_evidence", "tx_rollup_origination", "transfer", "stak",
		"ballot:yay", "ballot:nay", "ballot:pass", "ballot:maybe", "transaction:yay")
	// failing_noop is accepted as a request kind that matches nothing
	// (Signatory's getting-started examples list it).
	known := append(request.RequestKinds(), "endorsement", "preendorsement", "failing_noop")
	knownOps := append(request.GenericOperationKinds(), "endorsement", "preendorsement", "ballot:yay", "ballot:nay", "ballot:pass")
	retired := []string{"double_endorsement_evidence", "double_preendorsement_evidence", "tx_rollup_origination"}

	type pol struct {
		name, body string
		unknown    string // a name Sigil must refuse
	}
	var pols []pol
	for _, r := range requestNames {
		p := pol{name: "allow " + r, body: fmt.Sprintf("    allow:\n      %s:\n", r)}
		q := pol{name: "allowed_operations " + r, body: fmt.Sprintf("    allowed_operations: [%s]\n", r)}
		if !slices.Contains(known, r) {
			p.unknown, q.unknown = r, r
		}
		pols = append(pols, p, q)
	}
	for _, o := range opNames {
		p := pol{name: "allow generic " + o, body: fmt.Sprintf("    allow:\n      generic: [%s]\n", o)}
		q := pol{name: "allowed_kinds " + o, body: fmt.Sprintf("    allowed_operations: [generic]\n    allowed_kinds: [%s]\n", o)}
		if !slices.Contains(knownOps, o) && !slices.Contains(retired, o) {
			p.unknown, q.unknown = o, o
		}
		pols = append(pols, p, q)
	}
	pols = append(pols,
		pol{name: "bare entry", body: ""},
		pol{name: "allow wins", body: "    allow:\n      block:\n    allowed_operations: [generic, attestation]\n    allowed_kinds: [transaction]\n"},
		pol{name: "allowed_kinds without generic", body: "    allowed_operations: [block]\n    allowed_kinds: [transaction]\n"},
		pol{name: "empty allow", body: "    allow:\n    log_payloads: true\n"},
		pol{name: "generic with no list", body: "    allow:\n      generic:\n"},
		pol{name: "staking and transfers", body: "    allow:\n      generic: [transaction, stake, unstake, finalize_unstake, set_delegate_parameters]\n"},
		pol{name: "two ballot votes", body: "    allow:\n      generic: [\"ballot:yay\", \"ballot:pass\", proposals]\n"},
		pol{name: "ballot and one vote", body: "    allow:\n      generic: [ballot, \"ballot:nay\"]\n"},
	)
	tz1, tz4 := newTestKey(t, tezos.Ed25519), newTestKey(t, tezos.BLS)
	var refused, compared int
	for _, p := range pols {
		text := fmt.Sprintf("tezos:\n  %s:\n%s  %s:\n%s", tz1.addr, p.body, tz4.addr, p.body)
		cfg, err := config.Parse([]byte(text), t.TempDir())
		if err != nil {
			t.Fatalf("%s: %v", p.name, err)
		}
		sigilPols, err := app.Policies(cfg, discard)
		if p.unknown != "" {
			if err == nil || !strings.Contains(err.Error(), fmt.Sprintf("%q", p.unknown)) {
				t.Errorf("%s: Sigil must refuse the unknown name %q at load (Signatory v1.4.0 refuses it at start too); got %v", p.name, p.unknown, err)
			}
			// The name matches no request Signatory parses: no test
			// request carries it, so Signatory would allow nothing more
			// than Sigil with the name removed.
			for _, m := range append(genericMsgs, consensusMsgs...) {
				if strings.HasPrefix(p.name, "allow generic") || strings.HasPrefix(p.name, "allowed_kinds") {
					if slices.Contains(m.ops, p.unknown) {
						t.Errorf("%s: a test request carries the operation %q: not an unknown name", p.name, p.unknown)
					}
				} else if m.kind == p.unknown {
					t.Errorf("%s: a test request is of kind %q: not an unknown name", p.name, p.unknown)
				}
			}
			refused++
			continue
		}
		if err != nil {
			t.Fatalf("%s: %v", p.name, err)
		}
		oracle, err := readOracle([]byte(text))
		if err != nil {
			t.Fatal(err)
		}
		s := newSigilSigner(t, sigilPols, nil, []testKey{tz1, tz4})
		for _, k := range []testKey{tz1, tz4} {
			msgs := consensusMsgs
			if k.sk.Type != tezos.BLS {
				msgs = append(slices.Clone(consensusMsgs), genericMsgs...)
			}
			for _, m := range msgs {
				if m.blsOnly && k.sk.Type != tezos.BLS {
					continue
				}
				want := oracle.policies[k.addr].allows(m)
				if got := s.sign(t, k, m, nil); got != want {
					t.Errorf("%s, %s key, %s: Sigil allows=%v, Signatory allows=%v", p.name, k.sk.Type, m.name, got, want)
				}
				compared++
			}
		}
	}
	t.Logf("%d policies compared over %d requests; %d refused at load for an unknown name (deliberate)", len(pols)-refused, compared, refused)
}

// TestOperationKindsCovered checks the request tables cover every request
// kind and operation kind Sigil reports, so the matrix misses none.
func TestOperationKindsCovered(t *testing.T) {
	kinds := map[string]bool{}
	ops := map[string]bool{}
	for _, m := range append(consensusMessages(mainnet), genericMessages(t)...) {
		kinds[m.kind] = true
		for _, o := range m.ops {
			ops[o] = true
		}
	}
	for _, k := range request.RequestKinds() {
		if !kinds[k] {
			t.Errorf("no test request of kind %s", k)
		}
	}
	for _, o := range request.GenericOperationKinds() {
		if !ops[o] {
			t.Errorf("no test request with operation %s", o)
		}
	}
}

// TestAttestationWithDALSharesWatermark checks the deliberate difference in
// watermarks: Signatory keeps one high watermark per request kind, so an
// attestation and an attestation_with_dal at the same level and round are
// both signed; Sigil keeps them under one watermark (they are both
// attestations of the key at that level) and refuses the second.
func TestAttestationWithDALSharesWatermark(t *testing.T) {
	k := newTestKey(t, tezos.Ed25519)
	allow, _, err := signer.NormalizePolicy(map[string][]string{"attestation": nil, "attestation_with_dal": nil}, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	s := newSigilSigner(t, map[string]*signer.Policy{k.addr: {Allow: allow}}, nil, []testKey{k})
	sign := func(tag byte, payload byte) error {
		_, err := s.svc.Sign(t.Context(), signer.SignRequest{PKH: k.addr, Message: consensusBytes(request.MagicAttestation, tag, mainnet, 500, payload)})
		return err
	}
	if err := sign(21, 1); err != nil {
		t.Fatalf("attestation at level 500: %v", err)
	}
	err = sign(23, 2)
	if err == nil {
		t.Fatal("attestation_with_dal at the level and round of a signed attestation was signed: Sigil must refuse it")
	}
	if !strings.Contains(err.Error(), "level 500") {
		t.Errorf("refusal does not name the recorded level: %v", err)
	}
	t.Logf("DIVERGENCE (deliberate): Signatory would sign it (separate watermark per request kind); Sigil: %v", err)
	if err := sign(23, 2); err == nil {
		t.Error("the refused attestation_with_dal is signed on retry")
	}
}
