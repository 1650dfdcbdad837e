package httpapi

import (
	"context"
	"net/http"
	"time"
)

// health is Signatory's /healthz body ({"ready": true|false}), plus the
// reason when not ready.
type health struct {
	Ready  bool   `json:"ready"`
	Reason string `json:"reason,omitempty"`
}

// Readiness reports whether the signer can serve requests now.
type Readiness func(ctx context.Context) error

// UtilityHandler serves /healthz (200 when ready, 503 with the reason when
// not) and /metrics (when metrics is non-nil).
func UtilityHandler(ready Readiness, metrics http.Handler) http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, r *http.Request) {
		ctx, cancel := context.WithTimeout(r.Context(), 2*time.Second)
		defer cancel()
		if ready != nil {
			if err := ready(ctx); err != nil {
				writeJSON(w, http.StatusServiceUnavailable, health{Ready: false, Reason: Redact(err.Error())})
				return
			}
		}
		writeJSON(w, http.StatusOK, health{Ready: true})
	})
	if metrics != nil {
		mux.Handle("GET /metrics", metrics)
	}
	return mux
}
