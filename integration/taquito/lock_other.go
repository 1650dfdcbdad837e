//go:build !unix

package taquito

// lockFile is a no-op where flock is unavailable: concurrent installs are
// then only serialized within one test process.
func lockFile(string) (func(), error) { return func() {}, nil }
