// Package loadgen is a load generator for Tezos remote signers that speak the
// Signatory HTTP API (POST /keys/{pkh} with a JSON string of hex bytes, reply
// {"signature": …}). It drives a signer with N concurrent keep-alive clients
// for a bounded number of requests or a bounded duration and reports
// throughput, exact latency percentiles, errors by HTTP status and transport
// errors, and — optionally — signatures that fail verification with the
// key's public key.
//
// It only ever targets loopback addresses (127.0.0.0/8, ::1, localhost): any
// other host is refused before a request is sent, redirects are not followed,
// proxies are not used, and every connection is checked to reach a loopback
// IP address when it is dialled.
//
// Two request kinds are supported: "generic", a Taquito-forged transaction
// (0x03, the "transaction/simple" vector of domain/request/testdata), and
// "attestation", tag-21 attestations (0x13) whose levels come from one shared
// atomic counter so that they are strictly increasing and pass the signer's
// high-watermark check.
package loadgen

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"net"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/sigil-signer/sigil/domain/tezos"
)

// Op is the kind of sign request sent.
type Op string

// Supported request kinds.
const (
	// OpGeneric sends a forged transaction (magic byte 0x03).
	OpGeneric Op = "generic"
	// OpAttestation sends tag-21 attestations (magic byte 0x13) with
	// strictly increasing levels.
	OpAttestation Op = "attestation"
)

// GenericTransactionHex is the "transaction/simple" vector of
// domain/request/testdata/vectors.json: a Taquito-forged transaction with
// its 0x03 watermark byte.
const GenericTransactionHex = "0301080f161d242b323940474e555c636a71787f868d949ba2a9b0b7bec5ccd3da6c000a11181f262d343b424950575e656c737a81888f8c0bbb97b102e852ac02c0843d0001141b222930373e454c535a61686f767d848b929900"

// Limits and defaults.
const (
	DefaultTimeout = 10 * time.Second
	MaxConcurrency = 4096
	maxBody        = 1 << 20
)

// Options configure a Run.
type Options struct {
	// URL is the signer's base URL, e.g. http://127.0.0.1:6732. Its host
	// must be a loopback address or "localhost".
	URL string
	// Key is the tz… address to sign with.
	Key string
	// Concurrency is the number of concurrent clients (default 1).
	Concurrency int
	// Duration bounds the measured phase by time; Requests bounds it by
	// count. At least one must be positive; with both, the first reached
	// ends the run. In-flight requests are allowed to finish.
	Duration time.Duration
	Requests int
	// Warmup, if positive, runs the same load for this long before the
	// measured phase; its requests are counted separately.
	Warmup time.Duration
	// Op is the request kind (default OpGeneric).
	Op Op
	// Verify fetches the public key once (GET /keys/{pkh}) and verifies
	// every returned signature with it.
	Verify bool
	// Timeout bounds each HTTP request (default DefaultTimeout).
	Timeout time.Duration

	// StartLevel is the first attestation level (default 1).
	StartLevel int32
	// ChainID is the attestations' chain id; nil means a random one per run
	// so that repeated runs against one signer start from fresh watermarks.
	ChainID []byte
	// NewConnections opens a connection per request (no keep-alive), so
	// that every request goes through the listener's accept queue.
	NewConnections bool
	// SharedChain makes all clients use ChainID itself. By default client i
	// uses ChainID with i added to its last two bytes, so that each client's
	// levels (drawn from the shared counter, hence strictly increasing)
	// reach the signer in order; with one shared chain, concurrent requests
	// may arrive out of order and the signer rightly refuses the late ones.
	SharedChain bool
}

// Latency summarizes the latencies of successful requests. Percentiles are
// exact (nearest rank over all samples).
type Latency struct {
	Min, Mean, P50, P90, P99, Max time.Duration
}

// Result is the outcome of a Run. Requests = OK + WrongSignatures +
// BadResponses + the sum of StatusErrors + TransportErrors.
type Result struct {
	URL         string
	Key         string
	Op          Op
	Concurrency int
	Verify      bool
	// Trickle, when set, is what slow clients running beside the load met
	// (sigil-load --trickle).
	Trickle *TrickleStats

	// Requests is the number of measured requests that completed.
	Requests int
	// OK counts 200 responses carrying a signature that parsed (and, with
	// Verify, verified).
	OK int
	// WrongSignatures counts signatures that failed verification.
	WrongSignatures int
	// BadResponses counts 200 responses without a usable signature.
	BadResponses int
	// StatusErrors counts non-200 responses by HTTP status.
	StatusErrors map[int]int
	// TransportErrors counts requests that got no HTTP response.
	TransportErrors int
	// ErrorSamples holds the first error message seen per status
	// ("409", …), for transport errors ("transport"), bad responses ("bad
	// response") and wrong signatures ("wrong signature").
	ErrorSamples map[string]string

	// Duration is the measured phase's wall time.
	Duration time.Duration
	// OpsPerSec is OK / Duration.
	OpsPerSec float64
	// Latency is computed over the OK requests.
	Latency Latency

	// WarmupRequests counts the requests sent during warmup.
	WarmupRequests int
	// FirstLevel and LastLevel are the attestation levels used by the
	// measured phase (zero for generic).
	FirstLevel, LastLevel int32
	// ChainID is the attestations' base chain id (Net…).
	ChainID string
	// Interrupted is set when ctx ended the run early.
	Interrupted bool
}

// Errors is the total number of failed requests.
func (r Result) Errors() int {
	n := r.WrongSignatures + r.BadResponses + r.TransportErrors
	for _, c := range r.StatusErrors {
		n += c
	}
	return n
}

// String renders the report.
func (r Result) String() string {
	var b strings.Builder
	verify := "off"
	if r.Verify {
		verify = "on"
	}
	fmt.Fprintf(&b, "target      %s key %s\n", r.URL, r.Key)
	fmt.Fprintf(&b, "load        %s, %d clients, verify %s", r.Op, r.Concurrency, verify)
	if r.WarmupRequests > 0 {
		fmt.Fprintf(&b, ", %d warmup requests", r.WarmupRequests)
	}
	b.WriteString("\n")
	if r.Op == OpAttestation && r.Requests > 0 {
		fmt.Fprintf(&b, "levels      %d..%d on %s\n", r.FirstLevel, r.LastLevel, r.ChainID)
	}
	fmt.Fprintf(&b, "requests    %d in %s (%.1f req/s)\n", r.Requests, r.Duration.Round(time.Millisecond), perSec(r.Requests, r.Duration))
	fmt.Fprintf(&b, "ok          %d (%.1f ops/s)\n", r.OK, r.OpsPerSec)
	l := r.Latency
	fmt.Fprintf(&b, "latency     p50 %s  p90 %s  p99 %s  max %s  (min %s, mean %s)\n",
		ms(l.P50), ms(l.P90), ms(l.P99), ms(l.Max), ms(l.Min), ms(l.Mean))
	if r.Errors() == 0 {
		b.WriteString("errors      none\n")
	} else {
		var parts []string
		for _, s := range slices.Sorted(mapKeys(r.StatusErrors)) {
			parts = append(parts, fmt.Sprintf("HTTP %d: %d", s, r.StatusErrors[s]))
		}
		if r.TransportErrors > 0 {
			parts = append(parts, fmt.Sprintf("transport: %d", r.TransportErrors))
		}
		if r.BadResponses > 0 {
			parts = append(parts, fmt.Sprintf("bad response: %d", r.BadResponses))
		}
		if r.WrongSignatures > 0 {
			parts = append(parts, fmt.Sprintf("wrong signature: %d", r.WrongSignatures))
		}
		fmt.Fprintf(&b, "errors      %s\n", strings.Join(parts, ", "))
		for _, k := range slices.Sorted(mapKeys(r.ErrorSamples)) {
			fmt.Fprintf(&b, "  first %s: %s\n", k, r.ErrorSamples[k])
		}
	}
	if r.Verify {
		fmt.Fprintf(&b, "signatures  %d verified, %d wrong\n", r.OK, r.WrongSignatures)
	}
	if r.Trickle != nil {
		b.WriteString(r.Trickle.String() + "\n")
	}
	if r.Interrupted {
		b.WriteString("interrupted before the end\n")
	}
	return b.String()
}

// MarshalJSON renders durations in milliseconds.
func (r Result) MarshalJSON() ([]byte, error) {
	type latency struct {
		Min  float64 `json:"min"`
		Mean float64 `json:"mean"`
		P50  float64 `json:"p50"`
		P90  float64 `json:"p90"`
		P99  float64 `json:"p99"`
		Max  float64 `json:"max"`
	}
	status := make(map[string]int, len(r.StatusErrors))
	for s, c := range r.StatusErrors {
		status[strconv.Itoa(s)] = c
	}
	l := r.Latency
	return json.Marshal(struct {
		URL             string            `json:"url"`
		Key             string            `json:"key"`
		Op              Op                `json:"op"`
		Concurrency     int               `json:"concurrency"`
		Verify          bool              `json:"verify"`
		Requests        int               `json:"requests"`
		OK              int               `json:"ok"`
		WrongSignatures int               `json:"wrong_signatures"`
		BadResponses    int               `json:"bad_responses"`
		StatusErrors    map[string]int    `json:"status_errors"`
		TransportErrors int               `json:"transport_errors"`
		ErrorSamples    map[string]string `json:"error_samples,omitempty"`
		DurationS       float64           `json:"duration_s"`
		OpsPerSec       float64           `json:"ops_per_s"`
		LatencyMS       latency           `json:"latency_ms"`
		WarmupRequests  int               `json:"warmup_requests"`
		FirstLevel      int32             `json:"first_level,omitempty"`
		LastLevel       int32             `json:"last_level,omitempty"`
		ChainID         string            `json:"chain_id,omitempty"`
		Interrupted     bool              `json:"interrupted"`
		Trickle         *TrickleStats     `json:"trickle,omitempty"`
	}{
		r.URL, r.Key, r.Op, r.Concurrency, r.Verify, r.Requests, r.OK, r.WrongSignatures,
		r.BadResponses, status, r.TransportErrors, r.ErrorSamples, r.Duration.Seconds(), r.OpsPerSec,
		latency{msf(l.Min), msf(l.Mean), msf(l.P50), msf(l.P90), msf(l.P99), msf(l.Max)},
		r.WarmupRequests, r.FirstLevel, r.LastLevel, r.ChainID, r.Interrupted, r.Trickle,
	})
}

func mapKeys[K comparable, V any](m map[K]V) func(func(K) bool) {
	return func(yield func(K) bool) {
		for k := range m {
			if !yield(k) {
				return
			}
		}
	}
}

func perSec(n int, d time.Duration) float64 {
	if d <= 0 {
		return 0
	}
	return float64(n) / d.Seconds()
}

func msf(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }

func ms(d time.Duration) string { return strconv.FormatFloat(msf(d), 'f', 3, 64) + "ms" }

// CheckLoopback returns an error unless rawURL is an http(s) URL whose host
// is a loopback IP literal (127.0.0.0/8, ::1) or "localhost".
func CheckLoopback(rawURL string) (*url.URL, error) {
	u, err := url.Parse(rawURL)
	if err != nil {
		return nil, fmt.Errorf("loadgen: bad URL %q: %w", rawURL, err)
	}
	if u.Scheme != "http" && u.Scheme != "https" {
		return nil, fmt.Errorf("loadgen: bad URL %q: scheme must be http or https", rawURL)
	}
	host := u.Hostname()
	if host == "" {
		return nil, fmt.Errorf("loadgen: bad URL %q: no host", rawURL)
	}
	if !isLoopbackHost(host) {
		return nil, fmt.Errorf("loadgen: refusing to target %q: only loopback hosts (127.0.0.0/8, ::1, localhost) may be load-tested", host)
	}
	return u, nil
}

func isLoopbackHost(host string) bool {
	if strings.EqualFold(host, "localhost") {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// loopbackOnly is a net.Dialer Control hook refusing non-loopback peers
// (for instance a "localhost" that resolves elsewhere).
func loopbackOnly(_, address string, _ syscall.RawConn) error {
	host, _, err := net.SplitHostPort(address)
	if err != nil {
		return err
	}
	if ip := net.ParseIP(host); ip == nil || !ip.IsLoopback() {
		return fmt.Errorf("loadgen: refusing to connect to non-loopback address %s", address)
	}
	return nil
}

func newClient(concurrency int, timeout time.Duration, newConns bool) *http.Client {
	d := &net.Dialer{Timeout: timeout, KeepAlive: 30 * time.Second, Control: loopbackOnly}
	tr := &http.Transport{
		DisableKeepAlives:   newConns,
		Proxy:               nil,
		DialContext:         d.DialContext,
		MaxIdleConns:        2 * concurrency,
		MaxIdleConnsPerHost: 2 * concurrency,
		IdleConnTimeout:     90 * time.Second,
		DisableCompression:  true,
		TLSHandshakeTimeout: timeout,
		ForceAttemptHTTP2:   false,
	}
	return &http.Client{
		Transport: tr,
		Timeout:   timeout,
		CheckRedirect: func(*http.Request, []*http.Request) error {
			return errors.New("loadgen: redirects are not followed")
		},
	}
}

func (o *Options) normalize() (*url.URL, error) {
	u, err := CheckLoopback(o.URL)
	if err != nil {
		return nil, err
	}
	if _, err := tezos.ParsePublicKeyHash(o.Key); err != nil {
		return nil, fmt.Errorf("loadgen: bad key %q: %w", o.Key, err)
	}
	if o.Concurrency == 0 {
		o.Concurrency = 1
	}
	if o.Concurrency < 0 || o.Concurrency > MaxConcurrency {
		return nil, fmt.Errorf("loadgen: concurrency %d out of range 1..%d", o.Concurrency, MaxConcurrency)
	}
	if o.Duration < 0 || o.Requests < 0 || o.Warmup < 0 {
		return nil, errors.New("loadgen: duration, requests and warmup must not be negative")
	}
	if o.Duration == 0 && o.Requests == 0 {
		return nil, errors.New("loadgen: the run needs a bound: a positive duration or request count")
	}
	if o.Op == "" {
		o.Op = OpGeneric
	}
	if o.Op != OpGeneric && o.Op != OpAttestation {
		return nil, fmt.Errorf("loadgen: unknown op %q (want generic or attestation)", o.Op)
	}
	if o.Timeout <= 0 {
		o.Timeout = DefaultTimeout
	}
	if o.StartLevel < 0 {
		return nil, fmt.Errorf("loadgen: negative start level %d", o.StartLevel)
	}
	if o.StartLevel == 0 {
		o.StartLevel = 1
	}
	if o.ChainID == nil {
		o.ChainID = make([]byte, 4)
		if _, err := rand.Read(o.ChainID); err != nil {
			return nil, err
		}
	} else if len(o.ChainID) != 4 {
		return nil, fmt.Errorf("loadgen: chain id must be 4 bytes, got %d", len(o.ChainID))
	}
	return u, nil
}

// ChainIDString renders a 4-byte chain id in base58 (Net…).
func ChainIDString(id []byte) string {
	return tezos.EncodeBase58Check([]byte{87, 82, 0}, id)
}

// Attestation forges an attestation sign request: 0x13 ‖ chain id(4) ‖
// branch(32) ‖ 21 ‖ slot u16 ‖ level i32 ‖ round i32 ‖ payload hash(32).
// The branch and payload hash are fixed non-zero patterns.
func Attestation(chainID []byte, slot uint16, level, round int32) []byte {
	b := make([]byte, 0, 1+4+32+1+2+4+4+32)
	b = append(b, 0x13)
	b = append(b, chainID[:4]...)
	for i := range 32 {
		b = append(b, byte(7*i+1))
	}
	b = append(b, 21)
	b = binary.BigEndian.AppendUint16(b, slot)
	b = binary.BigEndian.AppendUint32(b, uint32(level))
	b = binary.BigEndian.AppendUint32(b, uint32(round))
	for i := range 32 {
		b = append(b, byte(11*i+5))
	}
	return b
}

// clientChain derives client i's chain id from the base one.
func clientChain(base []byte, i int) []byte {
	c := slices.Clone(base)
	v := binary.BigEndian.Uint16(c[2:]) + uint16(i)
	binary.BigEndian.PutUint16(c[2:], v)
	return c
}

// runner holds what all clients share.
type runner struct {
	opts    Options
	client  *http.Client
	signURL string
	pk      *tezos.PublicKey
	generic []byte
	level   atomic.Int64 // next attestation level
}

// stats is one client's tally for one phase.
type stats struct {
	requests, ok, wrong, bad, transport int
	status                              map[int]int
	samples                             map[string]string
	lat                                 []time.Duration
	minLevel, maxLevel                  int64
}

func (s *stats) sample(k, msg string) {
	if s.samples == nil {
		s.samples = map[string]string{}
	}
	if _, ok := s.samples[k]; !ok {
		s.samples[k] = msg
	}
}

// Run drives the signer as configured and returns the measured result. It
// returns an error only for invalid options or a failed setup (fetching the
// public key for Verify); request failures are counted in the Result. When
// ctx ends, clients stop and the partial result has Interrupted set.
func Run(ctx context.Context, opts Options) (Result, error) {
	u, err := opts.normalize()
	if err != nil {
		return Result{}, err
	}
	base := strings.TrimRight(u.String(), "/")
	r := &runner{
		opts:    opts,
		client:  newClient(opts.Concurrency, opts.Timeout, opts.NewConnections),
		signURL: base + "/keys/" + opts.Key,
	}
	defer r.client.CloseIdleConnections()
	r.generic, _ = hex.DecodeString(GenericTransactionHex)
	r.level.Store(int64(opts.StartLevel))
	res := Result{
		URL: base, Key: opts.Key, Op: opts.Op, Concurrency: opts.Concurrency, Verify: opts.Verify,
		StatusErrors: map[int]int{}, ErrorSamples: map[string]string{},
	}
	if opts.Op == OpAttestation {
		res.ChainID = ChainIDString(opts.ChainID)
	}
	if opts.Verify {
		pk, err := r.fetchKey(ctx)
		if err != nil {
			return res, err
		}
		r.pk = &pk
	}

	if opts.Warmup > 0 {
		all, _ := r.phase(ctx, time.Now().Add(opts.Warmup), 0)
		res.WarmupRequests = all.requests
		if ctx.Err() != nil {
			res.Interrupted = true
			return res, nil
		}
	}

	var deadline time.Time
	if opts.Duration > 0 {
		deadline = time.Now().Add(opts.Duration)
	}
	all, elapsed := r.phase(ctx, deadline, opts.Requests)
	res.Duration = elapsed
	res.Requests, res.OK, res.WrongSignatures = all.requests, all.ok, all.wrong
	res.BadResponses, res.TransportErrors = all.bad, all.transport
	for s, c := range all.status {
		res.StatusErrors[s] = c
	}
	for k, v := range all.samples {
		res.ErrorSamples[k] = v
	}
	res.Latency = summarize(all.lat)
	res.OpsPerSec = perSec(res.OK, res.Duration)
	if opts.Op == OpAttestation && all.requests > 0 {
		res.FirstLevel, res.LastLevel = int32(all.minLevel), int32(all.maxLevel)
	}
	res.Interrupted = ctx.Err() != nil
	return res, nil
}

// phase runs all clients until the deadline (if non-zero), until limit
// requests have been claimed (if positive) or until ctx ends, and merges
// their tallies.
func (r *runner) phase(ctx context.Context, deadline time.Time, limit int) (stats, time.Duration) {
	var claimed atomic.Int64
	per := make([]stats, r.opts.Concurrency)
	var wg sync.WaitGroup
	start := time.Now()
	for i := range per {
		chain := r.opts.ChainID
		if !r.opts.SharedChain {
			chain = clientChain(chain, i)
		}
		wg.Go(func() {
			s := &per[i]
			s.status = map[int]int{}
			for ctx.Err() == nil {
				if !deadline.IsZero() && !time.Now().Before(deadline) {
					return
				}
				if limit > 0 && claimed.Add(1) > int64(limit) {
					return
				}
				r.one(ctx, s, chain, uint16(i))
			}
		})
	}
	wg.Wait()
	elapsed := time.Since(start)
	var all stats
	all.status = map[int]int{}
	all.samples = map[string]string{}
	all.minLevel = -1
	for _, s := range per {
		all.requests += s.requests
		all.ok += s.ok
		all.wrong += s.wrong
		all.bad += s.bad
		all.transport += s.transport
		for k, v := range s.status {
			all.status[k] += v
		}
		for k, v := range s.samples {
			if _, ok := all.samples[k]; !ok {
				all.samples[k] = v
			}
		}
		all.lat = append(all.lat, s.lat...)
		if s.requests > 0 && r.opts.Op == OpAttestation {
			if all.minLevel < 0 || s.minLevel < all.minLevel {
				all.minLevel = s.minLevel
			}
			all.maxLevel = max(all.maxLevel, s.maxLevel)
		}
	}
	return all, elapsed
}

// one sends a single sign request and tallies its outcome.
func (r *runner) one(ctx context.Context, s *stats, chain []byte, slot uint16) {
	msg := r.generic
	if r.opts.Op == OpAttestation {
		lvl := r.level.Add(1) - 1
		msg = Attestation(chain, slot, int32(lvl), 0)
		if s.requests == 0 || lvl < s.minLevel {
			s.minLevel = lvl
		}
		s.maxLevel = max(s.maxLevel, lvl)
	}
	body := make([]byte, 0, 2*len(msg)+2)
	body = append(body, '"')
	body = hex.AppendEncode(body, msg)
	body = append(body, '"')

	start := time.Now()
	status, respBody, err := r.post(ctx, body)
	lat := time.Since(start)
	if err != nil && ctx.Err() != nil {
		return // interrupted: not a measurement
	}
	s.requests++
	switch {
	case err != nil:
		s.transport++
		s.sample("transport", err.Error())
	case status != http.StatusOK:
		s.status[status]++
		s.sample(strconv.Itoa(status), errorMessage(respBody))
	default:
		var out struct {
			Signature string `json:"signature"`
		}
		if err := json.Unmarshal(respBody, &out); err != nil || out.Signature == "" {
			s.bad++
			s.sample("bad response", fmt.Sprintf("no signature in %q", truncate(string(respBody))))
			return
		}
		sig, err := tezos.ParseSignature(out.Signature)
		if err != nil {
			s.bad++
			s.sample("bad response", fmt.Sprintf("unparsable signature %q: %v", truncate(out.Signature), err))
			return
		}
		if r.pk != nil {
			if err := r.pk.Verify(msg, sig, tezos.SignVersion2); err != nil {
				s.wrong++
				s.sample("wrong signature", fmt.Sprintf("%s: %v", truncate(out.Signature), err))
				return
			}
		}
		s.ok++
		s.lat = append(s.lat, lat)
	}
}

func (r *runner) post(ctx context.Context, body []byte) (int, []byte, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, r.signURL, bytes.NewReader(body))
	if err != nil {
		return 0, nil, err
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := r.client.Do(req)
	if err != nil {
		return 0, nil, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, maxBody))
	if err != nil {
		return 0, nil, err
	}
	return resp.StatusCode, b, nil
}

// fetchKey gets the key's public key and checks that it hashes to the key.
func (r *runner) fetchKey(ctx context.Context) (tezos.PublicKey, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, r.signURL, nil)
	if err != nil {
		return tezos.PublicKey{}, err
	}
	resp, err := r.client.Do(req)
	if err != nil {
		return tezos.PublicKey{}, fmt.Errorf("loadgen: fetching the public key: %w", err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, maxBody))
	if err != nil {
		return tezos.PublicKey{}, fmt.Errorf("loadgen: fetching the public key: %w", err)
	}
	if resp.StatusCode != http.StatusOK {
		return tezos.PublicKey{}, fmt.Errorf("loadgen: fetching the public key: HTTP %d: %s", resp.StatusCode, errorMessage(b))
	}
	var out struct {
		PublicKey string `json:"public_key"`
	}
	if err := json.Unmarshal(b, &out); err != nil {
		return tezos.PublicKey{}, fmt.Errorf("loadgen: fetching the public key: %w", err)
	}
	pk, err := tezos.ParsePublicKey(out.PublicKey)
	if err != nil {
		return tezos.PublicKey{}, fmt.Errorf("loadgen: fetching the public key: %w", err)
	}
	if got := pk.Hash().String(); got != r.opts.Key {
		return tezos.PublicKey{}, fmt.Errorf("loadgen: the signer's public key for %s hashes to %s", r.opts.Key, got)
	}
	return pk, nil
}

// errorMessage extracts msg from Signatory's error JSON, or returns the
// (truncated) body.
func errorMessage(b []byte) string {
	var errs []struct {
		Msg string `json:"msg"`
	}
	if json.Unmarshal(b, &errs) == nil && len(errs) > 0 && errs[0].Msg != "" {
		return truncate(errs[0].Msg)
	}
	return truncate(strings.TrimSpace(string(b)))
}

func truncate(s string) string {
	const n = 200
	if len(s) > n {
		return s[:n] + "…"
	}
	return s
}

// summarize computes exact nearest-rank percentiles.
func summarize(lat []time.Duration) Latency {
	if len(lat) == 0 {
		return Latency{}
	}
	slices.Sort(lat)
	var sum time.Duration
	for _, d := range lat {
		sum += d
	}
	return Latency{
		Min:  lat[0],
		Mean: sum / time.Duration(len(lat)),
		P50:  Percentile(lat, 50),
		P90:  Percentile(lat, 90),
		P99:  Percentile(lat, 99),
		Max:  lat[len(lat)-1],
	}
}

// Percentile returns the nearest-rank p-th percentile (0 < p ≤ 100) of
// sorted: the smallest value with at least p% of the samples at or below it.
func Percentile(sorted []time.Duration, p float64) time.Duration {
	if len(sorted) == 0 {
		return 0
	}
	rank := int(math.Ceil(float64(len(sorted)) * p / 100))
	rank = min(max(rank, 1), len(sorted))
	return sorted[rank-1]
}
