package attestation

import (
	"crypto/sha256"
	"encoding/hex"
	"slices"
	"strings"
	"testing"
	"time"
)

func TestAttestPin(t *testing.T) {
	spki := []byte("some spki")
	sum := sha256.Sum256(spki)
	p := PinOf(spki)
	if got, want := p.String(), "sha256:"+hex.EncodeToString(sum[:]); got != want {
		t.Fatalf("String = %s, want %s", got, want)
	}
	if got := NonceOf(spki); got != hex.EncodeToString(sum[:]) || len(got) != 64 {
		t.Fatalf("NonceOf = %s", got)
	}
	q, err := ParsePin(strings.ToUpper(p.String()[7:]))
	if err == nil {
		t.Fatalf("a pin without its prefix parsed as %s", q)
	}
	q, err = ParsePin("sha256:" + strings.ToUpper(p.String()[7:]))
	if err != nil || q != p {
		t.Fatalf("upper-case hex: %v, %s", err, q)
	}
	for _, bad := range []string{"", "sha256:", "sha256:00", "SHA256:" + p.String()[7:], "sha512:" + p.String()[7:], p.String() + "00", p.String()[:70] + "zz"} {
		if _, err := ParsePin(bad); err == nil {
			t.Errorf("ParsePin(%q) accepted", bad)
		} else if !strings.Contains(err.Error(), "key pin") {
			t.Errorf("ParsePin(%q): error %q does not say what it parsed", bad, err)
		}
	}
}

func TestAttestParsePins(t *testing.T) {
	a, b := PinOf([]byte("a")), PinOf([]byte("b"))
	for in, want := range map[string][]Pin{
		"":                            {},
		" , ,\n":                      {},
		a.String():                    {a},
		a.String() + "," + b.String(): {a, b},
		" " + b.String() + "\n" + a.String() + "\t": {b, a},
		a.String() + "," + a.String():               {a},
	} {
		got, err := ParsePins(in)
		if err != nil || !slices.Equal(got, want) {
			t.Errorf("ParsePins(%q) = %v, %v; want %v", in, got, err, want)
		}
	}
	_, err := ParsePins(a.String() + ",sha256:xyz")
	if err == nil || !strings.Contains(err.Error(), "entry 2") {
		t.Fatalf("error %v does not name entry 2", err)
	}
}

func FuzzAttestParsePins(f *testing.F) {
	f.Add(PinOf(nil).String() + "," + PinOf([]byte{1}).String())
	f.Add("sha256:,,")
	f.Fuzz(func(t *testing.T, s string) {
		pins, err := ParsePins(s)
		if err != nil {
			return
		}
		again, err := ParsePins(FormatPins(pins))
		if err != nil || !slices.Equal(again, pins) {
			t.Fatalf("round trip of %q: %v, %v", s, again, err)
		}
	})
}

func TestAttestSchedule(t *testing.T) {
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	iat, exp := t0, t0.Add(time.Hour)
	if got := RenewAt(t0.Add(time.Minute), iat, exp); !got.Equal(t0.Add(31 * time.Minute)) {
		t.Errorf("RenewAt = %v", got)
	}
	if got := RefreshAt(iat, exp); !got.Equal(t0.Add(45 * time.Minute)) {
		t.Errorf("RefreshAt = %v", got)
	}
	// The client refreshes after the enclave renewed.
	if !RefreshAt(iat, exp).After(RenewAt(iat, iat, exp)) {
		t.Error("client refreshes before the enclave renews")
	}
	if got := RetryAt(t0, t0.Add(time.Minute)); !got.Equal(t0.Add(15 * time.Second)) {
		t.Errorf("RetryAt = %v", got)
	}
	if got := RetryAt(t0, t0.Add(time.Millisecond)); !got.Equal(t0.Add(MinRetry)) {
		t.Errorf("RetryAt near expiry = %v", got)
	}
	if got := RenewAt(t0, exp, iat); !got.Equal(t0) {
		t.Errorf("RenewAt of a token with exp before iat = %v", got)
	}
}
