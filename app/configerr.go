package app

import (
	"errors"
	"strings"

	"github.com/sigil-signer/sigil/adapters/config"
	"github.com/sigil-signer/sigil/domain/signer"
)

// Configuration errors found here (unknown drivers, a driver's section, a
// policy's kinds) are reported as the configuration package reports its
// own: FILE:LINE: FIELD: problem, with "did you mean" for names.

// recorder remembers the first error a section's decoder returned: a
// driver may wrap it in its own words, or flatten it with %v, and the
// check reports it with its line and field instead.
type recorder struct{ err error }

func (r *recorder) wrap(decode func(any) error) func(any) error {
	if decode == nil {
		return nil
	}
	return func(v any) error {
		err := decode(v)
		if err != nil && r.err == nil {
			r.err = err
		}
		return err
	}
}

// sectionError reports err, returned by the driver of the section at
// field: the decoder's error when the section did not decode (its field
// and line), an error that already names its place as it is, anything
// else at the section.
func sectionError(cfg *config.Config, field string, err error, rec *recorder) error {
	if err == nil {
		return nil
	}
	if rec != nil && rec.err != nil {
		placed := cfg.Wrap(field, rec.err)
		// What the driver said besides the decoder's words (e.g. "the
		// file key storage's config must be a single path string").
		var ce *config.Error
		if before, _, ok := strings.Cut(err.Error(), rec.err.Error()); ok && errors.As(placed, &ce) && placed == error(ce) {
			ctx := strings.TrimSuffix(strings.TrimSpace(before), ":")
			if ctx != "" && !strings.HasSuffix(ctx, "invalid config") {
				out := *ce
				out.Msg += " (" + ctx + ")"
				return &out
			}
		}
		return placed
	}
	return cfg.Wrap(field, err)
}

// unknownDriver is the error of a driver name that no driver has.
func unknownDriver(cfg *config.Config, field, what, name string, known []string) error {
	return cfg.Errorf(field, "%s", config.Unknown(what, name, known))
}

// policyError reports a policy's error at its place in the key's entry.
func policyError(cfg *config.Config, pkh string, err error) error {
	var pe *signer.PolicyError
	if errors.As(err, &pe) {
		return cfg.Errorf("tezos."+pkh+"."+pe.Field, "%s", pe.Msg)
	}
	return cfg.Wrap("tezos."+pkh, err)
}
