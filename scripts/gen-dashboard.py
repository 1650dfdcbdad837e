#!/usr/bin/env python3
"""Writes deploy/grafana/dashboards/sigil.json, Sigil's Grafana dashboard.

Edit the panels here and run `python3 scripts/gen-dashboard.py`; the JSON is
committed so that Grafana provisioning needs nothing else (deploy's tests
regenerate it into a temporary file, the optional argument, and compare). Every expression
uses only metrics the daemon exports: integration/prometheus evaluates each
one against a real Prometheus scraping a real daemon.
"""
import json
import os
import sys

DS = {"type": "prometheus", "uid": "${datasource}"}
I = 'instance=~"$instance"'
A = 'address=~"$address"'
V = 'vault=~"$vault"'
RI = "$__rate_interval"

panels = []
y = 0
pid = 0


def row(title):
    global y, pid
    pid += 1
    panels.append({"type": "row", "title": title, "id": pid, "collapsed": False,
                   "gridPos": {"h": 1, "w": 24, "x": 0, "y": y}, "panels": []})
    y += 1


def thresholds(*steps):
    """Threshold steps for a stat panel: (color, from value), the first from -inf."""
    return {"mode": "absolute", "steps": [{"color": c, "value": v} for c, v in steps]}


def born(sel, window):
    """The events of counter sel in each window, its first included.

    Signatory's counters appear only when they first count (at 1), and
    increase() over a series born at 1 is 0: the series born in the window
    are added at their value (see deploy/prometheus/alerts.yml).
    """
    return f'(({sel} unless {sel} offset {window}) or increase({sel}[{window}]))'


ZERO = " or on() vector(0)"  # 0 rather than NO DATA when nothing happened


def panel(title, desc, targets, unit="short", x=0, w=12, h=8, kind="timeseries", stack=False, extra=None, steps=None, mappings=None):
    global pid
    pid += 1
    p = {
        "type": kind,
        "title": title,
        "description": desc,
        "id": pid,
        "datasource": DS,
        "gridPos": {"h": h, "w": w, "x": x, "y": y},
        "fieldConfig": {"defaults": {"unit": unit}, "overrides": []},
        "options": {},
        "targets": [],
    }
    if kind == "timeseries":
        p["fieldConfig"]["defaults"]["custom"] = {
            "drawStyle": "line", "lineWidth": 1, "fillOpacity": 10, "showPoints": "never",
            "stacking": {"mode": "normal" if stack else "none", "group": "A"},
        }
        p["options"] = {"legend": {"displayMode": "list", "placement": "bottom", "showLegend": True},
                        "tooltip": {"mode": "multi", "sort": "desc"}}
    for i, (expr, legend) in enumerate(targets):
        t = {"refId": chr(ord("A") + i), "datasource": DS, "expr": expr, "legendFormat": legend, "range": True}
        if kind in ("stat", "table"):
            t["instant"], t["range"] = True, False
        p["targets"].append(t)
    if steps:
        p["fieldConfig"]["defaults"]["thresholds"] = steps
        p["fieldConfig"]["defaults"]["color"] = {"mode": "thresholds"}
        p["options"] = {"colorMode": "background", "graphMode": "none", "justifyMode": "auto",
                        "reduceOptions": {"calcs": ["lastNotNull"], "fields": "", "values": False}}
    if mappings:
        p["fieldConfig"]["defaults"]["mappings"] = [{"type": "value", "options": {
            k: {"text": v, "index": i} for i, (k, v) in enumerate(mappings)}}]
    if extra:
        p.update(extra)
    panels.append(p)


def next_row(h=8):
    global y
    y += h


row("Signing")
panel("Signing rate by request kind",
      "Signatures per second by request kind (signing_ops_total's op label: block, preattestation, attestation, generic, …).",
      [(f'sum by (op) (rate(signing_ops_total{{{I}, {A}}}[{RI}]))', "{{op}}")], unit="ops", x=0, stack=True)
panel("Generic operations signed by kind",
      "Operations per second inside signed generic requests, by operation kind (signing_ops_total's kind label).",
      [(f'sum by (kind) (rate(signing_ops_total{{{I}, {A}, op="generic"}}[{RI}]))', "{{kind}}")], unit="ops", x=12, stack=True)
next_row()
panel("Sign latency per key (p50, p90, p99)",
      "Time to answer successful sign requests, per key (sigil_sign_request_duration_seconds, buckets from 100 µs).",
      [(f'histogram_quantile({q}, sum by (address, le) (rate(sigil_sign_request_duration_seconds_bucket{{{I}, {A}, status="200"}}[{RI}])))', f"p{int(q * 100)} {{{{address}}}}")
       for q in (0.5, 0.9, 0.99)], unit="s", x=0)
panel("Enclave signing latency per key (p99)",
      "Time the vault takes to sign, per key: the enclave round trip and the signature's verification (sigil_enclave_sign_duration_seconds, buckets from 50 µs; Signatory's vault_sign_request_duration_milliseconds, kept for its dashboards, starts at 10 ms).",
      [(f'histogram_quantile(0.99, sum by (address, le) (rate(sigil_enclave_sign_duration_seconds_bucket{{{I}, {A}, {V}}}[{RI}])))', "p99 {{address}}")],
      unit="s", x=12)
next_row()
panel("Sign requests by HTTP status",
      "Sign requests per second by answer: 200 signed, 403 refused by policy, 409 refused by the high watermark, 503 enclave or store unavailable.",
      [(f'sum by (status) (rate(sign_handler_requests_total{{{I}, {A}}}[{RI}]))', "{{status}}")], unit="reqps", x=0, w=12, stack=True)
panel("Server error ratio",
      "Share of sign requests answered with a 5xx status (alert SigilSignErrorRatio above 5%); 0 when there is no error or no request.",
      [(f'((sum(rate(sign_handler_requests_total{{{I}, status=~"5.."}}[{RI}])){ZERO}) / (sum(rate(sign_handler_requests_total{{{I}}}[{RI}])) > 0)){ZERO}', "5xx ratio")],
      unit="percentunit", x=12, w=6, kind="stat", steps=thresholds(("green", None), ("orange", 0.01), ("red", 0.05)))
panel("Time since last consensus signature",
      "For each key whose policy allows consensus requests: time since its last block or (pre)attestation signature (alert SigilNoConsensusSignature after 15 minutes).",
      [(f'time() - sigil_consensus_last_signature_timestamp_seconds{{{I}, {A}}}', "{{address}}")],
      unit="s", x=18, w=6, kind="stat", steps=thresholds(("green", None), ("orange", 300), ("red", 900)))
next_row()

row("Consensus and watermarks")
panel("Consensus signatures by round",
      "Consensus signatures per second (identical repeats included, as Signatory counts them), by request kind and round (round 0 is the normal case; higher rounds mean the network missed blocks).",
      [(f'sum by (operation_type, round) (rate(consensus_round_total{{{I}, {A}}}[{RI}]))', "{{operation_type}} round {{round}}")], unit="ops", x=0, stack=True)
panel("Watermark refusals",
      "Consensus requests refused because they are not above the recorded level and round, in each interval, the first refusal of each key included (alert SigilWatermarkRefusals).",
      [(f'sum by (address, operation_type, reason) ({born(f"watermark_rejection_total{{{I}, {A}}}", RI)}){ZERO}', "{{address}} {{operation_type}} {{reason}}")],
      unit="short", x=12, extra={"interval": "1m"})
next_row()
panel("Watermark store latency (p99)",
      "Watermark backend I/O latency by operation (watermark_io_latency_seconds) and the whole check-and-record step (watermark_operation_duration_seconds).",
      [(f'histogram_quantile(0.99, sum by (backend, operation, le) (rate(watermark_io_latency_seconds_bucket{{{I}}}[{RI}])))', "I/O {{backend}} {{operation}}"),
       (f'histogram_quantile(0.99, sum by (backend, le) (rate(watermark_operation_duration_seconds_bucket{{{I}}}[{RI}])))', "check and record {{backend}}")],
      unit="s", x=0)
panel("Watermark operations and errors",
      "Requests through the watermark step by result (every request kind, as Signatory counts them: success, or rejected for a refusal and for a failing store alike) and backend I/O errors by type (alert SigilWatermarkStoreFailing).",
      [(f'sum by (result) (rate(watermark_operations_total{{{I}}}[{RI}]))', "{{result}}"),
       (f'sum by (backend, operation, error_type) (rate(watermark_io_errors_total{{{I}}}[{RI}])){ZERO}', "I/O error {{backend}} {{operation}} {{error_type}}")],
      unit="ops", x=12)
next_row()

row("Errors")
panel("Errors by cause",
      "Refusals and failures in each interval, the first of each kind included: policy violations by type (the refused request or operation kind, authentication, policy_hook), signing step errors by HTTP code (409 a watermark refusal, 5xx the vault or the watermark store), enclave request failures by cause, non-2xx answers by status.",
      [(f'sum by (violation_type) ({born(f"policy_violation_total{{{I}, {A}}}", RI)}){ZERO}', "policy {{violation_type}}"),
       (f'sum by (code) ({born(f"vault_sign_request_error_total{{{I}}}", RI)}){ZERO}', "vault error {{code}}"),
       (f'sum by (cause) ({born(f"sigil_enclave_rpc_errors_total{{{I}, {V}}}", RI)}){ZERO}', "enclave {{cause}}"),
       (f'sum by (status) ({born(f"sign_handler_requests_total{{{I}, {A}, status!~{chr(34)}2..{chr(34)}}}", RI)}){ZERO}', "HTTP {{status}}")],
      unit="short", x=0, w=24, stack=True, extra={"interval": "1m"})
next_row()

row("Enclave")
panel("Enclave connections",
      "Connections of each vault's pool by state: up (connected and initialized) or down (being redialled). No connection up means every signature fails (alert SigilEnclaveUnreachable).",
      [(f'sum by (vault, state) (sigil_enclave_connections{{{I}, {V}}})', "{{vault}} {{state}}")], unit="short", x=0, w=8)
panel("Enclave redials",
      "Dials of enclave connections after a loss or a failed dial (alert SigilEnclaveConnectionsFlapping).",
      [(f'sum by (vault) (increase(sigil_enclave_redials_total{{{I}, {V}}}[{RI}]))', "{{vault}}")], unit="short", x=8, w=8)
panel("Keys in the enclave",
      "Keys each vault's enclave holds, and stored keys a (re)connected enclave could not open (alert SigilEnclaveCannotOpenKeys).",
      [(f'sum by (vault) (sigil_enclave_keys_loaded{{{I}, {V}}})', "{{vault}} loaded"),
       (f'sum by (vault) (sigil_enclave_keys_unopened{{{I}, {V}}})', "{{vault}} unopened")], unit="short", x=16, w=8)
next_row()
panel("Enclave request latency (p50, p99)",
      "Enclave requests on the wire, from request written to reply decoded, by method (sigil_enclave_rpc_duration_seconds).",
      [(f'histogram_quantile({q}, sum by (vault, method, le) (rate(sigil_enclave_rpc_duration_seconds_bucket{{{I}, {V}}}[{RI}])))', f"p{int(q * 100)} {{{{vault}}}} {{{{method}}}}")
       for q in (0.5, 0.99)], unit="s", x=0)
panel("Enclave requests",
      "Enclave requests per second by method.",
      [(f'sum by (vault, method) (rate(sigil_enclave_rpc_duration_seconds_count{{{I}, {V}}}[{RI}]))', "{{vault}} {{method}}")], unit="reqps", x=12, stack=True)
next_row()

row("Process")
panel("Build",
      "Version, VCS revision and build time of each daemon (sigil_build_info).",
      [(f'sigil_build_info{{{I}}}', "{{instance}} {{version}} {{revision}}")], x=0, w=12, h=5, kind="table",
      extra={"transformations": [{"id": "labelsToFields", "options": {}}]})
panel("Resident memory",
      "Resident memory of each daemon.",
      [(f'process_resident_memory_bytes{{{I}}}', "{{instance}}")], unit="bytes", x=12, w=6, h=5)
panel("CPU",
      "CPU time per second of each daemon.",
      [(f'rate(process_cpu_seconds_total{{{I}}}[{RI}])', "{{instance}}")], unit="percentunit", x=18, w=6, h=5)
next_row(5)
panel("Configuration reloads",
      "Configuration reloads (SIGHUP, POST /reload) in each interval by result: success, refused (the running configuration kept), failed (key storage or enclave error).",
      [(f'sum by (result) (increase(sigil_config_reloads_total{{{I}}}[{RI}]))', "{{result}}")], unit="short", x=0, w=12, h=5,
      extra={"interval": "1m"})
panel("Last configuration reload",
      "Whether each daemon's last reload (or its start) succeeded: 0 means the file's changes are not in force (alert SigilConfigReloadFailed).",
      [(f'min by (instance) (sigil_config_last_reload_successful{{{I}}})', "{{instance}}")], x=12, w=6, h=5, kind="stat",
      steps=thresholds(("red", None), ("green", 1)), mappings=[("0", "refused"), ("1", "in force")])
panel("Since the configuration was loaded",
      "Time since each daemon last loaded its configuration successfully (its start or its last successful reload).",
      [(f'time() - max by (instance) (sigil_config_last_reload_success_timestamp_seconds{{{I}}})', "{{instance}}")], unit="s", x=18, w=6, h=5, kind="stat",
      steps=thresholds(("green", None)))
next_row(5)


def var(name, label, query, multi=True):
    return {
        "name": name, "label": label, "type": "query", "datasource": DS,
        "query": {"query": query, "refId": "PrometheusVariableQueryEditor-VariableQuery"},
        "definition": query, "refresh": 2, "sort": 1, "multi": multi, "includeAll": True,
        "allValue": ".*", "current": {"selected": True, "text": ["All"], "value": ["$__all"]},
        "options": [], "hide": 0,
    }


dashboard = {
    "uid": "sigil-overview",
    "title": "Sigil",
    "description": "Sigil, the Tezos remote signer: signing, consensus and watermarks, errors, enclave pool health.",
    "tags": ["sigil", "tezos", "signer"],
    "timezone": "",
    "editable": True,
    "graphTooltip": 1,
    "schemaVersion": 39,
    "version": 1,
    "refresh": "30s",
    "time": {"from": "now-3h", "to": "now"},
    "annotations": {"list": []},
    "links": [],
    "templating": {"list": [
        {"name": "datasource", "label": "Data source", "type": "datasource", "query": "prometheus",
         "current": {}, "hide": 0, "refresh": 1, "options": []},
        var("instance", "Daemon", "label_values(sigil_build_info, instance)"),
        var("address", "Key", 'label_values(sign_handler_requests_total{instance=~"$instance"}, address)'),
        var("vault", "Vault", 'label_values(sigil_enclave_connections{instance=~"$instance"}, vault)'),
    ]},
    "panels": panels,
}

out = os.path.join(os.path.dirname(__file__), "..", "deploy", "grafana", "dashboards", "sigil.json")
if len(sys.argv) > 1:
    out = sys.argv[1]
with open(out, "w") as f:
    json.dump(dashboard, f, indent=2)
    f.write("\n")
print("wrote", os.path.normpath(out), len([p for p in panels if p["type"] != "row"]), "panels")
