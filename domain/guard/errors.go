package guard

import (
	"errors"
	"fmt"
	"strings"

	"github.com/sigil-signer/sigil/domain"
)

// ErrRefused is in the chain of every error by which the guard refuses to
// let a signature leave the enclave: the request is malformed
// (domain.KindInvalid), its policy forbids it (domain.KindForbidden), it
// conflicts with a recorded mark (domain.KindConflict), or the guard's
// state cannot be read or its mark recorded (domain.KindUnavailable).
// Errors of the sign callback itself are returned as they are, without it.
var ErrRefused = errors.New("refused by the enclave's guard")

// refusal is a *domain.Error of kind k whose text starts with "guard: ",
// with ErrRefused (and cause, when there is one) in its chain.
func refusal(k domain.Kind, cause error, format string, args ...any) error {
	err := ErrRefused
	if cause != nil {
		err = errors.Join(ErrRefused, cause)
	}
	return &domain.Error{Kind: k, Msg: "guard: " + fmt.Sprintf(format, args...), Err: err}
}

// Refused reports whether err is a refusal by the guard.
func Refused(err error) bool { return errors.Is(err, ErrRefused) }

// Wire form of a refusal, as the enclave's Err reply carries it to the
// daemon: the Err's message is WirePrefix followed by the refusal's code
// (forbidden, conflict, unavailable or invalid), and its source's message is
// the refusal's text. The daemon maps the code back to its error kind
// (KindOfWire) and so to its HTTP status (403, 409, 503, 400), and shows
// the text.
const WirePrefix = "guard refused: "

var wireCodes = []domain.Kind{domain.KindForbidden, domain.KindConflict, domain.KindUnavailable, domain.KindInvalid}

// WireMessage returns the message of the enclave's Err for a refusal
// ("guard refused: forbidden", …) and its detail (the refusal's text); ok
// is false when err is not a refusal.
func WireMessage(err error) (message, detail string, ok bool) {
	if !Refused(err) {
		return "", "", false
	}
	k := domain.KindOf(err)
	if k == domain.KindInternal {
		k = domain.KindUnavailable
	}
	return WirePrefix + k.String(), err.Error(), true
}

// KindOfWire returns the error kind of an enclave Err message that
// WireMessage made; ok is false for any other message.
func KindOfWire(message string) (domain.Kind, bool) {
	code, ok := strings.CutPrefix(message, WirePrefix)
	if !ok {
		return domain.KindInternal, false
	}
	for _, k := range wireCodes {
		if code == k.String() {
			return k, true
		}
	}
	return domain.KindInternal, false
}

// FromWire rebuilds, on the daemon's side, the error of an enclave Err
// reply whose message WireMessage made: a *domain.Error of the refusal's
// kind whose text is detail (the enclave's explanation), with ErrRefused
// in its chain; ok is false for any other message.
func FromWire(message, detail string) (error, bool) {
	k, ok := KindOfWire(message)
	if !ok {
		return nil, false
	}
	if detail == "" {
		detail = message
	}
	return &domain.Error{Kind: k, Msg: clip(detail), Err: ErrRefused}, true
}

// MaxWireDetail bounds the text FromWire keeps of a refusal's detail.
const MaxWireDetail = 1024

func clip(s string) string {
	if len(s) <= MaxWireDetail {
		return s
	}
	return fmt.Sprintf("%s…(%d bytes)", strings.ToValidUTF8(s[:MaxWireDetail], ""), len(s))
}
