package app_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.uber.org/fx"

	"github.com/sigil-signer/sigil/app"
	"github.com/sigil-signer/sigil/domain/signer"
	"github.com/sigil-signer/sigil/domain/tezos"
)

// reloadEnv is a daemon on a file vault, in this process.
type reloadEnv struct {
	t       *testing.T
	dir     string
	cfgPath string
	keyFile string
	ls      *app.Listeners
	r       *app.Reloader
	logs    *syncBuffer
}

type syncBuffer struct {
	mu sync.Mutex
	b  strings.Builder
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

func genKey(t *testing.T, kt tezos.KeyType) (tezos.PrivateKey, string) {
	t.Helper()
	sk, err := tezos.GeneratePrivateKey(kt, nil)
	require.NoError(t, err)
	pk, err := sk.Public()
	require.NoError(t, err)
	return sk, pk.Hash().String()
}

func (e *reloadEnv) writeKeys(keys ...tezos.PrivateKey) {
	var entries []map[string]string
	for _, sk := range keys {
		entries = append(entries, map[string]string{"value": "unencrypted:" + sk.Base58()})
	}
	b, err := json.Marshal(entries)
	require.NoError(e.t, err)
	require.NoError(e.t, os.WriteFile(e.keyFile, b, 0o600))
}

// render returns the configuration with extra appended (the tezos section
// and more).
func (e *reloadEnv) render(extra string) string {
	return fmt.Sprintf(`base_dir: %s
server:
  address: 127.0.0.1:0
  utility_address: 127.0.0.1:0
vaults:
  local:
    driver: file
    config:
      file: %s
watermark:
  driver: mem
%s`, e.dir, e.keyFile, extra)
}

func (e *reloadEnv) writeConfig(extra string) { e.writeRaw(e.render(extra)) }

// writeRaw replaces the configuration file whole (by a rename: a reader
// sees the old file or the new one).
func (e *reloadEnv) writeRaw(text string) { require.NoError(e.t, e.replace(text)) }

// replace is writeRaw without failing the test (for goroutines).
func (e *reloadEnv) replace(text string) error {
	f, err := os.CreateTemp(e.dir, "next-*.yaml")
	if err != nil {
		return err
	}
	_, err = f.WriteString(text)
	if err = errors.Join(err, f.Close()); err != nil {
		return err
	}
	return os.Rename(f.Name(), e.cfgPath)
}

func startReloadEnv(t *testing.T, keys []tezos.PrivateKey, extra string) *reloadEnv {
	t.Helper()
	dir := t.TempDir()
	e := &reloadEnv{t: t, dir: dir, cfgPath: filepath.Join(dir, "sigil.yaml"), keyFile: filepath.Join(dir, "secret.json"), logs: &syncBuffer{}}
	e.writeKeys(keys...)
	e.writeConfig(extra)
	fxApp := fx.New(app.Core(app.Options{ConfigPath: e.cfgPath, Stderr: e.logs, LogLevel: "info"}), app.Serve(),
		fx.Populate(&e.ls, &e.r), fx.NopLogger)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	require.NoError(t, fxApp.Start(ctx))
	t.Cleanup(func() { _ = fxApp.Stop(context.Background()) })
	require.Eventually(t, func() bool { return e.get("/healthz") == 200 }, 10*time.Second, 10*time.Millisecond)
	return e
}

func (e *reloadEnv) get(path string) int {
	resp, err := http.Get("http://" + e.ls.Utility.String() + path)
	if err != nil {
		return 0
	}
	resp.Body.Close()
	return resp.StatusCode
}

func (e *reloadEnv) sign(pkh string) int {
	e.t.Helper()
	resp, err := http.Post("http://"+e.ls.API.String()+"/keys/"+pkh, "application/json", strings.NewReader(`"`+forgedTransfer+`"`))
	require.NoError(e.t, err)
	resp.Body.Close()
	return resp.StatusCode
}

func (e *reloadEnv) metric(series string) string {
	e.t.Helper()
	resp, err := http.Get("http://" + e.ls.Utility.String() + "/metrics")
	require.NoError(e.t, err)
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, series+" "); ok {
			return v
		}
	}
	return ""
}

func policyFor(pkh, allow string) string {
	return fmt.Sprintf("  %s:\n    allow:\n      %s\n", pkh, allow)
}

// TestReloadAppliesPoliciesAndKeys: a reload serves a key added to the
// vault and a changed policy; broken configurations of every kind are
// refused with the running one still serving; POST /reload does the same
// over HTTP.
func TestReloadAppliesPoliciesAndKeys(t *testing.T) {
	ctx := context.Background()
	skA, a := genKey(t, tezos.Ed25519)
	skB, b := genKey(t, tezos.P256)
	e := startReloadEnv(t, []tezos.PrivateKey{skA}, "tezos:\n"+policyFor(a, "generic: [transaction]"))
	require.Equal(t, 200, e.sign(a))
	require.Equal(t, 404, e.sign(b))
	assert.Equal(t, "1", e.metric("sigil_config_last_reload_successful"))

	e.writeKeys(skA, skB)
	e.writeConfig("tezos:\n" + policyFor(a, "block:") + policyFor(b, "generic: [transaction]"))
	rep, err := e.r.Reload(ctx, "test")
	require.NoError(t, err)
	assert.Equal(t, app.ReloadReport{KeysBefore: 1, KeysAfter: 2, KeysAdded: []string{b}, KeysRemoved: []string{},
		PoliciesChanged: sortedPair(a, b)}, rep)
	assert.Equal(t, 403, e.sign(a), "a's new policy refuses transactions")
	assert.Equal(t, 200, e.sign(b), "the new key signs")
	assert.Contains(t, e.logs.String(), "configuration reloaded")
	assert.Equal(t, "1", e.metric(`sigil_config_reloads_total{result="success"}`))

	good := "tezos:\n" + policyFor(a, "block:") + policyFor(b, "generic: [transaction]")
	for _, c := range []struct {
		name, config, want string
	}{
		// FILE:LINE: the parser names the line of the mapping holding the bad key (tezos:).
		{"YAML syntax error", e.render(good + "  : [\n"), fmt.Sprintf("sigil.yaml:%d: YAML syntax", strings.Count(e.render(""), "\n")+1)},
		{"unknown request kind", e.render("tezos:\n" + policyFor(a, "blocks:") + policyFor(b, "generic: [transaction]")), `unknown request kind "blocks"`},
		{"unknown operation kind", e.render("tezos:\n" + policyFor(a, "generic: [transfer]") + policyFor(b, "block:")), `unknown operation kind "transfer"`},
		{"unknown field", e.render(good + "polcy_hook: {}\n"), "polcy_hook"},
		{"an unset variable", e.render(good + "  ${SIGIL_RELOAD_TEST_UNSET}:\n"), "SIGIL_RELOAD_TEST_UNSET"},
		{"a restart-only field", strings.Replace(e.render(good), "address: 127.0.0.1:0", "address: 127.0.0.1:1", 1), "restart is required to change server.address"},
		{"two restart-only fields", strings.Replace(strings.Replace(e.render(good), "address: 127.0.0.1:0", "address: 127.0.0.1:1", 1), "driver: mem", "driver: file", 1),
			"restart is required to change server.address, watermark"},
		{"a vault's section", strings.Replace(e.render(good), "file: "+e.keyFile, "file: "+e.keyFile+".other", 1), "vaults.local.config"},
	} {
		t.Run(c.name, func(t *testing.T) {
			e.writeRaw(c.config)
			before := e.metric(`sigil_config_reloads_total{result="refused"}`)
			_, err := e.r.Reload(ctx, "test")
			require.ErrorIs(t, err, signer.ErrReloadRefused)
			assert.ErrorContains(t, err, c.want)
			assert.Equal(t, 403, e.sign(a), "the running configuration still serves")
			assert.Equal(t, 200, e.sign(b))
			assert.NotEqual(t, before, e.metric(`sigil_config_reloads_total{result="refused"}`))
			assert.Equal(t, "0", e.metric("sigil_config_last_reload_successful"))
		})
	}
	e.writeConfig(good)
	_, err = e.r.Reload(ctx, "test")
	require.NoError(t, err)
	assert.Equal(t, "1", e.metric("sigil_config_last_reload_successful"))

	// A key removed from the vault while its policy remains: refused.
	e.writeKeys(skA)
	_, err = e.r.Reload(ctx, "test")
	require.ErrorIs(t, err, signer.ErrReloadRefused)
	assert.ErrorContains(t, err, b)
	assert.Equal(t, 200, e.sign(b))
	// With its policy removed, it is dropped.
	e.writeConfig("tezos:\n" + policyFor(a, "block:"))
	rep, err = e.r.Reload(ctx, "test")
	require.NoError(t, err)
	assert.Equal(t, []string{b}, rep.KeysRemoved)
	assert.Equal(t, 404, e.sign(b))

	// POST /reload, open (no authentication configured): the same, with
	// the report as JSON.
	e.writeKeys(skA, skB)
	e.writeConfig("tezos:\n" + policyFor(a, "generic: [transaction]") + policyFor(b, "generic: [transaction]"))
	resp, err := http.Post("http://"+e.ls.Utility.String()+"/reload", "", nil)
	require.NoError(t, err)
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	require.Equal(t, 200, resp.StatusCode, string(body))
	var got app.ReloadReport
	require.NoError(t, json.Unmarshal(body, &got))
	assert.Equal(t, []string{b}, got.KeysAdded)
	assert.Equal(t, 200, e.sign(a))
	assert.Equal(t, 200, e.sign(b))
	e.writeConfig("tezos:\n" + policyFor(a, "blocks:"))
	resp, err = http.Post("http://"+e.ls.Utility.String()+"/reload", "", nil)
	require.NoError(t, err)
	body, _ = io.ReadAll(resp.Body)
	resp.Body.Close()
	assert.Equal(t, 422, resp.StatusCode, string(body))
	assert.Contains(t, string(body), `unknown request kind`)
	assert.NotContains(t, string(body), e.dir, "the answer names no host path")
	assert.Equal(t, 200, e.sign(a))
}

func sortedPair(a, b string) []string {
	if a > b {
		a, b = b, a
	}
	return []string{a, b}
}

// TestReloadsRace: reloads racing each other (POST /reload and Reload at
// once, over and over) all complete, one at a time, and the last file
// wins.
func TestReloadsRace(t *testing.T) {
	ctx := context.Background()
	skA, a := genKey(t, tezos.Ed25519)
	e := startReloadEnv(t, []tezos.PrivateKey{skA}, "tezos:\n"+policyFor(a, "generic: [transaction]"))
	var wg sync.WaitGroup
	errs := make(chan error, 64)
	for i := range 16 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := e.replace(e.render("tezos:\n" + policyFor(a, []string{"block:", "generic: [transaction]"}[i%2]))); err != nil {
				errs <- err
				return
			}
			if _, err := e.r.Reload(ctx, "race"); err != nil {
				errs <- err
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	// One more reload of the final file: whatever the interleaving, the
	// signer now applies exactly it.
	e.writeConfig("tezos:\n" + policyFor(a, "block:"))
	_, err := e.r.Reload(ctx, "final")
	require.NoError(t, err)
	assert.Equal(t, 403, e.sign(a))
	assert.Equal(t, 17, strings.Count(e.logs.String(), "configuration reloaded"))
}

// TestReloadWarnsOfSystemdCredential: a configuration read from systemd's
// credential directory is the copy made at start; each reload says so.
func TestReloadWarnsOfSystemdCredential(t *testing.T) {
	skA, a := genKey(t, tezos.Ed25519)
	e := startReloadEnv(t, []tezos.PrivateKey{skA}, "tezos:\n"+policyFor(a, "block:"))
	_, err := e.r.Reload(context.Background(), "test")
	require.NoError(t, err)
	assert.NotContains(t, e.logs.String(), "systemd credential")
	t.Setenv("CREDENTIALS_DIRECTORY", e.dir)
	_, err = e.r.Reload(context.Background(), "test")
	require.NoError(t, err)
	assert.Contains(t, e.logs.String(), "the configuration is a systemd credential, copied when the service started")
}
