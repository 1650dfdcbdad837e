package config_test

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/sigil-signer/sigil/adapters/config"
)

const (
	pass1   = "Operat0r-Passw0rd!"
	secret1 = "Operat0r#Secret-0123456789abcdefgh"
	pass2   = "Operat0r-N3w-Passw0rd!"
	secret2 = "Operat0r#N3w-Secret-0123456789abcd"
	hookPK  = "edpkuBknW28nW72KG6RoHtYW7p12T6GKc7nAbwYX5m8Wd9sDVC9yav"
	keyPKH  = "tz1burnburnburnburnburnburnburjAYjjX"
)

// authConfig is Signatory's documented JWT and policy hook configuration
// (docs/jwt_auth.md, docs/remote_policy.md) with credentials strong enough
// for its rules.
var authConfig = `
server:
  address: :6732
  utility_address: :9583
  jwt:
    users:
      user_name1:
        password: "` + pass1 + `"
        secret: "` + secret1 + `"
        jwt_exp: 234
        old_cred_exp: "2030-01-02 15:04:05"
        new_data:
          password: "` + pass2 + `"
          secret: "` + secret2 + `"
          jwt_exp: 35
      user_name2:
        password: ${USER2_PASSWORD}
        secret: ${USER2_SECRET}
policy_hook:
  address: http://127.0.0.1:8080/policy
  authorized_keys:
    - ` + hookPK + `
tezos:
  ` + keyPKH + `:
    jwt_users:
      - user_name1
      - user_name2
    log_payloads: true
    allow:
      block:
      endorsement:
      preendorsement:
      generic:
        - transaction
        - reveal
`

func TestJWTAndPolicyHookSections(t *testing.T) {
	t.Setenv("USER2_PASSWORD", "Second-Passw0rd-x")
	t.Setenv("USER2_SECRET", "Second#Secret-0123456789abcdefghij")
	c, err := config.Parse([]byte(authConfig), "")
	require.NoError(t, err)

	users, err := c.Server.JWT.AuthUsers()
	require.NoError(t, err)
	require.Len(t, users, 2)
	u1 := users["user_name1"]
	assert.Equal(t, pass1, u1.Password)
	assert.Equal(t, secret1, u1.Secret)
	assert.Equal(t, 234*time.Minute, u1.TTL)
	assert.Equal(t, time.Date(2030, 1, 2, 15, 4, 5, 0, time.UTC), u1.OldUntil)
	require.NotNil(t, u1.Next)
	assert.Equal(t, pass2, u1.Next.Password)
	assert.Equal(t, 35*time.Minute, u1.Next.TTL)
	u2 := users["user_name2"]
	assert.Equal(t, "Second-Passw0rd-x", u2.Password, "credentials can come from the environment")
	assert.Zero(t, u2.TTL, "no jwt_exp: the authenticator's default (60 minutes)")
	assert.Nil(t, u2.Next)

	assert.Equal(t, []string{"user_name1", "user_name2"}, c.Tezos[keyPKH].JWTUsers)
	require.NotNil(t, c.PolicyHook)
	assert.Equal(t, "http://127.0.0.1:8080/policy", c.PolicyHook.Address)
	require.Len(t, c.PolicyHook.AuthorizedKeys, 1)
	assert.Equal(t, hookPK, c.PolicyHook.AuthorizedKeys[0].String())
	assert.Equal(t, config.DefaultPolicyHookTimeout, c.PolicyHook.Timeout)

	// Secrets never print, whatever the verb.
	for _, f := range []string{"%v", "%+v", "%#v", "%s"} {
		out := fmt.Sprintf(f, *c.Server.JWT.Users["user_name1"]) + fmt.Sprintf(f, c.Server.JWT.Users["user_name1"].NewData)
		for _, s := range []string{pass1, secret1, pass2, secret2} {
			assert.NotContains(t, out, s, f)
		}
	}
}

func TestJWTAndPolicyHookErrors(t *testing.T) {
	t.Setenv("USER2_PASSWORD", "Second-Passw0rd-x")
	t.Setenv("USER2_SECRET", "Second#Secret-0123456789abcdefghij")
	replace := func(old, new string) string {
		require.Contains(t, authConfig, old)
		return strings.Replace(authConfig, old, new, 1)
	}
	for _, tc := range []struct{ name, yaml, want string }{
		{"weak password", replace(pass1, "password1"), "user_name1: password should be at least 16 characters"},
		{"weak secret", replace(secret1, "secret1"), "user_name1: secret should be at least 32"},
		{"weak new password", replace(pass2, "Short1!"), "user_name1: new_data.password"},
		{"new secret equals the old", replace(secret2, secret1), "new_data must change both"},
		{"jwt_exp zero", replace("jwt_exp: 234", "jwt_exp: 0"), "server.jwt.users.user_name1.jwt_exp: 0 is out of range"},
		{"jwt_exp negative", replace("jwt_exp: 234", "jwt_exp: -5"), "jwt_exp"},
		{"jwt_exp huge", replace("jwt_exp: 35", "jwt_exp: 99999999"), "new_data.jwt_exp"},
		{"old_cred_exp format", replace("2030-01-02 15:04:05", "2030-01-02T15:04:05Z"), "YYYY-MM-DD hh:mm:ss"},
		{"unknown user field", replace("        jwt_exp: 234\n", "        jwt_expiry: 234\n"), "server.jwt.users.user_name1.jwt_expiry: unknown field"},
		{"unset variable in a secret", replace("${USER2_SECRET}", "${NO_SUCH_SECRET_VAR}"), "server.jwt.users.user_name2.secret: a $ reference in this secret does not expand"},
		{"a $ inside a password", replace(pass1, "Operat0r$Passw0rd!"), "user_name1.password: a $ reference"},
		{"an unterminated ${ inside a secret", replace(secret1, "Operat0r${Secret-0123456789abcdefgh"), "user_name1.secret: a $ reference"},
		{"jwt_users names an unknown user", replace("      - user_name2\n", "      - user_name3\n"), `jwt_users[1]: "user_name3" is not a user`},
		{"jwt_users empty", replace("    jwt_users:\n      - user_name1\n      - user_name2\n", "    jwt_users: []\n"), "jwt_users: present but empty"},
		{"jwt_users without server.jwt", "tezos:\n  " + keyPKH + ":\n    jwt_users: [u]\n", "server.jwt is not configured"},
		{"server.jwt empty", "server:\n  jwt:\n", "server.jwt: present but empty"},
		{"server.jwt.users empty", "server:\n  jwt:\n    users: {}\n", "server.jwt.users: present but empty"},
		{"user entry empty", "server:\n  jwt:\n    users:\n      u:\n", "server.jwt.users.u: empty entry"},
		{"policy_hook empty", "policy_hook:\n", "policy_hook: present but empty"},
		{"policy_hook without address", "policy_hook:\n  authorized_keys: [" + hookPK + "]\n", "policy_hook.address: required"},
		{"policy_hook address not a URL", replace("http://127.0.0.1:8080/policy", "127.0.0.1:8080"), "policy_hook.address"},
		{"policy_hook keys empty", replace("  authorized_keys:\n    - "+hookPK+"\n", "  authorized_keys: []\n"), "policy_hook.authorized_keys: present but empty"},
		{"policy_hook bad key", replace(hookPK, "edpkNOPE"), "authorized_keys"},
		{"policy_hook timeout too short", replace("  address: http://127.0.0.1:8080/policy\n", "  address: http://127.0.0.1:8080/policy\n  timeout: 10ms\n"), "policy_hook.timeout"},
		{"policy_hook unknown field", replace("  address: http://127.0.0.1:8080/policy\n", "  address: http://127.0.0.1:8080/policy\n  adress: x\n"), "policy_hook.adress: unknown field"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := config.Parse([]byte(tc.yaml), "")
			require.Error(t, err)
			assert.Contains(t, err.Error(), tc.want)
			for _, s := range []string{pass1, secret1, pass2, secret2, "password1", "secret1", "Short1!", "Second-Passw0rd-x", "Passw0rd", "Secret-0123456789abcdefgh", "NO_SUCH_SECRET_VAR"} {
				assert.NotContains(t, err.Error(), s, "a credential leaks into a configuration error")
			}
		})
	}
}
