package fault

import (
	"context"
	"net/http"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/sigil-signer/sigil/adapters/loadgen"
	"github.com/sigil-signer/sigil/domain/tezos"
	"github.com/sigil-signer/sigil/integration/harness"
)

// event is one sign request made by a load client.
type event struct {
	start, end time.Time
	client     int
	res        signResult
	wrongSig   error // verification failure of a 200
}

// outage is one kill and restart of the enclave.
type outage struct {
	kill       time.Time // SIGKILL sent
	unhealthy  time.Time // /healthz first seen 503
	listening  time.Time // restarted enclave printed "listening on"
	healthy    time.Time // /healthz first seen 200 again
	firstOK    time.Time // first 200 for a request sent after listening
	errors503  int
	recoverDur time.Duration // firstOK - listening
}

// Recovery bound asserted after each restart (the goal is 1 s; the bound
// is generous against a loaded CI machine; the measured value is logged).
const recoveryBound = 3 * time.Second

// TestEnclaveRestartUnderLoad kills the mock enclave (SIGKILL) three times
// during a ~10 s load of generic transactions and attestations (increasing
// levels) from several clients, restarting it on the same port with the same
// KMS key. Every returned signature must verify; errors must be 503s with a
// message and happen only during outages; the daemon must serve again soon
// after each restart; /healthz must be 503 during an outage and 200 after;
// and every key must still be listed and sign at the end.
func TestEnclaveRestartUnderLoad(t *testing.T) {
	enclaveBin := harness.BuildBinary(t, "./cmd/sigil-enclave")
	sigilBin := harness.BuildBinary(t, "./cmd/sigil")
	dir := t.TempDir()
	kmsPath := filepath.Join(dir, "enclave-kms.key")
	keysPath := filepath.Join(dir, "keys.json")
	keys := writeKeys(t, kmsPath, keysPath, tezos.Ed25519, tezos.Secp256k1, tezos.P256, tezos.Ed25519)
	port := harness.FreePort(t)

	enc, _ := startEnclave(t, enclaveBin, port, kmsPath)
	d := startDaemon(t, sigilBin, writeConfig(t, dir, port, keysPath, "2s", keys))
	hc := newHTTPClient()
	if st, body, err := getStatus(hc, d.utility+"/healthz"); err != nil || st != http.StatusOK {
		t.Fatalf("/healthz before load: %d %s %v", st, body, err)
	}

	// Load: each client signs with one key, alternating a transaction and
	// an attestation on its own chain id at strictly increasing levels.
	const clients = 6
	ctx, stop := context.WithCancel(context.Background())
	defer stop()
	var (
		mu     sync.Mutex
		events []event
		wg     sync.WaitGroup
	)
	for i := range clients {
		k := keys[i%len(keys)]
		chain := []byte{0x7a, 0x06, 0xa7, byte(0x10 + i)}
		wg.Add(1)
		go func() {
			defer wg.Done()
			level := int32(0)
			for n := 0; ctx.Err() == nil; n++ {
				msg := transaction
				if n%2 == 1 {
					level++
					msg = loadgen.Attestation(chain, 1, level, 0)
				}
				ev := event{start: time.Now(), client: i}
				ev.res = sign(hc, d.api, k.pkh, msg)
				ev.end = time.Now()
				if ev.res.err == nil && ev.res.status == http.StatusOK {
					ev.wrongSig = verify(k.pk, msg, ev.res.sig)
				}
				mu.Lock()
				events = append(events, ev)
				mu.Unlock()
				if ev.res.err != nil || ev.res.status != http.StatusOK {
					time.Sleep(5 * time.Millisecond) // no hot loop during outages
				}
			}
		}()
	}

	waitStatus := func(want int, within time.Duration) (time.Time, bool) {
		deadline := time.Now().Add(within)
		for time.Now().Before(deadline) {
			if st, _, err := getStatus(hc, d.utility+"/healthz"); err == nil && st == want {
				return time.Now(), true
			}
			time.Sleep(5 * time.Millisecond)
		}
		return time.Time{}, false
	}

	time.Sleep(1500 * time.Millisecond)
	var outages []*outage
	for round := range 3 {
		o := &outage{kill: time.Now()}
		enc.Kill()
		var ok bool
		if o.unhealthy, ok = waitStatus(http.StatusServiceUnavailable, 3*time.Second); !ok {
			t.Errorf("outage %d: /healthz never answered 503 within 3 s of the kill", round+1)
		}
		time.Sleep(time.Until(o.kill.Add(500 * time.Millisecond))) // a half-second outage
		enc, o.listening = startEnclave(t, enclaveBin, port, kmsPath)
		if o.healthy, ok = waitStatus(http.StatusOK, 10*time.Second); !ok {
			t.Fatalf("outage %d: /healthz not 200 within 10 s of the restart", round+1)
		}
		outages = append(outages, o)
		time.Sleep(2 * time.Second) // steady load between outages
	}
	stop()
	wg.Wait()

	// Attribute every event.
	sort.Slice(events, func(i, j int) bool { return events[i].start.Before(events[j].start) })
	for _, o := range outages {
		for _, ev := range events {
			if ev.res.err == nil && ev.res.status == http.StatusOK && !ev.start.Before(o.listening) &&
				(o.firstOK.IsZero() || ev.end.Before(o.firstOK)) {
				o.firstOK = ev.end
			}
		}
	}
	var ok, wrong, transport int
	for _, ev := range events {
		switch {
		case ev.res.err != nil:
			transport++
			t.Errorf("client %d: transport error at %s: %v", ev.client, ev.start.Format("15:04:05.000"), ev.res.err)
		case ev.res.status == http.StatusOK:
			if ev.wrongSig != nil {
				wrong++
				t.Errorf("client %d: wrong signature %s: %v", ev.client, ev.res.sig, ev.wrongSig)
			} else {
				ok++
			}
		default:
			if ev.res.status != http.StatusServiceUnavailable || ev.res.msg == "" {
				t.Errorf("client %d: error %d %q, want 503 with a message", ev.client, ev.res.status, ev.res.msg)
			}
			// The outage it belongs to is the last one killed before it ended.
			in := false
			for i := len(outages) - 1; i >= 0; i-- {
				o := outages[i]
				if ev.end.Before(o.kill) {
					continue
				}
				if ev.start.Before(o.listening.Add(recoveryBound)) {
					in = true
					o.errors503++
				}
				break
			}
			if !in {
				t.Errorf("client %d: error %d %q at %s–%s, outside every outage", ev.client, ev.res.status, ev.res.msg,
					ev.start.Format("15:04:05.000"), ev.end.Format("15:04:05.000"))
			}
		}
	}
	t.Logf("%d requests: %d good signatures, %d wrong, %d transport errors, %d clients", len(events), ok, wrong, transport, clients)
	if ok < 100 {
		t.Errorf("only %d good signatures: the load did not run", ok)
	}
	for i, o := range outages {
		if o.firstOK.IsZero() {
			t.Errorf("outage %d: no successful signature after the restart", i+1)
			continue
		}
		o.recoverDur = o.firstOK.Sub(o.listening)
		t.Logf("outage %d: /healthz 503 %v after the kill; enclave down %v; first signature %v and /healthz 200 %v after the enclave's \"listening\" line; %d 503s",
			i+1, o.unhealthy.Sub(o.kill).Round(time.Millisecond), o.listening.Sub(o.kill).Round(time.Millisecond),
			o.recoverDur.Round(time.Millisecond), o.healthy.Sub(o.listening).Round(time.Millisecond), o.errors503)
		if o.recoverDur > recoveryBound {
			t.Errorf("outage %d: daemon served again %v after the enclave listened, want ≤ %v (goal 1 s)", i+1, o.recoverDur, recoveryBound)
		}
		if o.errors503 == 0 {
			t.Errorf("outage %d: no 503 at all: the outage was not observed by the load", i+1)
		}
	}

	// Every key is still there and signs.
	if st, body, err := getStatus(hc, d.utility+"/healthz"); err != nil || st != http.StatusOK {
		t.Errorf("/healthz after the load: %d %s %v", st, body, err)
	}
	for _, k := range keys {
		st, body, err := getStatus(hc, d.api+"/keys/"+k.pkh)
		if err != nil || st != http.StatusOK || !containsPK(body, k.pk) {
			t.Errorf("GET /keys/%s after the restarts: %d %s %v", k.pkh, st, body, err)
		}
		r := sign(hc, d.api, k.pkh, transaction)
		if r.err != nil || r.status != http.StatusOK {
			t.Errorf("%s cannot sign after the restarts: %d %q %v", k.pkh, r.status, r.msg, r.err)
			continue
		}
		if err := verify(k.pk, transaction, r.sig); err != nil {
			t.Errorf("%s: wrong signature after the restarts: %v", k.pkh, err)
		}
	}
	if d.proc.Exited() {
		t.Error("the daemon exited")
	}
}

func containsPK(body string, pk tezos.PublicKey) bool {
	return strings.Contains(body, `"`+pk.String()+`"`)
}
