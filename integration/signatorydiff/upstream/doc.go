// Package upstream pins ECAD Labs' Signatory for the differential test
// (package signatorydiff, one directory up). It is its own Go module so
// that Signatory's dependency tree never enters Sigil's go.mod: the test
// runs `go build github.com/ecadlabs/signatory/cmd/signatory` (and
// cmd/signatory-cli) in this directory, and nothing here is imported by
// Sigil.
//
// The version is v1.4.0 (tag of 2026-03-10, commit 1c87b218), the newest
// the Go module proxy serves: it refuses Signatory's version list, @latest
// and every later tag. The differences the test reports are against that
// release; a later Signatory (for example master after v1.4.0) may differ.
// v1.4.0's own go.mod pins github.com/ecadlabs/gotez/v2 v2.4.3 and
// github.com/ecadlabs/goblst v1.1.0 (also the newest the proxy serves); go.mod
// here requires exactly these, so that the Tezos encodings and BLS code the
// binary is built with are the ones v1.4.0 was released with, whatever
// minimum version selection would otherwise pick. Everything else is what
// `go mod tidy` derives from v1.4.0's go.mod. To move to a newer release,
// change the three versions together (`go get
// github.com/ecadlabs/signatory@vX github.com/ecadlabs/gotez/v2@…
// github.com/ecadlabs/goblst@…`, then `go mod tidy`), and update
// docs/migrating-from-signatory.md and the allow-list with what changes.
package upstream
