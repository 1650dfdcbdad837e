package cli

import (
	"bytes"
	"context"
	"io"
	"net/http"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

var devBannerRE = regexp.MustCompile(`signer API:  http://(\S+)\n  health:      http://(\S+)/healthz`)

// TestDevListenFlags: serve --dev listens where --listen and
// --utility-listen say (free ports here), and a reload in development mode
// keeps the embedded enclave's vault (it is no restart-only change).
func TestDevListenFlags(t *testing.T) {
	var out lockedBuffer
	var errOut lockedBuffer
	root := NewRoot(&out, &errOut)
	root.SetArgs([]string{"serve", "--dev", "--base-dir", t.TempDir(), "--log", "warn", "--listen", "127.0.0.1:0", "--utility-listen", "127.0.0.1:0"})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- root.ExecuteContext(ctx) }()
	defer func() {
		cancel()
		select {
		case err := <-done:
			assert.NoError(t, err)
		case <-time.After(time.Minute):
			t.Error("serve --dev did not stop")
		}
	}()
	var m []string
	require.Eventually(t, func() bool { m = devBannerRE.FindStringSubmatch(out.String()); return m != nil }, time.Minute, 20*time.Millisecond,
		"no banner; stderr:\n%s", errOut.String())
	api, util := m[1], m[2]
	for _, a := range []string{api, util} {
		assert.True(t, strings.HasPrefix(a, "127.0.0.1:"), a)
		assert.NotContains(t, []string{"127.0.0.1:6732", "127.0.0.1:9583", "127.0.0.1:0"}, a, "the flag's free port was not used")
	}
	resp, err := http.Get("http://" + util + "/healthz")
	require.NoError(t, err)
	resp.Body.Close()
	assert.Equal(t, 200, resp.StatusCode)

	resp, err = http.Post("http://"+util+"/reload", "", nil)
	require.NoError(t, err)
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	assert.Equal(t, 200, resp.StatusCode, "reload in dev mode: %s", body)
	assert.Contains(t, string(body), `"keys_after":4`)
}

func TestDevListenFlagsNeedDev(t *testing.T) {
	for _, args := range [][]string{{"serve", "--listen", "127.0.0.1:0"}, {"--utility-listen", "127.0.0.1:0"}} {
		root := NewRoot(io.Discard, io.Discard)
		root.SetArgs(append(args, "-c", "/nonexistent/sigil.yaml"))
		err := root.Execute()
		require.Error(t, err)
		assert.Contains(t, err.Error(), "is for --dev")
	}
	root := NewRoot(io.Discard, io.Discard)
	root.SetArgs([]string{"serve", "--dev", "--base-dir", t.TempDir(), "--listen", "6732"})
	err := root.Execute()
	require.Error(t, err)
	assert.Contains(t, err.Error(), `--listen "6732": want HOST:PORT`)
}

// TestVersionFlag: sigil --version prints what sigil version prints.
func TestVersionFlag(t *testing.T) {
	var a, b bytes.Buffer
	root := NewRoot(&a, io.Discard)
	root.SetArgs([]string{"version"})
	require.NoError(t, root.Execute())
	root = NewRoot(&b, io.Discard)
	root.SetArgs([]string{"--version"})
	require.NoError(t, root.Execute())
	assert.Equal(t, a.String(), b.String())
	assert.True(t, strings.HasPrefix(b.String(), "sigil "), b.String())
}
