package main

import (
	"flag"
	"log/slog"

	"github.com/sigil-signer/sigil/adapters/kms/gcpkms"
)

// gcpFlags are the settings of --kms gcp. In a Confidential Space workload
// all keep their defaults; the three seams exist for tests (fakes on
// loopback) and private endpoints.
type gcpFlags struct {
	tokenFile   *string
	stsURL      *string
	kmsEndpoint *string
	insecure    *bool
}

func addGCPFlags(fs *flag.FlagSet) *gcpFlags {
	return &gcpFlags{
		tokenFile: fs.String("gcp-token-file", gcpkms.DefaultTokenFile,
			"--kms gcp: file holding the attestation token (subject token of the exchange); seam for tests"),
		stsURL: fs.String("gcp-sts-url", gcpkms.DefaultTokenURL,
			"--kms gcp: Security Token Service token endpoint; seam for tests and private endpoints"),
		kmsEndpoint: fs.String("gcp-kms-endpoint", "",
			"--kms gcp: Cloud KMS gRPC endpoint host:port, TLS (default Google's cloudkms.googleapis.com:443); seam for tests and private endpoints"),
		insecure: fs.Bool("gcp-kms-insecure", false,
			"--kms gcp: plaintext gRPC to --gcp-kms-endpoint, which must be a loopback address (test fakes only)"),
	}
}

// provider builds the Cloud KMS provider: each session's Initialize brings
// the Workload Identity provider and the key its blobs are sealed under.
func (g *gcpFlags) provider(log *slog.Logger) (*gcpkms.Provider, error) {
	return gcpkms.New(gcpkms.Config{
		TokenFile: *g.tokenFile,
		TokenURL:  *g.stsURL,
		Endpoint:  *g.kmsEndpoint,
		Insecure:  *g.insecure,
		Logger:    log.With("component", "gcpkms"),
	})
}
