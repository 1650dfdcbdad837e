// Package badlog holds logging calls that break the rules of
// TestLogFieldsOneTypeEach, one of each kind, for its self-test.
package badlog

import (
	"context"
	"errors"
	"log/slog"
	"time"
)

type kind string

func calls(log *slog.Logger, ops []string, k kind, key string) {
	log.Info("reserved", "level", 3)
	log.Info("slice", "ops", ops)
	log.Info("fine", "ops", "transaction")
	log.Info("twice", "n", 1, "n", 2)
	attrs := []any{"x", 1}
	log.Info("spread", attrs...)
	log.Info("named", "kind", k)
	log.Info("style", "Bad-Key", 1)
	log.Info("dynamic", key, 1)
	log.Info("duration as text", "duration", time.Second)
	log.Info("duration as a number", "duration", 5)
	log.Info("error", "error", errors.New("x"))
	log.LogAttrs(context.Background(), slog.LevelInfo, "attrs", slog.Int("count", 1), slog.String("count", "x"))
	log.Info("any", slog.Any("obj", struct{}{}))
	log.With("component", 1).Info("with")
	log.Info("component", "component", "http")
}
