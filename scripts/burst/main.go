// Command burst measures the consensus burst of a baker with many tz4
// delegates, as docs/performance.md reports it: N delegates (default 100)
// each send a preattestation and an attestation (the tz4 encodings, tags 40
// and 41) at once, to `sigil serve` (confidentialspace vault on
// sigil-enclave with the local KMS stand-in, file watermarks), level after
// level. Every signature is verified (blst, adapters/enclavetest).
//
// In the same run it measures the crypto that a burst cannot avoid, on
// this machine: a BLS signature (in the enclave) and its verification (in
// the daemon). Right before each burst it times 2N signatures and 2N
// verifications spread over every core (one goroutine per core): that is
// the crypto limit 2N × (sign + verify) ÷ cores as this shared machine
// gives it at that moment, and each burst's p50 is divided by it (the run's
// figure is the median of those ratios). It also reports one signature and
// one verification on one core, and the p50 against the sign-only limit
// 2N × sign ÷ cores (the measure before the daemon verified signatures).
// Usage (scripts/burst.sh builds the binaries):
//
//	burst -bin DIR [-delegates 100] [-bursts 10] [-connections 4] [-json FILE]
//
// DIR holds sigil and sigil-enclave of any version (it only speaks to them
// through their command lines, logs and HTTP), so the same
// run measures an older build.
package main

import (
	"bytes"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"net/http"
	"os"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/sigil-signer/sigil/adapters/enclavetest"
	"github.com/sigil-signer/sigil/domain/tezos"
	"github.com/sigil-signer/sigil/scripts/internal/rig"
)

func main() {
	bin := flag.String("bin", "", "directory holding sigil and sigil-enclave")
	delegates := flag.Int("delegates", 100, "tz4 delegates (each sends a preattestation and an attestation per burst)")
	bursts := flag.Int("bursts", 10, "measured bursts (after one warm-up burst)")
	conns := flag.Int("connections", 4, "the vault's pool size")
	pause := flag.Duration("pause", 500*time.Millisecond, "idle time between bursts")
	jsonOut := flag.String("json", "", "also write the figures as JSON to this file")
	keep := flag.Bool("keep", false, "keep the work directory (logs)")
	wm := flag.String("watermark", "file", "watermark driver of the daemon (file; mem to see the store's share)")
	flag.Parse()
	if *bin == "" {
		fail(fmt.Errorf("-bin is required"))
	}
	r, err := rig.New(*bin)
	if err != nil {
		fail(err)
	}
	res, err := run(r, *delegates, *bursts, *conns, *pause, *wm)
	r.Close(*keep || err != nil)
	if err != nil {
		fmt.Fprintf(os.Stderr, "burst: %v (logs in %s)\n", err, r.Dir)
		os.Exit(1)
	}
	res.print(os.Stdout)
	if *jsonOut != "" {
		b, _ := json.MarshalIndent(res, "", "  ")
		if err := os.WriteFile(*jsonOut, append(b, '\n'), 0o644); err != nil {
			fail(err)
		}
	}
}

func fail(err error) {
	fmt.Fprintln(os.Stderr, "burst:", err)
	os.Exit(1)
}

// Result holds the figures of a run.
type Result struct {
	When        string    `json:"when"`
	LoadBefore  string    `json:"load_avg_before"`
	LoadAfter   string    `json:"load_avg_after"`
	Delegates   int       `json:"delegates"`
	Requests    int       `json:"requests_per_burst"`
	Bursts      int       `json:"bursts"`
	Cores       int       `json:"cores"`
	Connections int       `json:"connections"`
	SignUS      float64   `json:"bls_sign_us"`
	VerifyUS    float64   `json:"bls_verify_us"`
	LimitMS     float64   `json:"limit_ms"`           // 2N × (sign + verify) ÷ cores
	SignLimitMS float64   `json:"sign_only_limit_ms"` // 2N × sign ÷ cores
	P50MS       float64   `json:"p50_ms"`             // over every request of every burst
	P90MS       float64   `json:"p90_ms"`
	MaxMS       float64   `json:"max_ms"`
	BurstP50MS  []float64 `json:"burst_p50_ms"`
	BurstMaxMS  []float64 `json:"burst_max_ms"`
	BurstLimit  []float64 `json:"burst_limit_ms"` // measured right before each burst
	BurstRatio  []float64 `json:"burst_p50_over_limit"`
	Ratio       float64   `json:"p50_over_limit"` // median of BurstRatio
	SignRatio   float64   `json:"p50_over_sign_only_limit"`
	DaemonCPUUS float64   `json:"daemon_cpu_us_per_request"`
	EnclaveCPU  float64   `json:"enclave_cpu_us_per_request"`
	Failed      int       `json:"failed_requests"`
}

func (r *Result) print(w io.Writer) {
	fmt.Fprintf(w, "burst %s, load before %s, after %s; %d cores; %d tz4 delegates (%d requests per burst), %d bursts, %d enclave connections, file watermarks\n",
		r.When, r.LoadBefore, r.LoadAfter, r.Cores, r.Delegates, r.Requests, r.Bursts, r.Connections)
	fmt.Fprintf(w, "BLS on one core, this run: sign %.0f µs, verify %.0f µs -> %d × (sign + verify) ÷ %d = %.1f ms (sign only: %.1f ms)\n",
		r.SignUS, r.VerifyUS, r.Requests, r.Cores, r.LimitMS, r.SignLimitMS)
	fmt.Fprintf(w, "crypto limit measured before each burst (%d signatures and verifications on %d cores): %v ms\n", r.Requests, r.Cores, fmtMS(r.BurstLimit))
	fmt.Fprintf(w, "burst latency: p50 %.1f ms, p90 %.1f ms, max %.1f ms; per-burst p50 %v ms\n", r.P50MS, r.P90MS, r.MaxMS, fmtMS(r.BurstP50MS))
	fmt.Fprintf(w, "p50 / limit per burst: %v -> median %.2f (goal <= 1.5); p50 / sign-only limit (one core) = %.2f\n", fmtRatio(r.BurstRatio), r.Ratio, r.SignRatio)
	fmt.Fprintf(w, "CPU per request: daemon %.0f µs, enclave %.0f µs; failed requests %d\n", r.DaemonCPUUS, r.EnclaveCPU, r.Failed)
}

func fmtRatio(v []float64) string {
	var b strings.Builder
	for i, x := range v {
		if i > 0 {
			b.WriteString(" ")
		}
		fmt.Fprintf(&b, "%.2f", x)
	}
	return b.String()
}

// parallelCrypto times n BLS signatures and n verifications spread over
// one goroutine per core: the crypto limit of a burst of n requests on
// this machine now.
func parallelCrypto(n, cores int) (time.Duration, error) {
	sk, err := tezos.GeneratePrivateKey(tezos.BLS, nil)
	if err != nil {
		return 0, err
	}
	pk, _ := sk.Public()
	v, err := tezos.NewVerifier(pk)
	if err != nil {
		return 0, err
	}
	msg := tz4Consensus(0x13, 41, 9, 0)
	errs := make(chan error, cores)
	start := time.Now()
	for g := range cores {
		go func() {
			for i := g; i < n; i += cores {
				sig, err := sk.Sign(msg, tezos.SignVersionLatest)
				if err == nil {
					err = v.Verify(msg, sig, tezos.SignVersionLatest)
				}
				if err != nil {
					errs <- err
					return
				}
			}
			errs <- nil
		}()
	}
	for range cores {
		if err := <-errs; err != nil {
			return 0, err
		}
	}
	return time.Since(start), nil
}

func fmtMS(v []float64) string {
	var b strings.Builder
	for i, x := range v {
		if i > 0 {
			b.WriteString(" ")
		}
		fmt.Fprintf(&b, "%.0f", x)
	}
	return b.String()
}

// crypto measures one BLS signature and one verification (version 2, an
// attestation-sized message), each the median of batches on one goroutine.
func crypto() (sign, verify time.Duration, err error) {
	sk, err := tezos.GeneratePrivateKey(tezos.BLS, nil)
	if err != nil {
		return 0, 0, err
	}
	pk, err := sk.Public()
	if err != nil {
		return 0, 0, err
	}
	msg := tz4Consensus(0x13, 41, 7, 0)
	v, err := tezos.NewVerifier(pk) // as the daemon verifies
	if err != nil {
		return 0, 0, err
	}
	var signs, verifies []time.Duration
	for range 7 {
		const n = 40
		t := time.Now()
		var sig tezos.Signature
		for range n {
			if sig, err = sk.Sign(msg, tezos.SignVersionLatest); err != nil {
				return 0, 0, err
			}
		}
		signs = append(signs, time.Since(t)/n)
		t = time.Now()
		for range n {
			if err := v.Verify(msg, sig, tezos.SignVersionLatest); err != nil {
				return 0, 0, err
			}
		}
		verifies = append(verifies, time.Since(t)/n)
	}
	slices.Sort(signs)
	slices.Sort(verifies)
	return signs[len(signs)/2], verifies[len(verifies)/2], nil
}

// tz4Consensus is a tz4 (pre)attestation: magic ‖ chain id ‖ branch ‖ tag
// ‖ level ‖ round ‖ payload hash.
func tz4Consensus(magic, tag byte, level, round int32) []byte {
	b := []byte{magic, 0x7a, 0x06, 0xa7, 0x70}
	for i := range 32 {
		b = append(b, byte(3*i+1))
	}
	b = append(b, tag)
	b = binary.BigEndian.AppendUint32(b, uint32(level))
	b = binary.BigEndian.AppendUint32(b, uint32(round))
	for i := range 32 {
		b = append(b, byte(5*i+2))
	}
	return b
}

type request struct {
	key rig.Key
	msg []byte
}

type outcome struct {
	lat time.Duration
	err error
}

func run(r *rig.Rig, delegates, bursts, conns int, pause time.Duration, wm string) (*Result, error) {
	res := &Result{When: time.Now().UTC().Format(time.RFC3339), LoadBefore: rig.LoadAvg(), Delegates: delegates,
		Requests: 2 * delegates, Bursts: bursts, Cores: runtime.NumCPU(), Connections: conns}
	if err := r.MakeKeys(delegates, tezos.BLS); err != nil {
		return nil, err
	}
	enc, addr, err := r.StartEnclave("enclave", 0, "--log-level", "warn")
	if err != nil {
		return nil, err
	}
	d, err := r.StartDaemon("daemon", rig.DaemonConfig{Enclave: addr, Connections: conns, Watermark: wm,
		Policy: "    allow:\n      preattestation:\n      attestation:\n"})
	if err != nil {
		return nil, err
	}
	client := &http.Client{Timeout: 30 * time.Second, Transport: &http.Transport{
		Proxy: nil, MaxIdleConns: 4 * delegates, MaxIdleConnsPerHost: 4 * delegates, IdleConnTimeout: time.Minute}}
	// Let every enclave connection hold every key, then the warm-up burst
	// (HTTP connections opened, first requests on each path).
	time.Sleep(2 * time.Second)
	if _, err := burst(client, d.API, r.Keys, 1); err != nil {
		return nil, fmt.Errorf("warm-up burst: %w", err)
	}
	time.Sleep(pause)

	sign, verify, err := crypto()
	if err != nil {
		return nil, err
	}
	res.SignUS, res.VerifyUS = float64(sign.Microseconds()), float64(verify.Microseconds())
	n := float64(res.Requests)
	res.LimitMS = n * float64(sign+verify) / float64(res.Cores) / 1e6
	res.SignLimitMS = n * float64(sign) / float64(res.Cores) / 1e6
	time.Sleep(pause)

	d0, e0 := d.CPU(), enc.CPU()
	var all []time.Duration
	for b := range bursts {
		limit, err := parallelCrypto(res.Requests, res.Cores)
		if err != nil {
			return nil, err
		}
		time.Sleep(pause / 5)
		outs, err := burst(client, d.API, r.Keys, int32(b+2))
		if err != nil {
			return nil, err
		}
		var lats []time.Duration
		for _, o := range outs {
			if o.err != nil {
				res.Failed++
				continue
			}
			lats = append(lats, o.lat)
		}
		slices.Sort(lats)
		if len(lats) > 0 {
			res.BurstP50MS = append(res.BurstP50MS, ms(lats[len(lats)/2]))
			res.BurstMaxMS = append(res.BurstMaxMS, ms(lats[len(lats)-1]))
			res.BurstLimit = append(res.BurstLimit, ms(limit))
			res.BurstRatio = append(res.BurstRatio, ms(lats[len(lats)/2])/ms(limit))
		}
		all = append(all, lats...)
		time.Sleep(pause)
	}
	// (The daemon and the enclave are idle while the limit is measured.)
	res.DaemonCPUUS = float64((d.CPU() - d0).Microseconds()) / float64(bursts*res.Requests)
	res.EnclaveCPU = float64((enc.CPU() - e0).Microseconds()) / float64(bursts*res.Requests)
	res.LoadAfter = rig.LoadAvg()
	if len(all) == 0 {
		return nil, fmt.Errorf("no request succeeded")
	}
	slices.Sort(all)
	res.P50MS, res.P90MS, res.MaxMS = ms(all[len(all)/2]), ms(all[len(all)*9/10]), ms(all[len(all)-1])
	ratios := slices.Clone(res.BurstRatio)
	slices.Sort(ratios)
	res.Ratio, res.SignRatio = ratios[len(ratios)/2], res.P50MS/res.SignLimitMS
	return res, nil
}

func ms(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }

// burst sends every delegate's preattestation and attestation at level
// at once, and returns each request's latency from the common start; the
// signatures are verified afterwards.
func burst(client *http.Client, api string, keys []rig.Key, level int32) ([]outcome, error) {
	var reqs []request
	for _, k := range keys {
		reqs = append(reqs, request{k, tz4Consensus(0x12, 40, level, 0)}, request{k, tz4Consensus(0x13, 41, level, 0)})
	}
	outs := make([]outcome, len(reqs))
	sigs := make([]string, len(reqs))
	start := make(chan struct{})
	var wg sync.WaitGroup
	var t0 time.Time
	for i, rq := range reqs {
		body := []byte(strconv.Quote(hex.EncodeToString(rq.msg)))
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-start
			resp, err := client.Post(api+"/keys/"+rq.key.PKH, "application/json", bytes.NewReader(body))
			if err != nil {
				outs[i].err = err
				return
			}
			b, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			outs[i].lat = time.Since(t0)
			var out struct {
				Signature string `json:"signature"`
			}
			if resp.StatusCode != http.StatusOK || json.Unmarshal(b, &out) != nil {
				outs[i].err = fmt.Errorf("%d %s", resp.StatusCode, b)
				return
			}
			sigs[i] = out.Signature
		}()
	}
	t0 = time.Now()
	close(start)
	wg.Wait()
	for i, rq := range reqs {
		if outs[i].err != nil {
			continue
		}
		sig, err := tezos.ParseSignature(sigs[i])
		if err != nil {
			return nil, fmt.Errorf("%s: %v", rq.key.PKH, err)
		}
		if err := enclavetest.Verify(rq.key.PK, rq.msg, sig, tezos.SignVersionLatest); err != nil {
			return nil, fmt.Errorf("%s level %d: %v", rq.key.PKH, level, err)
		}
	}
	return outs, nil
}
