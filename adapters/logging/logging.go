// Package logging is Sigil's log handler: log/slog lines, text or JSON,
// kept regular so that a line can be filtered on and parsed. On one line
// every key appears once (a record's attribute wins over the same key of
// its logger's, the last of a record over an earlier one); no attribute
// takes a key slog writes itself (time, level, msg, source: such a key is
// written attr_KEY); a time.Duration is written as a Go duration ("1.5s")
// in JSON as in text, never as integer nanoseconds; and a line logged with
// a request's context (WithRequest) carries the request's id, its client's
// address and the milliseconds since it arrived (request_id, client,
// duration_ms). The field names and the JSON type of each are fixed across
// the code base: fields_test.go checks every logging call.
package logging

import (
	"context"
	"io"
	"log/slog"
	"math"
	"slices"
	"time"
)

// Request attribute keys.
const (
	KeyRequestID  = "request_id"
	KeyClient     = "client"
	KeyDurationMS = "duration_ms"
)

// reserved are the keys slog writes itself.
var reserved = map[string]bool{slog.TimeKey: true, slog.LevelKey: true, slog.MessageKey: true, slog.SourceKey: true}

// New returns the handler of Sigil's log lines on w: JSON when json is
// set, else slog's text format, at level and above.
func New(w io.Writer, json bool, level slog.Leveler) slog.Handler {
	o := &slog.HandlerOptions{Level: level}
	if json {
		return Wrap(slog.NewJSONHandler(w, o))
	}
	return Wrap(slog.NewTextHandler(w, o))
}

// Wrap returns h with the rules of this package applied to every record
// before h formats it.
func Wrap(h slog.Handler) slog.Handler { return &handler{base: h, inner: h} }

// handler applies the rules in front of slog's handler. A record's
// attributes go where the logger's last attributes went (the innermost
// group, or the top level): only those can collide with them.
type handler struct {
	base  slog.Handler // the handler at the innermost group, without attrs
	inner slog.Handler // base with attrs
	attrs []slog.Attr  // the logger's attributes at the innermost group, sanitized and unique
}

func (h *handler) Enabled(ctx context.Context, l slog.Level) bool { return h.inner.Enabled(ctx, l) }

func (h *handler) WithAttrs(as []slog.Attr) slog.Handler {
	if len(as) == 0 {
		return h
	}
	merged := unique(append(slices.Clip(h.attrs), sanitizeAll(as)...))
	return &handler{base: h.base, inner: h.base.WithAttrs(merged), attrs: merged}
}

func (h *handler) WithGroup(name string) slog.Handler {
	if name == "" {
		return h
	}
	g := h.inner.WithGroup(name)
	return &handler{base: g, inner: g}
}

func (h *handler) Handle(ctx context.Context, r slog.Record) error {
	req, _ := ctx.Value(requestKey{}).(*request)
	if h.regular(r) {
		if req == nil {
			return h.inner.Handle(ctx, r) // nothing to change
		}
		// The common case of a request's line: its fields added.
		var buf [3]slog.Attr
		add := buf[:0]
		for _, a := range req.attrs(buf[:0]) {
			if !recordHas(r, a.Key) && !has(h.attrs, a.Key) {
				add = append(add, a)
			}
		}
		r = r.Clone()
		r.AddAttrs(add...)
		return h.inner.Handle(ctx, r)
	}
	as := make([]slog.Attr, 0, r.NumAttrs()+3)
	r.Attrs(func(a slog.Attr) bool {
		as = append(as, sanitize(a))
		return true
	})
	if req != nil {
		for _, a := range req.attrs(nil) {
			if !slices.ContainsFunc(as, func(b slog.Attr) bool { return b.Key == a.Key }) {
				as = append(as, a)
			}
		}
	}
	as = unique(as)
	inner := h.inner
	if slices.ContainsFunc(h.attrs, func(a slog.Attr) bool { return has(as, a.Key) }) {
		// The record sets a key its logger has: the logger's value goes.
		kept := slices.DeleteFunc(slices.Clone(h.attrs), func(a slog.Attr) bool { return has(as, a.Key) })
		inner = h.base.WithAttrs(kept)
	}
	out := slog.NewRecord(r.Time, r.Level, r.Message, r.PC)
	out.AddAttrs(as...)
	return inner.Handle(ctx, out)
}

// regular reports whether r can be written as it is: its keys are unique,
// none is reserved or one of the logger's, and no value needs rewriting.
func (h *handler) regular(r slog.Record) bool {
	ok := true
	var seen [16]string
	n := 0
	r.Attrs(func(a slog.Attr) bool {
		if reserved[a.Key] || a.Value.Kind() == slog.KindDuration || a.Value.Kind() == slog.KindLogValuer ||
			has(h.attrs, a.Key) || n == len(seen) || slices.Contains(seen[:n], a.Key) {
			ok = false
			return false
		}
		seen[n] = a.Key
		n++
		return true
	})
	return ok
}

// recordHas reports whether r has an attribute with key.
func recordHas(r slog.Record, key string) bool {
	found := false
	r.Attrs(func(a slog.Attr) bool {
		found = a.Key == key
		return !found
	})
	return found
}

func has(as []slog.Attr, key string) bool {
	return slices.ContainsFunc(as, func(a slog.Attr) bool { return a.Key == key })
}

// unique keeps, for each key, its last attribute, at the place of its
// first.
func unique(as []slog.Attr) []slog.Attr {
	out := make([]slog.Attr, 0, len(as))
	for _, a := range as {
		if i := slices.IndexFunc(out, func(b slog.Attr) bool { return b.Key == a.Key }); i >= 0 {
			out[i] = a
			continue
		}
		out = append(out, a)
	}
	return out
}

func sanitizeAll(as []slog.Attr) []slog.Attr {
	out := make([]slog.Attr, len(as))
	for i, a := range as {
		out[i] = sanitize(a)
	}
	return out
}

// sanitize renames a reserved key and writes a duration as a Go duration.
func sanitize(a slog.Attr) slog.Attr {
	if reserved[a.Key] {
		a.Key = "attr_" + a.Key
	}
	a.Value = a.Value.Resolve()
	switch a.Value.Kind() {
	case slog.KindDuration:
		a.Value = slog.StringValue(a.Value.Duration().String())
	case slog.KindGroup:
		g := a.Value.Group()
		a.Value = slog.GroupValue(unique(sanitizeAll(g))...)
	}
	return a
}

// request is what a request's context tells its log lines.
type request struct {
	id, client string
	start      time.Time
}

type requestKey struct{}

// attrs appends the request's attributes to as.
func (q *request) attrs(as []slog.Attr) []slog.Attr {
	if q.id != "" {
		as = append(as, slog.String(KeyRequestID, q.id))
	}
	if q.client != "" {
		as = append(as, slog.String(KeyClient, q.client))
	}
	if !q.start.IsZero() {
		as = append(as, slog.Float64(KeyDurationMS, Millis(time.Since(q.start))))
	}
	return as
}

// WithRequest returns ctx carrying a request's id, its client's address
// and its arrival: every line logged with it (or a context derived from
// it) carries request_id, client and duration_ms (the milliseconds since
// start when the line is logged; on a request's last line, its latency).
// Empty values are left out.
func WithRequest(ctx context.Context, id, client string, start time.Time) context.Context {
	return context.WithValue(ctx, requestKey{}, &request{id: id, client: client, start: start})
}

// RequestID returns the request id WithRequest put in ctx, or "".
func RequestID(ctx context.Context) string {
	if q, ok := ctx.Value(requestKey{}).(*request); ok {
		return q.id
	}
	return ""
}

// Millis is d in milliseconds, to the microsecond: the value of the
// *_ms fields.
func Millis(d time.Duration) float64 {
	return math.Round(float64(d)/float64(time.Microsecond)) / 1000
}
