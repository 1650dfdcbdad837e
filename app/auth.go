package app

import (
	"log/slog"

	"github.com/sigil-signer/sigil/adapters/config"
	"github.com/sigil-signer/sigil/adapters/httpapi"
	"github.com/sigil-signer/sigil/adapters/jwtauth"
	"github.com/sigil-signer/sigil/adapters/policyhook"
	"github.com/sigil-signer/sigil/ports"
)

// newPolicyHook returns the policy hook client when policy_hook is
// configured, else nil (no hook).
func newPolicyHook(cfg *config.Config, log *slog.Logger) (ports.PolicyHook, error) {
	h := cfg.PolicyHook
	if h == nil {
		return nil, nil
	}
	hook, err := policyhook.New(policyhook.Config{
		Address:        h.Address,
		AuthorizedKeys: h.AuthorizedKeys,
		Timeout:        h.Timeout,
		Logger:         log.With("component", "policy_hook"),
	})
	if err != nil {
		return nil, err
	}
	if hook.Authenticated() {
		log.Info("policy hook: every request the policy allows is also asked to it; its replies must be signed", "authorized_keys", len(h.AuthorizedKeys), "timeout", h.Timeout)
	} else {
		log.Warn("policy hook without authorized_keys: its replies are not authenticated, so whoever can answer at its address approves requests; set policy_hook.authorized_keys", "timeout", h.Timeout)
	}
	return hook, nil
}

// newJWT returns the JWT authenticator when server.jwt is configured, else
// nil (no JWT).
func newJWT(cfg *config.Config, log *slog.Logger) (httpapi.Authenticator, error) {
	if cfg.Server.JWT == nil {
		return nil, nil
	}
	users, err := cfg.Server.JWT.AuthUsers()
	if err != nil {
		return nil, err
	}
	a, err := jwtauth.New(users, jwtauth.Options{Logger: log.With("component", "jwt")})
	if err != nil {
		return nil, err
	}
	log.Info("JWT authentication: POST /login, then a Bearer token and the username header on every request", "users", len(users))
	return a, nil
}
