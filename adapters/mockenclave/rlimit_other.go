//go:build !unix

package mockenclave

// openFileLimit has no portable answer here: the default cap applies.
func openFileLimit() int { return DefaultMaxConnsCap + reservedFiles }
