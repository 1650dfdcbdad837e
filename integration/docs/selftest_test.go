package docs_test

import (
	"strings"
	"testing"

	"github.com/sigil-signer/sigil/integration/harness"
)

// TestBrokenDocsFail is the test of the test: a deliberately broken block
// of each kind is reported, naming the block.
func TestBrokenDocsFail(t *testing.T) {
	harness.SkipIfShort(t)
	root := moduleRoot(t)
	sigil := harness.BuildBinary(t, "./cmd/sigil")
	md := strings.Join([]string{
		"# broken",
		"```sh",
		"echo no directive",
		"```",
		"<!-- doctest: config -->",
		"```yaml",
		"server: {address: 127.0.0.1:6732}",
		"vaults: {dev: {driver: confidentalspace}}",
		"```",
		"<!-- doctest: bench -->",
		"```sh",
		"go test -run '^$' -bench NoSuchBenchmark ./domain/tezos/",
		"```",
		"<!-- doctest: record -->",
		"```sh",
		"scripts/no-such-script.sh 10s",
		"```",
		"<!-- doctest: covered-by integration/image TestNoSuchTest -->",
		"```sh",
		"task image:enclave",
		"```",
		"<!-- doctest: example octez-client -->",
		"```sh",
		"rm -rf /tmp/x",
		"```",
		"<!-- doctest: run -->",
		"```sh",
		"VALUE=1",
		"```",
		"<!-- doctest: run -->",
		"```sh",
		"test \"$VALUE\" = 2    # the broken step",
		"```",
		"",
	}, "\n")
	blocks, err := parseBlocks("docs/broken.md", []byte(md))
	if err != nil {
		t.Fatal(err)
	}
	if len(blocks) != 8 {
		t.Fatalf("parsed %d blocks, want 8", len(blocks))
	}
	if err := checkDirective(blocks[0]); err == nil || !strings.Contains(err.Error(), "docs/broken.md:2 (sh): no <!-- doctest") {
		t.Errorf("a block without a directive: %v", err)
	}
	for i, want := range map[int]string{
		1: "sigil config check refuses the configuration",
		2: "no benchmark of ./domain/tezos/ matches",
		3: "names scripts/no-such-script.sh, which is not in the repository",
		4: "no such test",
		5: "runs rm, which the directive does not name",
	} {
		err := checkStatic(root, sigil, blocks[i])
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("block %d (%s): %v, want an error with %q", i, blocks[i], err, want)
		}
	}
	// The session stops at the broken step and names it; the step before
	// it ran (its variable carried over).
	err = runSession(t, root, blocks[6:])
	if err == nil || !strings.Contains(err.Error(), "docs/broken.md:31 (sh) failed") || !strings.Contains(err.Error(), "the broken step") {
		t.Errorf("session: %v, want the failure of the block at docs/broken.md:31", err)
	}
}
