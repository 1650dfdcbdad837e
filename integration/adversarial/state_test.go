package adversarial

import (
	"context"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/sigil-signer/sigil/adapters/loadgen"
	"github.com/sigil-signer/sigil/integration/harness"
)

// The shipped systemd unit passed --base-dir /var/lib/sigil while the
// migration guide told Signatory users to set base_dir: /var/lib/signatory:
// the flag won, no guard fired, and the daemon started with fresh
// watermarks next to the marks (`signer ready … keys=0`), signing a lower
// level again. A --base-dir without marks while the file's base_dir holds
// some is now refused, naming both; naming the same directory in both is
// the explicit choice.
func TestBaseDirFlagBesideMarkedBaseDir(t *testing.T) {
	e := newEnv(t)
	pkh := e.generate("tz1")
	cfg := e.writeConfig(policy(pkh))
	d := e.start(cfg, true)
	require.Equal(t, 200, post(t, d.api+"/keys/"+pkh, attestation(100, 0, 1, false)).status)
	d.proc.Stop()

	unit := filepath.Join(t.TempDir(), "sigil") // the unit's StateDirectory, empty
	require.NoError(t, os.MkdirAll(unit, 0o700))
	out := e.refusesArgs(t, []string{"serve", "-c", cfg, "--base-dir", unit})
	assert.Contains(t, out, "--base-dir "+unit+" holds no watermarks, while "+e.dir+" (base_dir in the configuration) holds marks")
	assert.Contains(t, out, "cp -a "+e.dir+"/. "+unit+"/")
	_, err := os.Stat(filepath.Join(unit, "watermark_v2"))
	assert.True(t, os.IsNotExist(err), "nothing was created in the flag's directory")

	// --base-dir naming the marked directory serves, and refuses the lower
	// level as before.
	h := harness.StartDaemon(t, harness.DaemonOptions{Binary: e.sigil, Args: []string{"serve", "-c", cfg, "--base-dir", e.dir}})
	assert.Regexp(t, `msg="sigil starting" .*base_dir=`+regexp.QuoteMeta(e.dir+" base_dir_from=--base-dir watermark=file watermark_location="+filepath.Join(e.dir, "watermark_v2")), h.Log())
	assert.Equal(t, 409, post(t, h.API+"/keys/"+pkh, attestation(50, 0, 1, false)).status)
}

// A DynamoDB watermark table that was deleted, or a typo in its name, was
// re-created empty at start and a lower level signed. Once this state
// directory's witness holds marks, a missing table is refused at start with
// the reason and the way back; the misnamed table is not created.
func TestDynamoDBWatermarkTableNotRecreated(t *testing.T) {
	e := newEnv(t)
	dl := harness.StartDynalite(t)
	table := dl.NewTable(t)
	pkh := e.generate("tz1")
	wm := func(name string) string {
		return "watermark:\n  driver: aws\n  config:\n    table: " + name + "\n    region: " + harness.DynaliteRegion + "\n"
	}
	cfg := e.writeConfig(policy(pkh) + wm(table))
	d := e.startEnv(cfg, true, dl.Env()...)
	require.Equal(t, 200, post(t, d.api+"/keys/"+pkh, attestation(100, 0, 1, false)).status)
	d.proc.Stop()

	for _, tc := range []struct{ name, table string }{{"misnamed", table + "x"}, {"deleted", table}} {
		t.Run(tc.name, func(t *testing.T) {
			if tc.name == "deleted" {
				ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
				defer cancel()
				_, err := dl.Client().DeleteTable(ctx, &dynamodb.DeleteTableInput{TableName: aws.String(table)})
				require.NoError(t, err)
			}
			out := e.refuses(t, e.writeConfig(policy(pkh)+wm(tc.table)), dl.Env()...)
			assert.Contains(t, out, "table "+tc.table+", region "+harness.DynaliteRegion+": the table does not exist, and is not created")
			assert.Contains(t, out, "watermark witness")
			assert.Contains(t, out, "sigil watermarks export --witness")
			_, err := dl.Client().DescribeTable(context.Background(), &dynamodb.DescribeTableInput{TableName: aws.String(tc.table)})
			assert.Error(t, err, "the table was created")
		})
	}
}

// The file backend's watermark_v2 deleted between two starts (a restore
// gone wrong, a cleanup script): the witness under <base_dir>/witness/
// survives it, so the key's consensus signing is refused, naming both marks
// and the way on, and /healthz says so; --accept-watermark-reset is the
// explicit, logged way to sign from the empty backend.
func TestWatermarkDirLostKeyHeldBack(t *testing.T) {
	e := newEnv(t)
	pkh := e.generate("tz1")
	cfg := e.writeConfig(policy(pkh))
	d := e.start(cfg, true)
	require.Equal(t, 200, post(t, d.api+"/keys/"+pkh, attestation(100, 0, 1, false)).status)
	d.proc.Stop()
	require.NoError(t, os.RemoveAll(filepath.Join(e.dir, "watermark_v2")))

	d = e.start(cfg, true)
	r := post(t, d.api+"/keys/"+pkh, attestation(50, 0, 1, false))
	assert.Equal(t, 503, r.status, r.body)
	for _, want := range []string{pkh, "the backend holds no mark, this daemon committed level 100 round 0", "watermarks import", "--accept-watermark-reset " + pkh} {
		assert.Contains(t, r.msg, want)
	}
	h := get(t, d.utility+"/healthz")
	assert.Equal(t, 503, h.status)
	assert.Contains(t, h.body, "held back")
	assert.Equal(t, 200, post(t, d.api+"/keys/"+pkh, mustHex(loadgen.GenericTransactionHex)).status, "generic requests are not watermarked")
	d.proc.Stop()

	hd := harness.StartDaemon(t, harness.DaemonOptions{Binary: e.sigil, Args: []string{"serve", "-c", cfg, "--accept-watermark-reset", pkh}})
	assert.True(t, strings.Contains(hd.Log(), "watermark reset accepted (--accept-watermark-reset)"), "the reset is logged")
	assert.Equal(t, 200, post(t, hd.API+"/keys/"+pkh, attestation(50, 0, 1, false)).status)
}
