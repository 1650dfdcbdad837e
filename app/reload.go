package app

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"go.uber.org/fx"
	"gopkg.in/yaml.v3"

	"github.com/sigil-signer/sigil/adapters/config"
	"github.com/sigil-signer/sigil/adapters/httpapi"
	"github.com/sigil-signer/sigil/adapters/logging"
	"github.com/sigil-signer/sigil/adapters/metrics"
	"github.com/sigil-signer/sigil/domain/signer"
	"github.com/sigil-signer/sigil/ports"
)

// ConfigTransform adapts a freshly loaded configuration as the running one
// was adapted at start (development mode points it at the embedded
// enclave); a reload applies it too.
type ConfigTransform func(*config.Config) (*config.Config, error)

// reloadTimeout bounds one reload (listing the key storage, loading new
// keys into the enclaves), as one attempt at loading the keys at start.
const reloadTimeout = 2 * time.Minute

// Reload triggers, for the log and the report.
const (
	TriggerSIGHUP = "SIGHUP"
	TriggerHTTP   = "POST /reload"
)

// ReloadReport is what a successful reload changed (the answer of POST
// /reload).
type ReloadReport struct {
	KeysBefore            int      `json:"keys_before"`
	KeysAfter             int      `json:"keys_after"`
	KeysAdded             []string `json:"keys_added"`
	KeysRemoved           []string `json:"keys_removed"`
	PoliciesChanged       []string `json:"policies_changed"`
	AuthorizedKeysChanged bool     `json:"authorized_keys_changed"`
	JWTChanged            bool     `json:"jwt_changed"`
	PolicyHookChanged     bool     `json:"policy_hook_changed"`
}

// Reloader applies the configuration file anew to the running daemon, on
// SIGHUP or POST /reload: the policies (tezos), the server-wide
// authorized keys, the JWT users and the policy hook are replaced, keys
// stored since the start are loaded into their enclave and keys no longer
// stored are dropped. A configuration that does not load, or that changes
// a setting only a restart can apply (RestartOnlyFields), is refused and
// the running one kept; each reload is logged once and counted in
// sigil_config_reloads_total. Reloads run one at a time.
type Reloader struct {
	opts      Options
	log       *slog.Logger
	svc       *signer.Service
	m         *metrics.Metrics
	api       *apiSwitch
	transform ConfigTransform
	dflt      *signer.Policy
	now       func() time.Time

	ctx     context.Context // ends when the daemon stops
	pending chan string     // coalesced signal-triggered reloads
	done    chan struct{}

	mu   sync.Mutex
	cur  *config.Config
	hook ports.PolicyHook
}

// ReloaderParams are newReloader's dependencies.
type ReloaderParams struct {
	fx.In
	LC        fx.Lifecycle
	Opts      Options
	Config    *config.Config
	Log       *slog.Logger
	Signer    *signer.Service
	Metrics   *metrics.Metrics
	API       *apiSwitch
	Hook      ports.PolicyHook `optional:"true"`
	Transform ConfigTransform  `optional:"true"`
	Policy    *DefaultPolicy   `optional:"true"`
}

func newReloader(p ReloaderParams) *Reloader {
	ctx, cancel := context.WithCancel(context.Background())
	r := &Reloader{
		opts: p.Opts, log: p.Log, svc: p.Signer, m: p.Metrics, api: p.API, transform: p.Transform,
		now: time.Now, ctx: ctx, pending: make(chan string, 1), done: make(chan struct{}),
		cur: p.Config, hook: p.Hook,
	}
	if p.Policy != nil {
		r.dflt = p.Policy.Policy
	}
	p.Metrics.ConfigLoaded(r.now())
	p.LC.Append(fx.Hook{
		OnStart: func(context.Context) error {
			go r.loop()
			return nil
		},
		OnStop: func(context.Context) error {
			cancel()
			<-r.done
			return nil
		},
	})
	return r
}

// Trigger asks for a reload without waiting for it (a signal): while one
// runs, at most one more is queued, so a burst of signals costs at most
// two reloads.
func (r *Reloader) Trigger(trigger string) {
	select {
	case r.pending <- trigger:
	default:
	}
}

func (r *Reloader) loop() {
	defer close(r.done)
	for {
		select {
		case <-r.ctx.Done():
			return
		case trigger := <-r.pending:
			_, _ = r.Reload(r.ctx, trigger)
		}
	}
}

// Reload applies the configuration file now and reports what changed. An
// error wrapping signer.ErrReloadRefused means the configuration itself
// was refused; the running configuration stays in force either way.
func (r *Reloader) Reload(ctx context.Context, trigger string) (ReloadReport, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.ctx.Err() != nil {
		return ReloadReport{}, errors.New("the daemon is stopping")
	}
	start := r.now()
	ctx, cancel := context.WithTimeout(ctx, reloadTimeout)
	defer cancel()
	stop := context.AfterFunc(r.ctx, cancel)
	defer stop()
	if cred := os.Getenv("CREDENTIALS_DIRECTORY"); cred != "" && strings.HasPrefix(filepath.Clean(r.opts.ConfigPath), filepath.Clean(cred)+string(filepath.Separator)) {
		r.log.Warn("the configuration is a systemd credential, copied when the service started: edits to its source file apply at the next restart (keys stored since the start are loaded now)", "config", r.opts.ConfigPath)
	}

	rep, result, err := r.reload(ctx)
	r.m.ConfigReloaded(result, r.now())
	if err != nil {
		msg := "configuration reload failed: the running configuration is kept"
		if result == metrics.ReloadRefused {
			msg = "configuration reload refused: the running configuration is kept"
		}
		r.log.Error(msg, "trigger", trigger, "error", err.Error())
		return ReloadReport{}, err
	}
	r.log.Info("configuration reloaded", "trigger", trigger,
		"keys_before", rep.KeysBefore, "keys_after", rep.KeysAfter,
		"keys_added", strings.Join(rep.KeysAdded, ","), "keys_removed", strings.Join(rep.KeysRemoved, ","),
		"policies_changed", strings.Join(rep.PoliciesChanged, ","),
		"authorized_keys_changed", rep.AuthorizedKeysChanged, "jwt_changed", rep.JWTChanged,
		"policy_hook_changed", rep.PolicyHookChanged, "duration_ms", logging.Millis(r.now().Sub(start)))
	return rep, nil
}

func refused(err error) error { return fmt.Errorf("%w: %w", signer.ErrReloadRefused, err) }

func (r *Reloader) reload(ctx context.Context) (ReloadReport, string, error) {
	cfg, err := loadConfig(r.opts)
	if err == nil && r.transform != nil {
		cfg, err = r.transform(cfg)
	}
	if err != nil {
		return ReloadReport{}, metrics.ReloadRefused, refused(err)
	}
	if fields := RestartOnlyChanges(r.cur, cfg); len(fields) > 0 {
		return ReloadReport{}, metrics.ReloadRefused, fmt.Errorf("%w: a restart is required to change %s",
			signer.ErrReloadRefused, strings.Join(fields, ", "))
	}
	pols, err := Policies(cfg, r.log)
	if err != nil {
		return ReloadReport{}, metrics.ReloadRefused, refused(err)
	}
	rep := ReloadReport{
		PolicyHookChanged: !reflect.DeepEqual(r.cur.PolicyHook, cfg.PolicyHook),
		JWTChanged:        !reflect.DeepEqual(r.cur.Server.JWT, cfg.Server.JWT),
	}
	hook := r.hook
	if rep.PolicyHookChanged {
		if hook, err = newPolicyHook(cfg, r.log); err != nil {
			return ReloadReport{}, metrics.ReloadRefused, refused(err)
		}
	}
	auth := r.api.current().auth
	if rep.JWTChanged {
		if auth, err = newJWT(cfg, r.log); err != nil {
			return ReloadReport{}, metrics.ReloadRefused, refused(err)
		}
	}
	set := &signer.Settings{Policies: pols, DefaultPolicy: r.dflt, AuthorizedKeys: cfg.Server.AuthorizedKeys, PolicyHook: hook}
	res, err := r.svc.Reload(ctx, set, func(snap signer.Snapshot) { r.api.swap(snap, auth) })
	if err != nil {
		if errors.Is(err, signer.ErrReloadRefused) {
			return ReloadReport{}, metrics.ReloadRefused, err
		}
		return ReloadReport{}, metrics.ReloadFailed, err
	}
	r.cur, r.hook = cfg, hook
	rep.KeysBefore, rep.KeysAfter = res.KeysBefore, res.KeysAfter
	rep.KeysAdded, rep.KeysRemoved, rep.PoliciesChanged = nonNil(res.Added), nonNil(res.Removed), nonNil(res.PoliciesChanged)
	rep.AuthorizedKeysChanged = res.AuthorizedKeysChanged
	return rep, metrics.ReloadSuccess, nil
}

func nonNil(s []string) []string {
	if s == nil {
		return []string{}
	}
	return s
}

// reloadableFields are the configuration's settings a reload applies.
// Every other setting is in restartOnly; a test checks that each field of
// config.Config is in one of them.
var reloadableFields = []string{"tezos", "server.authorized_keys", "server.jwt", "policy_hook"}

// restartOnly are the settings that only a restart can change: the
// listeners and their limits, the state directory, the vaults (their
// drivers, enclaves and key storage) and the watermark backend.
var restartOnly = []struct {
	field string
	get   func(*config.Config) any
}{
	{"base_dir", func(c *config.Config) any { return c.BaseDir }},
	{"server.address", func(c *config.Config) any { return c.Server.Address }},
	{"server.utility_address", func(c *config.Config) any { return c.Server.UtilityAddress }},
	{"server.read_header_timeout", func(c *config.Config) any { return c.Server.ReadHeaderTimeout }},
	{"server.read_timeout", func(c *config.Config) any { return c.Server.ReadTimeout }},
	{"server.write_timeout", func(c *config.Config) any { return c.Server.WriteTimeout }},
	{"server.idle_timeout", func(c *config.Config) any { return c.Server.IdleTimeout }},
	{"server.max_connections", func(c *config.Config) any { return c.Server.MaxConnections }},
	{"server.max_connections_per_client", func(c *config.Config) any { return c.Server.MaxConnectionsPerClient }},
	{"watermark", func(c *config.Config) any {
		if c.Watermark == nil {
			return nil
		}
		return [2]any{c.Watermark.Driver, nodeValue(&c.Watermark.Config)}
	}},
}

// RestartOnlyChanges names, sorted by section, each setting that differs
// between the running configuration and a new one and that only a
// restart can apply (vaults are compared one by one: vaults.NAME added or
// removed, vaults.NAME.driver, vaults.NAME.config). Positions in the file
// do not count, only values.
func RestartOnlyChanges(old, cur *config.Config) []string {
	var out []string
	for _, f := range restartOnly {
		if !reflect.DeepEqual(f.get(old), f.get(cur)) {
			out = append(out, f.field)
		}
	}
	names := map[string]bool{}
	for n := range old.Vaults {
		names[n] = true
	}
	for n := range cur.Vaults {
		names[n] = true
	}
	for _, n := range keys(names) {
		a, b := old.Vaults[n], cur.Vaults[n]
		switch {
		case a == nil && b == nil:
		case a == nil:
			out = append(out, "vaults."+n+" (added)")
		case b == nil:
			out = append(out, "vaults."+n+" (removed)")
		default:
			if a.Driver != b.Driver {
				out = append(out, "vaults."+n+".driver")
			}
			if !reflect.DeepEqual(nodeValue(&a.Config), nodeValue(&b.Config)) {
				out = append(out, "vaults."+n+".config")
			}
		}
	}
	return out
}

// nodeValue is a raw section's value, without its position in the file.
func nodeValue(n *yaml.Node) any {
	if n == nil || n.Kind == 0 {
		return nil
	}
	var v any
	if err := n.Decode(&v); err != nil {
		return fmt.Sprintf("undecodable section (%v)", err)
	}
	return v
}

// apiSwitch serves each request of the signer API with the handler of one
// snapshot of the signing service: the handler is rebuilt whole for every
// new snapshot (keys loaded or added, a reload) together with the JWT
// authenticator in force, so that a request is authenticated and decided
// by one configuration from its first check to its answer, and a request
// running when a reload lands finishes on the configuration it started
// with.
type apiSwitch struct {
	build func(signer.Snapshot, httpapi.Authenticator) http.Handler
	cur   atomic.Pointer[apiGen]
}

type apiGen struct {
	h    http.Handler
	snap signer.Snapshot
	auth httpapi.Authenticator
}

func newAPISwitch(svc *signer.Service, cfg *config.Config, m *metrics.Metrics, log *slog.Logger) (*apiSwitch, error) {
	auth, err := newJWT(cfg, log)
	if err != nil {
		return nil, err
	}
	// One API, rebound to each snapshot: its per-client state (login
	// limits, the failure log) outlives the snapshots.
	base := httpapi.New(svc.Snapshot(), httpapi.Options{Logger: log.With("component", "http"), Observer: m, Auth: auth})
	a := &apiSwitch{build: func(snap signer.Snapshot, auth httpapi.Authenticator) http.Handler {
		return base.Rebind(snap, auth).Handler()
	}}
	// Called at once with the current snapshot, then for every new one.
	svc.OnChange(func(snap signer.Snapshot) {
		var auth0 httpapi.Authenticator = auth
		if g := a.cur.Load(); g != nil {
			auth0 = g.auth
		}
		a.swap(snap, auth0)
	})
	return a, nil
}

// swap installs the handler of snap with auth. Callers are serialized by
// the signing service (OnChange, a reload's commit).
func (a *apiSwitch) swap(snap signer.Snapshot, auth httpapi.Authenticator) {
	a.cur.Store(&apiGen{h: a.build(snap, auth), snap: snap, auth: auth})
}

func (a *apiSwitch) current() *apiGen { return a.cur.Load() }

func (a *apiSwitch) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	a.cur.Load().h.ServeHTTP(w, r)
}

// guard is the authentication of POST /reload in force: that of the
// signer API.
func (a *apiSwitch) guard() httpapi.ReloadGuard {
	g := a.cur.Load()
	return httpapi.ReloadGuard{Auth: g.auth, AuthorizedKeys: g.snap.Settings().AuthorizedKeys}
}

// reloadHandler is POST /reload on the utility listener.
func reloadHandler(r *Reloader, a *apiSwitch, log *slog.Logger) http.Handler {
	return httpapi.ReloadHandler(httpapi.ReloadOptions{
		Reload: func(ctx context.Context) (any, error) { return r.Reload(ctx, TriggerHTTP) },
		Guard:  a.guard,
		Logger: log.With("component", "http"),
	})
}
