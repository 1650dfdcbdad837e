package firestore

import (
	"bytes"
	"context"
	"errors"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/sigil-signer/sigil/adapters/internal/gcpretry"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/sigil-signer/sigil/adapters/storage"
	"github.com/sigil-signer/sigil/adapters/storage/storagetest"
	"github.com/sigil-signer/sigil/domain"
	"github.com/sigil-signer/sigil/domain/tezos"
	"github.com/sigil-signer/sigil/integration/harness"
	"github.com/sigil-signer/sigil/ports"
)

func TestMain(m *testing.M) { harness.Main(m) }

const testDB = "(default)"

func openStore(t *testing.T, cfg Config) *Store {
	t.Helper()
	s, err := New(context.Background(), cfg)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	return s
}

func TestContract(t *testing.T) {
	f := harness.StartFirestore(t)
	f.SetEnv(t)
	storagetest.Run(t, func(t *testing.T) storagetest.Factory {
		project := f.NewProject(t)
		return func(t *testing.T) ports.KeyStore {
			return openStore(t, Config{Project: project, Database: testDB})
		}
	})
}

func TestNamedDatabaseAndCollection(t *testing.T) {
	f := harness.StartFirestore(t)
	f.SetEnv(t)
	ctx := context.Background()
	project := f.NewProject(t)
	a := openStore(t, Config{Project: project, Database: "keys-db", Table: "sealed"})
	defer a.Close()
	b := openStore(t, Config{Project: project, Database: "keys-db"}) // default collection
	defer b.Close()
	k := ports.StoredKey{PKH: storagetest.PKH(tezos.BLS, 1), Blob: []byte("x")}
	if err := a.Put(ctx, k); err != nil {
		t.Fatal(err)
	}
	if got, err := b.List(ctx); err != nil || len(got) != 0 {
		t.Fatalf("another collection sees %d keys (%v)", len(got), err)
	}
	if got, err := a.List(ctx); err != nil || len(got) != 1 {
		t.Fatalf("collection %q lists %d keys (%v), want 1", "sealed", len(got), err)
	}
}

func TestConfigValidation(t *testing.T) {
	cases := []struct {
		name    string
		cfg     Config
		want    string
		wantErr string
	}{
		{"defaults", Config{Project: "p", Database: "d"}, DefaultCollection, ""},
		{"table", Config{Project: "p", Database: "d", Table: "t"}, "t", ""},
		{"collection alias", Config{Project: "p", Database: "d", Collection: "c"}, "c", ""},
		{"both equal", Config{Project: "p", Database: "d", Table: "x", Collection: "x"}, "x", ""},
		{"both differ", Config{Project: "p", Database: "d", Table: "x", Collection: "y"}, "", `table "x" and collection "y" disagree`},
		{"missing project", Config{Database: "d"}, "", "missing required field project"},
		{"missing database", Config{Project: "p"}, "", "missing required field database"},
		{"nested path", Config{Project: "p", Database: "d", Table: "a/b"}, "", "without '/'"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			got, err := c.cfg.CollectionName()
			if c.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), c.wantErr) {
					t.Fatalf("error %v, want one containing %q", err, c.wantErr)
				}
				if domain.KindOf(err) != domain.KindInvalid {
					t.Fatalf("kind %v, want invalid", domain.KindOf(err))
				}
				if _, err := New(context.Background(), c.cfg); err == nil {
					t.Fatal("New accepted an invalid config")
				}
				return
			}
			if err != nil || got != c.want {
				t.Fatalf("CollectionName() = %q, %v; want %q", got, err, c.want)
			}
		})
	}
}

func TestOpen(t *testing.T) {
	ctx := context.Background()
	if _, err := Open(ctx, nil, storage.Env{}); err == nil || !strings.Contains(err.Error(), "missing config section") {
		t.Fatalf("Open without config: %v", err)
	}
	bad := func(any) error { return errors.New("yaml: cannot unmarshal !!str into firestore.Config") }
	if _, err := Open(ctx, bad, storage.Env{}); err == nil || !strings.Contains(err.Error(), "invalid config") {
		t.Fatalf("Open with an undecodable config: %v", err)
	}
	missingDB := func(v any) error { v.(*Config).Project = "p"; return nil }
	if _, err := Open(ctx, missingDB, storage.Env{}); err == nil || !strings.Contains(err.Error(), "database") {
		t.Fatalf("Open without database: %v", err)
	}

	f := harness.StartFirestore(t)
	f.SetEnv(t)
	project := f.NewProject(t)
	ok := func(v any) error {
		*v.(*Config) = Config{Project: project, Database: testDB, Collection: "aliased"}
		return nil
	}
	ks, err := Open(ctx, ok, storage.Env{})
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	s := ks.(*Store)
	defer s.Close()
	if s.col.ID != "aliased" {
		t.Fatalf("collection %q, want the alias's value", s.col.ID)
	}
	if err := s.Put(ctx, ports.StoredKey{PKH: storagetest.PKH(tezos.Ed25519, 1), Blob: []byte("x")}); err != nil {
		t.Fatalf("Put through an opened store: %v", err)
	}
}

func TestClientOptions(t *testing.T) {
	t.Setenv("FIRESTORE_EMULATOR_HOST", "")
	secret := `{"type": "service_account", "private_key": "SECRET-KEY-MATERIAL", "client_email": "a@b.iam.gserviceaccount.com"}`
	opts, err := ClientOptions("", secret)
	if err != nil || len(opts) != 1 {
		t.Fatalf("service account JSON: %d options, %v", len(opts), err)
	}
	// Data wins over a (broken) path.
	if opts, err := ClientOptions("/nonexistent/creds.json", secret); err != nil || len(opts) != 1 {
		t.Fatalf("data with a bad path: %d options, %v", len(opts), err)
	}
	dir := t.TempDir()
	path := filepath.Join(dir, "creds.json")
	if err := os.WriteFile(path, []byte(`{"type": "external_account", "audience": "x"}`), 0o600); err != nil {
		t.Fatal(err)
	}
	if opts, err := ClientOptions(path, ""); err != nil || len(opts) != 1 {
		t.Fatalf("credentials file: %d options, %v", len(opts), err)
	}
	if opts, err := ClientOptions("", ""); err != nil || opts != nil {
		t.Fatalf("no credentials: %v, %v; want the SDK defaults (nil)", opts, err)
	}

	badCases := []struct {
		name, path, data, want string
	}{
		{"missing file", filepath.Join(dir, "nope.json"), "", "nope.json"},
		{"not JSON", "", "SECRET-KEY-MATERIAL not json", "not valid credentials JSON"},
		{"no type", "", `{"private_key": "SECRET-KEY-MATERIAL"}`, `no "type" field`},
		{"unknown type", "", `{"type": "weird", "private_key": "SECRET-KEY-MATERIAL"}`, `unsupported credentials type "weird"`},
	}
	for _, c := range badCases {
		_, err := ClientOptions(c.path, c.data)
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Fatalf("%s: error %v, want one containing %q", c.name, err, c.want)
		}
		if strings.Contains(err.Error(), "SECRET-KEY-MATERIAL") {
			t.Fatalf("%s: error leaks the credentials: %v", c.name, err)
		}
	}

	t.Setenv("FIRESTORE_EMULATOR_HOST", "127.0.0.1:1")
	if opts, err := ClientOptions("/nonexistent/creds.json", ""); err != nil || opts != nil {
		t.Fatalf("with the emulator: %v, %v; want no credentials", opts, err)
	}
}

func TestMalformedDocuments(t *testing.T) {
	f := harness.StartFirestore(t)
	f.SetEnv(t)
	ctx := context.Background()
	good := storagetest.PKH(tezos.Ed25519, 1)
	other := storagetest.PKH(tezos.BLS, 2)
	cases := []struct {
		name string
		id   string
		data map[string]any
		want string
	}{
		{"missing pkh", good, map[string]any{"value": []byte("x")}, "missing field pkh"},
		{"pkh not a string", good, map[string]any{"pkh": 42, "value": []byte("x")}, "field pkh is a int64, want a string"},
		{"invalid address", "some-id", map[string]any{"pkh": "tz1nope", "value": []byte("x")}, "field pkh: invalid key hash"},
		{"missing value", good, map[string]any{"pkh": good}, "missing field value"},
		{"value not bytes", good, map[string]any{"pkh": good, "value": "eA=="}, "field value is a string, want bytes"},
		{"empty value", good, map[string]any{"pkh": good, "value": []byte{}}, "field value is empty"},
		{"pkh differs from id", good, map[string]any{"pkh": other, "value": []byte("x")}, "the document id is another address"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			s := openStore(t, Config{Project: f.NewProject(t), Database: testDB})
			defer s.Close()
			if err := s.Put(ctx, ports.StoredKey{PKH: storagetest.PKH(tezos.P256, 3), Blob: []byte("fine")}); err != nil {
				t.Fatal(err)
			}
			if _, err := s.col.Doc(c.id).Set(ctx, c.data); err != nil {
				t.Fatal(err)
			}
			_, err := s.List(ctx)
			if err == nil {
				t.Fatal("List accepted a malformed document")
			}
			if !strings.Contains(err.Error(), "document "+DefaultCollection+"/"+c.id+":") || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("error %q should name document %s and contain %q", err, c.id, c.want)
			}
		})
	}
}

// TestLegacyGeneratedIDs: Signatory's first Firestore storage added
// documents with generated ids; they still load, and a document keyed by
// the address wins over them.
func TestLegacyGeneratedIDs(t *testing.T) {
	f := harness.StartFirestore(t)
	f.SetEnv(t)
	ctx := context.Background()
	s := openStore(t, Config{Project: f.NewProject(t), Database: testDB})
	defer s.Close()
	a, b := storagetest.PKH(tezos.BLS, 10), storagetest.PKH(tezos.Ed25519, 11)
	for _, d := range []map[string]any{
		{"pkh": a, "value": []byte("legacy-a")},
		{"pkh": b, "value": []byte("legacy-b")},
	} {
		if _, _, err := s.col.Add(ctx, d); err != nil {
			t.Fatal(err)
		}
	}
	if err := s.Put(ctx, ports.StoredKey{PKH: a, Blob: []byte("new-a")}); err != nil {
		t.Fatal(err)
	}
	keys, err := s.List(ctx)
	if err != nil {
		t.Fatalf("List with legacy documents: %v", err)
	}
	got := map[string]string{}
	for _, k := range keys {
		got[k.PKH] = string(k.Blob)
	}
	if len(keys) != 2 || got[a] != "new-a" || got[b] != "legacy-b" {
		t.Fatalf("List = %v, want a=new-a (keyed document wins) and b=legacy-b", got)
	}
}

func TestSmallPages(t *testing.T) {
	f := harness.StartFirestore(t)
	f.SetEnv(t)
	ctx := context.Background()
	s := openStore(t, Config{Project: f.NewProject(t), Database: testDB})
	defer s.Close()
	s.pageSize = 7
	for i := 0; i < 21; i++ { // a multiple of the page size: the last page is full
		if err := s.Put(ctx, ports.StoredKey{PKH: storagetest.PKH(tezos.Secp256k1, i), Blob: storagetest.Blob(i, 0)}); err != nil {
			t.Fatal(err)
		}
	}
	keys, err := s.List(ctx)
	if err != nil || len(keys) != 21 {
		t.Fatalf("List with page size 7: %d keys, %v; want 21", len(keys), err)
	}
	for i := 1; i < len(keys); i++ {
		if keys[i-1].PKH >= keys[i].PKH {
			t.Fatalf("keys not in document-id order at %d", i)
		}
	}
}

func TestTransient(t *testing.T) {
	for _, c := range []struct {
		err  error
		want bool
	}{
		{status.Error(codes.Unavailable, "x"), true},
		{status.Error(codes.DeadlineExceeded, "x"), true},
		{status.Error(codes.Aborted, "x"), true},
		{status.Error(codes.ResourceExhausted, "x"), true},
		{status.Error(codes.Internal, "x"), true},
		{status.Error(codes.PermissionDenied, "x"), false},
		{status.Error(codes.InvalidArgument, "x"), false},
		{status.Error(codes.NotFound, "x"), false},
		{context.DeadlineExceeded, false},
		{context.Canceled, false},
		{errors.New("plain"), false},
	} {
		if got := gcpretry.Transient(c.err); got != c.want {
			t.Errorf("transient(%v) = %v, want %v", c.err, got, c.want)
		}
	}
}

func TestRetry(t *testing.T) {
	s := &Store{retry: gcpretry.Policy{Initial: time.Millisecond, Max: 4 * time.Millisecond, Attempts: 5}, where: "test"}
	s.log = storage.LoggerOf(storage.Env{})
	ctx := context.Background()

	calls := 0
	err := s.do(ctx, func(context.Context) error {
		calls++
		if calls < 3 {
			return status.Error(codes.Unavailable, "down")
		}
		return nil
	})
	if err != nil || calls != 3 {
		t.Fatalf("transient errors: %d calls, %v; want success on the 3rd", calls, err)
	}

	calls = 0
	err = s.do(ctx, func(context.Context) error { calls++; return status.Error(codes.PermissionDenied, "no") })
	if calls != 1 || status.Code(err) != codes.PermissionDenied {
		t.Fatalf("permanent error: %d calls, %v; want 1 call", calls, err)
	}

	calls = 0
	err = s.do(ctx, func(context.Context) error { calls++; return status.Error(codes.Aborted, "busy") })
	if calls != 5 || status.Code(err) != codes.Aborted {
		t.Fatalf("persistent transient error: %d calls, %v; want 5 attempts", calls, err)
	}

	// The context bounds the retries.
	s.retry = gcpretry.Policy{Initial: 50 * time.Millisecond, Max: time.Second, Attempts: 1000}
	dctx, cancel := context.WithTimeout(ctx, 300*time.Millisecond)
	defer cancel()
	start := time.Now()
	err = s.do(dctx, func(context.Context) error { return status.Error(codes.Unavailable, "down") })
	if err == nil || time.Since(start) > time.Second {
		t.Fatalf("retry under a 300ms deadline: %v after %v", err, time.Since(start))
	}
}

// TestEmulatorOutage stops the emulator under a live store: Put and List
// must fail with a clear, "unavailable" error within the caller's deadline,
// never report success, and work again once the emulator is back.
func TestEmulatorOutage(t *testing.T) {
	f := harness.StartPrivateFirestore(t)
	f.SetEnv(t)
	ctx := context.Background()
	project := f.NewProject(t)
	s := openStore(t, Config{Project: project, Database: testDB})
	defer s.Close()
	k1 := ports.StoredKey{PKH: storagetest.PKH(tezos.BLS, 1), Blob: []byte("one")}
	if err := s.Put(ctx, k1); err != nil {
		t.Fatal(err)
	}
	stopAt := time.Now()
	if err := f.Stop(); err != nil {
		t.Fatal(err)
	}
	t.Logf("emulator stopped in %v", time.Since(stopAt).Round(time.Millisecond))

	storagetest.FailsDuringOutage(t, s, 3*time.Second, "project "+project)

	if err := f.Restart(); err != nil {
		t.Fatal(err)
	}
	rctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	k3 := ports.StoredKey{PKH: storagetest.PKH(tezos.BLS, 3), Blob: []byte("three")}
	backAt := time.Now()
	if err := s.Put(rctx, k3); err != nil {
		t.Fatalf("Put after the emulator came back: %v", err)
	}
	t.Logf("first Put after the restart took %v", time.Since(backAt).Round(time.Millisecond))
	keys, err := s.List(rctx)
	if err != nil {
		t.Fatalf("List after the emulator came back: %v", err)
	}
	// The emulator lost its data on restart; only the new key is there.
	if len(keys) != 1 || keys[0].PKH != k3.PKH || !bytes.Equal(keys[0].Blob, k3.Blob) {
		t.Fatalf("after restart List = %v", keys)
	}
}

// TestDocumentShape checks the stored document is Signatory's: id = the
// address, fields pkh (string) and value (bytes), nothing else.
func TestDocumentShape(t *testing.T) {
	f := harness.StartFirestore(t)
	f.SetEnv(t)
	ctx := context.Background()
	s := openStore(t, Config{Project: f.NewProject(t), Database: testDB})
	defer s.Close()
	pkh := storagetest.PKH(tezos.P256, 5)
	if err := s.Put(ctx, ports.StoredKey{PKH: pkh, Blob: []byte{0, 1, 255}}); err != nil {
		t.Fatal(err)
	}
	snap, err := s.col.Doc(pkh).Get(ctx)
	if err != nil {
		t.Fatalf("document %s not found: %v", pkh, err)
	}
	data := snap.Data()
	if len(data) != 2 || data["pkh"] != pkh || !bytes.Equal(data["value"].([]byte), []byte{0, 1, 255}) {
		t.Fatalf("document = %#v", data)
	}
}

func TestNewReportsCredentialProblems(t *testing.T) {
	t.Setenv("FIRESTORE_EMULATOR_HOST", "")
	_, err := New(context.Background(), Config{Project: "p", Database: "d", ApplicationCredentials: "/nonexistent/sa.json"})
	if err == nil || !strings.Contains(err.Error(), "application_credentials") || !strings.Contains(err.Error(), "/nonexistent/sa.json") {
		t.Fatalf("New with a missing credentials file: %v", err)
	}
	if domain.KindOf(err) != domain.KindInvalid {
		t.Fatalf("kind %v, want invalid", domain.KindOf(err))
	}
}

// TestNoDeadlineStillBounded: without a caller deadline an operation against
// an unreachable Firestore still ends, after the store's own limit.
func TestNoDeadlineStillBounded(t *testing.T) {
	port := harness.FreePort(t) // nothing listens there
	t.Setenv("FIRESTORE_EMULATOR_HOST", "127.0.0.1:"+strconv.Itoa(port))
	s := openStore(t, Config{Project: "p", Database: testDB})
	defer s.Close()
	s.opLimit = 1500 * time.Millisecond
	start := time.Now()
	_, err := s.List(context.Background())
	if err == nil || domain.KindOf(err) != domain.KindUnavailable {
		t.Fatalf("List against nothing: %v, want an unavailable error", err)
	}
	if d := time.Since(start); d > 4*time.Second {
		t.Fatalf("List without a deadline took %v, want about the 1.5s limit", d)
	}
}
