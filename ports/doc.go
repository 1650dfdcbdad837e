// Package ports declares the interfaces between Sigil's domain and the
// outside world: the enclave that holds keys and signs, the storage that
// keeps the enclave's sealed key blobs, the watermark store, observers, and
// the external policy service (policy hook). Adapters implement these; the
// domain depends on nothing else.
package ports
