package metrics

import (
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/sigil-signer/sigil/ports"
)

// Sigil's own families (beyond Signatory's), all named sigil_*: the health
// of each vault's enclave connection pool, the enclave's request latency and
// failures, fine-grained sign latency per key, and when each consensus key
// last signed. SigilFamilies lists them with their label names.
var SigilFamilies = map[string][]string{
	"sigil_build_info":                                   {"path", "version", "checksum", "revision", "branch", "build_time", "commit_time", "go_version"},
	"sigil_enclave_connections":                          {"vault", "state"},
	"sigil_enclave_redials_total":                        {"vault"},
	"sigil_enclave_keys_loaded":                          {"vault"},
	"sigil_enclave_keys_unopened":                        {"vault"},
	"sigil_enclave_rpc_duration_seconds":                 {"vault", "method"},
	"sigil_enclave_rpc_errors_total":                     {"vault", "method", "cause"},
	"sigil_enclave_bad_signatures_total":                 {"vault"},
	"sigil_enclave_sign_duration_seconds":                {"vault", "address"},
	"sigil_sign_request_duration_seconds":                {"address", "status"},
	"sigil_consensus_last_signature_timestamp_seconds":   {"address"},
	"sigil_config_reloads_total":                         {"result"},
	"sigil_config_last_reload_success_timestamp_seconds": {},
	"sigil_config_last_reload_successful":                {},
}

// Enclave request methods of the protocol, for which the observer holds a
// ready histogram (no lookup by label on the request path).
var rpcMethods = []string{
	"Initialize", "Import", "ImportUnencrypted", "Generate", "GenerateAndImport",
	"Sign", "SignWith", "PublicKey", "PublicKeyFrom", "ProvePossession",
}

var (
	descConnections = prometheus.NewDesc("sigil_enclave_connections",
		"Connections of the vault's enclave pool, by state: up (connected and initialized) or down (being redialled).",
		[]string{"vault", "state"}, nil)
	descRedials = prometheus.NewDesc("sigil_enclave_redials_total",
		"Dials of an enclave connection after it was lost or a dial failed.",
		[]string{"vault"}, nil)
	descKeysLoaded = prometheus.NewDesc("sigil_enclave_keys_loaded",
		"Keys the vault's enclave client holds and the enclave opens.",
		[]string{"vault"}, nil)
	descKeysUnopened = prometheus.NewDesc("sigil_enclave_keys_unopened",
		"Stored keys a (re)connected enclave could not open (for example an enclave initialized with another KMS key).",
		[]string{"vault"}, nil)
	descLastConsensus = prometheus.NewDesc("sigil_consensus_last_signature_timestamp_seconds",
		"Unix time of the last consensus signature (block, preattestation, attestation) of each key whose policy allows consensus requests; for a key that has signed none since the daemon started, the time it was first exported.",
		[]string{"address"}, nil)
)

type enclavePool struct {
	vault string
	stats func() ports.EnclavePoolStats
}

// sigilMetrics holds the sigil_* families that are not plain vectors.
type sigilMetrics struct {
	mu       sync.Mutex
	pools    []enclavePool
	consKeys func() []string
	// firstSeen is when each consensus key was first exported (for keys
	// that have not signed yet).
	firstSeen map[string]time.Time

	lastConsensus sync.Map // address → *atomic.Int64 (Unix nanoseconds)
	now           func() time.Time

	rpcDuration *prometheus.HistogramVec
	rpcErrors   *prometheus.CounterVec
	badSigs     *prometheus.CounterVec
	enclaveSign *prometheus.HistogramVec
	signLatency *prometheus.HistogramVec
}

func newSigilMetrics() *sigilMetrics {
	return &sigilMetrics{
		firstSeen: map[string]time.Time{},
		now:       time.Now,
		rpcDuration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "sigil_enclave_rpc_duration_seconds",
			Help:    "Duration of enclave requests on the wire (request written to reply decoded), by vault and protocol method.",
			Buckets: prometheus.ExponentialBuckets(0.00005, 2, 16), // 50 µs to 1.6 s
		}, []string{"vault", "method"}),
		rpcErrors: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "sigil_enclave_rpc_errors_total",
			Help: "Failed enclave requests by vault, method and cause: enclave_error (an error reply), connection, timeout, malformed, bad_signature (a signature that does not verify), unsolicited (bytes no request asked for were waiting; the connection was replaced before sending).",
		}, []string{"vault", "method", "cause"}),
		badSigs: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "sigil_enclave_bad_signatures_total",
			Help: "Signatures (and proofs of possession) from the vault's enclave that did not verify under the key's public key for the message asked for: refused (503), never recorded as a watermark; the connection was dropped.",
		}, []string{"vault"}),
		enclaveSign: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "sigil_enclave_sign_duration_seconds",
			Help:    "Time the vault took to sign a request (the enclave round trip and the signature's verification), by vault and key, with finer buckets than vault_sign_request_duration_milliseconds.",
			Buckets: prometheus.ExponentialBuckets(0.00005, 2, 16), // 50 µs to 1.6 s
		}, []string{"vault", "address"}),
		signLatency: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "sigil_sign_request_duration_seconds",
			Help:    "Time to answer a sign request (POST /keys/{address}), by key and HTTP status, with finer buckets than sign_handler_request_duration_milliseconds.",
			Buckets: prometheus.ExponentialBuckets(0.0001, 2, 16), // 100 µs to 3.3 s
		}, []string{"address", "status"}),
	}
}

func (s *sigilMetrics) collectors() []prometheus.Collector {
	return []prometheus.Collector{s, s.rpcDuration, s.rpcErrors, s.badSigs, s.enclaveSign, s.signLatency}
}

// Describe implements prometheus.Collector for the pool and consensus
// gauges.
func (s *sigilMetrics) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{descConnections, descRedials, descKeysLoaded, descKeysUnopened, descLastConsensus} {
		ch <- d
	}
}

// Collect implements prometheus.Collector: the pools' health and the
// consensus keys' last signatures, read at scrape time.
func (s *sigilMetrics) Collect(ch chan<- prometheus.Metric) {
	s.mu.Lock()
	pools, consKeys := s.pools, s.consKeys
	s.mu.Unlock()
	for _, p := range pools {
		st := p.stats()
		ch <- prometheus.MustNewConstMetric(descConnections, prometheus.GaugeValue, float64(st.Up), p.vault, "up")
		ch <- prometheus.MustNewConstMetric(descConnections, prometheus.GaugeValue, float64(max(st.Connections-st.Up, 0)), p.vault, "down")
		ch <- prometheus.MustNewConstMetric(descRedials, prometheus.CounterValue, float64(st.Redials), p.vault)
		ch <- prometheus.MustNewConstMetric(descKeysLoaded, prometheus.GaugeValue, float64(st.KeysLoaded), p.vault)
		ch <- prometheus.MustNewConstMetric(descKeysUnopened, prometheus.GaugeValue, float64(st.KeysUnopened), p.vault)
	}
	if consKeys == nil {
		return
	}
	now := s.now()
	for _, addr := range consKeys() {
		var t time.Time
		if v, ok := s.lastConsensus.Load(addr); ok {
			t = time.Unix(0, v.(*atomic.Int64).Load())
		} else {
			s.mu.Lock()
			first, seen := s.firstSeen[addr]
			if !seen {
				first = now
				s.firstSeen[addr] = now
			}
			s.mu.Unlock()
			t = first
		}
		ch <- prometheus.MustNewConstMetric(descLastConsensus, prometheus.GaugeValue, float64(t.UnixNano())/1e9, addr)
	}
}

// consensusSigned records a fresh consensus signature by a held key.
func (s *sigilMetrics) consensusSigned(addr string) {
	now := s.now().UnixNano()
	if v, ok := s.lastConsensus.Load(addr); ok {
		v.(*atomic.Int64).Store(now)
		return
	}
	v := new(atomic.Int64)
	v.Store(now)
	if old, loaded := s.lastConsensus.LoadOrStore(addr, v); loaded {
		old.(*atomic.Int64).Store(now)
	}
}

// AddEnclavePool exports the health of vault's enclave connection pool
// (sigil_enclave_connections, _redials_total, _keys_loaded,
// _keys_unopened), read from stats at every scrape, and returns the
// observer to install on the pool for sigil_enclave_rpc_duration_seconds
// and sigil_enclave_rpc_errors_total.
func (m *Metrics) AddEnclavePool(vault string, stats func() ports.EnclavePoolStats) ports.EnclaveRPCObserver {
	s := m.sigil
	s.mu.Lock()
	s.pools = append(s.pools, enclavePool{vault: vault, stats: stats})
	s.mu.Unlock()
	o := &rpcObserver{vault: vault, s: s, byMethod: make(map[string]prometheus.Observer, len(rpcMethods)),
		badSigs: s.badSigs.WithLabelValues(vault)} // exported from the start, at 0
	for _, meth := range rpcMethods {
		o.byMethod[meth] = s.rpcDuration.WithLabelValues(vault, meth)
	}
	return o
}

// SetConsensusKeys installs the function listing the held keys whose
// policy allows consensus requests: each gets a
// sigil_consensus_last_signature_timestamp_seconds series.
func (m *Metrics) SetConsensusKeys(keys func() []string) {
	m.sigil.mu.Lock()
	m.sigil.consKeys = keys
	m.sigil.mu.Unlock()
}

// rpcObserver is one vault's ports.EnclaveRPCObserver.
type rpcObserver struct {
	vault    string
	s        *sigilMetrics
	byMethod map[string]prometheus.Observer // read-only after creation
	badSigs  prometheus.Counter
}

// ObserveEnclaveRPC implements ports.EnclaveRPCObserver; a success on a
// known method allocates nothing. A connection found holding bytes nobody
// asked for sent no request: it is counted as an error, with no duration.
func (o *rpcObserver) ObserveEnclaveRPC(e ports.EnclaveRPCEvent) {
	if e.Failure == ports.EnclaveFailureUnsolicited {
		o.s.rpcErrors.WithLabelValues(o.vault, e.Method, e.Failure).Inc()
		return
	}
	h, ok := o.byMethod[e.Method]
	if !ok {
		h = o.s.rpcDuration.WithLabelValues(o.vault, e.Method)
	}
	h.Observe(e.Duration.Seconds())
	if e.Failure != "" {
		o.s.rpcErrors.WithLabelValues(o.vault, e.Method, e.Failure).Inc()
		if e.Failure == ports.EnclaveFailureBadSignature {
			o.badSigs.Inc()
		}
	}
}

var _ ports.EnclaveRPCObserver = (*rpcObserver)(nil)
