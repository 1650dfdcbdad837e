package main

import (
	"bytes"
	"context"
	"encoding/json"
	"strings"
	"testing"

	"github.com/sigil-signer/sigil/adapters/loadgen/loadgentest"
	"github.com/sigil-signer/sigil/domain/tezos"
)

func runCLI(args ...string) (int, string, string) {
	var out, errb bytes.Buffer
	code := run(context.Background(), args, &out, &errb)
	return code, out.String(), errb.String()
}

func TestCLI(t *testing.T) {
	s, err := loadgentest.New(tezos.P256)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()

	code, out, errs := runCLI("--url", s.URL, "--key", s.PKH, "--requests", "30", "--concurrency", "3", "--op", "attestation", "--verify")
	if code != 0 || !strings.Contains(out, "ok          30") || !strings.Contains(out, "0 wrong") {
		t.Errorf("code %d\nstdout:\n%s\nstderr:\n%s", code, out, errs)
	}

	code, out, _ = runCLI("--url", s.URL, "--key", s.PKH, "--requests", "5", "--json")
	var m map[string]any
	if code != 0 || json.Unmarshal([]byte(out), &m) != nil || m["ok"] != float64(5) {
		t.Errorf("json run: code %d, %s", code, out)
	}

	s.CorruptEvery = 2
	if code, _, errs = runCLI("--url", s.URL, "--key", s.PKH, "--requests", "4", "--verify"); code != 1 || !strings.Contains(errs, "failed verification") {
		t.Errorf("wrong signatures: code %d, stderr %q", code, errs)
	}

	if code, _, errs = runCLI("--url", "http://203.0.113.7:6732", "--key", s.PKH, "--requests", "1"); code != 1 || !strings.Contains(errs, "loopback") {
		t.Errorf("non-loopback: code %d, stderr %q", code, errs)
	}
	if code, _, _ = runCLI("--url", s.URL); code != 2 {
		t.Errorf("missing key: code %d", code)
	}
	if code, _, _ = runCLI("--key", s.PKH, "--chain-id", "xyz"); code != 2 {
		t.Errorf("bad chain id: code %d", code)
	}
}
