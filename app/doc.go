// Package app wires Sigil together with go.uber.org/fx: one module per
// concern (configuration and logging, vaults, the signing service, the HTTP
// servers, the embedded development enclave), from which the daemon and
// every CLI verb are built. The driver tables here are the only place that
// names concrete vault and storage adapters.
package app
