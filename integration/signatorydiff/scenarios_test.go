package signatorydiff

import (
	"fmt"
	"strings"
)

// scenario is one configuration run by both programs and the requests sent
// to both.
type scenario struct {
	name string
	// config is the configuration template (Signatory's format), rendered
	// per daemon with its base directory and addresses; {{pkh "w1"}},
	// {{pk "client-a"}}, {{chain "main"}}, {{generic}}, {{.Vault}} and
	// {{.Hook}} are the same for both.
	config string
	// startOnly: only whether each program accepts the configuration is
	// compared.
	startOnly bool
	// handover: Signatory alone signs these first, on a base directory that
	// both daemons then start from (a copy each).
	handover []tcase
	cases    []tcase
}

// The roles of the corpus keys (all in the `file` vault unless said):
//
//	w1 w2 w3 w4   tz1 tz2 tz3 tz4, every request and operation kind both
//	              programs know allowed (w3: only chain main; w4: proof of
//	              possession allowed)
//	staker        tz1, generic [stake unstake finalize_unstake set_delegate_parameters]
//	payer         tz2, generic [transaction]
//	bare          tz4, a bare entry (Signatory's default policy)
//	voter         tz3, generic [ballot]
//	unlisted      tz4, in the vault, not in the configuration
//	absent        tz1, in the configuration (w1's policy), not in the vault
//	stranger      tz2, in neither
//	client-a/b/c  tz1 client keys (server.authorized_keys: a and b)
//	hook          tz1, signs the policy hook's replies
var vaultKeys = []string{"w1", "w2", "w3", "w4", "staker", "payer", "bare", "voter", "unlisted"}

const header = `base_dir: {{.BaseDir}}
server:
  address: {{.Address}}
  utility_address: {{.UtilityAddress}}
%svaults:
  local:
    driver: file
    config:
      file: {{.Vault}}
`

// config assembles a configuration template: header with server extras,
// then the tezos section and any further top-level sections.
func config(server, tezos string, extra ...string) string {
	return fmt.Sprintf(header, server) + "tezos:\n" + tezos + strings.Join(extra, "")
}

// wide is a key entry allowing every request kind and every operation kind
// both programs know, with extra lines (indented four spaces).
func wide(key string, extra ...string) string {
	s := fmt.Sprintf(`  {{pkh %q}}:
    allow:
      block:
      preattestation:
      attestation:
      attestation_with_dal:
      generic: {{generic}}
`, key)
	for _, x := range extra {
		s += "    " + x + "\n"
	}
	return s
}

func entry(key, body string) string {
	return fmt.Sprintf("  {{pkh %q}}:\n", key) + body
}

var mainTezos = wide("w1") + wide("w2") + wide("w3", `allowed_chains: [{{chain "main"}}]`) +
	wide("w4", "allow_proof_of_possession: true") +
	entry("staker", "    allow:\n      generic: [stake, unstake, finalize_unstake, set_delegate_parameters]\n") +
	entry("payer", "    allow:\n      generic: [transaction]\n") +
	entry("bare", "") +
	entry("voter", "    allow:\n      generic: [ballot]\n") +
	wide("absent")

func str(s string) *string { return &s }

// sign is a POST of a corpus message to a key.
func sign(name, key, msg string) tcase {
	return tcase{name: name, path: "/keys/{" + key + "}", msg: msg}
}

// watermarkSequence is, for one consensus kind and key, the sequence every
// kind gets (levels from the corpus bases): first, identical repeat, other
// payload at the same level and round, lower level, higher round, next
// level.
func watermarkSequence(kind, key string, base int) []tcase {
	m := func(dl, r int, p string) string { return fmt.Sprintf("%s/main/%d/%d/%s", kind, base+dl, r, p) }
	n := func(s string) string { return fmt.Sprintf("watermark/%s/%s/%s", kind, key, s) }
	return []tcase{
		sign(n("1-first"), key, m(0, 0, "a")),
		sign(n("2-identical-repeat"), key, m(0, 0, "a")),
		sign(n("3-other-payload-same-level-round"), key, m(0, 0, "b")),
		sign(n("4-lower-level"), key, m(-1, 5, "a")),
		sign(n("5-higher-round"), key, m(0, 1, "a")),
		sign(n("6-next-level"), key, m(1, 0, "a")),
	}
}

var consensusBases = []struct {
	kind string
	base int
}{{"blk", 1000}, {"pre", 2000}, {"att", 3000}, {"dal", 4000}, {"bpre", 5000}, {"batt", 6000}}

func (e *env) mainCases() []tcase {
	var cs []tcase
	all := []string{"w1", "w2", "w3", "w4", "staker", "payer", "bare", "voter", "unlisted", "absent", "stranger"}
	for _, k := range all {
		cs = append(cs, tcase{name: "keys/get/" + k, path: "/keys/{" + k + "}"})
	}
	cs = append(cs,
		tcase{name: "keys/get/malformed-hash", path: "/keys/tz1invalid"},
		tcase{name: "authorized_keys/none-configured", path: "/authorized_keys"},
	)
	for _, k := range []string{"w4", "bare", "unlisted", "w1", "absent", "stranger"} {
		cs = append(cs, tcase{name: "pop/" + k, path: "/bls_prove_possession/{" + k + "}"})
	}
	cs = append(cs, tcase{name: "pop/malformed-hash", path: "/bls_prove_possession/tz4invalid"})

	// Every generic operation kind, for every key type and two narrow
	// policies.
	for _, v := range e.c.opNames {
		for _, k := range []string{"w1", "w2", "w3", "w4", "staker", "bare"} {
			cs = append(cs, sign("op/"+v+"/"+k, k, "op:"+v))
		}
	}
	// Staking pseudo-operations to self and to others.
	for _, k := range []string{"staker", "payer", "w1", "w4"} {
		for _, ep := range []string{"stake", "unstake", "finalize_unstake", "set_delegate_parameters"} {
			for _, to := range []string{"self", "kt1", "other"} {
				m := fmt.Sprintf("staking/%s/%s/%s", k, ep, to)
				cs = append(cs, sign(m, k, m))
			}
		}
		for _, m := range []string{"staking/" + k + "/stake/self-named", "staking/" + k + "/batch"} {
			cs = append(cs, sign(m, k, m))
		}
	}
	for _, k := range []string{"voter", "w1", "w4"} {
		for _, v := range []string{"yay", "nay", "pass"} {
			m := "ballot/" + k + "/" + v
			cs = append(cs, sign(m, k, m))
		}
	}
	cs = append(cs, sign("ballot/voter-ballot-signed-by-staker", "staker", "ballot/voter/yay"))
	for _, k := range []string{"w4", "w1"} {
		cs = append(cs, sign("signature-prefix/"+k, k, "signature-prefix/transaction"))
	}
	for _, k := range []string{"w1", "bare"} {
		cs = append(cs, sign("micheline/"+k, k, "micheline"))
	}

	// Consensus requests and watermark sequences.
	for _, k := range []string{"w1", "w2", "w3", "w4", "bare"} {
		for _, b := range consensusBases {
			cs = append(cs, watermarkSequence(b.kind, k, b.base)...)
			if b.kind == "att" {
				// Before any attestation_with_dal of this key: at the level
				// and round of the attestation just signed (3001, 0).
				cs = append(cs, sign("watermark/dal/"+k+"/at-level-and-round-of-an-attestation", k, "dal/main/3001/0/a"))
			}
		}
		cs = append(cs, sign("watermark/att/"+k+"/other-chain", k, "att/other/3000/0/a"))
	}
	for _, k := range []string{"staker", "voter"} {
		cs = append(cs, sign("watermark/att/"+k+"/not-allowed", k, "att/main/3000/0/a"))
	}
	for _, k := range []string{"w1", "w4"} {
		cs = append(cs,
			sign("watermark/blk/"+k+"/fitness-round-2-payload-round-0", k, "blk/main/1200/2/a/pr0"),
			sign("watermark/blk/"+k+"/fitness-round-1-payload-round-1", k, "blk/main/1200/1/b/pr1"),
		)
	}
	cs = append(cs, sign("watermark/blk/w1/fitness-without-round", "w1", "blk/main/1300/0/a/fitness-short"))

	// ?version=
	for _, k := range []string{"w4", "w1", "w2"} {
		for _, v := range []string{"", "0", "1", "2", "3", "255", "x"} {
			c := sign("version/"+orNone(v)+"/transaction/"+k, k, "op:transaction/simple")
			c.query = "version=" + v
			cs = append(cs, c)
		}
		for _, m := range []string{"update_companion_key", "reveal/blpk-with-proof", "attestations_aggregate"} {
			c := sign("version/1/"+m+"/"+k, k, "op:"+m)
			c.query = "version=1"
			cs = append(cs, c)
		}
	}

	// Unknown keys.
	for _, k := range []string{"stranger", "absent", "unlisted"} {
		cs = append(cs, sign("unknown-key/sign/"+k, k, "op:transaction/simple"))
	}
	cs = append(cs,
		tcase{name: "unknown-key/sign/malformed-hash", path: "/keys/tz1invalid", msg: "op:transaction/simple"},
		tcase{name: "unknown-key/sign/no-hash", path: "/keys/", msg: "op:transaction/simple"},
	)

	// HTTP edge cases, all on w1.
	tx := e.c.ops["transaction/simple"]
	big := `"03` + strings.Repeat("00", 1<<20) + `"`
	under := `"` + tx + strings.Repeat("00", 400<<10) + `"`
	for _, c := range []struct{ name, body string }{
		{"not-json", "hello"},
		{"json-number", "42"},
		{"json-object", `{"data":"` + tx + `"}`},
		{"json-null", "null"},
		{"bad-hex", `"zz"`},
		{"odd-hex", `"030"`},
		{"empty-string", `""`},
		{"empty-body", ""},
		{"unknown-magic", `"04` + tx[2:] + `"`},
		{"truncated", `"` + tx[:len(tx)-2] + `"`},
		{"trailing-byte", `"` + tx + `00"`},
		{"trailing-garbage-after-json", `"` + tx + `" x`},
		{"whitespace-around-json", " \n\"" + tx + "\"\n "},
		{"uppercase-hex", `"` + strings.ToUpper(tx) + `"`},
		{"0x-prefix", `"0x` + tx + `"`},
		{"body-over-1MiB", big},
		{"body-400KiB-trailing-zeros", under},
	} {
		cs = append(cs, tcase{name: "http/body/" + c.name, path: "/keys/{w1}", body: str(c.body), method: "POST"})
	}
	// Consensus requests with a byte after them (levels no other case of
	// this scenario uses).
	for _, m := range []string{"blk/main/8000/1/a", "pre/main/8100/1/a", "att/main/8200/1/a"} {
		kind, _, _ := strings.Cut(m, "/")
		cs = append(cs, tcase{name: "http/body/byte-after-a-" + kind, path: "/keys/{w1}", key: "w1",
			body: str(`"` + e.c.Messages[m] + `00"`)})
	}
	textPlain := sign("http/content-type-text-plain", "w1", "op:transaction/simple")
	textPlain.headers = map[string]string{"Content-Type": "text/plain"}
	cs = append(cs, textPlain)
	for _, m := range []string{"PUT", "DELETE", "PATCH", "HEAD", "OPTIONS"} {
		cs = append(cs, tcase{name: "http/method/" + m + "-keys", path: "/keys/{w1}", method: m})
	}
	cs = append(cs,
		tcase{name: "http/method/POST-authorized_keys", path: "/authorized_keys", method: "POST", body: str(`""`)},
		tcase{name: "http/method/POST-bls_prove_possession", path: "/bls_prove_possession/{w4}", method: "POST", body: str(`""`)},
		tcase{name: "http/path/root", path: "/"},
		tcase{name: "http/path/unknown", path: "/nope"},
		tcase{name: "http/path/login-without-jwt", path: "/login", method: "POST"},
		tcase{name: "http/path/trailing-slash", path: "/keys/{w1}/"},
		tcase{name: "http/path/healthz-on-api-port", path: "/healthz"},
		tcase{name: "http/path/metrics-on-api-port", path: "/metrics"},
	)
	return cs
}

func (e *env) scenarios() []scenario {
	c := e.c
	var ss []scenario

	ss = append(ss, scenario{name: "main", config: config("", mainTezos), cases: e.mainCases()})

	// Handover: Signatory signs alone, then both start on copies of its
	// base directory.
	var pre, post []tcase
	for _, k := range []string{"w1", "w2", "w4"} {
		for _, b := range []struct {
			kind string
			base int
		}{{"blk", 8000}, {"pre", 8100}, {"att", 8200}} {
			m := func(dl, r int, p string) string { return fmt.Sprintf("%s/main/%d/%d/%s", b.kind, b.base+dl, r, p) }
			n := func(s string) string { return fmt.Sprintf("handover/%s/%s/%s", b.kind, k, s) }
			pre = append(pre, sign(n("signed-by-signatory-alone"), k, m(0, 1, "a")))
			post = append(post,
				sign(n("1-identical-repeat"), k, m(0, 1, "a")),
				sign(n("2-other-payload-same-level-round"), k, m(0, 1, "b")),
				sign(n("3-lower-round"), k, m(0, 0, "a")),
				sign(n("4-higher-round"), k, m(0, 2, "a")),
				sign(n("5-next-level"), k, m(1, 0, "a")),
			)
		}
	}
	ss = append(ss, scenario{name: "handover", config: config("", wide("w1")+wide("w2")+wide("w4")), handover: pre, cases: post})

	// Client authentication (server.authorized_keys).
	authTezos := wide("w1") + wide("w4", "allow_proof_of_possession: true") +
		entry("payer", "    allow:\n      generic: [transaction]\n    authorized_keys: [{{pk \"client-a\"}}]\n")
	authServer := "  authorized_keys: [{{pk \"client-a\"}}, {{pk \"client-b\"}}]\n"
	var auth []tcase
	for _, a := range []string{"client-a", "client-b", "client-c", "", "garbage", "wrong-message"} {
		cs := sign("auth/w1/"+orNone(a), "w1", "op:transaction/simple")
		cs.auth = a
		auth = append(auth, cs)
	}
	for _, a := range []string{"client-a", "client-b", ""} {
		cs := sign("auth/payer-restricted-to-client-a/"+orNone(a), "payer", "op:transaction/simple")
		cs.auth = a
		auth = append(auth, cs)
	}
	att := sign("auth/attestation/w1/client-a", "w1", "att/main/3000/0/a")
	att.auth = "client-a"
	auth = append(auth, att)
	for _, a := range []string{"client-a", ""} {
		auth = append(auth, tcase{name: "auth/pop/w4/" + orNone(a), path: "/bls_prove_possession/{w4}", auth: a})
	}
	auth = append(auth,
		tcase{name: "auth/keys/get/w1", path: "/keys/{w1}"},
		tcase{name: "auth/authorized_keys", path: "/authorized_keys"},
		tcase{name: "auth/unknown-key/stranger/client-a", path: "/keys/{stranger}", msg: "op:transaction/simple", auth: "client-a"},
	)
	ss = append(ss, scenario{name: "auth", config: config(authServer, authTezos), cases: auth})

	// A per-key authorized_keys without server.authorized_keys.
	var perKey []tcase
	for _, a := range []string{"client-a", "client-b", ""} {
		cs := sign("auth-per-key/payer/"+orNone(a), "payer", "op:transaction/simple")
		cs.auth = a
		perKey = append(perKey, cs)
	}
	w1a := sign("auth-per-key/w1/client-a", "w1", "op:transaction/simple")
	w1a.auth = "client-a"
	perKey = append(perKey, w1a, sign("auth-per-key/w1/none", "w1", "op:transaction/simple"),
		tcase{name: "auth-per-key/authorized_keys", path: "/authorized_keys"})
	ss = append(ss, scenario{name: "auth-per-key", config: config("", wide("w1")+
		entry("payer", "    allow:\n      generic: [transaction]\n    authorized_keys: [{{pk \"client-a\"}}]\n")), cases: perKey})

	// Policy hook, unsigned replies.
	hookTezos := wide("w1") + wide("w4", "allow_proof_of_possession: true") + entry("payer", "    allow:\n      generic: [transaction]\n")
	withHook := func(cs tcase, mode string) tcase { cs.hook = mode; cs.name += "/" + mode; return cs }
	var hook []tcase
	for _, mode := range []string{"approve", "refuse", "fail"} {
		hook = append(hook,
			withHook(sign("hook/transaction/w1", "w1", "op:transaction/simple"), mode),
			withHook(tcase{name: "hook/pop/w4", path: "/bls_prove_possession/{w4}"}, mode),
		)
	}
	hook = append(hook,
		withHook(sign("hook/attestation/w1/first", "w1", "att/main/3000/0/a"), "approve"),
		withHook(sign("hook/attestation/w1/next-level", "w1", "att/main/3001/0/a"), "refuse"),
		withHook(sign("hook/attestation/w1/lower-level", "w1", "att/main/2999/5/a"), "approve"),
		withHook(sign("hook/policy-refused/payer-delegation", "payer", "op:delegation/set"), "approve"),
		withHook(sign("hook/unknown-key/stranger", "stranger", "op:transaction/simple"), "approve"),
		withHook(sign("hook/bad-request/w1-truncated", "w1", "op:transaction/simple"), "approve"),
	)
	hook[len(hook)-1].msg, hook[len(hook)-1].body = "", str(`"`+c.ops["transaction/simple"][:20]+`"`)
	ss = append(ss, scenario{name: "hook", config: config("", hookTezos, "policy_hook:\n  address: {{.Hook}}\n"), cases: hook})

	// Policy hook, signed replies (policy_hook.authorized_keys).
	var signed []tcase
	for _, mode := range []string{"signed-approve", "signed-refuse", "signed-fail", "signed-by-stranger", "signed-bad-signature",
		"signed-wrong-nonce", "signed-status-mismatch", "signed-garbage-signature", "approve"} {
		signed = append(signed, withHook(sign("hook-signed/transaction/w1", "w1", "op:transaction/simple"), mode))
	}
	signed = append(signed,
		withHook(tcase{name: "hook-signed/pop/w4", path: "/bls_prove_possession/{w4}"}, "signed-approve"),
		withHook(tcase{name: "hook-signed/pop/w4", path: "/bls_prove_possession/{w4}"}, "signed-refuse"),
	)
	ss = append(ss, scenario{name: "hook-signed", config: config("", hookTezos,
		"policy_hook:\n  address: {{.Hook}}\n  authorized_keys: [{{pk \"hook\"}}]\n"), cases: signed})

	// JWT.
	jwtServer := `  jwt:
    users:
      alice:
        password: "Alice-Passw0rd-2026!"
        secret: "Alice-Secret-Key-0123456789-abcdefXYZ!"
        jwt_exp: 30
      bob:
        password: "Bob-Passw0rd-2026!x"
        secret: "Bob-Secret-Key-0123456789-abcdefXYZ!!"
        jwt_exp: 30
`
	jwtTezos := wide("w1", "jwt_users: [alice]") + wide("w4", "allow_proof_of_possession: true")
	login := func(name, cred string) tcase { return tcase{name: "jwt/login/" + name, path: "/login", login: cred} }
	withJWT := func(cs tcase, mode string) tcase { cs.jwt = mode; cs.name += "/" + orNone(mode); return cs }
	jwt := []tcase{
		login("alice", "alice:Alice-Passw0rd-2026!"),
		login("bob", "bob:Bob-Passw0rd-2026!x"),
		login("alice-wrong-password", "alice:Alice-Passw0rd-2026?"),
		login("unknown-user", "carol:Alice-Passw0rd-2026!"),
		{name: "jwt/login/no-credentials", path: "/login", method: "POST"},
		{name: "jwt/login/GET", path: "/login"},
	}
	for _, mode := range []string{"", "alice", "alice-tampered"} {
		jwt = append(jwt, withJWT(tcase{name: "jwt/keys/get/w1", path: "/keys/{w1}"}, mode))
	}
	for _, mode := range []string{"alice", "bob", "", "alice-tampered", "alice@other", "alice-as-bob", "bearer-only"} {
		jwt = append(jwt, withJWT(sign("jwt/sign/w1-for-alice-only", "w1", "op:transaction/simple"), mode))
	}
	jwt = append(jwt,
		withJWT(sign("jwt/sign/w4", "w4", "op:transaction/simple"), "bob"),
		withJWT(tcase{name: "jwt/pop/w4", path: "/bls_prove_possession/{w4}"}, "alice"),
		withJWT(tcase{name: "jwt/pop/w4", path: "/bls_prove_possession/{w4}"}, ""),
		withJWT(tcase{name: "jwt/authorized_keys", path: "/authorized_keys"}, "alice"),
		withJWT(tcase{name: "jwt/authorized_keys", path: "/authorized_keys"}, ""),
		withJWT(tcase{name: "jwt/path/unknown", path: "/nope"}, ""),
		withJWT(tcase{name: "jwt/path/unknown", path: "/nope"}, "alice"),
		withJWT(tcase{name: "jwt/method/PUT-keys", path: "/keys/{w1}", method: "PUT"}, ""),
		withJWT(tcase{name: "jwt/method/PUT-keys", path: "/keys/{w1}", method: "PUT"}, "alice"),
		withJWT(sign("jwt/sign/stranger", "stranger", "op:transaction/simple"), "alice"),
	)
	ss = append(ss, scenario{name: "jwt", config: config(jwtServer, jwtTezos), cases: jwt})

	// Ballot sub-kinds and the pack request kind.
	ss = append(ss, scenario{name: "ballot-subkinds", config: config("",
		entry("voter", "    allow:\n      generic: [\"ballot:yay\", \"ballot:pass\"]\n")+entry("w1", "    allow:\n      generic: [ballot]\n")),
		cases: []tcase{
			sign("ballot/voter/yay", "voter", "ballot/voter/yay"),
			sign("ballot/voter/nay", "voter", "ballot/voter/nay"),
			sign("ballot/voter/pass", "voter", "ballot/voter/pass"),
			sign("ballot/w1/nay", "w1", "ballot/w1/nay"),
		}})
	pack := []tcase{
		sign("micheline/w1", "w1", "micheline"),
		sign("micheline/bare", "bare", "micheline"),
		sign("transaction/w1", "w1", "op:transaction/simple"),
		{name: "micheline/w1/byte-after-the-expression", path: "/keys/{w1}", body: str(`"` + c.Messages["micheline"] + `00"`)},
	}
	for _, v := range c.packs {
		pack = append(pack, sign("pack/"+v+"/w1", "w1", "op:"+v), sign("pack/"+v+"/w4", "w4", "op:"+v))
	}
	ss = append(ss, scenario{name: "pack", config: config("",
		entry("w1", "    allow:\n      pack:\n      generic: [transaction]\n")+entry("w4", "    allow:\n      pack:\n")+entry("bare", "")),
		cases: pack})

	// Configurations: does each program start?
	startOnly := func(name, server, tezos string, extra ...string) scenario {
		return scenario{name: "config/" + name, config: config(server, tezos, extra...), startOnly: true}
	}
	one := func(body string) string { return entry("w1", body) }
	ss = append(ss,
		startOnly("baseline", "", one("")),
		startOnly("generic-attestation", "", one("    allow:\n      generic: [attestation]\n")),
		startOnly("generic-signature-prefix", "", one("    allow:\n      generic: [signature_prefix]\n")),
		startOnly("request-kind-micheline", "", one("    allow:\n      micheline:\n")),
		startOnly("request-kind-pack", "", one("    allow:\n      pack:\n")),
		startOnly("generic-ballot-yay", "", one("    allow:\n      generic: [\"ballot:yay\"]\n")),
		startOnly("generic-earlier-protocol-kind", "", one("    allow:\n      generic: [tx_rollup_origination]\n")),
		startOnly("generic-unknown-kind", "", one("    allow:\n      generic: [teleport]\n")),
		startOnly("endorsement-aliases", "", one("    allow:\n      endorsement:\n      preendorsement:\n      generic: [double_endorsement_evidence]\n")),
		startOnly("deprecated-allowed-operations", "", one("    allowed_operations: [generic, block]\n    allowed_kinds: [transaction]\n")),
		startOnly("unknown-field", "", one("    vault: local\n")),
		startOnly("empty-authorized-keys", "  authorized_keys: []\n", one("")),
		startOnly("jwt-users-without-jwt", "", one("    jwt_users: [alice]\n")),
		startOnly("jwt-and-authorized-keys", jwtServer+"  authorized_keys: [{{pk \"client-a\"}}]\n", one("")),
		startOnly("second-document", "", one(""), "---\nbase_dir: /nonexistent\n"),
		startOnly("proof-of-possession-on-tz1", "", one("    allow_proof_of_possession: true\n")),
		startOnly("allowed-chains-malformed", "", one("    allowed_chains: [NotAChain]\n")),
		startOnly("jwt-weak-password", "  jwt:\n    users:\n      alice:\n        password: short\n        secret: \"Alice-Secret-Key-0123456789-abcdefXYZ!\"\n", one("")),
	)
	return ss
}
