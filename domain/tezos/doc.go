// Package tezos holds Sigil's Tezos cryptography and encodings: the four key
// types (ed25519 tz1, secp256k1 tz2, P-256 tz3, BLS12-381 min-pk tz4), their
// public keys, key hashes, secret keys and signatures in Tezos base58check
// forms, and signing/verification exactly as Tezos and the Confidential Space
// enclave do it (Blake2b-256 prehash for ed25519 and ECDSA with low S, BLS by
// signing version), plus the import of secret keys from PEM/DER files
// (PKCS#8, SEC 1). It is pure: it depends only on general crypto libraries.
package tezos
