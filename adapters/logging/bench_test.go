package logging

import (
	"context"
	"io"
	"log/slog"
	"testing"
	"time"
)

// BenchmarkSignedLine writes the daemon's per-signature line ("signed",
// its seven fields) with slog's own handler, with slog's handler and the
// request's three fields given directly (+request), and with this
// package's, which adds them from the context (docs/performance.md).
func BenchmarkSignedLine(b *testing.B) {
	attrs := []slog.Attr{slog.String("pkh", "tz1VSUr8wwNhLAzempoch5d6hLRiTh8Cjcjb"), slog.String("vault", "cs"), slog.String("kind", "attestation"),
		slog.String("chain_id", "NetXdQprcVkpaWU"), slog.Int64("block_level", 1234567), slog.Int64("round", 0)}
	ctx := WithRequest(context.Background(), "0123456789abcdef0123456789abcdef", "192.0.2.7", time.Now())
	withReq := append(attrs[:len(attrs):len(attrs)], slog.String(KeyRequestID, "0123456789abcdef0123456789abcdef"), slog.String(KeyClient, "192.0.2.7"), slog.Float64(KeyDurationMS, 1.234))
	for _, c := range []struct {
		name  string
		h     slog.Handler
		ctx   context.Context
		attrs []slog.Attr
	}{
		{"slog-json", slog.NewJSONHandler(io.Discard, nil), context.Background(), attrs},
		{"slog-json+request", slog.NewJSONHandler(io.Discard, nil), context.Background(), withReq},
		{"sigil-json", New(io.Discard, true, slog.LevelInfo), ctx, attrs},
		{"slog-text", slog.NewTextHandler(io.Discard, nil), context.Background(), attrs},
		{"slog-text+request", slog.NewTextHandler(io.Discard, nil), context.Background(), withReq},
		{"sigil-text", New(io.Discard, false, slog.LevelInfo), ctx, attrs},
	} {
		b.Run(c.name, func(b *testing.B) {
			log := slog.New(c.h).With("component", "signer")
			b.ReportAllocs()
			for b.Loop() {
				log.LogAttrs(c.ctx, slog.LevelInfo, "signed", c.attrs...)
			}
		})
	}
}
