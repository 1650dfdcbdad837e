package domain

import (
	"errors"
	"fmt"
	"strings"
)

// Kind classifies a domain error so that adapters can map it (for example to
// an HTTP status) without knowing where it came from.
type Kind int

// Error kinds.
const (
	KindInternal     Kind = iota // a bug or an unexpected failure
	KindInvalid                  // the request or input is malformed
	KindUnauthorized             // the request lacks required authentication
	KindForbidden                // policy refuses the request
	KindNotFound                 // the key (or other object) does not exist
	KindConflict                 // the request conflicts with recorded state (watermark)
	KindUnavailable              // a dependency (enclave, storage) cannot serve now
	KindTooLarge                 // the input exceeds a size limit
)

func (k Kind) String() string {
	switch k {
	case KindInvalid:
		return "invalid"
	case KindUnauthorized:
		return "unauthorized"
	case KindForbidden:
		return "forbidden"
	case KindNotFound:
		return "not found"
	case KindConflict:
		return "conflict"
	case KindUnavailable:
		return "unavailable"
	case KindTooLarge:
		return "too large"
	}
	return "internal"
}

// Error is a domain error of a given kind. Msg is safe to show to clients;
// it never contains secret material.
type Error struct {
	Kind Kind
	Msg  string
	Err  error
}

func (e *Error) Error() string {
	if e.Msg == "" && e.Err != nil {
		return e.Err.Error()
	}
	return e.Msg
}

func (e *Error) Unwrap() error { return e.Err }

// Errorf returns an *Error of kind k with a formatted message. A %w verb
// wraps its argument as usual.
func Errorf(k Kind, format string, args ...any) error {
	err := fmt.Errorf(format, args...)
	return &Error{Kind: k, Msg: err.Error(), Err: errors.Unwrap(err)}
}

// Wrap attaches kind k to err (nil stays nil).
func Wrap(k Kind, err error) error {
	if err == nil {
		return nil
	}
	return &Error{Kind: k, Err: err}
}

// KindOf returns the kind of the outermost *Error in err's chain, or
// KindInternal when there is none.
func KindOf(err error) Kind {
	var e *Error
	if errors.As(err, &e) {
		return e.Kind
	}
	return KindInternal
}

// MaxEcho bounds how many bytes of an input value a message repeats.
const MaxEcho = 64

// Echo returns s for repeating an input (a client's or a configuration's
// value) in an error message or a log line: as is when short, else its
// first MaxEcho bytes marked with the full length, so that no input can
// make a message or a log line large.
func Echo(s string) string {
	if len(s) <= MaxEcho {
		return s
	}
	return fmt.Sprintf("%s…(%d bytes)", strings.ToValidUTF8(s[:MaxEcho], ""), len(s))
}

// secretPrefixes start Tezos secret keys, plain and encrypted, and the
// tags of octez-client's key files.
var secretPrefixes = []string{"edsk", "spsk", "p2sk", "BLsk", "edesk", "spesk", "p2esk", "BLesk", "unencrypted:", "encrypted:"}

// LooksSecret reports whether s looks like a Tezos secret key (one pasted
// where a name or an address belongs): a secret key's prefix followed by
// more than 16 characters.
func LooksSecret(s string) bool {
	s = strings.TrimSpace(s)
	for _, p := range secretPrefixes {
		if strings.HasPrefix(s, p) && len(s) > len(p)+16 {
			return true
		}
	}
	return false
}

// NotRepeated stands, in a message, for a value that looks like a secret
// key.
const NotRepeated = "(a value that looks like a secret key, not repeated)"

// EchoName returns a name given as input (a kind, a driver, a field), for
// a message: quoted and shortened as Echo does, or NotRepeated when it
// looks like a secret key.
func EchoName(s string) string {
	if LooksSecret(s) {
		return NotRepeated
	}
	return fmt.Sprintf("%q", Echo(s))
}
