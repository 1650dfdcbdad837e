package main

// The daemon's image (deploy/sigil/Containerfile) is FROM scratch: no
// system certificate store. This bundle of Mozilla's root certificates,
// compiled in, is what TLS to Firestore, DynamoDB, AWS and Google APIs
// verifies against there; on a host with a certificate store the system's
// roots are used instead.
import _ "golang.org/x/crypto/x509roots/fallback"
