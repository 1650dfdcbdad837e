// Package file is the default watermark store (driver "file"). Like
// Signatory, it keeps one JSON file per chain under
// <base_dir>/watermark_v2/<chain id>.json, keyed by key hash then request
// kind, each entry holding level, round and hash (the Blake2b-256 digest of
// the signed message, base58 "vh…", as Signatory writes it) plus the
// signature given for it. Every change is written to a temporary file that
// is fsynced, renamed over the old one and followed by an fsync of the
// directory, so a recorded mark survives a crash or kill -9. All marks are
// loaded into memory when the store opens, so Check needs no I/O; each chain
// has its own lock, held only while deciding and writing that chain's file.
// Marks Signatory recorded are read conservatively: its older directories
// (watermark_v1, watermark) are migrated when watermark_v2 is empty, older
// kind names count as the current ones, and a block mark Signatory recorded
// (at its payload round, where Sigil reads the fitness round) covers its
// whole level.
package file

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/sigil-signer/sigil/adapters/internal/atomicfile"
	"github.com/sigil-signer/sigil/adapters/internal/strictjson"
	wm "github.com/sigil-signer/sigil/adapters/watermark"
	"github.com/sigil-signer/sigil/domain"
	"github.com/sigil-signer/sigil/domain/tezos"
	"github.com/sigil-signer/sigil/domain/watermark"
	"github.com/sigil-signer/sigil/ports"
)

// DirName is the directory under the base directory that holds the files.
const DirName = "watermark_v2"

// Config configures the file driver.
type Config struct {
	// BaseDir is Sigil's base directory; files go to BaseDir/watermark_v2.
	BaseDir string `yaml:"base_dir"`
	// Logger receives the migration of Signatory's older directories; nil
	// discards.
	Logger *slog.Logger `yaml:"-"`
	// Recorder reports the store's I/O (the load of every chain file at
	// open, as Signatory's one "read"; each write); its zero value reports
	// nothing.
	Recorder wm.IORecorder `yaml:"-"`
}

// Store is a file-backed ports.WatermarkStore.
type Store struct {
	rec    wm.IORecorder
	dir    string
	lock   *os.File   // exclusive lock on dir/.lock while open
	mu     sync.Mutex // guards chains (the map only)
	chains map[string]*chain
}

// chain is one chain's file and its marks.
type chain struct {
	path  string
	mu    sync.Mutex                 // serializes decide+write for this chain
	marks atomic.Pointer[chainMarks] // immutable snapshot of what is on disk

	qmu   sync.Mutex // guards queue
	queue []*pending // commits waiting for the next write
}

// pending is one Commit waiting to be decided and written. Commits that
// arrive while a write is in flight are decided and written together by the
// next writer (group commit): one fsync serves them all, so keys sharing a
// chain file wait at most for one write, not for each other's.
type pending struct {
	k    watermark.Key
	m    watermark.Mark
	res  watermark.Mark
	err  error
	done chan struct{}
}

// chainMarks maps key hash → request kind → mark. A published snapshot is
// never modified; writers copy it.
type chainMarks map[string]map[string]watermark.Mark

var _ ports.WatermarkStore = (*Store)(nil)

// Open opens (creating if needed) the store under cfg.BaseDir and loads
// every chain's file. A file that cannot be read or parsed is an error
// naming it; nothing is ever silently reset. When watermark_v2 holds no
// chain file yet, Signatory's older directories (watermark_v1, else
// watermark) are migrated into it first, as Signatory migrates them.
func Open(cfg Config) (*Store, error) {
	if cfg.BaseDir == "" {
		return nil, domain.Errorf(domain.KindInvalid, "file watermark: base_dir is not set")
	}
	dir := filepath.Join(cfg.BaseDir, DirName)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("file watermark: %w", err)
	}
	lock, err := lockDir(dir)
	if err != nil {
		return nil, err
	}
	log := cfg.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	if err := migrate(cfg.BaseDir, dir, log, cfg.Recorder); err != nil {
		lock.Close()
		return nil, err
	}
	start := time.Now()
	s, err := open(dir)
	cfg.Recorder.Observe("read", start, err, "io")
	if err != nil {
		lock.Close()
		return nil, err
	}
	s.lock, s.rec = lock, cfg.Recorder
	return s, nil
}

func open(dir string) (*Store, error) {
	ents, err := os.ReadDir(dir)
	if err != nil {
		return nil, fmt.Errorf("file watermark: %w", err)
	}
	s := &Store{dir: dir, chains: make(map[string]*chain)}
	for _, ent := range ents {
		name := ent.Name()
		if strings.HasPrefix(name, ".") && strings.Contains(name, ".tmp-") || strings.HasPrefix(name, ".health-") {
			// A temporary file left by a crash before its rename: the
			// rename never happened, so the previous file is the truth.
			if err := os.Remove(filepath.Join(dir, name)); err != nil {
				return nil, fmt.Errorf("file watermark: removing stale %s: %w", filepath.Join(dir, name), err)
			}
			continue
		}
		if !strings.HasSuffix(name, ".json") || ent.IsDir() {
			continue
		}
		path := filepath.Join(dir, name)
		id := strings.TrimSuffix(name, ".json")
		if !watermark.ValidChainID(id) {
			return nil, fmt.Errorf("file watermark: %s: file name is not a chain id", path)
		}
		marks, err := load(path)
		if err != nil {
			return nil, err
		}
		c := &chain{path: path}
		c.marks.Store(&marks)
		s.chains[id] = c
	}
	return s, nil
}

// Close releases the directory lock. The store must not be used afterwards.
func (s *Store) Close() error {
	if s.lock == nil {
		return nil
	}
	err := s.lock.Close()
	s.lock = nil
	return err
}

// probeSize is what the health probe writes: more than one block of the
// file system, as much as a busy chain file, so that a full file system
// (which still lets an empty file be created) shows.
const probeSize = 16 << 10

// Healthy implements ports.HealthChecker: it writes probeSize bytes to a
// new file in the directory, fsyncs it and removes it, so it fails when a
// mark could not be written: a full or read-only file system, a removed
// directory, lost permissions. (Creating an empty file, as it did, needs no
// data block and succeeded on a full file system.)
func (s *Store) Healthy(context.Context) error {
	fail := func(err error) error {
		return domain.Errorf(domain.KindUnavailable, "file watermark: the watermark directory cannot record marks: %w", err)
	}
	f, err := os.CreateTemp(s.dir, ".health-*")
	if err != nil {
		return fail(err)
	}
	name := f.Name()
	_, werr := f.Write(probeData[:])
	if werr == nil {
		werr = f.Sync()
	}
	err = errors.Join(werr, f.Close(), os.Remove(name))
	if err != nil {
		_ = os.Remove(name)
		return fail(err)
	}
	return nil
}

// probeData is written by Healthy (not zeros: a file system that
// compresses or deduplicates must still allocate it).
var probeData = func() (b [probeSize]byte) {
	for i := range b {
		b[i] = byte(i*131 + i>>8)
	}
	return b
}()

// Dir returns the directory that holds the files.
func (s *Store) Dir() string { return s.dir }

// chain returns the chain for id, creating it (without a file) if needed.
func (s *Store) chain(id string, create bool) *chain {
	s.mu.Lock()
	defer s.mu.Unlock()
	c := s.chains[id]
	if c == nil && create {
		c = &chain{path: filepath.Join(s.dir, id+".json")}
		c.marks.Store(&chainMarks{})
		s.chains[id] = c
	}
	return c
}

func (c *chain) get(pkh, kind string) (watermark.Mark, bool) {
	m, ok := (*c.marks.Load())[pkh][kind]
	return m, ok
}

// Check returns the recorded mark for k from memory. The answer is
// authoritative for this directory as long as one process uses it.
func (s *Store) Check(_ context.Context, k watermark.Key) (watermark.Mark, bool, error) {
	if err := k.Validate(); err != nil {
		return watermark.Mark{}, false, err
	}
	c := s.chain(k.ChainID, false)
	if c == nil {
		return watermark.Mark{}, false, nil
	}
	m, ok := c.get(k.PKH, k.Kind)
	return m, ok, nil
}

// Commit records m for k as ports.WatermarkStore specifies; the chain's
// file is on disk (fsynced) before it returns.
func (s *Store) Commit(_ context.Context, k watermark.Key, m watermark.Mark) (watermark.Mark, error) {
	if err := watermark.ValidateCommit(k, m); err != nil {
		return watermark.Mark{}, err
	}
	c := s.chain(k.ChainID, true)
	p := &pending{k: k, m: m, done: make(chan struct{})}
	c.qmu.Lock()
	c.queue = append(c.queue, p)
	c.qmu.Unlock()

	c.mu.Lock()
	defer c.mu.Unlock()
	select {
	case <-p.done: // a previous writer took it
		return p.res, p.err
	default:
	}
	c.qmu.Lock()
	batch := c.queue
	c.queue = nil
	c.qmu.Unlock()
	s.commitBatch(c, batch)
	return p.res, p.err
}

// commitBatch decides every pending commit in order against the marks as
// they evolve within the batch, writes the accepted ones in one write and
// completes them all. The caller holds c.mu.
func (s *Store) commitBatch(c *chain, batch []*pending) {
	set := map[watermark.Key]watermark.Mark{}
	var accepted []*pending
	for _, p := range batch {
		var recorded *watermark.Mark
		if r, ok := set[p.k]; ok {
			recorded = &r
		} else if r, ok := c.get(p.k.PKH, p.k.Kind); ok {
			recorded = &r
		}
		switch d, err := watermark.Decide(p.k, watermark.Enforced(p.k.Kind, recorded), p.m); d {
		case watermark.Accept:
			set[p.k] = p.m
			p.res = p.m
			accepted = append(accepted, p)
		case watermark.Replay:
			p.res = *recorded
		case watermark.Resign:
			// The very message of a mark recorded without its signature
			// (Signatory's): signed again, nothing to record.
			p.res = p.m
		default:
			p.err = err
		}
	}
	if len(set) > 0 {
		if err := s.write(c, c.with(set)); err != nil {
			for _, p := range accepted {
				p.res, p.err = watermark.Mark{}, err
			}
		}
	}
	for _, p := range batch {
		close(p.done)
	}
}

// with returns a copy of c's snapshot with the given marks set.
func (c *chain) with(set map[watermark.Key]watermark.Mark) chainMarks {
	cur := *c.marks.Load()
	next := make(chainMarks, len(cur)+1)
	for pkh, kinds := range cur {
		next[pkh] = kinds
	}
	for k, m := range set {
		kinds := make(map[string]watermark.Mark, len(next[k.PKH])+1)
		for kind, old := range next[k.PKH] {
			kinds[kind] = old
		}
		kinds[k.Kind] = m
		next[k.PKH] = kinds
	}
	return next
}

// write makes next durable in c's file, then publishes it. The caller holds
// c.mu.
func (s *Store) write(c *chain, next chainMarks) error {
	data, err := encode(next)
	if err != nil {
		return fmt.Errorf("file watermark: encoding %s: %w", c.path, err)
	}
	start := time.Now()
	err = atomicfile.Write(c.path, data, 0o600, nil)
	s.rec.Observe("write", start, err, "io")
	if err != nil {
		return domain.Errorf(domain.KindUnavailable, "file watermark: %w", err)
	}
	c.marks.Store(&next)
	return nil
}

// Export returns every recorded mark, sorted by chain, key hash and kind.
func (s *Store) Export(context.Context) ([]watermark.Record, error) {
	s.mu.Lock()
	ids := make([]string, 0, len(s.chains))
	chains := make([]*chain, 0, len(s.chains))
	for id := range s.chains {
		ids = append(ids, id)
	}
	sort.Strings(ids)
	for _, id := range ids {
		chains = append(chains, s.chains[id])
	}
	s.mu.Unlock()
	var out []watermark.Record
	for i, c := range chains {
		marks := *c.marks.Load()
		pkhs := make([]string, 0, len(marks))
		for pkh := range marks {
			pkhs = append(pkhs, pkh)
		}
		sort.Strings(pkhs)
		for _, pkh := range pkhs {
			for _, kind := range watermark.Kinds {
				if m, ok := marks[pkh][kind]; ok {
					out = append(out, watermark.Record{Key: watermark.Key{ChainID: ids[i], PKH: pkh, Kind: kind}, Mark: m})
				}
			}
		}
	}
	return out, nil
}

// Import raises marks to recs, writing each affected chain's file once.
// All records are validated before anything is written.
func (s *Store) Import(_ context.Context, recs []watermark.Record) error {
	byChain := make(map[string][]watermark.Record)
	for _, r := range recs {
		if err := r.Validate(); err != nil {
			return err
		}
		byChain[r.ChainID] = append(byChain[r.ChainID], r)
	}
	for id, rs := range byChain {
		if err := s.importChain(id, rs); err != nil {
			return err
		}
	}
	return nil
}

func (s *Store) importChain(id string, rs []watermark.Record) error {
	c := s.chain(id, true)
	c.mu.Lock()
	defer c.mu.Unlock()
	set := make(map[watermark.Key]watermark.Mark)
	for _, r := range rs {
		var recorded *watermark.Mark
		if m, ok := set[r.Key]; ok {
			recorded = &m
		} else if m, ok := c.get(r.PKH, r.Kind); ok {
			recorded = &m
		}
		if m, changed := watermark.Raise(recorded, r.Mark); changed {
			set[r.Key] = m
		}
	}
	if len(set) == 0 {
		return nil
	}
	return s.write(c, c.with(set))
}

// fileMark is one entry of a chain's file. level, round and hash are
// Signatory's fields; signature is Sigil's.
type fileMark struct {
	Level     int32   `json:"level"`
	Round     int32   `json:"round"`
	Hash      *string `json:"hash"`
	Signature string  `json:"signature,omitempty"`
}

// load reads and validates one chain's file.
func load(path string) (chainMarks, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("file watermark: %w", err)
	}
	corrupt := func(format string, args ...any) error {
		return domain.Errorf(domain.KindInternal, "file watermark: %s is corrupt: %s", path, fmt.Sprintf(format, args...))
	}
	var raw map[string]map[string]*fileMark
	if err := strictjson.Check(data, raw); err != nil {
		return nil, corrupt("%v", err)
	}
	if err := json.Unmarshal(data, &raw); err != nil {
		return nil, corrupt("%v", err)
	}
	if raw == nil {
		return nil, corrupt("not a JSON object")
	}
	out := make(chainMarks, len(raw))
	for pkh, kinds := range raw {
		if !watermark.ValidPKH(pkh) {
			return nil, corrupt("invalid key hash %q", pkh)
		}
		ms := make(map[string]watermark.Mark, len(kinds))
		for kind, fm := range kinds {
			to, ok := kindAliases[kind]
			if !ok {
				return nil, corrupt("unknown request kind %q for %s", kind, pkh)
			}
			if fm == nil {
				return nil, corrupt("null watermark for %s %s", kind, pkh)
			}
			if fm.Signature != "" {
				if _, err := tezos.ParseSignature(fm.Signature); err != nil {
					return nil, corrupt("%s %s: signature: %v", kind, pkh, err)
				}
			}
			m := watermark.Mark{Level: fm.Level, Round: fm.Round, Signature: fm.Signature}
			if err := m.Validate(); err != nil {
				return nil, corrupt("%s %s: negative level or round", kind, pkh)
			}
			if fm.Hash != nil {
				d, err := decodePayloadHash(*fm.Hash)
				if err != nil {
					return nil, corrupt("%s %s: hash: %v", kind, pkh, err)
				}
				m.Digest = d
			}
			if fm.Signature == "" || to != kind {
				// Recorded by Signatory (Sigil records every mark with its
				// signature), or under an older name.
				m = fromSignatory(to, m)
			}
			if old, dup := ms[to]; !dup || m.Above(old) {
				ms[to] = m
			}
		}
		if len(ms) > 0 {
			out[pkh] = ms
		}
	}
	return out, nil
}

func encode(marks chainMarks) ([]byte, error) {
	raw := make(map[string]map[string]fileMark, len(marks))
	for pkh, kinds := range marks {
		fk := make(map[string]fileMark, len(kinds))
		for kind, m := range kinds {
			h := encodePayloadHash(m.Digest)
			fk[kind] = fileMark{Level: m.Level, Round: m.Round, Hash: &h, Signature: m.Signature}
		}
		raw[pkh] = fk
	}
	b, err := json.MarshalIndent(raw, "", "    ")
	if err != nil {
		return nil, err
	}
	return append(b, '\n'), nil
}

// Driver is the `file` backend's watermark.Opener: files under the base
// directory unless the config section sets base_dir.
func Driver(_ context.Context, decode func(any) error, env wm.Env) (ports.WatermarkStore, error) {
	cfg := Config{BaseDir: env.BaseDir, Logger: env.Logger, Recorder: env.Recorder("file", "")}
	if decode != nil {
		if err := decode(&cfg); err != nil {
			return nil, domain.Errorf(domain.KindInvalid, "file watermark: invalid config: %v", err)
		}
	}
	return Open(cfg)
}

// Check is the `file` backend's watermark.Checker: the section decodes as
// Driver reads it and a base directory is set; nothing is created.
func Check(decode func(any) error, env wm.Env) error {
	_, err := driverConfig(decode, env)
	return err
}

func driverConfig(decode func(any) error, env wm.Env) (Config, error) {
	cfg := Config{BaseDir: env.BaseDir}
	if decode != nil {
		if err := decode(&cfg); err != nil {
			return Config{}, domain.Errorf(domain.KindInvalid, "file watermark: invalid config: %v", err)
		}
	}
	if cfg.BaseDir == "" {
		return Config{}, domain.Errorf(domain.KindInvalid, "file watermark: base_dir is not set")
	}
	return cfg, nil
}

var (
	_ wm.Opener  = Driver
	_ wm.Checker = Check
)

// Location names where the marks are (the directory).
func (s *Store) Location() string { return s.dir }
