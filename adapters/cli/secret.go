package cli

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"

	"golang.org/x/term"

	"github.com/sigil-signer/sigil/domain/tezos"
)

// maxSecretFile bounds what import reads: key files are tiny.
const maxSecretFile = 64 << 10

// secretInput reads secrets for import: from the terminal without echo
// (prompting on standard error) when standard input is one, else from
// standard input, one line per secret (a PEM or DER key takes the whole
// input). Buffers it hands out are the caller's to clear.
type secretInput struct {
	in     io.Reader
	prompt io.Writer
	fd     int  // terminal file descriptor, when isTerm
	isTerm bool // standard input is a terminal

	buf  []byte // standard input, read at most once (not a terminal)
	read bool
}

func newSecretInput(in io.Reader, prompt io.Writer) *secretInput {
	s := &secretInput{in: in, prompt: prompt}
	if f, ok := in.(*os.File); ok && term.IsTerminal(int(f.Fd())) {
		s.fd, s.isTerm = int(f.Fd()), true
	}
	return s
}

// clear zeroes what is left of standard input.
func (s *secretInput) clear() { clear(s.buf) }

func (s *secretInput) readAll() error {
	if s.read {
		return nil
	}
	s.read = true
	data, err := io.ReadAll(io.LimitReader(s.in, maxSecretFile+1))
	if err != nil {
		clear(data)
		return fmt.Errorf("reading standard input: %w", err)
	}
	if len(data) > maxSecretFile {
		clear(data)
		return fmt.Errorf("standard input is larger than %d bytes: not a key", maxSecretFile)
	}
	s.buf = data
	return nil
}

// ask reads one secret from the terminal after printing label.
func (s *secretInput) ask(label string) ([]byte, error) {
	fmt.Fprint(s.prompt, label)
	b, err := term.ReadPassword(s.fd)
	fmt.Fprintln(s.prompt)
	if err != nil {
		clear(b)
		return nil, fmt.Errorf("reading from the terminal: %w", err)
	}
	return b, nil
}

// nextLine takes the next line of standard input (without its line end),
// or nil at its end.
func (s *secretInput) nextLine() []byte {
	if len(s.buf) == 0 {
		return nil
	}
	line, rest, _ := bytes.Cut(s.buf, []byte{'\n'})
	out := bytes.Clone(bytes.TrimRight(line, "\r"))
	clear(line)
	s.buf = rest
	return out
}

// key reads a secret key: at the terminal, one line; otherwise standard
// input, whose first line is the key when it is a Tezos key string (the
// next line may then hold its password), else the whole input (PEM, DER).
func (s *secretInput) key() ([]byte, error) {
	if s.isTerm {
		b, err := s.ask("Enter the secret key: ")
		if err != nil {
			return nil, err
		}
		if len(bytes.TrimSpace(b)) == 0 {
			clear(b)
			return nil, errors.New("no secret key entered")
		}
		return b, nil
	}
	if err := s.readAll(); err != nil {
		return nil, err
	}
	trimmed := bytes.TrimLeft(s.buf, " \t\r\n")
	if len(trimmed) == 0 {
		return nil, errors.New("no key given: pass it as an argument, in a file, or on standard input")
	}
	first, _, _ := bytes.Cut(trimmed, []byte{'\n'})
	if isKeyText(string(bytes.TrimSpace(first))) {
		s.buf = trimmed
		return s.nextLine(), nil
	}
	all := bytes.Clone(s.buf)
	clear(s.buf)
	s.buf = nil
	return all, nil
}

// password reads the password of an encrypted key: at the terminal, with a
// prompt; otherwise the next line of standard input.
func (s *secretInput) password() ([]byte, error) {
	if s.isTerm {
		return s.ask("Enter the password: ")
	}
	if err := s.readAll(); err != nil {
		return nil, err
	}
	p := s.nextLine()
	if len(p) == 0 {
		return nil, errors.New("the secret key is encrypted and no password was given: pass --password, or write it on the line after the key on standard input")
	}
	return p, nil
}

// isKeyText reports whether s is a Tezos secret key string, encrypted or
// not, optionally prefixed as in octez-client's secret_keys file.
func isKeyText(s string) bool {
	s = stripKeyPrefix(s)
	if tezos.IsEncryptedSecretKey(s) {
		return true
	}
	for _, p := range []string{"edsk", "spsk", "p2sk", "BLsk"} {
		if strings.HasPrefix(s, p) && len(s) > 40 && !strings.ContainsAny(s, " \t\r\n") {
			return true
		}
	}
	return false
}

// stripKeyPrefix removes octez-client's "encrypted:" or "unencrypted:".
func stripKeyPrefix(s string) string {
	for _, p := range []string{"unencrypted:", "encrypted:"} {
		if strings.HasPrefix(s, p) {
			return s[len(p):]
		}
	}
	return s
}

// parseSecret turns key material into a private key: an encrypted Tezos key
// is decrypted with the password from getPassword (asked only then); any
// other form goes to tezos.ParsePrivateKeyAny.
func parseSecret(data []byte, getPassword func() ([]byte, error)) (tezos.PrivateKey, error) {
	text := string(bytes.TrimSpace(data))
	if k := stripKeyPrefix(text); tezos.IsEncryptedSecretKey(k) {
		pass, err := getPassword()
		if err != nil {
			return tezos.PrivateKey{}, err
		}
		defer clear(pass)
		return tezos.DecryptSecretKey(k, pass)
	}
	return tezos.ParsePrivateKeyAny(data)
}
