package loadgen_test

import (
	"context"
	"encoding/hex"
	"encoding/json"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/sigil-signer/sigil/adapters/loadgen"
	"github.com/sigil-signer/sigil/adapters/loadgen/loadgentest"
	"github.com/sigil-signer/sigil/domain/request"
	"github.com/sigil-signer/sigil/domain/tezos"
)

func newSigner(t *testing.T, kt tezos.KeyType) *loadgentest.Signer {
	t.Helper()
	s, err := loadgentest.New(kt)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(s.Close)
	return s
}

func run(t *testing.T, o loadgen.Options) loadgen.Result {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	res, err := loadgen.Run(ctx, o)
	if err != nil {
		t.Fatalf("Run: %v", err)
	}
	t.Logf("report:\n%s", res)
	return res
}

// checkInvariants asserts that the counts add up and latencies are ordered.
func checkInvariants(t *testing.T, r loadgen.Result) {
	t.Helper()
	sum := r.OK + r.Errors()
	if sum != r.Requests {
		t.Errorf("ok %d + errors %d = %d, want requests %d", r.OK, r.Errors(), sum, r.Requests)
	}
	l := r.Latency
	if r.OK > 0 {
		if !(0 < l.Min && l.Min <= l.P50 && l.P50 <= l.P90 && l.P90 <= l.P99 && l.P99 <= l.Max) {
			t.Errorf("latencies not ordered: %+v", l)
		}
		if l.Mean < l.Min || l.Mean > l.Max {
			t.Errorf("mean %v outside [%v, %v]", l.Mean, l.Min, l.Max)
		}
	}
	if r.Duration <= 0 {
		t.Errorf("duration %v", r.Duration)
	}
}

func TestGenericCountsAndVerify(t *testing.T) {
	for _, kt := range []tezos.KeyType{tezos.Ed25519, tezos.Secp256k1, tezos.P256, tezos.BLS} {
		s := newSigner(t, kt)
		res := run(t, loadgen.Options{URL: s.URL, Key: s.PKH, Concurrency: 8, Requests: 200, Verify: true})
		checkInvariants(t, res)
		if res.Requests != 200 || res.OK != 200 || res.Errors() != 0 {
			t.Errorf("%v: requests %d ok %d errors %d, want 200/200/0", kt, res.Requests, res.OK, res.Errors())
		}
		if got := s.Posts.Load(); got != 200 {
			t.Errorf("%v: server saw %d sign requests, want 200", kt, got)
		}
		if res.OpsPerSec <= 0 {
			t.Errorf("ops/s %v", res.OpsPerSec)
		}
	}
}

func TestStatusErrorsCounted(t *testing.T) {
	s := newSigner(t, tezos.Ed25519)
	s.FailEvery, s.FailStatus = 4, 409
	res := run(t, loadgen.Options{URL: s.URL, Key: s.PKH, Concurrency: 4, Requests: 100})
	checkInvariants(t, res)
	if res.StatusErrors[409] != 25 || res.OK != 75 || res.Requests != 100 {
		t.Errorf("got ok %d, errors %v; want 75 ok and 25 HTTP 409", res.OK, res.StatusErrors)
	}
	if !strings.Contains(res.ErrorSamples["409"], "injected failure") {
		t.Errorf("409 sample %q lacks the server's message", res.ErrorSamples["409"])
	}
	if !strings.Contains(res.String(), "HTTP 409: 25") {
		t.Errorf("report lacks the 409 count:\n%s", res)
	}
}

func TestWrongSignatureDetected(t *testing.T) {
	s := newSigner(t, tezos.Ed25519)
	s.CorruptEvery = 10
	res := run(t, loadgen.Options{URL: s.URL, Key: s.PKH, Concurrency: 3, Requests: 50, Verify: true})
	checkInvariants(t, res)
	if res.WrongSignatures != 5 || res.OK != 45 {
		t.Errorf("wrong %d ok %d, want 5 and 45", res.WrongSignatures, res.OK)
	}
	if !strings.Contains(res.String(), "5 wrong") {
		t.Errorf("report does not show the wrong signatures:\n%s", res)
	}
	// Without --verify the same answers all pass as signatures.
	res = run(t, loadgen.Options{URL: s.URL, Key: s.PKH, Concurrency: 3, Requests: 50})
	if res.WrongSignatures != 0 || res.OK != 50 {
		t.Errorf("unverified: wrong %d ok %d, want 0 and 50", res.WrongSignatures, res.OK)
	}
}

func TestBadResponsesCounted(t *testing.T) {
	s := newSigner(t, tezos.Ed25519)
	s.Garbage = true
	res := run(t, loadgen.Options{URL: s.URL, Key: s.PKH, Requests: 10})
	checkInvariants(t, res)
	if res.BadResponses != 10 || res.OK != 0 {
		t.Errorf("bad %d ok %d, want 10 and 0", res.BadResponses, res.OK)
	}
}

func TestTransportErrorsCounted(t *testing.T) {
	s := newSigner(t, tezos.Ed25519)
	url, pkh := s.URL, s.PKH
	s.Close() // nothing listens any more
	res := run(t, loadgen.Options{URL: url, Key: pkh, Concurrency: 2, Requests: 6, Timeout: 2 * time.Second})
	checkInvariants(t, res)
	if res.TransportErrors != 6 || res.OK != 0 {
		t.Errorf("transport %d ok %d, want 6 and 0", res.TransportErrors, res.OK)
	}
}

func TestAttestationsPassWatermarks(t *testing.T) {
	s := newSigner(t, tezos.Ed25519)
	s.Watermarks = true
	s.Delay = time.Millisecond // lets requests overlap
	res := run(t, loadgen.Options{
		URL: s.URL, Key: s.PKH, Concurrency: 16, Requests: 400, Op: loadgen.OpAttestation,
		Verify: true, StartLevel: 1000, Warmup: 50 * time.Millisecond,
	})
	checkInvariants(t, res)
	if res.OK != 400 || res.Errors() != 0 {
		t.Errorf("ok %d errors %d (%v), want 400 and 0", res.OK, res.Errors(), res.StatusErrors)
	}
	if res.WarmupRequests == 0 {
		t.Errorf("no warmup requests")
	}
	if res.FirstLevel <= 1000 || res.LastLevel-res.FirstLevel != 399 {
		t.Errorf("levels %d..%d, want 400 consecutive levels after the warmup's, above 1000", res.FirstLevel, res.LastLevel)
	}
	if int64(res.Requests+res.WarmupRequests) != s.Posts.Load() {
		t.Errorf("server saw %d, loadgen counted %d+%d", s.Posts.Load(), res.Requests, res.WarmupRequests)
	}
}

func TestAttestationsSharedChainConflict(t *testing.T) {
	// With one chain and concurrent clients, late arrivals of lower levels
	// are refused; the tool must count them rather than hide them.
	s := newSigner(t, tezos.Ed25519)
	s.Watermarks = true
	chain := []byte{1, 2, 3, 4}
	res := run(t, loadgen.Options{
		URL: s.URL, Key: s.PKH, Concurrency: 1, Requests: 20, Op: loadgen.OpAttestation,
		ChainID: chain, SharedChain: true,
	})
	if res.OK != 20 {
		t.Fatalf("sequential shared-chain run: ok %d, want 20", res.OK)
	}
	// A second run replaying the same levels on the same chain is refused.
	res = run(t, loadgen.Options{
		URL: s.URL, Key: s.PKH, Concurrency: 2, Requests: 10, Op: loadgen.OpAttestation,
		ChainID: chain, SharedChain: true,
	})
	checkInvariants(t, res)
	if res.StatusErrors[409] != 10 {
		t.Errorf("replayed levels: %v, want 10 HTTP 409", res.StatusErrors)
	}
}

func TestDurationBound(t *testing.T) {
	s := newSigner(t, tezos.Ed25519)
	start := time.Now()
	res := run(t, loadgen.Options{URL: s.URL, Key: s.PKH, Concurrency: 4, Duration: 300 * time.Millisecond})
	checkInvariants(t, res)
	if el := time.Since(start); el > 5*time.Second {
		t.Errorf("run took %v", el)
	}
	if res.Duration < 300*time.Millisecond || res.Duration > 3*time.Second {
		t.Errorf("duration %v, want about 300ms", res.Duration)
	}
	if res.OK == 0 {
		t.Errorf("no requests in 300ms")
	}
}

func TestContextCancelStops(t *testing.T) {
	s := newSigner(t, tezos.Ed25519)
	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel()
	res, err := loadgen.Run(ctx, loadgen.Options{URL: s.URL, Key: s.PKH, Concurrency: 2, Duration: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	if !res.Interrupted || res.Duration > 5*time.Second {
		t.Errorf("interrupted %v after %v", res.Interrupted, res.Duration)
	}
	checkInvariants(t, res)
}

func TestNonLoopbackRefused(t *testing.T) {
	s := newSigner(t, tezos.Ed25519)
	for _, u := range []string{
		"http://192.0.2.1:6732", "http://example.com", "http://10.0.0.1", "https://[2001:db8::1]:443",
		"http://0.0.0.0:6732", "http://localhost.example.com", "ftp://127.0.0.1", "127.0.0.1:6732",
	} {
		_, err := loadgen.Run(context.Background(), loadgen.Options{URL: u, Key: s.PKH, Requests: 1})
		if err == nil {
			t.Errorf("%s: accepted", u)
		}
	}
	_, err := loadgen.Run(context.Background(), loadgen.Options{URL: "http://192.0.2.1:6732", Key: s.PKH, Requests: 1})
	if err == nil || !strings.Contains(err.Error(), "loopback") {
		t.Errorf("error %v does not explain the loopback rule", err)
	}
	if s.Posts.Load() != 0 {
		t.Errorf("requests were sent")
	}
	for _, u := range []string{"http://127.0.0.1:1", "http://127.1.2.3", "http://[::1]:6732", "http://localhost:6732/", "http://LOCALHOST"} {
		if _, err := loadgen.CheckLoopback(u); err != nil {
			t.Errorf("%s refused: %v", u, err)
		}
	}
}

func TestBadOptions(t *testing.T) {
	s := newSigner(t, tezos.Ed25519)
	for name, o := range map[string]loadgen.Options{
		"no bound":    {URL: s.URL, Key: s.PKH},
		"bad key":     {URL: s.URL, Key: "tz1nope", Requests: 1},
		"bad op":      {URL: s.URL, Key: s.PKH, Requests: 1, Op: "block"},
		"concurrency": {URL: s.URL, Key: s.PKH, Requests: 1, Concurrency: -1},
		"chain id":    {URL: s.URL, Key: s.PKH, Requests: 1, ChainID: []byte{1}},
	} {
		if _, err := loadgen.Run(context.Background(), o); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
	// Verify with a key the signer does not have fails the setup.
	other := newSigner(t, tezos.Ed25519)
	if _, err := loadgen.Run(context.Background(), loadgen.Options{URL: s.URL, Key: other.PKH, Requests: 1, Verify: true}); err == nil {
		t.Errorf("unknown key with verify: accepted")
	}
}

func TestAttestationEncoding(t *testing.T) {
	chain := []byte{0x7a, 0x06, 0xa7, 0x70}
	msg := loadgen.Attestation(chain, 7, 123456, 2)
	req, err := request.Parse(msg)
	if err != nil {
		t.Fatalf("domain/request refuses the attestation: %v", err)
	}
	if req.Kind != request.KindAttestation || req.OpKind != request.OpAttestation || req.Level != 123456 || req.Round != 2 {
		t.Errorf("parsed %+v", req)
	}
	if req.ChainID.String() != "NetXdQprcVkpaWU" || loadgen.ChainIDString(chain) != "NetXdQprcVkpaWU" {
		t.Errorf("chain id %s / %s, want mainnet's", req.ChainID, loadgen.ChainIDString(chain))
	}
}

func TestGenericVectorMatchesTestdata(t *testing.T) {
	b, err := os.ReadFile("../../domain/request/testdata/vectors.json")
	if err != nil {
		t.Fatal(err)
	}
	var f struct {
		Vectors []struct{ Name, Hex string }
	}
	if err := json.Unmarshal(b, &f); err != nil {
		t.Fatal(err)
	}
	found := false
	for _, v := range f.Vectors {
		if v.Name == "transaction/simple" {
			found = true
			if v.Hex != loadgen.GenericTransactionHex {
				t.Errorf("GenericTransactionHex differs from the vector")
			}
		}
	}
	if !found {
		t.Fatal("no transaction/simple vector")
	}
	msg, _ := hex.DecodeString(loadgen.GenericTransactionHex)
	req, err := request.Parse(msg)
	if err != nil || req.Kind != request.KindGeneric {
		t.Errorf("parse: %v %+v", err, req)
	}
}

func TestPercentile(t *testing.T) {
	var s []time.Duration
	for i := 1; i <= 100; i++ {
		s = append(s, time.Duration(i))
	}
	for p, want := range map[float64]time.Duration{50: 50, 90: 90, 99: 99, 100: 100, 0.5: 1} {
		if got := loadgen.Percentile(s, p); got != want {
			t.Errorf("p%v = %v, want %v", p, got, want)
		}
	}
	if got := loadgen.Percentile(s[:1], 99); got != 1 {
		t.Errorf("single sample p99 = %v", got)
	}
}

func TestJSON(t *testing.T) {
	s := newSigner(t, tezos.Ed25519)
	s.FailEvery = 2
	res := run(t, loadgen.Options{URL: s.URL, Key: s.PKH, Requests: 10})
	b, err := json.Marshal(res)
	if err != nil {
		t.Fatal(err)
	}
	var m struct {
		Requests     int            `json:"requests"`
		OK           int            `json:"ok"`
		StatusErrors map[string]int `json:"status_errors"`
		LatencyMS    struct {
			P50 float64 `json:"p50"`
		} `json:"latency_ms"`
	}
	if err := json.Unmarshal(b, &m); err != nil {
		t.Fatal(err)
	}
	if m.Requests != 10 || m.OK != 5 || m.StatusErrors["503"] != 5 || m.LatencyMS.P50 <= 0 {
		t.Errorf("json %s", b)
	}
}
