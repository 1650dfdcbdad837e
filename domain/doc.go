// Package domain is the root of Sigil's pure domain logic. It holds the error
// kinds every domain package reports (invalid input, not found, forbidden,
// conflict, unavailable), which adapters translate into their own terms, such
// as HTTP status codes. Subpackages: tezos (keys, encodings, signatures) and
// signer (key lifecycle and signing). Domain code imports no SDK, CBOR, HTTP
// or dependency-injection package.
package domain
