package logging

import (
	"bytes"
	"context"
	"errors"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// decodeLine decodes one JSON log line, refusing a key given twice (which
// encoding/json would silently overwrite).
func decodeLine(t testing.TB, line []byte) map[string]any {
	t.Helper()
	m, err := DecodeLine(line)
	require.NoError(t, err, "%s", line)
	return m
}

func TestDuplicateKeysOnce(t *testing.T) {
	var b bytes.Buffer
	log := slog.New(New(&b, true, slog.LevelDebug)).With("vault", "dev", "component", "x").With("vault", "dev")
	log.Info("signed", "pkh", "tz1", "vault", "dev", "pkh", "tz1b", "kind", "block")
	m := decodeLine(t, b.Bytes())
	assert.Equal(t, "dev", m["vault"])
	assert.Equal(t, "tz1b", m["pkh"], "the last value of a record wins")
	assert.Equal(t, "x", m["component"])
	assert.Equal(t, "block", m["kind"])

	b.Reset()
	log.Info("other vault", "vault", "cs")
	m = decodeLine(t, b.Bytes())
	assert.Equal(t, "cs", m["vault"], "a record's value wins over its logger's")
	assert.Equal(t, "x", m["component"], "the logger's other attributes stay")

	b.Reset()
	slog.New(New(&b, false, slog.LevelDebug)).With("vault", "dev").Info("signed", "vault", "dev", "n", 1)
	assert.Equal(t, 1, strings.Count(b.String(), "vault=dev"), b.String())
}

func TestReservedKeysRenamed(t *testing.T) {
	var b bytes.Buffer
	slog.New(New(&b, true, slog.LevelDebug)).With("msg", "x").Info("signed", "level", 42, "time", "t", "source", "s")
	m := decodeLine(t, b.Bytes())
	assert.Equal(t, "INFO", m["level"])
	assert.Equal(t, "signed", m["msg"])
	assert.Equal(t, float64(42), m["attr_level"])
	assert.Equal(t, "t", m["attr_time"])
	assert.Equal(t, "s", m["attr_source"])
	assert.Equal(t, "x", m["attr_msg"])
}

// TestDurationsAsText: a time.Duration is "1.5s" in JSON as in text (slog
// writes integer nanoseconds in JSON), from a record, a logger, a group or
// a LogValuer.
func TestDurationsAsText(t *testing.T) {
	for _, js := range []bool{true, false} {
		var b bytes.Buffer
		log := slog.New(New(&b, js, slog.LevelDebug)).With("retry_in", 2*time.Second)
		log.Info("x", "window", 10*time.Second, slog.Group("g", "d", 1500*time.Millisecond), "v", durValuer{})
		out := b.String()
		if js {
			m := decodeLine(t, b.Bytes())
			assert.Equal(t, "2s", m["retry_in"])
			assert.Equal(t, "10s", m["window"])
			assert.Equal(t, map[string]any{"d": "1.5s"}, m["g"])
			assert.Equal(t, "3ms", m["v"])
		} else {
			for _, want := range []string{"retry_in=2s", "window=10s", "g.d=1.5s", "v=3ms"} {
				assert.Contains(t, out, want)
			}
		}
	}
}

type durValuer struct{}

func (durValuer) LogValue() slog.Value { return slog.DurationValue(3 * time.Millisecond) }

// TestRequestAttributes: a line logged with a request's context carries
// its id, client and the milliseconds since it arrived, as a float, in
// text and JSON; a line without one does not; a record's own value wins.
func TestRequestAttributes(t *testing.T) {
	start := time.Now().Add(-1500 * time.Microsecond)
	ctx := WithRequest(context.Background(), "0123abcd", "192.0.2.7", start)
	assert.Equal(t, "0123abcd", RequestID(ctx))
	assert.Equal(t, "", RequestID(context.Background()))

	var b bytes.Buffer
	log := slog.New(New(&b, true, slog.LevelDebug)).With("component", "http")
	log.InfoContext(ctx, "signed", "pkh", "tz1")
	m := decodeLine(t, b.Bytes())
	assert.Equal(t, "0123abcd", m["request_id"])
	assert.Equal(t, "192.0.2.7", m["client"])
	ms, ok := m["duration_ms"].(float64)
	require.True(t, ok, "duration_ms is a number: %#v", m["duration_ms"])
	assert.GreaterOrEqual(t, ms, 1.5)
	assert.Less(t, ms, 60_000.0)

	b.Reset()
	log.InfoContext(ctx, "failed", "client", "198.51.100.1")
	m = decodeLine(t, b.Bytes())
	assert.Equal(t, "198.51.100.1", m["client"], "the record's own value")

	b.Reset()
	log.Info("no request")
	m = decodeLine(t, b.Bytes())
	assert.NotContains(t, m, "request_id")
	assert.NotContains(t, m, "duration_ms")

	b.Reset()
	slog.New(New(&b, false, slog.LevelDebug)).InfoContext(ctx, "signed", "pkh", "tz1")
	assert.Regexp(t, `^time=\S+ level=INFO msg=signed pkh=tz1 request_id=0123abcd client=192\.0\.2\.7 duration_ms=[0-9]+\.[0-9]+\n$`, b.String())
}

func TestMillis(t *testing.T) {
	assert.Equal(t, 1.5, Millis(1500*time.Microsecond))
	assert.Equal(t, 0.001, Millis(1400*time.Nanosecond))
	assert.Equal(t, 0.0, Millis(0))
	assert.Equal(t, 12034.568, Millis(12034567890*time.Nanosecond))
}

func TestGroupsKeepTheirKeys(t *testing.T) {
	var b bytes.Buffer
	slog.New(New(&b, true, slog.LevelDebug)).With("a", 1).WithGroup("g").With("a", 2).Info("x", "a", 3, "a", 4)
	m := decodeLine(t, b.Bytes())
	assert.Equal(t, float64(1), m["a"])
	assert.Equal(t, map[string]any{"a": float64(4)}, m["g"])
}

func TestLevelAndErrors(t *testing.T) {
	var b bytes.Buffer
	log := slog.New(New(&b, true, slog.LevelWarn))
	log.Info("hidden")
	assert.Empty(t, b.String())
	log.Warn("shown", "error", errors.New("boom"))
	m := decodeLine(t, b.Bytes())
	assert.Equal(t, "boom", m["error"])
}

func TestDecodeLineRefusesDuplicates(t *testing.T) {
	_, err := DecodeLine([]byte(`{"level":"INFO","msg":"x","level":3}`))
	require.ErrorContains(t, err, `"level" twice`)
	_, err = DecodeLine([]byte(`{"a":{"b":1,"b":2}}`))
	require.ErrorContains(t, err, `"b" twice`)
	_, err = DecodeLine([]byte(`{"a":1} {"b":2}`))
	require.Error(t, err)
	m, err := DecodeLine([]byte(`{"a":[1,{"b":"c"}],"d":null,"e":true}`))
	require.NoError(t, err)
	assert.Equal(t, []any{float64(1), map[string]any{"b": "c"}}, m["a"])
}

// FuzzHandlerLines: whatever the attributes (keys from a small set so that
// they collide, values of every kind, some on the logger and some on the
// record, with and without a request), every JSON line the handler writes
// is one object with each key once, and the logger's and request's keys
// present.
func FuzzHandlerLines(f *testing.F) {
	f.Add([]byte{0, 1, 2, 3, 4, 5, 6, 7}, []byte{1, 1, 1, 1}, true)
	f.Add([]byte("level msg time"), []byte("vault"), false)
	f.Fuzz(func(t *testing.T, record, logger []byte, withRequest bool) {
		keys := []string{"vault", "pkh", "level", "msg", "time", "source", "client", "request_id", "duration_ms", "kind", "a_b", ""}
		attrs := func(b []byte) []any {
			var out []any
			for i, c := range b {
				k := keys[int(c)%len(keys)]
				switch i % 6 {
				case 0:
					out = append(out, k, string(b))
				case 1:
					out = append(out, k, int(c))
				case 2:
					out = append(out, k, time.Duration(c)*time.Millisecond)
				case 3:
					out = append(out, k, c%2 == 0)
				case 4:
					out = append(out, slog.Group(k, "x", 1, "x", 2))
				case 5:
					out = append(out, k, float64(c)/3)
				}
			}
			return out
		}
		var b bytes.Buffer
		log := slog.New(New(&b, true, slog.LevelDebug)).With(attrs(logger)...)
		ctx := context.Background()
		if withRequest {
			ctx = WithRequest(ctx, "id", "192.0.2.1", time.Now())
		}
		log.InfoContext(ctx, "m", attrs(record)...)
		m, err := DecodeLine(bytes.TrimSpace(b.Bytes()))
		if err != nil {
			t.Fatalf("%v: %s", err, b.Bytes())
		}
		if m["msg"] != "m" || m["level"] != "INFO" {
			t.Fatalf("built-in keys overwritten: %s", b.Bytes())
		}
		if withRequest && m["request_id"] == nil {
			t.Fatalf("no request id: %s", b.Bytes())
		}
		if strings.Count(b.String(), "\n") != 1 {
			t.Fatalf("not one line: %q", b.String())
		}
	})
}
