package cluster

import (
	"net/http"
	"path/filepath"
	"strings"
	"testing"

	"github.com/sigil-signer/sigil/domain/tezos"
)

// TestKeysOnFirestore generates a key of every type and imports a base58
// key with Firestore key storage, signs a transaction with each through the
// daemon, and checks that a restarted daemon serves the same keys.
func TestKeysOnFirestore(t *testing.T) {
	t.Parallel()
	fs := sharedFirestore(t)
	project := fs.NewProject(t)
	enc := startEnclave(t, filepath.Join(t.TempDir(), "kms.key"))
	n := newNode(t, "a", enc, fs.Env())
	n.storage = firestoreSection(project)

	var pkhs []string
	for _, typ := range []string{"tz1", "tz2", "tz3", "tz4"} {
		pkh := n.generate(typ)
		if !strings.HasPrefix(pkh, typ) {
			t.Fatalf("generate -t %s gave %s", typ, pkh)
		}
		pkhs = append(pkhs, pkh)
	}
	sk, err := tezos.GeneratePrivateKey(tezos.Secp256k1, nil)
	if err != nil {
		t.Fatal(err)
	}
	pub, err := sk.Public()
	if err != nil {
		t.Fatal(err)
	}
	imported := strings.TrimSpace(n.mustRun(sk.Base58()+"\n", "import"))
	if want := pub.Hash().String(); imported != want {
		t.Fatalf("import printed %q, want %s", imported, want)
	}
	pkhs = append(pkhs, imported)
	if n.keyFileExists() {
		t.Fatal("keys went to the local key file, not to Firestore")
	}

	// Another base directory with the same storage lists them all: they
	// are in Firestore.
	other := newNode(t, "lister", enc, fs.Env())
	other.storage = n.storage
	list := other.mustRun("", "list")
	for _, pkh := range pkhs {
		if !strings.Contains(list, pkh) {
			t.Fatalf("sigil list from another base dir lacks %s:\n%s", pkh, list)
		}
	}

	for _, pkh := range pkhs {
		n.allow(pkh, "generic")
	}
	msg := transactionVector(t)
	d := n.start()
	if d.keys != len(pkhs) {
		t.Fatalf("daemon loaded %d keys, want %d", d.keys, len(pkhs))
	}
	pks := map[string]string{}
	for _, pkh := range pkhs {
		pk, status := d.publicKey(t, pkh)
		if status != http.StatusOK {
			t.Fatalf("GET /keys/%s: %d", pkh, status)
		}
		p, err := tezos.ParsePublicKey(pk)
		if err != nil || p.Hash().String() != pkh {
			t.Fatalf("public key %s (%v) does not hash to %s", pk, err, pkh)
		}
		pks[pkh] = pk
		d.mustSign(t, pkh, pk, msg)
	}
	if pks[imported] != pub.String() {
		t.Fatalf("imported key serves %s, want %s", pks[imported], pub)
	}

	d.proc.Stop()
	d = n.start()
	if d.keys != len(pkhs) {
		t.Fatalf("restarted daemon loaded %d keys, want %d", d.keys, len(pkhs))
	}
	for _, pkh := range pkhs {
		pk, status := d.publicKey(t, pkh)
		if status != http.StatusOK || pk != pks[pkh] {
			t.Fatalf("after restart GET /keys/%s: %d %q, want %q", pkh, status, pk, pks[pkh])
		}
		d.mustSign(t, pkh, pk, msg)
	}
}

// TestTwoDaemonsShareKeys runs two daemons with separate base directories
// and separate enclaves (sharing one KMS key) on one Firestore collection:
// keys generated with daemon A's configuration are served by daemon B once
// B restarts.
func TestTwoDaemonsShareKeys(t *testing.T) {
	t.Parallel()
	fs := sharedFirestore(t)
	project := fs.NewProject(t)
	kms := filepath.Join(t.TempDir(), "kms.key")
	encA := startEnclave(t, kms)
	encB := startEnclave(t, kms)
	a := newNode(t, "a", encA, fs.Env())
	b := newNode(t, "b", encB, fs.Env())
	a.storage = firestoreSection(project)
	b.storage = firestoreSection(project)

	db := b.start()
	if db.keys != 0 {
		t.Fatalf("daemon B started with %d keys in an empty collection", db.keys)
	}
	p1, p2 := a.generate("tz1"), a.generate("tz4")
	if _, status := db.publicKey(t, p1); status != http.StatusNotFound {
		t.Fatalf("B knows %s before restarting: status %d", p1, status)
	}
	if a.keyFileExists() || b.keyFileExists() {
		t.Fatal("a local key file was written")
	}

	for _, n := range []*node{a, b} {
		n.allow(p1, "generic")
		n.allow(p2, "generic")
	}
	db.proc.Stop()
	db = b.start()
	da := a.start()
	if db.keys != 2 || da.keys != 2 {
		t.Fatalf("daemons loaded %d (B) and %d (A) keys, want 2", db.keys, da.keys)
	}
	msg := transactionVector(t)
	for _, pkh := range []string{p1, p2} {
		pkB, status := db.publicKey(t, pkh)
		if status != http.StatusOK {
			t.Fatalf("B: GET /keys/%s: %d", pkh, status)
		}
		pkA, _ := da.publicKey(t, pkh)
		if pkA != pkB {
			t.Fatalf("A and B disagree on %s: %s vs %s", pkh, pkA, pkB)
		}
		sigB := db.mustSign(t, pkh, pkB, msg)
		sigA := da.mustSign(t, pkh, pkA, msg)
		if sigA != sigB {
			// Both signers are deterministic: the same key and message give
			// the same signature, whichever enclave holds the key.
			t.Fatalf("A and B signed the same message differently with %s: %s vs %s", pkh, sigA, sigB)
		}
	}
}
