package enclavecli

import (
	"bufio"
	"bytes"
	"context"
	"io"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/spf13/pflag"
	"github.com/stretchr/testify/require"
)

// sampleValue is a value each flag accepts (not its default).
func sampleValue(fl *pflag.Flag) string {
	switch fl.Value.Type() {
	case "bool":
		return "true"
	case "duration":
		return "7s"
	case "int":
		return "17"
	}
	switch fl.Name {
	case "kms":
		return "passthrough"
	case "mode":
		return "nitro"
	case "log-level":
		return "debug"
	case "attest-token-type":
		return "PKI"
	}
	return "x-" + fl.Name
}

// parse parses args as Run does (normalized, then pflag) and returns the
// options and the warnings.
func parse(t *testing.T, args []string) (options, []string) {
	t.Helper()
	var f options
	fs := pflag.NewFlagSet("sigil-enclave", pflag.ContinueOnError)
	f.define(fs)
	args, warnings := normalizeArgs(fs, args)
	require.NoError(t, fs.Parse(args), "%q", args)
	return f, warnings
}

// TestEveryFlagTakesGoAndGNUSpellings: for every flag, the GNU spelling
// (--name value, --name=value) and Go's flag package's (-name value,
// -name=value, and --name, which Go also took) set the same value; the
// single-dash forms warn once that they are deprecated. A flag added later
// is covered without touching the test.
func TestEveryFlagTakesGoAndGNUSpellings(t *testing.T) {
	var all options
	fs := pflag.NewFlagSet("x", pflag.ContinueOnError)
	all.define(fs)
	n := 0
	fs.VisitAll(func(fl *pflag.Flag) {
		n++
		v := sampleValue(fl)
		want, w := parse(t, []string{"--" + fl.Name + "=" + v})
		require.Empty(t, w)
		forms := [][]string{{"-" + fl.Name + "=" + v}}
		if fl.Value.Type() == "bool" {
			forms = append(forms, []string{"-" + fl.Name}, []string{"--" + fl.Name})
		} else {
			forms = append(forms, []string{"-" + fl.Name, v}, []string{"--" + fl.Name, v})
		}
		for _, args := range forms {
			got, warnings := parse(t, args)
			require.Equal(t, want, got, "%q", args)
			if strings.HasPrefix(args[0], "--") {
				require.Empty(t, warnings, "%q", args)
			} else {
				require.Equal(t, []string{"-" + fl.Name + " is deprecated: use --" + fl.Name}, warnings, "%q", args)
			}
		}
	})
	require.GreaterOrEqual(t, n, 23, "the flag set is not the enclave's")
}

// TestNormalizeLeavesValuesAlone: a value that starts with a dash, or
// names a flag, is a value; "--" ends the flags; a flag given twice in the
// old spelling warns once.
func TestNormalizeLeavesValuesAlone(t *testing.T) {
	var f options
	fs := pflag.NewFlagSet("x", pflag.ContinueOnError)
	f.define(fs)
	for _, c := range []struct{ in, out []string }{
		{[]string{"--reply-delay", "-1s"}, []string{"--reply-delay", "-1s"}},
		{[]string{"-reply-delay", "-1s"}, []string{"--reply-delay", "-1s"}},
		{[]string{"-kms-key-file", "-listen"}, []string{"--kms-key-file", "-listen"}},
		{[]string{"-gcp-kms-insecure", "-listen", ":1"}, []string{"--gcp-kms-insecure", "--listen", ":1"}},
		{[]string{"--", "-listen"}, []string{"--", "-listen"}},
		{[]string{"-nonsense", "-h"}, []string{"-nonsense", "-h"}},
	} {
		got, _ := normalizeArgs(fs, c.in)
		require.Equal(t, c.out, got, "%q", c.in)
	}
	_, w := normalizeArgs(fs, []string{"-listen", "a", "-listen", "b", "-kms", "local"})
	require.Equal(t, []string{"-listen is deprecated: use --listen", "-kms is deprecated: use --kms"}, w)
}

// syncBuffer is an io.Writer safe for concurrent use.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// TestDeprecatedSpellingsServe: the command line of earlier releases runs
// the enclave, and says once per flag that its spelling is deprecated.
func TestDeprecatedSpellingsServe(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	pr, pw := io.Pipe()
	var stderr syncBuffer
	done := make(chan error, 1)
	go func() {
		done <- Run(ctx, []string{"-listen", "127.0.0.1:0", "-kms=passthrough", "-log-level", "warn", "-max-conns", "32"}, pw, &stderr)
		pw.Close()
	}()
	line, err := bufio.NewReader(pr).ReadString('\n')
	require.NoError(t, err)
	require.True(t, strings.HasPrefix(line, "listening on 127.0.0.1:"), line)
	go io.Copy(io.Discard, pr)
	cancel()
	select {
	case err := <-done:
		require.NoError(t, err)
	case <-time.After(10 * time.Second):
		t.Fatal("Run did not stop")
	}
	for _, name := range []string{"listen", "kms", "log-level", "max-conns"} {
		require.Equal(t, 1, strings.Count(stderr.String(), "sigil-enclave: -"+name+" is deprecated: use --"+name), stderr.String())
	}
}

// TestHelp: --help (and Go's -help and -h) describe the modes and every
// flag, and succeed.
func TestHelp(t *testing.T) {
	for _, arg := range []string{"--help", "-help", "-h"} {
		var out strings.Builder
		require.NoError(t, Run(context.Background(), []string{arg}, &out, io.Discard), arg)
		for _, s := range []string{"--kms gcp", "Confidential Space", "--gcp-kms-endpoint", "--gcp-sts-url", "--gcp-token-file",
			"/run/container_launcher/attestation_verifier_claims_token", "--listen", "--version", "deprecated",
			"--attested", "--attest-audience", "--attest-token-type", "--launcher-socket", "/run/container_launcher/teeserver.sock",
			"--plain-listen", "--attest-start-timeout", "SIGIL_ENCLAVE_CLIENT_PINS"} {
			require.Contains(t, out.String(), s, arg)
		}
	}
}
