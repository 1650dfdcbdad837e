// Package signatorydiff is the differential test of Sigil against ECAD Labs'
// Signatory's real code. It builds Signatory's `signatory` and
// `signatory-cli` from the release pinned in upstream/ (a Go module of its
// own, so that Signatory's dependencies never enter Sigil's go.mod), runs
// Signatory and Sigil as processes on one configuration (Signatory's
// format; each daemon gets its own ports and base directory), one `file`
// vault (the same secret keys, one of each type tz1–tz4) and, for the
// policy hook, one hook server, and drives both with one corpus: every
// generic operation kind Sigil's request parser knows, staking
// pseudo-operations to self and to others, ballots, consensus requests with
// their watermark sequences, Micheline, the HTTP edge cases, client
// authentication, the policy hook, JWT, a handover (Sigil started on a
// state directory Signatory wrote) and the metrics after the traffic. Each
// answer is compared: HTTP status, body shape, signature validity (checked
// with the primitives' own libraries) and, for the deterministic schemes
// (Ed25519, BLS), equality, and what the policy hook received. Metrics are
// compared in full at start (families, types, label names and values,
// series), then case by case: /metrics is scraped after every request, and
// every series of Signatory's families must change by the same amount in
// both, so that a count may differ only where an answer does.
//
// Every difference must be either gone or listed in
// testdata/allowlist.yaml, each entry quoting the line of
// docs/migrating-from-signatory.md that documents it (or, until the lead
// decides, marked pending with the reason); the metric changes of a case
// whose status differs follow that status's entry. The test fails on a
// difference not listed and on a listed one that no longer happens. The
// keys and forged requests are in testdata/corpus.json, made by
// tools/taquito/signatorydiff-corpus.js; the generic operations of every
// kind come from domain/request/testdata/vectors.json. The package has no
// non-test code beyond this comment.
package signatorydiff
