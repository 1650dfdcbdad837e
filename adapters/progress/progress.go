// Package progress is the ports.Progress adapter: on a terminal it draws a
// progress bar (github.com/schollz/progressbar) with the count, the rate
// and the time left; elsewhere (a pipe, a file, a log collector) it writes
// plain log lines through slog every few seconds and when the task ends, so
// that long work (loading or generating hundreds of keys, moving
// watermarks) is never silent.
package progress

import (
	"io"
	"log/slog"
	"os"
	"sync"
	"time"

	"github.com/schollz/progressbar/v3"
	"golang.org/x/term"

	"github.com/sigil-signer/sigil/ports"
)

// DefaultInterval is how often a task logs its progress when the output is
// not a terminal.
const DefaultInterval = 5 * time.Second

// Reporter implements ports.Progress.
type Reporter struct {
	w        io.Writer
	log      *slog.Logger
	terminal bool
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

// New returns a reporter drawing bars on w when w is a terminal, else
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
	return &Reporter{w: w, log: log, terminal: tty, interval: o.Interval}
}

// IsTerminal reports whether w is a terminal.
func IsTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	return ok && term.IsTerminal(int(f.Fd()))
}

// Terminal reports whether the reporter draws bars.
func (r *Reporter) Terminal() bool { return r.terminal }

// Begin implements ports.Progress.
func (r *Reporter) Begin(what string, total int) ports.ProgressTask {
	if r.terminal {
		return &barTask{bar: progressbar.NewOptions(total,
			progressbar.OptionSetWriter(r.w),
			progressbar.OptionSetDescription(what),
			progressbar.OptionShowCount(),
			progressbar.OptionShowIts(),
			progressbar.OptionSetItsString("items"),
			progressbar.OptionSetPredictTime(true),
			progressbar.OptionShowElapsedTimeOnFinish(),
			progressbar.OptionThrottle(100*time.Millisecond),
			progressbar.OptionSetWidth(30),
			progressbar.OptionFullWidth(),
			progressbar.OptionOnCompletion(func() { _, _ = io.WriteString(r.w, "\n") }),
		)}
	}
	t := &logTask{log: r.log, what: what, total: total, start: time.Now(), stop: make(chan struct{})}
	go t.tick(r.interval)
	return t
}

type barTask struct {
	mu  sync.Mutex
	bar *progressbar.ProgressBar
}

func (t *barTask) Add(n int) {
	t.mu.Lock()
	_ = t.bar.Add(n)
	t.mu.Unlock()
}

func (t *barTask) Done() {
	t.mu.Lock()
	defer t.mu.Unlock()
	if !t.bar.IsFinished() {
		_ = t.bar.Exit()
	}
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
	attrs := []any{"task", t.what, "done", done, "total", t.total, "rate_per_s", float64(int(rate*10)) / 10, "elapsed", elapsed.Round(time.Second)}
	if msg == "progress" && rate > 0 && done < t.total {
		attrs = append(attrs, "eta", time.Duration(float64(t.total-done)/rate*float64(time.Second)).Round(time.Second))
	}
	t.log.Info(msg, attrs...)
}

func (t *logTask) Done() {
	t.once.Do(func() {
		close(t.stop)
		t.report("progress done")
	})
}

var _ ports.Progress = (*Reporter)(nil)
