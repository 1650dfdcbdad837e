package realenclave

import (
	"bytes"
	"encoding/hex"
	"encoding/json"
	"net/http"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/sigil-signer/sigil/adapters/enclavewire"
	"github.com/sigil-signer/sigil/domain/tezos"
)

var addressRE = regexp.MustCompile(`^tz[1-4][1-9A-HJ-NP-Za-km-z]{33}$`)

// TestLifecycle generates and imports a key of every type through the CLI,
// signs with all of them through the daemon, restarts the enclave (the
// daemon's pool reconnects, initializes and re-imports every blob through
// Cloud KMS Decrypt) and then the daemon (it loads the stored blobs), and
// checks that the same bytes get the same signatures throughout, that the
// stored blobs are Cloud KMS ciphertext of enclave-signer's plaintext, and
// that no secret or token reaches any output.
func TestLifecycle(t *testing.T) {
	w := newWorld(t, time.Hour)
	enclave := w.startEnclave()
	cfg := w.writeConfig("cli", keyName, nil)

	type key struct {
		pkh    string
		typ    tezos.KeyType
		secret []byte // imported keys only
	}
	var keys []key
	for _, typ := range tezos.KeyTypes {
		out := strings.TrimSpace(w.mustCLI("", "-c", cfg, "generate", "-v", "cs", "-t", typ.String()))
		if !addressRE.MatchString(out) {
			t.Fatalf("generate -t %s printed %q", typ, out)
		}
		keys = append(keys, key{pkh: out, typ: typ})
	}
	secrets := map[string]string{"attestation token": w.subject}
	for _, typ := range tezos.KeyTypes {
		sk, err := tezos.GeneratePrivateKey(typ, nil)
		if err != nil {
			t.Fatal(err)
		}
		pk, err := sk.Public()
		if err != nil {
			t.Fatal(err)
		}
		secrets[typ.String()+" secret (hex)"] = hex.EncodeToString(sk.Bytes)
		secrets[typ.String()+" secret (base58)"] = sk.Base58()
		out := strings.TrimSpace(w.mustCLI(sk.Base58()+"\n", "-c", cfg, "import", "-v", "cs"))
		if out != pk.Hash().String() {
			t.Fatalf("import of a %s key printed %q, want %s", typ, out, pk.Hash())
		}
		keys = append(keys, key{pkh: out, typ: typ, secret: append([]byte(nil), sk.Bytes...)})
	}

	// The key file holds one Cloud KMS blob per key; the fake KMS opens
	// each to enclave-signer's plaintext, the CBOR private key map.
	stored := w.storedKeys()
	if len(stored) != len(keys) {
		t.Fatalf("key file holds %d keys, want %d", len(stored), len(keys))
	}
	for _, k := range keys {
		blob, ok := stored[k.pkh]
		if !ok {
			t.Fatalf("key file lacks %s", k.pkh)
		}
		plain, err := w.kms.Unseal(keyName, blob)
		if err != nil {
			t.Fatalf("%s: the stored blob is not Cloud KMS ciphertext under %s: %v", k.pkh, keyName, err)
		}
		tagged, err := enclavewire.UnmarshalPrivateKey(plain)
		if err != nil {
			t.Fatalf("%s: sealed plaintext is not a CBOR private key map", k.pkh)
		}
		if kt, _ := tagged.Type.Tezos(); kt != k.typ {
			t.Errorf("%s: sealed key is a %v key, want %v", k.pkh, kt, k.typ)
		}
		if k.secret != nil {
			name, _ := enclavewire.KeyTypeFor(k.typ)
			want := append(append([]byte{0xa1, byte(0x60 + len(name))}, name...), 0x58, 0x20)
			want = append(want, k.secret...)
			if !bytes.Equal(plain, want) {
				t.Errorf("%s: sealed plaintext differs from enclave-signer's encoding", k.pkh)
			}
		}
		if k.secret != nil && bytes.Contains(blob, k.secret) {
			t.Errorf("%s: the blob holds the imported secret in plain", k.pkh)
		}
	}

	// The daemon loads all eight and signs.
	var pkhs []string
	for _, k := range keys {
		pkhs = append(pkhs, k.pkh)
	}
	serveCfg := w.writeConfig("serve", keyName, pkhs)
	d := w.startDaemon(serveCfg, true)
	first := map[string]string{}
	pks := map[string]tezos.PublicKey{}
	for _, k := range keys {
		pks[k.pkh] = d.publicKey(t, k.pkh)
		first[k.pkh] = d.signAndVerify(t, k.pkh, pks[k.pkh], transaction)
	}
	var pop struct {
		Proof string `json:"bls_prove_possession"`
	}
	for _, k := range keys {
		if k.typ != tezos.BLS {
			continue
		}
		if st, err := getJSON(d.api+"/bls_prove_possession/"+k.pkh, &pop); err != nil || st != http.StatusOK {
			t.Fatalf("proof of possession of %s: %d %v", k.pkh, st, err)
		}
		proof, err := tezos.ParseSignature(pop.Proof)
		if err != nil {
			t.Fatal(err)
		}
		if err := pks[k.pkh].VerifyPossession(proof); err != nil {
			t.Errorf("%s: proof of possession does not verify: %v", k.pkh, err)
		}
	}
	_, decryptsBefore, _ := w.kms.Counts()
	issuedBefore := w.sts.Issued()

	// Restart the enclave on the same port: a new process, new sessions,
	// a new token exchange; the daemon reconnects and imports every blob
	// again (Cloud KMS Decrypt).
	enclave.Kill()
	if !waitFor(10*time.Second, func() bool { return d.healthz() == http.StatusServiceUnavailable }) {
		t.Errorf("/healthz did not turn 503 while the enclave was down")
	}
	enclave = w.startEnclave()
	if !waitFor(30*time.Second, func() bool { return d.healthz() == http.StatusOK }) {
		t.Fatalf("/healthz not 200 within 30 s of the enclave's restart\n%s", d.proc.Tail(30))
	}
	for _, k := range keys {
		if got := d.signAndVerify(t, k.pkh, pks[k.pkh], transaction); got != first[k.pkh] {
			t.Errorf("%s: signature changed across the enclave restart (%s, then %s): not the same key?", k.pkh, first[k.pkh], got)
		}
	}
	_, decryptsAfter, _ := w.kms.Counts()
	if decryptsAfter-decryptsBefore < int64(len(keys)) {
		t.Errorf("after the enclave restart the KMS decrypted %d blobs, want at least %d (one per key)", decryptsAfter-decryptsBefore, len(keys))
	}
	if w.sts.Issued() <= issuedBefore {
		t.Errorf("the restarted enclave did not exchange a token")
	}

	// Restart the daemon: every key comes back from the key file.
	d.proc.Stop()
	d = w.startDaemon(serveCfg, true)
	for _, k := range keys {
		if got := d.signAndVerify(t, k.pkh, pks[k.pkh], transaction); got != first[k.pkh] {
			t.Errorf("%s: signature changed across the daemon restart", k.pkh)
		}
	}
	d.proc.Stop()
	enclave.Stop()

	if errs := w.sts.Errors(); len(errs) != 0 {
		t.Errorf("the enclave broke the token exchange protocol: %v", errs)
	}
	if _, _, unauth := w.kms.Counts(); unauth != 0 {
		t.Errorf("%d KMS calls went out without a valid access token", unauth)
	}
	for i, tok := range w.sts.Tokens() {
		secrets["access token "+string(rune('A'+i))] = tok
	}
	noSecrets(t, "the enclave's log", enclave.Log(), secrets)
	noSecrets(t, "the daemon's log", d.proc.Log(), secrets)
	if strings.Contains(enclave.Log(), "api request") {
		t.Errorf("the Google client's debug log reached the enclave's log")
	}
}

// TestTokenRefresh issues access tokens valid for 11 s (the client renews
// 10 s early, so about every second) and keeps generating keys through one
// enclave process until it has exchanged the attestation token at least
// twice more; the fake KMS refuses expired tokens, so every call must carry
// a live one.
func TestTokenRefresh(t *testing.T) {
	w := newWorld(t, 11*time.Second)
	enclave := w.startEnclave()
	cfg := w.writeConfig("cli", keyName, nil)
	w.mustCLI("", "-c", cfg, "generate", "-v", "cs", "-t", "tz1")
	start := w.sts.Issued()
	deadline := time.Now().Add(45 * time.Second)
	n := 1
	for w.sts.Issued() < start+2 && time.Now().Before(deadline) {
		w.mustCLI("", "-c", cfg, "generate", "-v", "cs", "-t", "tz3")
		n++
		time.Sleep(200 * time.Millisecond)
	}
	if w.sts.Issued() < start+2 {
		t.Fatalf("the enclave exchanged %d tokens during %d generations, want at least %d", w.sts.Issued(), n, start+2)
	}
	if _, _, unauth := w.kms.Counts(); unauth != 0 {
		t.Errorf("%d KMS calls carried an expired or unknown token", unauth)
	}
	if got := len(w.storedKeys()); got != n {
		t.Errorf("key file holds %d keys after %d generations", got, n)
	}
	if enclave.Exited() {
		t.Error("the enclave exited")
	}
	t.Logf("%d generations, %d token exchanges by one enclave process", n, w.sts.Issued())
}

// TestSTSRefusal: the Security Token Service refuses the attestation token
// (the provider's attestation condition is not met). Initialize fails with
// a clear error; a CLI command (with a minute of --timeout) gives up at
// once, in one line naming the refusal, after a handful of STS requests
// (not hundreds); nothing is stored; the daemon stays unready, says why in
// /healthz and in one log line, retrying with a growing wait; and
// everything recovers once the STS accepts the token.
func TestSTSRefusal(t *testing.T) {
	w := newWorld(t, time.Hour)
	w.startEnclave()
	w.sts.Refuse(http.StatusForbidden, "The caller does not satisfy the attestation condition.")
	cfg := w.writeConfig("cli", keyName, nil)

	start := time.Now()
	out, errOut, err := w.cli("", "-c", cfg, "--timeout", "60s", "generate", "-v", "cs", "-t", "tz1")
	took := time.Since(start)
	if err == nil {
		t.Fatalf("generate succeeded while the STS refuses: %s", out)
	}
	if !strings.Contains(errOut, "no access token for workload identity provider "+wip) || !strings.Contains(errOut, "403") {
		t.Errorf("generate's output does not say that the STS refused the attestation token:\n%s", errOut)
	}
	if n := strings.Count(errOut, "no access token"); n != 1 || strings.Count(strings.TrimSpace(errOut), "\n") > 2 {
		t.Errorf("generate names the cause %d times in:\n%s", n, errOut)
	}
	if took > 5*time.Second || strings.Contains(errOut, "deadline exceeded") {
		t.Errorf("generate gave up after %v (want at most 5 s, for the cause, not a timeout):\n%s", took.Round(time.Millisecond), errOut)
	}
	if n := w.sts.Refused(); n > 10 {
		t.Errorf("one refused command made %d STS requests", n)
	}
	t.Logf("generate with the STS refusing: %v, %d STS requests, stderr:\n%s", took.Round(time.Millisecond), w.sts.Refused(), errOut)
	if len(w.storedKeys()) != 0 {
		t.Errorf("a key was stored although the enclave could not seal")
	}
	// The daemon (one stored key would be needed for "ready"; with none it
	// is ready at once) logs the enclave's Initialize error.
	d := w.startDaemon(w.writeConfig("serve", keyName, nil), false)
	wantLog := "no access token for workload identity provider " + wip
	if !waitFor(15*time.Second, func() bool { return strings.Contains(d.proc.Log(), wantLog) }) {
		t.Fatalf("the daemon's log does not say why the enclave refused Initialize (want %q):\n%s", wantLog, d.proc.Tail(30))
	}
	if !strings.Contains(d.proc.Log(), "attestation condition") {
		t.Errorf("the daemon's log lacks the STS's reason")
	}
	if st := d.healthz(); st != http.StatusServiceUnavailable {
		t.Errorf("/healthz is %d while no enclave connection can initialize, want 503", st)
	}
	var h struct {
		Reason string `json:"reason"`
	}
	if resp, err := httpClient.Get(d.utility + "/healthz"); err == nil {
		_ = json.NewDecoder(resp.Body).Decode(&h)
		resp.Body.Close()
	}
	if !strings.Contains(h.Reason, "no access token") {
		t.Errorf("/healthz does not say why: %q", h.Reason)
	}
	refusedBefore := w.sts.Refused()
	time.Sleep(12 * time.Second) // attempts back off (to 8 s per connection); one log line
	if n := strings.Count(d.proc.Log(), "no access token for workload identity provider"); n != 1 {
		t.Errorf("the daemon logged the refusal %d times, want once per change of state:\n%s", n, d.proc.Tail(20))
	}
	if n := w.sts.Refused() - refusedBefore; n > 12 {
		t.Errorf("%d STS requests in 12 s by 2 connections: not backing off", n)
	}

	w.sts.Refuse(0, "")
	if !waitFor(30*time.Second, func() bool { return d.healthz() == http.StatusOK }) {
		t.Fatalf("/healthz not 200 after the STS accepted again\n%s", d.proc.Tail(30))
	}
	pkh := strings.TrimSpace(w.mustCLI("", "-c", cfg, "generate", "-v", "cs", "-t", "tz4"))
	if !addressRE.MatchString(pkh) || len(w.storedKeys()) != 1 {
		t.Fatalf("generate after recovery printed %q, key file %d entries", pkh, len(w.storedKeys()))
	}
}

// TestKMSRefusesKey: the daemon names a key the workload may not use.
// generate and import fail with Cloud KMS's refusal and the key name, and
// nothing is stored; a key file written under the right key does not load
// either, and the daemon says why.
func TestKMSRefusesKey(t *testing.T) {
	w := newWorld(t, time.Hour)
	w.startEnclave()
	revoked := strings.Replace(keyName, "/enclave", "/revoked", 1)
	cfg := w.writeConfig("cli", revoked, nil)

	_, errOut, err := w.cli("", "-c", cfg, "--timeout", "20s", "generate", "-v", "cs", "-t", "tz2")
	if err == nil {
		t.Fatal("generate succeeded with a key the KMS refuses")
	}
	for _, want := range []string{"Cloud KMS Encrypt with " + revoked, "PermissionDenied"} {
		if !strings.Contains(errOut, want) {
			t.Errorf("generate's error lacks %q:\n%s", want, errOut)
		}
	}
	sk, err := tezos.GeneratePrivateKey(tezos.Ed25519, nil)
	if err != nil {
		t.Fatal(err)
	}
	_, errOut, err = w.cli(sk.Base58()+"\n", "-c", cfg, "--timeout", "20s", "import", "-v", "cs")
	if err == nil || !strings.Contains(errOut, "Cloud KMS Encrypt with "+revoked) {
		t.Errorf("import with a refused key: err %v, stderr:\n%s", err, errOut)
	}
	noSecrets(t, "import's output", errOut, map[string]string{"secret": hex.EncodeToString(sk.Bytes), "edsk": sk.Base58()})
	if n := len(w.storedKeys()); n != 0 {
		t.Fatalf("the key file holds %d keys after refused seals", n)
	}
	enc, _, _ := w.kms.Counts()
	if enc != 0 {
		t.Errorf("the fake KMS counted %d successful encryptions", enc)
	}
}

// TestKMSReplyNamesAnotherKey: an Encrypt reply must name a version of the
// key the enclave asked for; one naming another key's version is refused,
// and nothing is stored.
func TestKMSReplyNamesAnotherKey(t *testing.T) {
	w := newWorld(t, time.Hour)
	w.startEnclave()
	cfg := w.writeConfig("cli", keyName, nil)
	other := strings.Replace(keyName, "/enclave", "/other", 1) + "/cryptoKeyVersions/1"
	w.kms.ReplyName(other)
	_, errOut, err := w.cli("", "-c", cfg, "--timeout", "20s", "generate", "-v", "cs", "-t", "tz3")
	if err == nil || !strings.Contains(errOut, "names another key") || !strings.Contains(errOut, other) {
		t.Errorf("generate with a reply naming %s: err %v, stderr:\n%s", other, err, errOut)
	}
	if n := len(w.storedKeys()); n != 0 {
		t.Errorf("the key file holds %d keys after a reply naming another key", n)
	}
	w.kms.ReplyName(keyName + "/cryptoKeyVersions/3") // a rotated version of the same key
	pkh := strings.TrimSpace(w.mustCLI("", "-c", cfg, "generate", "-v", "cs", "-t", "tz3"))
	if !addressRE.MatchString(pkh) || len(w.storedKeys()) != 1 {
		t.Errorf("generate with a reply naming another version of the key: %q", pkh)
	}
}

// TestCorruptedChecksum: a Cloud KMS reply whose CRC32C does not match is
// discarded and the call retried, a bounded number of times (Google's
// guidance): two corrupted replies in a row cost nothing but the retries;
// replies that stay corrupted are refused (generate fails, nothing stored,
// and a stored blob does not load through a corrupting KMS); the same
// commands pass once the replies are intact.
func TestCorruptedChecksum(t *testing.T) {
	w := newWorld(t, time.Hour)
	w.startEnclave()
	cfg := w.writeConfig("cli", keyName, nil)
	encBefore, _, _ := w.kms.Counts()
	w.kms.CorruptNext(2)
	pkh := strings.TrimSpace(w.mustCLI("", "-c", cfg, "generate", "-v", "cs", "-t", "tz1"))
	if enc, _, _ := w.kms.Counts(); enc-encBefore != 3 {
		t.Errorf("generate through two corrupted replies made %d Encrypt calls, want 3", enc-encBefore)
	}

	w.kms.CorruptChecksums(true)
	_, errOut, err := w.cli("", "-c", cfg, "--timeout", "20s", "generate", "-v", "cs", "-t", "tz1")
	if err == nil || !strings.Contains(errOut, "CRC32C") {
		t.Fatalf("generate through a corrupting KMS: err %v, stderr:\n%s", err, errOut)
	}
	if n := len(w.storedKeys()); n != 1 {
		t.Fatalf("key file holds %d keys, want the 1 generated before the corruption", n)
	}
	d := w.startDaemon(w.writeConfig("serve", keyName, []string{pkh}), false)
	if !waitFor(15*time.Second, func() bool { return strings.Contains(d.proc.Log(), "CRC32C") }) {
		t.Errorf("the daemon's log does not report the failed integrity check:\n%s", d.proc.Tail(30))
	}
	resp, err := httpClient.Post(d.api+"/keys/"+pkh, "application/json", strings.NewReader(`"`+hex.EncodeToString(transaction)+`"`))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode == http.StatusOK {
		t.Errorf("a key whose blob failed its integrity check signed")
	}

	w.kms.CorruptChecksums(false)
	if !waitFor(30*time.Second, func() bool { return d.healthz() == http.StatusOK }) {
		t.Fatalf("daemon not ready once the KMS replies are intact\n%s", d.proc.Tail(30))
	}
	pk := d.publicKey(t, pkh)
	d.signAndVerify(t, pkh, pk, transaction)
}
