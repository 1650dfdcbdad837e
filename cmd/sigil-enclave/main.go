// Command sigil-enclave runs Sigil's enclave: a server of the
// enclave-signer protocol with real key generation and signing. With --kms
// gcp it is the Confidential Space workload: keys are sealed with Cloud KMS
// under the key each connection's Initialize names, authenticated by the
// Confidential Space attestation token through the Workload Identity
// provider Initialize names (blobs interchangeable with ECAD Labs'
// enclave-signer). With the stand-ins (--kms local, an AES-256-GCM key
// file; --kms passthrough, blobs are plain keys) it is for development and
// tests only, and offers none of an enclave's isolation. The command line
// is adapters/enclavecli, the wiring app/enclaveapp.
package main

import (
	"os"

	"github.com/sigil-signer/sigil/adapters/enclavecli"
)

func main() { os.Exit(enclavecli.Execute()) }
