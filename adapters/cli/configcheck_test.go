package cli

import (
	"bytes"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// tree lists every path under dir.
func tree(t *testing.T, dir string) []string {
	t.Helper()
	var out []string
	require.NoError(t, filepath.WalkDir(dir, func(p string, _ fs.DirEntry, err error) error {
		out = append(out, p)
		return err
	}))
	sort.Strings(out)
	return out
}

// lineOf is the number of the first line of text that contains s.
func lineOf(t *testing.T, text, s string) int {
	t.Helper()
	for i, l := range strings.Split(text, "\n") {
		if strings.Contains(l, s) {
			return i + 1
		}
	}
	t.Fatalf("%q not in the text", s)
	return 0
}

func runCheck(t *testing.T, args ...string) (stdout, stderr string, err error) {
	t.Helper()
	var out, errb bytes.Buffer
	root := NewRoot(&out, &errb)
	root.SetArgs(append([]string{"config", "check"}, args...))
	err = root.Execute()
	return out.String(), errb.String(), err
}

// TestConfigCheck: `sigil config check` reports every problem, one line
// each, and fails; a good configuration gets a one-line summary. Neither
// dials the enclave nor writes a file.
func TestConfigCheck(t *testing.T) {
	enc := newCountingListener(t)
	dir := t.TempDir()
	base := filepath.Join(dir, "state") // does not exist: must not be created
	write := func(body string) string {
		path := filepath.Join(dir, "sigil.yaml")
		require.NoError(t, os.WriteFile(path, []byte("base_dir: "+base+"\n"+body), 0o600))
		return path
	}
	good := vaultYAML(enc.port()) + `      storage:
        driver: file
        config: ` + filepath.Join(base, "keys", "keys.json") + `
  local:
    driver: file
    config:
      file: ` + filepath.Join(dir, "absent-secret.json") + `
tezos:
  tz1VSUr8wwNhLAzempoch5d6hLRiTh8Cjcjb:
    allow:
      block:
  tz1burnburnburnburnburnburnburjAYjjX:
`
	path := write(good)
	before := tree(t, dir)
	out, errOut, err := runCheck(t, "-c", path)
	require.NoError(t, err, errOut)
	assert.Equal(t, "OK: "+path+": 2 vault(s): cs (confidentialspace), local (file); 2 key(s) named by policies; watermark backend file\n", out)
	assert.Empty(t, errOut)

	bad := strings.NewReplacer("block:", "blocks:", "driver: file\n    config:\n      file:", "driver: files\n    config:\n      file:").Replace(good) +
		"watermark:\n  driver: gcp\n  config:\n    projct: p\n"
	path = write(bad)
	out, errOut, err = runCheck(t, "-c", path)
	require.Error(t, err)
	assert.True(t, errors.As(err, new(exitError)), "Execute exits 1 without another line")
	assert.Empty(t, out)
	lines := strings.Split(strings.TrimSpace(errOut), "\n")
	require.Len(t, lines, 3, errOut)
	// Each in the one format of configuration errors: FILE:LINE: FIELD:
	// problem, with the line of the field in the file and "did you mean".
	text := "base_dir: " + base + "\n" + bad
	for i, want := range []struct{ at, field, problem string }{
		{"blocks:", "tezos.tz1VSUr8wwNhLAzempoch5d6hLRiTh8Cjcjb.allow.blocks", `unknown request kind "blocks" (did you mean block?`},
		{"driver: files", "vaults.local.driver", `unknown driver "files" (did you mean file?`},
		{"projct:", "watermark.config.projct", "unknown field (did you mean project?"},
	} {
		prefix := fmt.Sprintf("%s:%d: %s: ", path, lineOf(t, text, want.at), want.field)
		assert.True(t, strings.HasPrefix(lines[i], prefix+want.problem), "%s\nwant prefix %s%s", lines[i], prefix, want.problem)
	}

	// A syntax error stops at the loader's message, with the file and line.
	path = write(good + "  : [\n")
	_, errOut, err = runCheck(t, "-c", path)
	require.Error(t, err)
	assert.Equal(t, 1, strings.Count(strings.TrimSpace(errOut), "\n")+1, errOut)
	assert.Regexp(t, `^`+regexp.QuoteMeta(path)+`:[0-9]+: YAML syntax: `, errOut)

	// No vaults: what the daemon refuses, at the file.
	path = write("tezos:\n")
	_, errOut, err = runCheck(t, "-c", path)
	require.Error(t, err)
	assert.True(t, strings.HasPrefix(errOut, path+": vaults: no vaults configured"), errOut)

	_, errOut, err = runCheck(t, "-c", filepath.Join(dir, "absent.yaml"))
	require.Error(t, err)
	assert.Contains(t, errOut, "absent.yaml")

	assert.Zero(t, enc.n.Load(), "config check dialled the enclave")
	assert.Equal(t, before, tree(t, dir), "config check wrote a file")
}
