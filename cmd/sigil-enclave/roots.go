package main

// The workload image is FROM scratch: no system certificate store. This
// bundle of Mozilla's root certificates, compiled in, is what TLS to the
// Security Token Service and Cloud KMS verifies against there; on a host
// with a certificate store the system's roots are used instead.
import _ "golang.org/x/crypto/x509roots/fallback"
