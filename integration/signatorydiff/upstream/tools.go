//go:build tools

package upstream

// The two programs the differential test builds (main packages cannot be
// imported; the build tag keeps this file out of every build, while `go mod
// tidy` still records what they need).
import (
	_ "github.com/ecadlabs/signatory/cmd/signatory"
	_ "github.com/ecadlabs/signatory/cmd/signatory-cli"
)
