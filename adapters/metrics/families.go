package metrics

// SignatoryFamilies lists every metric family Signatory exports (its
// pkg/metrics), with its label names, as Sigil exports them too: the
// contract dashboards and alerts written for Signatory rely on.
var SignatoryFamilies = map[string][]string{
	"signing_ops_total":                          {"address", "vault", "op", "kind", "chain_id"},
	"vault_sign_request_duration_milliseconds":   {"vault", "address", "op", "chain_id"},
	"vault_sign_request_error_total":             {"vault", "code", "chain_id"},
	"sign_handler_request_duration_milliseconds": {"address", "status"},
	"sign_handler_requests_total":                {"address", "status"},
	"consensus_round_total":                      {"address", "operation_type", "chain_id", "round"},
	"policy_violation_total":                     {"violation_type", "address", "operation_type"},
	"watermark_rejection_total":                  {"address", "operation_type", "chain_id", "reason"},
	"authentication_failure_total":               {"status", "auth_method", "client_ip"},
	"watermark_operations_total":                 {"result", "backend", "request_type"},
	"watermark_operation_duration_seconds":       {"backend"},
	"watermark_io_operations_total":              {"backend", "operation", "table_name", "result"},
	"watermark_io_latency_seconds":               {"backend", "operation", "table_name"},
	"watermark_io_errors_total":                  {"backend", "error_type", "table_name", "operation"},
	"signatory_build_info":                       {"path", "version", "checksum", "revision", "branch"},
}
