//go:build !unix

package enclaveserver

// openFileLimit has no portable answer here: the default cap applies.
func openFileLimit() int { return DefaultMaxConnsCap + reservedFiles }
