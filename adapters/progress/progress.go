// Package progress is the ports.Progress adapter: on a terminal it draws a
// progress bar with the count, the rate and the time left, on a Console that
// the log output shares so that log lines appear above the bar and never
// inside it; elsewhere (a pipe, a file, a log collector) it writes plain log
// lines through slog every few seconds and when the task ends, so that long
// work (loading or generating hundreds of keys, moving watermarks) is never
// silent.
package progress

import (
	"context"
	"io"
	"log/slog"
	"os"
	"sync"
	"time"

	"golang.org/x/term"

	"github.com/sigil-signer/sigil/ports"
)

// DefaultInterval is how often a task logs its progress when the output is
// not a terminal.
const DefaultInterval = 5 * time.Second

// Reporter implements ports.Progress.
type Reporter struct {
	console  *Console // nil when not drawing bars
	log      *slog.Logger
	interval time.Duration
}

// Options configure New.
type Options struct {
	// Interval between log lines when the output is not a terminal
	// (default DefaultInterval).
	Interval time.Duration
	// Terminal forces (true) or disables (false) the bar; nil detects it:
	// w must be an *os.File on a terminal.
	Terminal *bool
}

// New returns a reporter drawing bars on w when w is a terminal (best given
// as the Console the log output also writes to: see ConsoleFor), else
// logging to log (nil: discarded).
func New(w io.Writer, log *slog.Logger, o Options) *Reporter {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	if o.Interval <= 0 {
		o.Interval = DefaultInterval
	}
	tty := IsTerminal(w)
	if o.Terminal != nil {
		tty = *o.Terminal
	}
	r := &Reporter{log: log, interval: o.Interval}
	if tty {
		if c, ok := w.(*Console); ok {
			r.console = c
		} else {
			r.console = NewConsole(w)
		}
	}
	return r
}

// IsTerminal reports whether w is a terminal (or a Console on one).
func IsTerminal(w io.Writer) bool {
	if _, ok := w.(*Console); ok {
		return true
	}
	f, ok := w.(*os.File)
	return ok && term.IsTerminal(int(f.Fd()))
}

// Terminal reports whether the reporter draws bars.
func (r *Reporter) Terminal() bool { return r.console != nil }

// Begin implements ports.Progress.
func (r *Reporter) Begin(what string, total int) ports.ProgressTask {
	if r.console != nil {
		t := &consoleTask{c: r.console, b: &bar{what: what, total: total, start: time.Now()}}
		r.console.begin(t.b)
		return t
	}
	t := &logTask{log: r.log, what: what, total: total, start: time.Now(), stop: make(chan struct{})}
	go t.tick(r.interval)
	return t
}

// logTask logs "progress" lines: what, done, total, rate per second and
// the estimated time left.
type logTask struct {
	log   *slog.Logger
	what  string
	total int
	start time.Time

	mu   sync.Mutex
	done int
	once sync.Once
	stop chan struct{}
}

func (t *logTask) Add(n int) {
	t.mu.Lock()
	t.done += n
	t.mu.Unlock()
}

func (t *logTask) tick(every time.Duration) {
	tk := time.NewTicker(every)
	defer tk.Stop()
	for {
		select {
		case <-tk.C:
			t.report("progress")
		case <-t.stop:
			return
		}
	}
}

func (t *logTask) report(msg string) {
	t.mu.Lock()
	done := t.done
	t.mu.Unlock()
	elapsed := time.Since(t.start)
	rate := float64(done) / elapsed.Seconds()
	attrs := []slog.Attr{slog.String("task", t.what), slog.Int("done", done), slog.Int("total", t.total),
		slog.Float64("rate_per_s", float64(int(rate*10))/10), slog.Duration("elapsed", elapsed.Round(time.Second))}
	if msg == "progress" && rate > 0 && done < t.total {
		attrs = append(attrs, slog.Duration("eta", time.Duration(float64(t.total-done)/rate*float64(time.Second)).Round(time.Second)))
	}
	t.log.LogAttrs(context.Background(), slog.LevelInfo, msg, attrs...)
}

func (t *logTask) Done() {
	t.once.Do(func() {
		close(t.stop)
		t.report("progress done")
	})
}

var _ ports.Progress = (*Reporter)(nil)
