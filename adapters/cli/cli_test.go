package cli

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"encoding/hex"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/sigil-signer/sigil/adapters/buildinfo"
	"github.com/sigil-signer/sigil/adapters/enclavetest"
	"github.com/sigil-signer/sigil/app"
	"github.com/sigil-signer/sigil/domain/tezos"
)

// countingListener accepts and counts TCP connections (closing them): a
// stand-in for an enclave that must not be dialled.
type countingListener struct {
	ln net.Listener
	n  atomic.Int64
}

func newCountingListener(t *testing.T) *countingListener {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	c := &countingListener{ln: ln}
	go func() {
		for {
			conn, err := ln.Accept()
			if err != nil {
				return
			}
			c.n.Add(1)
			conn.Close()
		}
	}()
	t.Cleanup(func() { ln.Close() })
	return c
}

func (c *countingListener) port() int { return c.ln.Addr().(*net.TCPAddr).Port }

// startEnclave runs the mock enclave in this process and returns its port.
func startEnclave(t *testing.T) int {
	t.Helper()
	srv := enclavetest.NewServer(t, enclavetest.ServerOptions{})
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	go func() { _ = srv.Serve(ln) }()
	t.Cleanup(func() { srv.Close() })
	return ln.Addr().(*net.TCPAddr).Port
}

// vaultYAML is a confidentialspace vault on 127.0.0.1:port.
func vaultYAML(port int) string {
	return fmt.Sprintf(`vaults:
  cs:
    driver: confidentialspace
    config:
      host: 127.0.0.1
      port: "%d"
      wip_provider_path: projects/p/locations/global/workloadIdentityPools/w/providers/x
      encryption_key_path: projects/p/locations/global/keyRings/r/cryptoKeys/k
      dial_timeout: 2s
`, port)
}

// writeCfg writes a configuration with base_dir dir and returns its path.
func writeCfg(t *testing.T, dir, body string) string {
	t.Helper()
	path := filepath.Join(dir, "sigil.yaml")
	require.NoError(t, os.WriteFile(path, []byte("base_dir: "+dir+"\n"+body), 0o600))
	return path
}

// TestBadConfigReportedBeforeDialling: whatever the verb, a configuration
// error (policy, a driver section, the watermark section) is reported and
// the enclave is never contacted.
func TestBadConfigReportedBeforeDialling(t *testing.T) {
	enc := newCountingListener(t)
	sk, err := tezos.GeneratePrivateKey(tezos.Ed25519, nil)
	require.NoError(t, err)
	for name, tc := range map[string]struct{ extra, want string }{
		"policy":       {"tezos:\n  tz1VSUr8wwNhLAzempoch5d6hLRiTh8Cjcjb:\n    allow:\n      generic: [transfer]\n", `unknown operation kind "transfer"`},
		"storage":      {"      storage:\n        driver: gcp\n        config:\n          project: p\n", "missing required field database"},
		"watermark":    {"watermark:\n  driver: aws\n  config:\n    table: t\n", "not a valid DynamoDB table name"},
		"second vault": {"  other:\n    driver: confidentialspace\n    config:\n      host: 127.0.0.1\n", "vaults.other"},
	} {
		t.Run(name, func(t *testing.T) {
			dir := t.TempDir()
			cfg := writeCfg(t, dir, vaultYAML(enc.port())+tc.extra)
			for _, args := range [][]string{
				{"list"},
				{"generate"},
				{"import", sk.Base58()},
				{"serve"},
				{}, // bare sigil: serve
				{"watermarks", "export"},
			} {
				_, errOut, err := runCLIFor(t, 10*time.Second, "", append([]string{"-c", cfg}, args...)...)
				require.Error(t, err, "sigil %v", args)
				assert.Contains(t, err.Error(), tc.want, "sigil %v", args)
				assert.NotContains(t, errOut, sk.Base58())
			}
			// Give a stray dial time to land before counting.
			time.Sleep(100 * time.Millisecond)
			assert.Zero(t, enc.n.Load(), "the enclave was dialled despite the configuration error")
		})
	}
}

// TestStateDirRefusal: with no base_dir, next to Signatory's state
// directory and without Sigil's, every verb that opens state refuses, naming
// the base_dir to set, and dials nothing.
func TestStateDirRefusal(t *testing.T) {
	enc := newCountingListener(t)
	root := t.TempDir()
	dirs := &app.StateDirs{Signatory: filepath.Join(root, "signatory"), Sigil: filepath.Join(root, "sigil")}
	require.NoError(t, os.Mkdir(dirs.Signatory, 0o700))
	stateDirs = dirs
	t.Cleanup(func() { stateDirs = nil })
	// Everything else points into the test's directory (should the check
	// fail, nothing is created at the real default paths), and the daemon
	// would listen on loopback.
	body := strings.Replace(vaultYAML(enc.port()), "      dial_timeout: 2s\n",
		"      dial_timeout: 2s\n      storage:\n        driver: file\n        config: "+filepath.Join(root, "keys.json")+"\n", 1) +
		"server:\n  address: 127.0.0.1:0\n  utility_address: 127.0.0.1:0\nwatermark:\n  driver: mem\n"
	cfg := filepath.Join(root, "sigil.yaml")
	require.NoError(t, os.WriteFile(cfg, []byte(body), 0o600))
	for _, args := range [][]string{{"serve"}, {}, {"list"}, {"generate"}, {"watermarks", "export"}} {
		_, _, err := runCLIFor(t, 10*time.Second, "", append([]string{"-c", cfg}, args...)...)
		require.Error(t, err, "sigil %v", args)
		assert.Contains(t, err.Error(), "base_dir: "+dirs.Signatory, "sigil %v", args)
	}
	time.Sleep(100 * time.Millisecond)
	assert.Zero(t, enc.n.Load())
	_, err := os.Stat(dirs.Sigil)
	assert.True(t, os.IsNotExist(err), "Sigil's default directory was created")
}

// encryptedVector is one of domain/tezos/testdata/encrypted_keys.json: a
// key encrypted the octez-client way, its passphrase, and the address
// Taquito's InMemorySigner gives it.
type encryptedVector struct {
	Type          string `json:"type"`
	Passphrase    string `json:"passphrase"`
	Encrypted     string `json:"encrypted"`
	SecretKey     string `json:"secret_key"`
	PublicKeyHash string `json:"public_key_hash"`
}

func encryptedVectors(t *testing.T) []encryptedVector {
	t.Helper()
	data, err := os.ReadFile("../../domain/tezos/testdata/encrypted_keys.json")
	require.NoError(t, err)
	var vs []encryptedVector
	require.NoError(t, json.Unmarshal(data, &vs))
	require.NotEmpty(t, vs)
	return vs
}

// keyFileAddresses returns the addresses in the file key store.
func keyFileAddresses(t *testing.T, dir string) []string {
	t.Helper()
	data, err := os.ReadFile(filepath.Join(dir, "confidential_space_keys.json"))
	if os.IsNotExist(err) {
		return nil
	}
	require.NoError(t, err)
	var entries []struct {
		PKH string `json:"public_key_hash"`
	}
	require.NoError(t, json.Unmarshal(data, &entries))
	var out []string
	for _, e := range entries {
		out = append(out, e.PKH)
	}
	return out
}

// TestImportEncrypted imports octez-client encrypted keys of every type
// into the mock enclave: with --password, with the password on standard
// input after a key given as an argument, and with key and password both
// on standard input. The address printed is the one Taquito computes; a
// wrong or missing password stores nothing; neither key nor password is
// ever printed.
func TestImportEncrypted(t *testing.T) {
	port := startEnclave(t)
	vs := encryptedVectors(t)
	byType := map[string]encryptedVector{}
	for _, v := range vs {
		if _, ok := byType[v.Type]; !ok {
			byType[v.Type] = v
		}
	}
	require.Len(t, byType, 4)
	for _, v := range vs {
		require.True(t, strings.HasPrefix(v.Encrypted, map[string]string{"ed25519": "edesk", "secp256k1": "spesk", "p256": "p2esk", "bls": "BLesk"}[v.Type]))
	}
	secretsIn := func(t *testing.T, s string, v encryptedVector) {
		t.Helper()
		for _, secret := range []string{v.Encrypted, v.SecretKey, v.Passphrase} {
			assert.NotContains(t, s, secret)
		}
	}
	ed := byType["ed25519"]

	t.Run("modes", func(t *testing.T) {
		for name, run := range map[string]func(cfg string) (string, string, error){
			"--password": func(cfg string) (string, string, error) {
				return runCLI(t, "", "-c", cfg, "import", "--password", ed.Passphrase, ed.Encrypted)
			},
			"password on stdin": func(cfg string) (string, string, error) {
				return runCLI(t, ed.Passphrase+"\n", "-c", cfg, "import", ed.Encrypted)
			},
			"key and password on stdin": func(cfg string) (string, string, error) {
				return runCLI(t, "encrypted:"+ed.Encrypted+"\n"+ed.Passphrase+"\n", "-c", cfg, "import", "--vault", "cs")
			},
			"key file, password on stdin": func(cfg string) (string, string, error) {
				f := filepath.Join(filepath.Dir(cfg), "key.txt")
				require.NoError(t, os.WriteFile(f, []byte(ed.Encrypted+"\n"), 0o600))
				return runCLI(t, ed.Passphrase+"\r\n", "-c", cfg, "import", f)
			},
		} {
			t.Run(name, func(t *testing.T) {
				dir := t.TempDir()
				cfg := writeCfg(t, dir, vaultYAML(port))
				out, errOut, err := run(cfg)
				require.NoError(t, err, errOut)
				assert.Equal(t, ed.PublicKeyHash+"\n", out)
				if name == "--password" {
					assert.Contains(t, errOut, "warning: --password can be seen by other users", "a password on the command line is visible in the process list")
				} else {
					assert.NotContains(t, errOut, "--password")
				}
				secretsIn(t, out+errOut, ed)
				assert.Equal(t, []string{ed.PublicKeyHash}, keyFileAddresses(t, dir))
			})
		}
	})

	t.Run("every type", func(t *testing.T) {
		dir := t.TempDir()
		cfg := writeCfg(t, dir, vaultYAML(port))
		var want []string
		for _, typ := range []string{"ed25519", "secp256k1", "p256", "bls"} {
			v := byType[typ]
			out, errOut, err := runCLI(t, v.Passphrase+"\n", "-c", cfg, "import", v.Encrypted)
			require.NoError(t, err, errOut)
			assert.Equal(t, v.PublicKeyHash+"\n", out, typ)
			secretsIn(t, out+errOut, v)
			want = append(want, v.PublicKeyHash)
		}
		assert.ElementsMatch(t, want, keyFileAddresses(t, dir))
		// The imported keys load and list with their addresses.
		out, _, err := runCLI(t, "", "-c", cfg, "list")
		require.NoError(t, err)
		for _, pkh := range want {
			assert.Contains(t, out, "Public Key Hash:           "+pkh+"\n")
		}
	})

	t.Run("refusals", func(t *testing.T) {
		dir := t.TempDir()
		cfg := writeCfg(t, dir, vaultYAML(port))
		for name, tc := range map[string]struct {
			stdin string
			args  []string
			want  string
		}{
			"wrong --password": {"", []string{"--password", ed.Passphrase + "!", ed.Encrypted}, "wrong passphrase"},
			"wrong on stdin":   {"nope\n", []string{ed.Encrypted}, "wrong passphrase"},
			"no password":      {"", []string{ed.Encrypted}, "no password was given"},
			"key, no password": {ed.Encrypted + "\n", nil, "no password was given"},
			"nothing":          {"", nil, "no key given"},
			"not a key":        {"", []string{"edsk-not-a-file"}, "neither an existing file nor a Tezos secret key"},
			"second key bad":   {"", []string{"--password", ed.Passphrase, ed.Encrypted, ed.Encrypted[:40] + "x"}, "key 2 of 2"},
			"bad -o":           {"", []string{"-o", "name", ed.Encrypted}, "key:value"},
		} {
			t.Run(name, func(t *testing.T) {
				out, errOut, err := runCLI(t, tc.stdin, append([]string{"-c", cfg, "import"}, tc.args...)...)
				require.Error(t, err)
				assert.Contains(t, err.Error(), tc.want)
				secretsIn(t, out+errOut+err.Error(), ed)
				assert.Empty(t, keyFileAddresses(t, dir), "a key was stored")
			})
		}
	})

	t.Run("options are accepted and reported", func(t *testing.T) {
		dir := t.TempDir()
		cfg := writeCfg(t, dir, vaultYAML(port))
		out, errOut, err := runCLI(t, "", "-c", cfg, "import", "--password", ed.Passphrase, "-o", `name:"baker 1", other : x`, ed.Encrypted)
		require.NoError(t, err)
		assert.Equal(t, ed.PublicKeyHash+"\n", out)
		assert.Contains(t, errOut, "import options ignored (name, other)")
	})
}

// TestImportUnencryptedForms: an edsk key as an argument (with a warning
// about the command line), from standard input, and a PEM file.
func TestImportUnencryptedForms(t *testing.T) {
	port := startEnclave(t)
	dir := t.TempDir()
	cfg := writeCfg(t, dir, vaultYAML(port))
	v := encryptedVectors(t)[0]
	out, errOut, err := runCLI(t, "", "-c", cfg, "import", v.SecretKey)
	require.NoError(t, err)
	assert.Equal(t, v.PublicKeyHash+"\n", out)
	assert.Contains(t, errOut, "can be seen by other users")
	assert.NotContains(t, errOut, v.SecretKey)

	sk, err := tezos.GeneratePrivateKey(tezos.Secp256k1, nil)
	require.NoError(t, err)
	pub, err := sk.Public()
	require.NoError(t, err)
	out, errOut, err = runCLI(t, "unencrypted:"+sk.Base58()+"\n", "-c", cfg, "import")
	require.NoError(t, err, errOut)
	assert.Equal(t, pub.Hash().String()+"\n", out)
	assert.NotContains(t, errOut, "can be seen")

	// A PEM key on standard input is read whole.
	ec, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	require.NoError(t, err)
	der, err := x509.MarshalPKCS8PrivateKey(ec)
	require.NoError(t, err)
	pemData := pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der})
	want, err := tezos.ParsePrivateKeyAny(pemData)
	require.NoError(t, err)
	wantPub, err := want.Public()
	require.NoError(t, err)
	out, errOut, err = runCLI(t, string(pemData), "-c", cfg, "import", "-")
	require.NoError(t, err, errOut)
	assert.Equal(t, wantPub.Hash().String()+"\n", out)
	assert.True(t, strings.HasPrefix(out, "tz3"))
}

// TestOptionsSyntax: Signatory's key:val[,...] syntax.
func TestOptionsSyntax(t *testing.T) {
	for in, want := range map[string]map[string]string{
		"":                      {},
		"name:test-name":        {"name": "test-name"},
		` a : b , "c d":'e,f' `: {"a": "b", "c d": "e,f"},
		`k:v\,w,x:\"y`:          {"k": "v,w", "x": `"y`},
	} {
		got, err := parseOptions(in)
		require.NoError(t, err, in)
		assert.Equal(t, want, got, in)
	}
	for _, bad := range []string{"name", "a:b c:d", `a:"b`, ":x", `a:b\`} {
		_, err := parseOptions(bad)
		assert.Error(t, err, bad)
	}
}

func TestListRequestsAndOps(t *testing.T) {
	for verb, tc := range map[string]struct {
		title string
		items []string
	}{
		// Signatory v1.4.0's list-requests prints exactly these (gotez
		// proto_024_PtTALLiN ListSignRequests).
		"list-requests": {"Possible request types:", []string{"attestation", "attestation_with_dal", "block", "generic", "pack", "preattestation"}},
		// Signatory's list-ops (gotez ListGenericOperations and
		// ListPseudoOperations), plus the three consensus operations Sigil
		// also signs inside a generic request (attestation,
		// attestation_with_dal, preattestation).
		"list-ops": {"Possible operation types:", []string{"activate_account", "attestation", "attestation_with_dal", "attestations_aggregate",
			"ballot", "dal_entrapment_evidence", "dal_publish_commitment", "delegation", "double_baking_evidence",
			"double_consensus_operation_evidence", "drain_delegate", "failing_noop", "finalize_unstake", "increase_paid_storage",
			"origination", "preattestation", "preattestations_aggregate", "proposals", "register_global_constant", "reveal",
			"seed_nonce_revelation", "set_delegate_parameters", "set_deposits_limit", "signature_prefix",
			"smart_rollup_add_messages", "smart_rollup_cement", "smart_rollup_execute_outbox_message", "smart_rollup_originate",
			"smart_rollup_publish", "smart_rollup_recover_bond", "smart_rollup_refute", "smart_rollup_timeout", "stake",
			"transaction", "transfer_ticket", "unstake", "update_companion_key", "update_consensus_key", "vdf_revelation",
			"zk_rollup_origination", "zk_rollup_publish", "zk_rollup_update"}},
	} {
		// No configuration is needed (none exists at the default path).
		out, _, err := runCLI(t, "", "-c", filepath.Join(t.TempDir(), "absent.yaml"), verb)
		require.NoError(t, err, verb)
		lines := strings.Split(strings.TrimSuffix(out, "\n"), "\n")
		require.Equal(t, tc.title, lines[0], verb)
		var got []string
		for _, l := range lines[1:] {
			item, ok := strings.CutPrefix(l, "    - ")
			require.True(t, ok, "%s: line %q", verb, l)
			got = append(got, item)
		}
		assert.Equal(t, tc.items, got, verb)
		assert.True(t, slices.IsSorted(got), verb)
	}
	out, _, err := runCLI(t, "", "list-ops")
	require.NoError(t, err)
	for _, op := range []string{"transaction", "stake", "unstake", "finalize_unstake", "set_delegate_parameters", "reveal", "delegation"} {
		assert.Contains(t, out, "    - "+op+"\n")
	}
	out, _, err = runCLI(t, "", "list-requests")
	require.NoError(t, err)
	for _, k := range []string{"block", "preattestation", "attestation", "attestation_with_dal", "generic"} {
		assert.Contains(t, out, "    - "+k+"\n")
	}
}

func TestVersionAlias(t *testing.T) {
	for _, verb := range []string{"version", "v"} {
		out, _, err := runCLI(t, "", verb)
		require.NoError(t, err)
		i := buildinfo.Read()
		assert.Equal(t, "sigil "+i.Version+"\n"+i.String(), out)
	}
}

func TestHelp(t *testing.T) {
	out, _, err := runCLI(t, "", "--help")
	require.NoError(t, err)
	for _, s := range []string{"serve", "list-requests", "list-ops", "import", "--no-list"} {
		assert.Contains(t, out, s)
	}
	_, _, err = runCLI(t, "", "lsit")
	require.Error(t, err)
	assert.Contains(t, err.Error(), `unknown command "lsit"`)
}

// importKeys imports fresh keys of the given types and returns their
// addresses.
func importKeys(t *testing.T, cfg string, types ...tezos.KeyType) []tezos.PublicKey {
	t.Helper()
	var out []tezos.PublicKey
	for _, kt := range types {
		sk, err := tezos.GeneratePrivateKey(kt, nil)
		require.NoError(t, err)
		pub, err := sk.Public()
		require.NoError(t, err)
		got, errOut, err := runCLI(t, sk.Base58()+"\n", "-c", cfg, "import")
		require.NoError(t, err, errOut)
		require.Equal(t, pub.Hash().String()+"\n", got)
		out = append(out, pub)
	}
	return out
}

// TestListOutput: Signatory's fields, per key, in Signatory's layout.
func TestListOutput(t *testing.T) {
	port := startEnclave(t)
	dir := t.TempDir()
	cfg := writeCfg(t, dir, vaultYAML(port))
	pubs := importKeys(t, cfg, tezos.Ed25519, tezos.BLS, tezos.P256)
	withPolicy, bare, unlisted := pubs[0], pubs[1], pubs[2]
	cfg = writeCfg(t, dir, vaultYAML(port)+fmt.Sprintf(`tezos:
  %s:
    allow:
      generic: [transaction, stake, delegation]
      block:
      endorsement:
  %s:
`, withPolicy.Hash(), bare.Hash()))
	out, _, err := runCLI(t, "", "-c", cfg, "list")
	require.NoError(t, err)
	blocks := map[string]string{}
	for _, b := range strings.Split(strings.TrimSuffix(out, "\n\n"), "\n\n") {
		pkh, _, _ := strings.Cut(strings.TrimPrefix(b, "Public Key Hash:           "), "\n")
		blocks[pkh] = b + "\n"
	}
	require.Len(t, blocks, 3, out)
	assert.Equal(t, fmt.Sprintf(`Public Key Hash:           %s
Public Key:                %s
Reference:                 
Vault:                     cs
Active:                    true
Allowed Requests:          [attestation block generic]
Allowed Operations:        [delegation stake transaction]
Allow Proof of Possession: false
`, withPolicy.Hash(), withPolicy), blocks[withPolicy.Hash().String()])
	assert.Equal(t, fmt.Sprintf(`Public Key Hash:           %s
Public Key:                %s
Reference:                 
Vault:                     cs
Active:                    true
Allowed Requests:          [attestation block preattestation]
Allowed Operations:        []
Allow Proof of Possession: false
`, bare.Hash(), bare), blocks[bare.Hash().String()])
	assert.Equal(t, fmt.Sprintf(`Public Key Hash:           %s
Public Key:                %s
Reference:                 
Vault:                     cs
Active:                    false
`, unlisted.Hash(), unlisted), blocks[unlisted.Hash().String()])
	// -o json: the same fields; -o pkh: one address per line; another
	// format is refused before anything is opened.
	out, _, err = runCLI(t, "", "-c", cfg, "list", "-o", "json")
	require.NoError(t, err)
	var listed []map[string]any
	require.NoError(t, json.Unmarshal([]byte(out), &listed), out)
	require.Len(t, listed, 3)
	byAddr := map[string]map[string]any{}
	for _, l := range listed {
		byAddr[l["address"].(string)] = l
	}
	assert.Equal(t, map[string]any{"address": withPolicy.Hash().String(), "public_key": withPolicy.String(), "vault": "cs", "active": true,
		"allowed_requests": []any{"attestation", "block", "generic"}, "allowed_operations": []any{"delegation", "stake", "transaction"},
		"allow_proof_of_possession": false}, byAddr[withPolicy.Hash().String()])
	assert.Equal(t, map[string]any{"address": unlisted.Hash().String(), "public_key": unlisted.String(), "vault": "cs", "active": false,
		"allowed_requests": []any{}, "allowed_operations": []any{}, "allow_proof_of_possession": false}, byAddr[unlisted.Hash().String()])
	out, _, err = runCLI(t, "", "-c", cfg, "list", "-o", "pkh")
	require.NoError(t, err)
	got := strings.Fields(out)
	want := []string{withPolicy.Hash().String(), bare.Hash().String(), unlisted.Hash().String()}
	assert.ElementsMatch(t, want, got)
	_, _, err = runCLI(t, "", "-c", cfg, "list", "-o", "yaml")
	assert.ErrorContains(t, err, "unknown output format")
}

// runCLIFor runs the CLI as runCLI does, stopping it after d (a daemon
// that should not have started).
func runCLIFor(t *testing.T, d time.Duration, stdin string, args ...string) (stdout, stderr string, err error) {
	t.Helper()
	var o, e bytes.Buffer
	root := NewRoot(&o, &e)
	root.SetIn(strings.NewReader(stdin))
	root.SetArgs(args)
	ctx, cancel := context.WithTimeout(context.Background(), d)
	defer cancel()
	err = root.ExecuteContext(ctx)
	if ctx.Err() != nil {
		t.Errorf("sigil %v was still running after %v", args, d)
	}
	return o.String(), e.String(), err
}

// syncBuffer is a bytes.Buffer safe for a writer and a reader.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// startRoot runs the CLI with args until the test ends; it returns its
// standard output and error.
func startRoot(t *testing.T, args ...string) (stdout, stderr *syncBuffer, done <-chan error) {
	t.Helper()
	stdout, stderr = &syncBuffer{}, &syncBuffer{}
	root := NewRoot(stdout, stderr)
	root.SetIn(strings.NewReader(""))
	root.SetArgs(args)
	ctx, cancel := context.WithCancel(context.Background())
	ch := make(chan error, 1)
	go func() { ch <- root.ExecuteContext(ctx) }()
	t.Cleanup(func() {
		cancel()
		select {
		case <-ch:
		case <-time.After(30 * time.Second):
			t.Error("the daemon did not stop")
		}
	})
	return stdout, stderr, ch
}

var readyRE = regexp.MustCompile(`msg="signer ready" address=(\S+)`)

// waitReady waits for the daemon's "signer ready" line and returns its
// address.
func waitReady(t *testing.T, stderr *syncBuffer, done <-chan error) string {
	t.Helper()
	deadline := time.After(30 * time.Second)
	for {
		if m := readyRE.FindStringSubmatch(stderr.String()); m != nil {
			return m[1]
		}
		select {
		case err := <-done:
			t.Fatalf("the daemon exited: %v\n%s", err, stderr.String())
		case <-deadline:
			t.Fatalf("the daemon is not ready:\n%s", stderr.String())
		case <-time.After(20 * time.Millisecond):
		}
	}
}

// TestBareSigilServes: `sigil` with no verb runs the daemon, which prints
// the key table once the keys are loaded; `--no-list` (also on bare sigil)
// does not.
func TestBareSigilServes(t *testing.T) {
	port := startEnclave(t)
	dir := t.TempDir()
	cfg := writeCfg(t, dir, vaultYAML(port))
	pubs := importKeys(t, cfg, tezos.Ed25519, tezos.Secp256k1)
	// Each daemon has its own base directory (the watermark directory is
	// locked while it runs) and reads the keys imported above.
	keyFile := filepath.Join(dir, "confidential_space_keys.json")
	body := strings.Replace(vaultYAML(port), "      dial_timeout: 2s\n",
		"      dial_timeout: 2s\n      storage:\n        driver: file\n        config: "+keyFile+"\n", 1) +
		"server:\n  address: 127.0.0.1:0\n  utility_address: 127.0.0.1:0\ntezos:\n  " + pubs[0].Hash().String() + ":\n"

	for name, args := range map[string][]string{
		"sigil":                 {},
		"sigil --no-list":       {"--no-list"},
		"sigil serve":           {"serve"},
		"sigil serve --no-list": {"serve", "--no-list"},
	} {
		t.Run(name, func(t *testing.T) {
			cfg := writeCfg(t, t.TempDir(), body)
			stdout, stderr, done := startRoot(t, append([]string{"-c", cfg}, args...)...)
			addr := waitReady(t, stderr, done)
			resp, err := http.Get("http://" + addr + "/keys/" + pubs[1].Hash().String())
			require.NoError(t, err)
			b, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			require.Equal(t, http.StatusOK, resp.StatusCode, string(b))
			assert.Contains(t, string(b), pubs[1].String())

			noList := slices.Contains(args, "--no-list")
			if noList {
				// Nothing is printed, even a while after the start.
				time.Sleep(200 * time.Millisecond)
				assert.Empty(t, stdout.String())
				return
			}
			require.Eventually(t, func() bool { return strings.Count(stdout.String(), "Public Key Hash:") == 2 }, 10*time.Second, 20*time.Millisecond, stdout.String())
			out := stdout.String()
			assert.Contains(t, out, "Public Key Hash:           "+pubs[0].Hash().String()+"\nPublic Key:                "+pubs[0].String()+"\n")
			assert.Contains(t, out, "Active:                    true\nAllowed Requests:          [attestation block preattestation]\n")
			assert.Contains(t, out, "Public Key Hash:           "+pubs[1].Hash().String()+"\n")
			assert.Contains(t, out, "Active:                    false\n")
		})
	}
}

// TestImportFrom: Signatory's documented form, `import -f/--from FILE`
// (with --vault): the key held in FILE is imported, whatever FILE is named;
// an encrypted key in the file takes --password or the prompt; a key given
// both ways, or a file that is not there, is refused and nothing is stored.
func TestImportFrom(t *testing.T) {
	port := startEnclave(t)
	ec, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	require.NoError(t, err)
	der, err := x509.MarshalPKCS8PrivateKey(ec)
	require.NoError(t, err)
	pemData := pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der})
	pemKey, err := tezos.ParsePrivateKeyAny(pemData)
	require.NoError(t, err)
	pemPub, _ := pemKey.Public()
	enc := encryptedVectors(t)[0]

	for _, c := range []struct {
		name     string
		file     string // content; the file is named after a key string, which --from must not read as one
		flag     string
		extra    []string
		stdin    string
		want     string // the imported address, or "" for a refusal
		refusal  string
		noFile   bool
		fileName string
	}{
		{name: "PEM with -f", file: string(pemData), flag: "-f", want: pemPub.Hash().String()},
		{name: "PEM with --from", file: string(pemData), flag: "--from", extra: []string{"--vault", "cs"}, want: pemPub.Hash().String()},
		{name: "file named like a key", file: string(pemData), flag: "-f", fileName: "edsk3RxYd1Y5UN3z8NNjHNZtpnBzcYRFRER1LuqmFmcNmaiY7DZVTf", want: pemPub.Hash().String()},
		{name: "encrypted key, --password", file: enc.Encrypted + "\n", flag: "-f", extra: []string{"--password", enc.Passphrase}, want: enc.PublicKeyHash},
		{name: "encrypted key, password on stdin", file: enc.Encrypted + "\n", flag: "--from", stdin: enc.Passphrase + "\n", want: enc.PublicKeyHash},
		{name: "also an argument", file: string(pemData), flag: "-f", extra: []string{enc.SecretKey}, refusal: "either with --from or as an argument"},
		{name: "no such file", flag: "-f", noFile: true, refusal: "no such file"},
		{name: "not a key", file: "hello\n", flag: "-f", refusal: "invalid secret key"},
	} {
		t.Run(c.name, func(t *testing.T) {
			dir := t.TempDir()
			cfg := writeCfg(t, dir, vaultYAML(port))
			name := c.fileName
			if name == "" {
				name = "key.pem"
			}
			path := filepath.Join(dir, name)
			if !c.noFile {
				require.NoError(t, os.WriteFile(path, []byte(c.file), 0o600))
			}
			args := append([]string{"-c", cfg, "import", c.flag, path}, c.extra...)
			out, errOut, err := runCLI(t, c.stdin, args...)
			if c.refusal != "" {
				require.Error(t, err)
				assert.Contains(t, err.Error(), c.refusal)
				assert.Empty(t, keyFileAddresses(t, dir), "a key was stored")
				return
			}
			require.NoError(t, err, errOut)
			assert.Equal(t, c.want+"\n", out)
			assert.Equal(t, []string{c.want}, keyFileAddresses(t, dir))
			assert.NotContains(t, out+errOut, enc.Passphrase)
		})
	}
}

// An argument that is neither a file nor a recognised key string may be a
// secret in another form (hex, a mistyped prefix, a password): the error
// used to repeat its first 64 bytes, more than a whole edsk. None of it is
// repeated now, whatever its length.
func TestImportUnrecognisedArgumentNotEchoed(t *testing.T) {
	port := startEnclave(t)
	cfg := writeCfg(t, t.TempDir(), vaultYAML(port))
	sk, err := tezos.GeneratePrivateKey(tezos.Ed25519, nil)
	require.NoError(t, err)
	edsk := sk.Base58()
	for _, arg := range []string{
		hex.EncodeToString(sk.Bytes),         // a raw hex seed
		"edks" + edsk[4:],                    // a mistyped prefix
		edsk[:20],                            // a truncated key
		"x" + edsk,                           // a stray character
		strings.Repeat("S3cret", 3),          // a password given as a key
		"unencrypted " + edsk + " and more ", // spaces: not a key string
	} {
		_, errOut, err := runCLI(t, "", "-c", cfg, "import", arg)
		require.Error(t, err, arg)
		all := errOut + err.Error()
		assert.Contains(t, all, "not repeated")
		assert.NotContains(t, all, arg[:6], "the error repeats the argument's first characters")
	}
}

// Signatory's state directory, with marks, beside Sigil's: Sigil's default
// directory existing but holding no watermarks (systemd's StateDirectory
// creates it empty), or a --base-dir naming an empty directory, is refused
// naming both, by every verb; naming Signatory's directory serves.
func TestStateDirRefusalWithMarks(t *testing.T) {
	enc := newCountingListener(t)
	root := t.TempDir()
	dirs := &app.StateDirs{Signatory: filepath.Join(root, "signatory"), Sigil: filepath.Join(root, "sigil")}
	require.NoError(t, os.MkdirAll(filepath.Join(dirs.Signatory, "watermark_v2"), 0o700))
	require.NoError(t, os.WriteFile(filepath.Join(dirs.Signatory, "watermark_v2", "NetXdQprcVkpaWU.json"), []byte("{}\n"), 0o600))
	require.NoError(t, os.Mkdir(dirs.Sigil, 0o700))
	stateDirs = dirs
	t.Cleanup(func() { stateDirs = nil })
	body := strings.Replace(vaultYAML(enc.port()), "      dial_timeout: 2s\n",
		"      dial_timeout: 2s\n      storage:\n        driver: file\n        config: "+filepath.Join(root, "keys.json")+"\n", 1) +
		"server:\n  address: 127.0.0.1:0\n  utility_address: 127.0.0.1:0\n"
	cfg := filepath.Join(root, "sigil.yaml")
	require.NoError(t, os.WriteFile(cfg, []byte(body), 0o600))
	empty := filepath.Join(root, "empty")
	for _, args := range [][]string{{"serve"}, {"list"}, {"watermarks", "export"}} {
		_, _, err := runCLIFor(t, 10*time.Second, "", append([]string{"-c", cfg}, args...)...)
		require.Error(t, err, "sigil %v", args)
		assert.Contains(t, err.Error(), "Sigil's default base directory "+dirs.Sigil+" does not, or holds no watermarks", "sigil %v", args)
		_, _, err = runCLIFor(t, 10*time.Second, "", append([]string{"-c", cfg, "--base-dir", empty}, args...)...)
		require.Error(t, err, "sigil --base-dir %v", args)
		assert.Contains(t, err.Error(), "--base-dir "+empty+" holds no watermarks, while Signatory's state directory "+dirs.Signatory+" holds marks", "sigil %v", args)
	}
	out, _, err := runCLIFor(t, 10*time.Second, "", "-c", cfg, "--base-dir", dirs.Signatory, "watermarks", "export")
	require.NoError(t, err)
	assert.Equal(t, "[]\n", out)
	assert.Zero(t, enc.n.Load(), "nothing was dialled")
}
