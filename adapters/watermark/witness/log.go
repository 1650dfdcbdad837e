// Package witness is the watermark witness: a small local record of the
// highest mark this daemon ever committed per chain, key and kind
// (ports.WatermarkWitness, the Log), and the decorator (Guard) that wraps
// whichever ports.WatermarkStore is configured with it. The record lives
// under the state directory in its own directory (<base_dir>/witness/, never
// inside the file backend's watermark_v2), so losing or replacing either
// leaves the other. At start the Guard compares the backend with the record
// (domain/watermark.Lags) and refuses consensus signing for every key whose
// backend is behind, until the operator restores the marks or accepts the
// reset; while running it records every mark the backend returns, durably,
// before the signature is released, and refuses a mark the backend returns
// behind the record.
//
// The record is an append-only log, marks.log: a header line, then one line
// per raised mark (the export format's JSON without the signature, a space,
// and the CRC-32C of the JSON in hex). Appends are batched like the file
// backend's group commit: commits that arrive while a write is in flight are
// written together by the next writer, with one fdatasync. The log is
// rewritten compacted (temporary file, fsync, rename, directory fsync) when
// it holds several times more lines than marks. A torn last line (a crash
// during an append, before the mark was acknowledged) is dropped; anything
// else that does not parse is corruption and stops the daemon, naming the
// file and line.
package witness

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"hash/crc32"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"

	"github.com/sigil-signer/sigil/adapters/internal/atomicfile"
	"github.com/sigil-signer/sigil/domain"
	"github.com/sigil-signer/sigil/domain/watermark"
	"github.com/sigil-signer/sigil/ports"
)

// DirName is the witness's directory under the base directory, and
// FileName its record.
const (
	DirName  = "witness"
	FileName = "marks.log"
	header   = "sigil-watermark-witness 1\n"
)

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// Log is the file-backed ports.WatermarkWitness.
type Log struct {
	path     string
	fresh    bool
	readOnly bool
	log      *slog.Logger

	mu    sync.RWMutex // guards marks and lines
	marks map[watermark.Key]watermark.Mark
	lines int // mark lines in the file

	wmu  sync.Mutex // serializes writers (and f)
	f    *os.File   // append handle; nil when read-only
	lock *os.File

	qmu   sync.Mutex
	queue []*pending
}

type pending struct {
	recs []watermark.Record
	err  error
	done chan struct{}
}

var _ ports.WatermarkWitness = (*Log)(nil)

// Options configure Open.
type Options struct {
	// ReadOnly opens without the lock and never writes (commands that only
	// read the record while a daemon may run).
	ReadOnly bool
	// Logger receives the record's warnings (a torn last line, a
	// compaction); nil discards.
	Logger *slog.Logger
}

// Path returns the record's file under baseDir.
func Path(baseDir string) string { return filepath.Join(baseDir, DirName, FileName) }

// Open opens (creating it unless read-only) the record under baseDir.
func Open(baseDir string, o Options) (*Log, error) {
	if strings.TrimSpace(baseDir) == "" {
		return nil, domain.Errorf(domain.KindInvalid, "watermark witness: no base directory")
	}
	l := &Log{path: Path(baseDir), readOnly: o.ReadOnly, log: o.Logger, marks: map[watermark.Key]watermark.Mark{}}
	if l.log == nil {
		l.log = slog.New(slog.DiscardHandler)
	}
	dir := filepath.Dir(l.path)
	if !o.ReadOnly {
		if _, err := os.Stat(dir); errors.Is(err, fs.ErrNotExist) {
			if err := os.MkdirAll(dir, 0o700); err != nil {
				return nil, fmt.Errorf("watermark witness: %w", err)
			}
			if err := atomicfile.SyncDir(filepath.Dir(dir)); err != nil {
				return nil, fmt.Errorf("watermark witness: %w", err)
			}
		}
		lock, err := lockDir(dir)
		if err != nil {
			return nil, err
		}
		l.lock = lock
	}
	data, err := os.ReadFile(l.path)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		l.fresh = true
		if o.ReadOnly {
			return l, nil
		}
		if err := l.rewrite(); err != nil {
			l.Close()
			return nil, err
		}
		return l, nil
	case err != nil:
		l.Close()
		return nil, fmt.Errorf("watermark witness: %w", err)
	}
	good, err := l.parse(data)
	if err != nil {
		l.Close()
		return nil, err
	}
	if o.ReadOnly {
		return l, nil
	}
	if good < len(data) || good < len(header) || l.lines > 2*len(l.marks)+64 {
		// A torn tail is cut, and a long log compacted, by rewriting it.
		if err := l.rewrite(); err != nil {
			l.Close()
			return nil, err
		}
	} else if err := l.openAppend(); err != nil {
		l.Close()
		return nil, err
	}
	return l, nil
}

// parse loads the record and returns the length of its valid prefix.
func (l *Log) parse(data []byte) (int, error) {
	corrupt := func(line int, format string, args ...any) error {
		return domain.Errorf(domain.KindInternal, "watermark witness %s is corrupt at line %d: %s; check that the watermark backend holds the marks, then move the file aside (a new witness is initialised from the backend)",
			l.path, line, fmt.Sprintf(format, args...))
	}
	if len(data) == 0 {
		l.log.Warn("the watermark witness is an empty file (a crash while it was created?): starting it again", "path", l.path)
		l.fresh = true
		return 0, nil
	}
	if !bytes.HasPrefix(data, []byte(header)) {
		if bytes.HasPrefix([]byte(header), data) {
			l.log.Warn("the watermark witness has a torn header (a crash while it was created?): starting it again", "path", l.path)
			l.fresh = true
			return 0, nil
		}
		return 0, corrupt(1, "not a watermark witness (want the header %q)", strings.TrimSpace(header))
	}
	pos := len(header)
	for n := 2; pos < len(data); n++ {
		end := bytes.IndexByte(data[pos:], '\n')
		last := end < 0 || pos+end+1 == len(data)
		var line []byte
		if end < 0 {
			line = data[pos:]
		} else {
			line = data[pos : pos+end]
		}
		rec, err := parseLine(line)
		if err != nil || end < 0 {
			if last {
				// A crash during an append: that mark's commit never
				// returned, so its signature was never released.
				l.log.Warn("the watermark witness ends with a torn line (a crash during a write); it is dropped", "path", l.path, "line", n)
				return pos, nil
			}
			return 0, corrupt(n, "%v", err)
		}
		l.raise(rec)
		l.lines++
		pos += end + 1
	}
	return pos, nil
}

func parseLine(line []byte) (watermark.Record, error) {
	i := bytes.LastIndexByte(line, ' ')
	if i < 0 {
		return watermark.Record{}, errors.New("no checksum")
	}
	js, sum := line[:i], string(line[i+1:])
	want, err := strconv.ParseUint(sum, 16, 32)
	if err != nil || len(sum) != 8 {
		return watermark.Record{}, errors.New("malformed checksum")
	}
	if crc32.Checksum(js, castagnoli) != uint32(want) {
		return watermark.Record{}, errors.New("checksum mismatch")
	}
	var r watermark.Record
	if err := json.Unmarshal(js, &r); err != nil {
		return watermark.Record{}, err
	}
	if r.Signature != "" {
		return watermark.Record{}, errors.New("a record with a signature")
	}
	return r, nil
}

func formatLine(r watermark.Record) ([]byte, error) {
	r.Signature = ""
	js, err := json.Marshal(r)
	if err != nil {
		return nil, err
	}
	return fmt.Appendf(js, " %08x\n", crc32.Checksum(js, castagnoli)), nil
}

// raise keeps r if it is above the recorded mark; the caller holds mu (or
// owns l exclusively).
func (l *Log) raise(r watermark.Record) bool {
	old, ok := l.marks[r.Key]
	if ok && !r.Above(old) {
		return false
	}
	l.marks[r.Key] = r.Mark
	return true
}

// openAppend opens the append handle.
func (l *Log) openAppend() error {
	f, err := os.OpenFile(l.path, os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		return fmt.Errorf("watermark witness: %w", err)
	}
	if l.f != nil {
		l.f.Close()
	}
	l.f = f
	return nil
}

// rewrite replaces the file with the header and one line per mark, then
// reopens the append handle. The caller holds wmu (or owns l).
func (l *Log) rewrite() error {
	l.mu.RLock()
	recs := l.sorted()
	l.mu.RUnlock()
	buf := []byte(header)
	for _, r := range recs {
		line, err := formatLine(r)
		if err != nil {
			return err
		}
		buf = append(buf, line...)
	}
	if err := atomicfile.Write(l.path, buf, 0o600, nil); err != nil {
		return domain.Errorf(domain.KindUnavailable, "watermark witness: writing %s: %w", l.path, err)
	}
	l.mu.Lock()
	l.lines = len(recs)
	l.mu.Unlock()
	return l.openAppend()
}

func (l *Log) sorted() []watermark.Record {
	out := make([]watermark.Record, 0, len(l.marks))
	for k, m := range l.marks {
		out = append(out, watermark.Record{Key: k, Mark: m})
	}
	sort.Slice(out, func(i, j int) bool {
		a, b := out[i].Key, out[j].Key
		if a.ChainID != b.ChainID {
			return a.ChainID < b.ChainID
		}
		if a.PKH != b.PKH {
			return a.PKH < b.PKH
		}
		return a.Kind < b.Kind
	})
	return out
}

// Records implements ports.WatermarkWitness.
func (l *Log) Records() []watermark.Record {
	l.mu.RLock()
	defer l.mu.RUnlock()
	return l.sorted()
}

// Mark implements ports.WatermarkWitness.
func (l *Log) Mark(k watermark.Key) (watermark.Mark, bool) {
	l.mu.RLock()
	defer l.mu.RUnlock()
	m, ok := l.marks[k]
	return m, ok
}

// Fresh implements ports.WatermarkWitness.
func (l *Log) Fresh() bool { return l.fresh }

// Location implements ports.WatermarkWitness.
func (l *Log) Location() string { return l.path }

// Witness implements ports.WatermarkWitness: the records above the
// witnessed marks are appended and synced before it returns. Calls that
// arrive while a write is in flight are written together by the next
// writer (group commit).
func (l *Log) Witness(ctx context.Context, recs ...watermark.Record) error {
	if l.readOnly {
		return domain.Errorf(domain.KindInternal, "watermark witness: opened read-only")
	}
	for _, r := range recs {
		if err := r.Key.Validate(); err != nil {
			return err
		}
	}
	p := &pending{recs: recs, done: make(chan struct{})}
	l.qmu.Lock()
	l.queue = append(l.queue, p)
	l.qmu.Unlock()

	l.wmu.Lock()
	defer l.wmu.Unlock()
	select {
	case <-p.done: // a previous writer took it
		return p.err
	default:
	}
	l.qmu.Lock()
	batch := l.queue
	l.queue = nil
	l.qmu.Unlock()
	err := l.writeBatch(batch)
	for _, q := range batch {
		q.err = err
		close(q.done)
	}
	return err
}

// writeBatch appends every record of batch that raises a mark, syncs, and
// publishes them. The caller holds wmu.
func (l *Log) writeBatch(batch []*pending) error {
	l.mu.RLock()
	next := map[watermark.Key]watermark.Mark{}
	for _, p := range batch {
		for _, r := range p.recs {
			cur, ok := next[r.Key]
			if !ok {
				cur, ok = l.marks[r.Key]
			}
			if !ok || r.Above(cur) {
				next[r.Key] = r.Mark
			}
		}
	}
	var buf []byte
	for k, m := range next {
		if old, ok := l.marks[k]; ok && !m.Above(old) {
			delete(next, k)
			continue
		}
		line, err := formatLine(watermark.Record{Key: k, Mark: m})
		if err != nil {
			l.mu.RUnlock()
			return err
		}
		buf = append(buf, line...)
	}
	l.mu.RUnlock()
	if len(next) == 0 {
		return nil
	}
	if l.f == nil {
		if err := l.openAppend(); err != nil {
			return err
		}
	}
	if _, err := l.f.Write(buf); err != nil {
		// A partial line may be on disk: the next open drops it as torn,
		// but appending after it would not; rewrite from memory.
		_ = l.rewrite()
		return domain.Errorf(domain.KindUnavailable, "watermark witness: writing %s: %w", l.path, err)
	}
	if err := datasync(l.f); err != nil {
		return domain.Errorf(domain.KindUnavailable, "watermark witness: syncing %s: %w", l.path, err)
	}
	l.mu.Lock()
	for k, m := range next {
		l.marks[k] = m
	}
	l.lines += len(next)
	compact := l.lines > 4*len(l.marks)+4096
	l.mu.Unlock()
	if compact {
		if err := l.rewrite(); err != nil {
			l.log.Warn("compacting the watermark witness failed (the log keeps growing until the next start)", "path", l.path, "error", err.Error())
		}
	}
	return nil
}

// Forget implements ports.WatermarkWitness: the marks of keys are dropped
// and the record rewritten.
func (l *Log) Forget(keys []watermark.Key) error {
	if l.readOnly {
		return domain.Errorf(domain.KindInternal, "watermark witness: opened read-only")
	}
	l.wmu.Lock()
	defer l.wmu.Unlock()
	l.mu.Lock()
	for _, k := range keys {
		delete(l.marks, k)
	}
	l.mu.Unlock()
	return l.rewrite()
}

// Healthy implements ports.HealthChecker: the record's directory accepts a
// synced write (a full or read-only file system would fail every commit).
func (l *Log) Healthy(context.Context) error {
	if l.readOnly {
		return nil
	}
	f, err := os.CreateTemp(filepath.Dir(l.path), ".health-*")
	if err == nil {
		_, err = f.Write(make([]byte, 16<<10))
		if err == nil {
			err = f.Sync()
		}
		err = errors.Join(err, f.Close(), os.Remove(f.Name()))
		if err != nil {
			_ = os.Remove(f.Name())
		}
	}
	if err != nil {
		return domain.Errorf(domain.KindUnavailable, "watermark witness: its directory cannot record marks: %w", err)
	}
	return nil
}

// Close releases the record.
func (l *Log) Close() error {
	l.wmu.Lock()
	defer l.wmu.Unlock()
	var errs []error
	if l.f != nil {
		errs = append(errs, l.f.Close())
		l.f = nil
	}
	if l.lock != nil {
		errs = append(errs, l.lock.Close())
		l.lock = nil
	}
	return errors.Join(errs...)
}

// ReadRecords reads the record under baseDir without locking or writing
// it (for `sigil watermarks export --witness`, which may run next to a
// daemon): none when there is no record.
func ReadRecords(baseDir string) ([]watermark.Record, string, error) {
	l, err := Open(baseDir, Options{ReadOnly: true})
	if err != nil {
		return nil, "", err
	}
	defer l.Close()
	return l.Records(), l.path, nil
}
