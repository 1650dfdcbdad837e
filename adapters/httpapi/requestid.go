package httpapi

import (
	"encoding/binary"
	"encoding/hex"
	"log/slog"
	"math/rand/v2"
	"net/http"
	"time"

	"github.com/sigil-signer/sigil/adapters/logging"
	"github.com/sigil-signer/sigil/domain"
)

// RequestIDHeader carries a request's id: answered on every response, and
// taken from the request when it is well formed (a proxy's or a client's
// id then names the request in both logs).
const RequestIDHeader = "X-Request-Id"

// MaxRequestID bounds an id taken from a request.
const MaxRequestID = 64

// requestIDFrom returns the request's own id when it has exactly one that
// is well formed: 1 to MaxRequestID characters, letters, digits and
// "-_.:" (a UUID, a hex trace id, nginx's $request_id). Anything else is
// ignored (a new id is made): the id is written in every log line of the
// request, so it must not carry what a log line cannot.
func requestIDFrom(r *http.Request) string {
	vals := r.Header.Values(RequestIDHeader)
	if len(vals) != 1 || len(vals[0]) == 0 || len(vals[0]) > MaxRequestID {
		return ""
	}
	for _, c := range []byte(vals[0]) {
		if !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c == '-' || c == '_' || c == '.' || c == ':') {
			return ""
		}
	}
	return vals[0]
}

// newRequestID is 128 random bits in hex. An id names a request in the
// logs, it guards nothing: math/rand/v2's generator (per thread, no system
// call) makes them unique enough, where crypto/rand cost a system call per
// request.
func newRequestID() string {
	var b [16]byte
	binary.LittleEndian.PutUint64(b[:8], rand.Uint64())
	binary.LittleEndian.PutUint64(b[8:], rand.Uint64())
	return hex.EncodeToString(b[:])
}

// withRequest gives every request an id (answered in X-Request-Id) and
// puts it, the client's address and the arrival time into the request's
// context, so that every line logged about the request (here and in the
// signing service) carries request_id, client and duration_ms. At debug
// level every request is logged when answered.
func (a *API) withRequest(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		start := time.Now()
		id := requestIDFrom(r)
		if id == "" {
			id = newRequestID()
		}
		w.Header().Set(RequestIDHeader, id)
		ctx := logging.WithRequest(r.Context(), id, clientIP(r), start)
		r = r.WithContext(ctx)
		if !a.log.Enabled(ctx, slog.LevelDebug) {
			next.ServeHTTP(w, r)
			return
		}
		sw := &statusWriter{ResponseWriter: w, status: http.StatusOK}
		next.ServeHTTP(sw, r)
		a.log.DebugContext(ctx, "request answered", "method", domain.Echo(r.Method), "path", domain.Echo(r.URL.Path), "status", sw.status)
	})
}

// statusWriter records the status a handler answers.
type statusWriter struct {
	http.ResponseWriter
	status int
	wrote  bool
}

func (s *statusWriter) WriteHeader(code int) {
	if !s.wrote {
		s.status, s.wrote = code, true
	}
	s.ResponseWriter.WriteHeader(code)
}

func (s *statusWriter) Write(p []byte) (int, error) {
	s.wrote = true
	return s.ResponseWriter.Write(p)
}

func (s *statusWriter) Unwrap() http.ResponseWriter { return s.ResponseWriter }
