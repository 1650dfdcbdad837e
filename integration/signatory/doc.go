// Package signatory holds Sigil's drop-in acceptance tests against ECAD
// Labs' Signatory: testdata/ holds Signatory's own configuration files and
// the complete YAML examples of its documentation (each with a header naming
// its origin and every edit; vault sections whose driver Sigil lacks are
// replaced by confidentialspace sections). The policy tests load each of
// them with Sigil's configuration code and compare, request by request and
// key by key, what Sigil's signing service allows with what Signatory's
// rules allow, computed by an independent oracle written in the test. The
// end-to-end tests run the daemon (and the mock enclave) as processes and
// check staking policies, the default policy of a bare key entry, every
// Signatory metric family with Signatory's label values, per-vote ballot
// kinds and packed data, proofs of possession authenticated and
// hook-checked as Signatory does, and the handover on a state directory
// Signatory wrote (testdata/signatory-state). The package has no non-test
// code beyond this comment.
package signatory
