// Package ports declares the interfaces between Sigil's domain and the
// outside world: the enclave that holds keys and signs, and the storage that
// keeps the enclave's sealed key blobs. Adapters implement these; the domain
// depends on nothing else.
package ports
