package gcpkms

import (
	"strconv"
	"strings"
	"testing"
)

// FuzzKeyVersion: a name is accepted as a version of key only when it is
// exactly key, "/cryptoKeyVersions/" and a positive decimal number without
// leading zero.
func FuzzKeyVersion(f *testing.F) {
	const key = "projects/p/locations/l/keyRings/r/cryptoKeys/k"
	for _, s := range []string{key + "/cryptoKeyVersions/1", key, key + "/cryptoKeyVersions/01", key + "x/cryptoKeyVersions/2", ""} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, name string) {
		if !keyVersion(name, key) {
			return
		}
		v, ok := strings.CutPrefix(name, key+"/cryptoKeyVersions/")
		if !ok {
			t.Fatalf("accepted %q: not under the key", name)
		}
		n, err := strconv.ParseUint(v, 10, 64)
		if err != nil || n == 0 || strconv.FormatUint(n, 10) != v {
			t.Fatalf("accepted %q: version %q is not a positive decimal number", name, v)
		}
	})
}
