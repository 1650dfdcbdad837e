package adversarial

import (
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/sigil-signer/sigil/adapters/loadgen"
	"github.com/sigil-signer/sigil/integration/harness"
)

// /healthz answered ready while the watermark file system was full (every
// consensus sign 503 "no space left on device"): the probe created an empty
// file, which needs no data block. The daemon runs in a private mount
// namespace whose watermark directory is a 1 MiB tmpfs; filled from inside
// that namespace (nsenter), /healthz is 503 naming the cause, and ready
// again once space is freed.
func TestHealthzWatermarkFileSystemFull(t *testing.T) {
	e := newEnv(t)
	pkh := e.generate("tz1")
	cfg := e.writeConfig(policy(pkh))
	wdir := filepath.Join(e.dir, "watermark_v2")
	require.NoError(t, os.MkdirAll(wdir, 0o700))
	unshare, err := exec.LookPath("unshare")
	require.NoError(t, err)
	nsenter, err := exec.LookPath("nsenter")
	require.NoError(t, err)
	h := harness.StartDaemon(t, harness.DaemonOptions{
		Binary: unshare,
		Args:   []string{"-m", "--propagation", "private", "sh", "-c", fmt.Sprintf("mount -t tmpfs -o size=1m tmpfs %s && exec %s serve -c %s", wdir, e.sigil, cfg)},
	})
	d := &daemon{proc: h.Process, api: h.API, utility: h.Utility}
	require.Equal(t, 200, get(t, d.utility+"/healthz").status)
	require.Equal(t, 200, post(t, d.api+"/keys/"+pkh, attestation(5, 0, 1, false)).status)

	fill := filepath.Join(wdir, "fill")
	out, _ := exec.Command(nsenter, "-t", fmt.Sprint(d.proc.Pid()), "-m", "--", "dd", "if=/dev/zero", "of="+fill, "bs=4k").CombinedOutput()
	require.Contains(t, string(out), "No space left on device", "filling the daemon's tmpfs")
	r := get(t, d.utility+"/healthz")
	assert.Equal(t, 503, r.status, r.body)
	assert.Contains(t, r.body, "no space left on device")
	s := post(t, d.api+"/keys/"+pkh, attestation(6, 0, 1, false))
	assert.Equal(t, 503, s.status, s.body)
	assert.Empty(t, s.sig)

	out, err = exec.Command(nsenter, "-t", fmt.Sprint(d.proc.Pid()), "-m", "--", "rm", fill).CombinedOutput()
	require.NoError(t, err, "%s", out)
	assert.Equal(t, 200, get(t, d.utility+"/healthz").status)
	assert.Equal(t, 200, post(t, d.api+"/keys/"+pkh, attestation(6, 0, 1, false)).status)
}

// /healthz answered ready while the policy hook was down (every sign 500).
// The hook's address is probed (a TCP connection, no request sent): not
// ready while nothing listens there, ready once the hook is up.
func TestHealthzPolicyHookDown(t *testing.T) {
	e := newEnv(t)
	pkh := e.generate("tz1")
	port := harness.FreePort(t)
	cfg := e.writeConfig(policy(pkh) + fmt.Sprintf("policy_hook:\n  address: http://127.0.0.1:%d/approve\n", port))
	d := e.start(cfg, true)
	r := get(t, d.utility+"/healthz")
	assert.Equal(t, 503, r.status, r.body)
	assert.Contains(t, r.body, "policy hook")
	s := post(t, d.api+"/keys/"+pkh, mustHex(loadgen.GenericTransactionHex))
	assert.Equal(t, 500, s.status, s.body)

	ln, err := net.Listen("tcp", fmt.Sprintf("127.0.0.1:%d", port))
	require.NoError(t, err)
	var probed, asked int
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		asked++
		w.WriteHeader(http.StatusOK)
	}), ConnState: func(_ net.Conn, st http.ConnState) {
		if st == http.StateNew {
			probed++
		}
	}}
	go srv.Serve(ln)
	defer srv.Close()
	eventually(t, 5*time.Second, "ready with the hook up", func() bool { return get(t, d.utility+"/healthz").status == 200 })
	assert.Zero(t, asked, "the readiness probe sent the hook a request")
	assert.Equal(t, 200, post(t, d.api+"/keys/"+pkh, mustHex(loadgen.GenericTransactionHex)).status)
	assert.Equal(t, 1, asked)
}

// The `file` vault reading an empty key file ([]) yielded zero keys and the
// daemon answered ready, while the policies named a key (every request for
// it 404). Not ready now, naming the empty vault and the missing key.
func TestHealthzEmptyVaultWhilePoliciesNameKeys(t *testing.T) {
	e := newEnv(t)
	_, pkh := newSecret(t)
	keys := e.secretFile("secret.json", "[]\n")
	d := e.start(e.fileVaultConfig(keys, "", policy(pkh)), true)
	r := get(t, d.utility+"/healthz")
	assert.Equal(t, 503, r.status, r.body)
	assert.Contains(t, r.body, "vault local holds no key")
	assert.Contains(t, r.body, pkh)
	assert.True(t, strings.Contains(d.proc.Log(), "holds no key"), "the empty key file is logged")
}
