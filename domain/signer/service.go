package signer

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"regexp"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/sourcegraph/conc/pool"

	"github.com/sigil-signer/sigil/domain"
	"github.com/sigil-signer/sigil/domain/tezos"
	"github.com/sigil-signer/sigil/ports"
)

// Vault is one named pair of an enclave and the storage of its sealed keys.
type Vault struct {
	Name    string
	Enclave ports.Enclave
	Store   ports.KeyStore
	// Display is the vault driver's display name as Signatory's vaults
	// name themselves (File, Mem, ConfidentialSpace, NitroEnclave): the
	// `vault` label of Signatory's metrics. Empty means Name.
	Display string
}

func (v *Vault) display() string {
	if v.Display != "" {
		return v.Display
	}
	return v.Name
}

// Key is a key the service can sign with.
type Key struct {
	PKH       tezos.PublicKeyHash
	Address   string // PKH in base58 (tz…), kept to avoid re-encoding it per request
	PublicKey tezos.PublicKey
	Vault     string
}

func newKey(pk tezos.PublicKey, vault string) *Key {
	h := pk.Hash()
	return &Key{PKH: h, Address: h.String(), PublicKey: pk, Vault: vault}
}

// Options tune the service.
type Options struct {
	// LoadConcurrency bounds how many stored keys are imported into the
	// enclave at once at start (default 16).
	LoadConcurrency int
	// Logger receives progress and errors; nil discards.
	Logger *slog.Logger
	// Policies maps a tz address to what it may sign. A key absent from it
	// gets DefaultPolicy; with a nil DefaultPolicy it cannot sign.
	Policies map[string]*Policy
	// DefaultPolicy applies to keys absent from Policies (nil in
	// production: unlisted keys cannot sign).
	DefaultPolicy *Policy
	// AuthorizedKeys are the server-wide client keys; when non-empty every
	// sign request must be authenticated by one of them (or by one of its
	// key's own AuthorizedKeys).
	AuthorizedKeys []tezos.PublicKey
	// Watermarks records consensus high watermarks. Consensus requests are
	// refused when it is nil.
	Watermarks ports.WatermarkStore
	// PolicyHook, when set, must approve every request the key's policy
	// allows before it is signed (after the policy check, before the
	// watermark and the enclave).
	PolicyHook ports.PolicyHook
	// Progress reports the loading of stored keys and the generation of
	// several keys; nil reports nothing.
	Progress ports.Progress
}

// Service is the signing and key lifecycle service.
type Service struct {
	vaults map[string]*Vault
	order  []string
	opts   Options
	log    *slog.Logger

	// cur is the current snapshot: the keys and the settings every
	// request reads once, at its start (see Snapshot). Writers (Load,
	// register, Reload) hold mu and replace it whole.
	cur      atomic.Pointer[state]
	mu       sync.Mutex
	onChange func(Snapshot)

	observer ports.SignObserver
	locks    keyLocks

	loadState atomic.Pointer[loadState] // non-nil while StartLoading has not finished
	loaded    chan struct{}             // closed when StartLoading finishes
}

// SetObserver installs an observer of signing attempts (metrics). Call it
// before serving requests.
func (s *Service) SetObserver(o ports.SignObserver) { s.observer = o }

// New returns a service over the given vaults. Vault names must be unique
// and non-empty.
func New(vaults []Vault, opts Options) (*Service, error) {
	if opts.LoadConcurrency <= 0 {
		opts.LoadConcurrency = 16
	}
	if opts.Progress == nil {
		opts.Progress = ports.NoProgress{}
	}
	log := opts.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	s := &Service{vaults: map[string]*Vault{}, opts: opts, log: log, loaded: make(chan struct{})}
	s.cur.Store(&state{keys: map[string]*Key{}, set: &Settings{
		Policies: opts.Policies, DefaultPolicy: opts.DefaultPolicy,
		AuthorizedKeys: opts.AuthorizedKeys, PolicyHook: opts.PolicyHook,
	}})
	for i := range vaults {
		v := vaults[i]
		if v.Name == "" {
			return nil, domain.Errorf(domain.KindInvalid, "vault %d has no name", i)
		}
		if v.Enclave == nil || v.Store == nil {
			return nil, domain.Errorf(domain.KindInvalid, "vault %q has no enclave or no key storage", v.Name)
		}
		if _, dup := s.vaults[v.Name]; dup {
			return nil, domain.Errorf(domain.KindInvalid, "vault %q is defined twice", v.Name)
		}
		s.vaults[v.Name] = &v
		s.order = append(s.order, v.Name)
	}
	return s, nil
}

// Vaults returns the vault names in configuration order.
func (s *Service) Vaults() []string { return slices.Clone(s.order) }

func (s *Service) vault(name string) (*Vault, error) {
	if name == "" && len(s.order) == 1 {
		return s.vaults[s.order[0]], nil
	}
	v, ok := s.vaults[name]
	if !ok {
		if name == "" {
			return nil, domain.Errorf(domain.KindInvalid, "several vaults are configured (%s): name one", strings.Join(s.order, ", "))
		}
		return nil, domain.Errorf(domain.KindNotFound, "vault %q is not configured (have: %s)", name, strings.Join(s.order, ", "))
	}
	return v, nil
}

// Load imports every stored key of every vault into its enclave, a bounded
// number at a time, and makes them available for signing. It fails if any
// stored key cannot be loaded or does not match its recorded address, at
// the first failure and with that one error: an enclave that is down or
// refuses its keys is one cause, not one error per key.
func (s *Service) Load(ctx context.Context) error {
	// Every vault's list first: a key stored in two vaults would be
	// signed with by whichever loaded last; it is refused, naming both,
	// before any key is loaded.
	lists := make(map[string][]ports.StoredKey, len(s.order))
	where := map[string]string{}
	for _, name := range s.order {
		stored, err := s.vaults[name].Store.List(ctx)
		if err != nil {
			return fmt.Errorf("vault %q: listing stored keys: %w", name, err)
		}
		for _, sk := range stored {
			if other, dup := where[sk.PKH]; dup && other != name {
				return domain.Errorf(domain.KindInvalid, "key %s is in vault %q and in vault %q: a key must be in one vault only; remove it from one of them", sk.PKH, other, name)
			}
			where[sk.PKH] = name
		}
		lists[name] = stored
	}
	for _, name := range s.order {
		v := s.vaults[name]
		stored := lists[name]
		start := time.Now()
		s.log.Info("loading keys into the enclave", "vault", name, "keys", len(stored))
		loaded, err := s.loadKeys(ctx, v, stored, "loading keys into vault "+name)
		if err != nil {
			return err
		}
		s.update(func(keys map[string]*Key) {
			for _, k := range loaded {
				keys[k.Address] = k
			}
		})
		s.log.Info("keys loaded", "vault", name, "keys", len(loaded), "duration_ms", millis(time.Since(start)))
	}
	return nil
}

// loadKeys imports stored keys into v's enclave, a bounded number at a
// time, checking that each opens as the address it is stored under.
func (s *Service) loadKeys(ctx context.Context, v *Vault, stored []ports.StoredKey, what string) ([]*Key, error) {
	var (
		mu     sync.Mutex
		loaded = make([]*Key, 0, len(stored))
	)
	task := s.opts.Progress.Begin(what, len(stored))
	p := pool.New().WithErrors().WithFirstError().WithContext(ctx).WithCancelOnError().WithMaxGoroutines(s.opts.LoadConcurrency)
	for _, sk := range stored {
		p.Go(func(ctx context.Context) error {
			pk, err := v.Enclave.Load(ctx, sk.Blob)
			if err != nil {
				return fmt.Errorf("vault %q: loading key %s: %w", v.Name, sk.PKH, err)
			}
			if got := pk.Hash().String(); got != sk.PKH {
				return domain.Errorf(domain.KindInternal, "vault %q: stored key %s opens as %s: storage entry does not match its key", v.Name, sk.PKH, got)
			}
			mu.Lock()
			loaded = append(loaded, newKey(pk, v.Name))
			mu.Unlock()
			task.Add(1)
			return nil
		})
	}
	err := p.Wait()
	task.Done()
	if err != nil {
		return nil, err
	}
	return loaded, nil
}

func (s *Service) register(vault string, sealed ports.SealedKey, st ports.KeyStore, ctx context.Context) (Key, error) {
	pkh := sealed.PublicKey.Hash()
	// Persist before the key becomes visible: a key the daemon signs with
	// must survive a restart.
	if err := st.Put(ctx, ports.StoredKey{PKH: pkh.String(), Blob: sealed.Blob}); err != nil {
		return Key{}, fmt.Errorf("vault %q: storing key %s: %w", vault, pkh, err)
	}
	k := newKey(sealed.PublicKey, vault)
	s.update(func(keys map[string]*Key) { keys[k.Address] = k })
	return *k, nil
}

// Generate creates n keys of type t in the named vault's enclave and stores
// them. Keys created before a failure stay stored and are returned with the
// error.
func (s *Service) Generate(ctx context.Context, vault string, t tezos.KeyType, n int) ([]Key, error) {
	if !t.Valid() {
		return nil, domain.Errorf(domain.KindInvalid, "invalid key type %v", t)
	}
	if n < 1 {
		return nil, domain.Errorf(domain.KindInvalid, "number of keys must be at least 1, got %d", n)
	}
	v, err := s.vault(vault)
	if err != nil {
		return nil, err
	}
	out := make([]Key, 0, n)
	task := ports.ProgressTask(ports.NoProgress{}.Begin("", n))
	if n > 1 {
		task = s.opts.Progress.Begin(fmt.Sprintf("generating %v keys in vault %s", t, v.Name), n)
	}
	defer task.Done()
	for range n {
		sealed, err := v.Enclave.Generate(ctx, t)
		if err != nil {
			return out, fmt.Errorf("vault %q: generating a key of type %v: %w", v.Name, t, err)
		}
		if sealed.PublicKey.Type != t {
			return out, domain.Errorf(domain.KindInternal, "vault %q: asked the enclave for a %v key, got %v", v.Name, t, sealed.PublicKey.Type)
		}
		k, err := s.register(v.Name, sealed, v.Store, ctx)
		if err != nil {
			return out, err
		}
		s.log.Info("key generated", "vault", v.Name, "pkh", k.PKH.String(), "type", t.String())
		out = append(out, k)
		task.Add(1)
	}
	return out, nil
}

// Import seals a plain private key in the named vault's enclave and stores
// it. sk is zeroed before Import returns.
func (s *Service) Import(ctx context.Context, vault string, sk tezos.PrivateKey) (Key, error) {
	defer sk.Zero()
	want, err := sk.Public()
	if err != nil {
		return Key{}, domain.Wrap(domain.KindInvalid, err)
	}
	v, err := s.vault(vault)
	if err != nil {
		return Key{}, err
	}
	sealed, err := v.Enclave.Import(ctx, sk)
	if err != nil {
		return Key{}, fmt.Errorf("vault %q: importing key %s: %w", v.Name, want.Hash(), err)
	}
	if !sealed.PublicKey.Equal(want) {
		return Key{}, domain.Errorf(domain.KindInternal, "vault %q: enclave imported %s as %s", v.Name, want.Hash(), sealed.PublicKey.Hash())
	}
	k, err := s.register(v.Name, sealed, v.Store, ctx)
	if err != nil {
		return Key{}, err
	}
	s.log.Info("key imported", "vault", v.Name, "pkh", k.PKH.String(), "type", k.PKH.Type.String())
	return k, nil
}

// List returns every available key, ordered by vault then address.
func (s *Service) List() []Key { return s.Snapshot().List() }

// Has reports whether pkh is the address of a key the service holds.
func (s *Service) Has(pkh string) bool {
	_, ok := s.cur.Load().keys[pkh]
	return ok
}

// ConsensusKeys returns the addresses of the available keys whose policy
// allows a consensus request (block, preattestation or attestation): the
// keys a baker expects to sign continuously. Unordered.
func (s *Service) ConsensusKeys() []string {
	st := s.cur.Load()
	var out []string
	for addr := range st.keys {
		if p := st.policyFor(addr); p != nil && p.allowsConsensus() {
			out = append(out, addr)
		}
	}
	return out
}

// Count returns how many keys are available.
func (s *Service) Count() int { return len(s.cur.Load().keys) }

// Key returns the key with address pkh.
func (s *Service) Key(pkh string) (Key, error) { return s.keyIn(s.cur.Load(), pkh) }

func (s *Service) keyIn(st *state, pkh string) (Key, error) {
	if k, ok := st.keys[pkh]; ok {
		return *k, nil
	}
	if _, err := tezos.ParsePublicKeyHash(pkh); err != nil {
		return Key{}, domain.Wrap(domain.KindInvalid, err)
	}
	if err := s.Ready(); err != nil {
		return Key{}, domain.Errorf(domain.KindUnavailable, "key %s is not available yet: %w", pkh, err)
	}
	return Key{}, domain.Errorf(domain.KindNotFound, "key %s not found", pkh)
}

// StartLoading loads the stored keys in the background, retrying until all
// of them are in the enclave (an enclave that is down at start is waited
// for, not fatal): first after retry, then twice as long each time up to
// maxLoadRetry. Until then Ready reports why, and requests for keys not
// loaded yet fail as unavailable rather than not found. Each attempt is
// bounded by attemptTimeout. A failure is logged when its cause changes,
// not at every attempt.
func (s *Service) StartLoading(ctx context.Context, retry, attemptTimeout time.Duration) {
	s.loadState.Store(&loadState{err: errors.New("loading keys")})
	go func() {
		wait, logged := retry, ""
		for {
			actx, cancel := context.WithTimeout(ctx, attemptTimeout)
			err := s.Load(actx)
			cancel()
			if err == nil {
				s.loadState.Store(nil)
				close(s.loaded)
				return
			}
			s.loadState.Store(&loadState{err: err})
			if cause := loadCause(err); cause != logged {
				logged = cause
				s.log.Error("loading keys failed; retrying", "error", err.Error())
			}
			select {
			case <-ctx.Done():
				return
			case <-time.After(wait):
			}
			wait = min(2*wait, max(retry, maxLoadRetry))
		}
	}()
}

// maxLoadRetry caps the wait between two attempts to load the stored keys.
const maxLoadRetry = 15 * time.Second

// loadCause is a load error with key addresses masked: attempts that fail
// for the same reason on different keys (loaded concurrently, the first to
// fail varies) have the same cause.
func loadCause(err error) string {
	return addressRE.ReplaceAllString(err.Error(), "<key>")
}

var addressRE = regexp.MustCompile(`\b(tz[1-4]|KT1)[1-9A-HJ-NP-Za-km-z]{33}\b`)

type loadState struct{ err error }

// Ready returns nil once the stored keys are loaded (always, when
// StartLoading was not used), else why they are not.
func (s *Service) Ready() error {
	if st := s.loadState.Load(); st != nil {
		return domain.Errorf(domain.KindUnavailable, "keys not loaded: %w", st.err)
	}
	return nil
}

// WaitLoaded blocks until StartLoading has loaded every key, or ctx ends.
func (s *Service) WaitLoaded(ctx context.Context) error {
	if s.loadState.Load() == nil {
		return nil
	}
	select {
	case <-s.loaded:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// millis is d in milliseconds, to the microsecond: the value of the
// duration_ms log field.
func millis(d time.Duration) float64 {
	return float64(d.Round(time.Microsecond)/time.Microsecond) / 1000
}
