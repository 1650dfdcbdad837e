package softvault

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"strings"

	"gopkg.in/yaml.v3"

	"github.com/sigil-signer/sigil/adapters/internal/strictjson"
	"github.com/sigil-signer/sigil/adapters/vault"
	"github.com/sigil-signer/sigil/domain"
	"github.com/sigil-signer/sigil/domain/tezos"
)

// Display names of the drivers, as Signatory's file and mem vaults name
// themselves (the vault label of Signatory's metrics).
const (
	FileDisplayName = "File"
	MemDisplayName  = "Mem"
)

// PassphraseEnv is the environment variable that holds the passphrase of
// encrypted keys (edesk…, spesk…, p2esk…, BLesk…) when the configuration
// gives none. Signatory asks for it on the terminal instead.
const PassphraseEnv = "SIGIL_KEY_PASSPHRASE"

// FileConfig is the `file` vault's section: Signatory's `file: PATH` (a
// bare path is accepted too) and Sigil's optional passphrase for encrypted
// keys.
type FileConfig struct {
	File       string `yaml:"file"`
	Passphrase string `yaml:"passphrase"` // else $SIGIL_KEY_PASSPHRASE
}

// fileEntry is one entry of the key file: Signatory's format, a JSON list
// of {"name": …, "value": "unencrypted:edsk…" | "encrypted:edesk…"}.
type fileEntry struct {
	Name  string `json:"name"`
	Value string `json:"value"`
}

// fileSection decodes the `file` vault's section: `file: PATH` (and the
// optional passphrase) or a bare path.
func fileSection(decode func(any) error) (FileConfig, error) {
	if decode == nil {
		return FileConfig{}, domain.Errorf(domain.KindInvalid, "file vault: missing config (want file: PATH)")
	}
	var node yaml.Node
	if err := decode(&node); err != nil {
		return FileConfig{}, domain.Errorf(domain.KindInvalid, "file vault: invalid config: %v", err)
	}
	if node.Kind == yaml.DocumentNode && len(node.Content) == 1 {
		node = *node.Content[0]
	}
	var fc FileConfig
	if node.Kind == yaml.ScalarNode {
		fc.File = node.Value
	} else if err := decode(&fc); err != nil {
		return FileConfig{}, domain.Errorf(domain.KindInvalid, "file vault: invalid config: %v", err)
	}
	// The configuration has expanded ${VAR} already.
	fc.File = strings.TrimSpace(fc.File)
	if fc.File == "" {
		return FileConfig{}, domain.Errorf(domain.KindInvalid, "file vault: missing file (the path of the key file)")
	}
	return fc, nil
}

// CheckFile is the vault.Checker of the `file` driver (the key file itself
// is read when the vault opens).
func CheckFile(_ string, decode func(any) error, _ vault.Env) error {
	_, err := fileSection(decode)
	return err
}

// CheckMem is the vault.Checker of the `mem` driver.
func CheckMem(_ string, decode func(any) error, _ vault.Env) error {
	if decode == nil {
		return nil
	}
	var keys []string
	if err := decode(&keys); err != nil {
		return domain.Errorf(domain.KindInvalid, "mem vault: config must be a list of secret keys: %v", err)
	}
	return nil
}

// OpenFile is the vault.Opener of the `file` driver.
func OpenFile(_ context.Context, name string, decode func(any) error, env vault.Env) (vault.Instance, error) {
	fc, err := fileSection(decode)
	if err != nil {
		return vault.Instance{}, err
	}
	log := logger(env).With("vault", name)
	e := newEnclave("file", false)
	st := &fileStore{store: store{e}, cfg: fc, log: log}
	if err := st.read(log); err != nil {
		e.Close()
		return vault.Instance{}, err
	}
	warnClear(log, "file", len(e.order))
	return vault.Instance{Enclave: e, Store: st, Display: FileDisplayName, Close: e.Close}, nil
}

// OpenMem is the vault.Opener of the `mem` driver: its section is a list of
// secret keys (Signatory's form; an "unencrypted:" or "encrypted:" tag is
// accepted as in key files).
func OpenMem(_ context.Context, name string, decode func(any) error, env vault.Env) (vault.Instance, error) {
	var keys []string
	if decode != nil {
		if err := decode(&keys); err != nil {
			return vault.Instance{}, domain.Errorf(domain.KindInvalid, "mem vault: config must be a list of secret keys: %v", err)
		}
	}
	pass := passphrase("")
	defer clear(pass)
	e := newEnclave("mem", true)
	seen := map[string]string{}
	for i, k := range keys {
		if err := addSecret(e, k, pass, fmt.Sprintf("key %d", i+1), seen); err != nil {
			e.Close()
			return vault.Instance{}, fmt.Errorf("mem vault: %w", err)
		}
	}
	warnClear(logger(env).With("vault", name), "mem", len(e.order))
	return vault.Instance{Enclave: e, Store: store{e}, Display: MemDisplayName, Close: e.Close}, nil
}

// decodeKeyFile reads the file vault's key file strictly, as the key store
// reads its own (adapters/storage/file): one JSON array of objects with
// exactly Signatory's fields name and value. An empty document, null, a
// field given twice (also "value" next to "Value": encoding/json keeps the
// last), an unknown field, an entry that is not an object or trailing data
// is corruption, never "no keys". An empty array ([]) is an explicit empty
// key file: it loads (with a warning), and readiness reports it when the
// policies name keys. Errors locate the problem and never repeat a value.
func decodeKeyFile(raw []byte) ([]fileEntry, error) {
	if err := strictjson.Check(raw, []fileEntry{}); err != nil {
		return nil, fmt.Errorf("%w (want a JSON list of {\"name\", \"value\"}; a key file without keys is [])", err)
	}
	var entries []fileEntry
	if err := json.Unmarshal(raw, &entries); err != nil {
		return nil, errors.New(redactJSONError(err))
	}
	return entries, nil
}

// addSecret parses (decrypting if needed) one secret key and adds it. A
// key already added (seen maps its address to the entry that holds it) is
// refused, naming both entries: a key listed twice is a copy-paste mistake
// at best, and which entry is meant must not be decided silently. Errors
// name the entry, never its value.
func addSecret(e *Enclave, value string, pass []byte, label string, seen map[string]string) error {
	v := strings.TrimSpace(value)
	if i := strings.IndexByte(v, ':'); i >= 0 { // "unencrypted:edsk…", "encrypted:edesk…"
		v = v[i+1:]
	}
	if v == "" {
		return domain.Errorf(domain.KindInvalid, "%s: empty secret key", label)
	}
	if tezos.IsEncryptedSecretKey(v) && len(pass) == 0 {
		return domain.Errorf(domain.KindInvalid, "%s is encrypted: give the passphrase (passphrase in the vault's config, or $%s)", label, PassphraseEnv)
	}
	sk, err := tezos.DecryptSecretKey(v, pass)
	if errors.Is(err, tezos.ErrPassphrase) {
		return domain.Errorf(domain.KindInvalid, "%s: %v", label, err)
	}
	if err != nil {
		return domain.Errorf(domain.KindInvalid, "%s: %v", label, err)
	}
	pk, added, err := e.add(sk)
	if err != nil {
		return domain.Errorf(domain.KindInvalid, "%s: %v", label, err)
	}
	addr := pk.Hash().String()
	if !added {
		return domain.Errorf(domain.KindInvalid, "%s holds the key %s, which %s holds too: list each key once", label, addr, seen[addr])
	}
	seen[addr] = label
	return nil
}

func passphrase(configured string) []byte {
	if configured != "" {
		return []byte(configured)
	}
	return []byte(os.Getenv(PassphraseEnv))
}

// redactJSONError keeps a JSON syntax error's position but not any of the
// input it may quote.
func redactJSONError(err error) string {
	var se *json.SyntaxError
	if errors.As(err, &se) {
		return fmt.Sprintf("syntax error at byte %d", se.Offset)
	}
	var te *json.UnmarshalTypeError
	if errors.As(err, &te) {
		return fmt.Sprintf("a %s where %s was expected, at byte %d", te.Value, te.Type, te.Offset)
	}
	return "invalid JSON"
}

func warnClear(log *slog.Logger, kind string, n int) {
	log.Warn("INSECURE: the "+kind+" vault holds its private keys in the clear in this process's memory; use it for test networks and development only, never for keys that matter",
		"driver", kind, "keys", n)
}

func logger(env vault.Env) *slog.Logger {
	if env.Logger != nil {
		return env.Logger
	}
	return slog.New(slog.DiscardHandler)
}

var (
	_ vault.Opener = OpenFile
	_ vault.Opener = OpenMem
)
