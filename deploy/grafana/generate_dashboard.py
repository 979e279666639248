#!/usr/bin/env python3
"""Writes deltaserve.json, the Grafana dashboard for deltaserve, from the panel list below.

The dashboard is classic Grafana JSON (schemaVersion 39; Grafana 10.4 and later) for a
Prometheus data source chosen by the `datasource` variable. Every graph shows the sum over the
selected pods (series "all") and one series per pod. Edit this file, not the JSON, then run
`python3 deploy/grafana/generate_dashboard.py`; CI fails when the JSON differs from what this
script writes.
"""

import json
import pathlib
import sys

DS = {"type": "prometheus", "uid": "${datasource}"}
SEL = 'namespace="$namespace", pod=~"$pod"'
RATE = "$__rate_interval"


class Layout:
  """Assigns panel ids and grid positions: full-width rows, panels of width w flowing left to right."""

  def __init__(self):
    self.panels = []
    self.next_id = 1
    self.x = 0
    self.y = 0
    self.row_h = 0

  def _id(self):
    i = self.next_id
    self.next_id += 1
    return i

  def row(self, title):
    self._newline()
    self.panels.append({"type": "row", "title": title, "id": self._id(), "collapsed": False,
                        "panels": [], "gridPos": {"h": 1, "w": 24, "x": 0, "y": self.y}})
    self.y += 1

  def _newline(self):
    if self.x:
      self.y += self.row_h
      self.x = 0
      self.row_h = 0

  def add(self, panel, w, h):
    if self.x + w > 24:
      self._newline()
    panel["id"] = self._id()
    panel["gridPos"] = {"h": h, "w": w, "x": self.x, "y": self.y}
    self.x += w
    self.row_h = max(self.row_h, h)
    self.panels.append(panel)


def target(ref, expr, legend):
  return {"refId": ref, "datasource": DS, "editorMode": "code", "expr": expr,
          "legendFormat": legend, "range": True, "instant": False}


def targets(pairs):
  return [target(chr(ord("A") + i), expr, legend) for i, (expr, legend) in enumerate(pairs)]


def timeseries(title, description, pairs, unit, stack=False):
  custom = {"drawStyle": "line", "lineWidth": 1, "fillOpacity": 10, "showPoints": "never",
            "spanNulls": False, "axisSoftMin": 0}
  if stack:
    custom["stacking"] = {"mode": "normal", "group": "A"}
  return {
      "type": "timeseries",
      "title": title,
      "description": description,
      "datasource": DS,
      "targets": targets(pairs),
      "fieldConfig": {
          "defaults": {"unit": unit, "custom": custom},
          # The summed series ("all", or "... all") is drawn thicker than the per-pod ones.
          "overrides": [{
              "matcher": {"id": "byRegexp", "options": "(.* )?all$"},
              "properties": [{"id": "custom.lineWidth", "value": 3}],
          }],
      },
      "options": {
          "legend": {"showLegend": True, "displayMode": "list", "placement": "bottom",
                     "calcs": []},
          "tooltip": {"mode": "multi", "sort": "desc"},
      },
  }


def stat(title, description, expr, unit, thresholds=None):
  steps = [{"color": "green", "value": None}]
  for value, color in thresholds or []:
    steps.append({"color": color, "value": value})
  return {
      "type": "stat",
      "title": title,
      "description": description,
      "datasource": DS,
      "targets": targets([(expr, "")]),
      "fieldConfig": {
          "defaults": {"unit": unit, "thresholds": {"mode": "absolute", "steps": steps},
                       "color": {"mode": "thresholds"}},
          "overrides": [],
      },
      "options": {
          "reduceOptions": {"calcs": ["lastNotNull"], "fields": "", "values": False},
          "orientation": "auto",
          "colorMode": "value",
          "graphMode": "area",
          "justifyMode": "auto",
          "textMode": "auto",
          "wideLayout": True,
          "showPercentChange": False,
          "percentChangeColorMode": "standard",
      },
  }


def summed_and_per_pod(agg_expr, legend):
  """[(sum over pods, '<legend> all'), (per pod, '<legend> {{pod}}')] for `sum(...)` style exprs."""
  return [(agg_expr.format(by=""), f"{legend}all".strip()),
          (agg_expr.format(by=" by (pod)"), f"{legend}{{{{pod}}}}".strip())]


def counter_rate(metric, extra=""):
  sel = SEL + extra
  return "sum{by} (rate(" + metric + "{{" + sel.replace("{", "{{").replace("}", "}}") + "}}[" + RATE + "]))"


def gauge_sum(metric):
  return "sum{by} (" + metric + "{{" + SEL + "}})"


def quantiles(hist, extra_by=""):
  """p50 and p99 over all pods, and p99 per pod, of a histogram."""
  out = []
  for q, name in ((0.5, "p50"), (0.99, "p99")):
    out.append((f"histogram_quantile({q}, sum by (le{extra_by}) (rate({hist}_bucket{{{SEL}}}[{RATE}])))",
                f"{name} all" if not extra_by else f"{name} {{{{phase}}}}"))
  if not extra_by:
    out.append((f"histogram_quantile(0.99, sum by (le, pod) (rate({hist}_bucket{{{SEL}}}[{RATE}])))",
                "p99 {{pod}}"))
  return out


def build():
  lay = Layout()

  lay.row("Overview")
  lay.add(stat("Generated tokens/s", "Tokens generated per second, all selected pods.",
               f"sum(rate(deltaserve_generated_tokens_total{{{SEL}}}[{RATE}]))", "short"), 4, 4)
  lay.add(stat("Prompt tokens/s", "Prompt tokens consumed per second, all selected pods.",
               f"sum(rate(deltaserve_prompt_tokens_total{{{SEL}}}[{RATE}]))", "short"), 4, 4)
  lay.add(stat("Running requests", "Requests holding a state slot.",
               f"sum(deltaserve_running_requests{{{SEL}}})", "short"), 4, 4)
  lay.add(stat("Waiting requests", "Requests queued for a state slot.",
               f"sum(deltaserve_waiting_requests{{{SEL}}})", "short", [(1, "yellow"), (50, "red")]), 4, 4)
  lay.add(stat("State pool used", "Slots in use over slots in the pools of the selected pods.",
               f"sum(deltaserve_state_pool_slots_used{{{SEL}}}) / sum(deltaserve_state_pool_slots{{{SEL}}})",
               "percentunit", [(0.75, "yellow"), (0.9, "red")]), 4, 4)
  lay.add(stat("TTFT p99", "99th percentile of time to first token over the range of the panel's interval.",
               f"histogram_quantile(0.99, sum by (le) (rate(deltaserve_time_to_first_token_seconds_bucket{{{SEL}}}[{RATE}])))",
               "s", [(1, "yellow"), (2, "red")]), 4, 4)

  lay.row("Throughput")
  lay.add(timeseries("Generated tokens/s", "rate(deltaserve_generated_tokens_total)",
                     summed_and_per_pod(counter_rate("deltaserve_generated_tokens_total"), ""), "short"), 12, 8)
  lay.add(timeseries("Prompt tokens/s", "rate(deltaserve_prompt_tokens_total)",
                     summed_and_per_pod(counter_rate("deltaserve_prompt_tokens_total"), ""), "short"), 12, 8)
  lay.add(timeseries("Finished requests/s by reason", "rate(deltaserve_requests_total) by finish_reason",
                     [(f"sum by (finish_reason) (rate(deltaserve_requests_total{{{SEL}}}[{RATE}]))", "{{finish_reason}}"),
                      (f"sum by (pod) (rate(deltaserve_requests_total{{{SEL}}}[{RATE}]))", "{{pod}}")], "reqps"), 12, 8)
  lay.add(timeseries("gRPC calls/s by method", "rate(deltaserve_grpc_requests_total) by method",
                     [(f"sum by (method) (rate(deltaserve_grpc_requests_total{{{SEL}}}[{RATE}]))", "{{method}}")],
                     "reqps"), 12, 8)

  lay.row("Requests and state pool")
  lay.add(timeseries("Running, waiting and swapped requests", "Gauges deltaserve_running_requests, "
                     "deltaserve_waiting_requests and deltaserve_swapped_requests.",
                     summed_and_per_pod(gauge_sum("deltaserve_running_requests"), "running ")
                     + summed_and_per_pod(gauge_sum("deltaserve_waiting_requests"), "waiting ")
                     + summed_and_per_pod(gauge_sum("deltaserve_swapped_requests"), "swapped "), "short"), 12, 8)
  lay.add(timeseries("State pool slots used / total", "deltaserve_state_pool_slots_used and _total.",
                     summed_and_per_pod(gauge_sum("deltaserve_state_pool_slots_used"), "used ")
                     + summed_and_per_pod(gauge_sum("deltaserve_state_pool_slots"), "total "), "short"), 12, 8)
  lay.add(timeseries("State pool bytes", "Bytes of the state pools (deltaserve_state_pool_bytes) and the bytes "
                     "held by slots in use (slots used x deltaserve_state_pool_slot_bytes).",
                     summed_and_per_pod(gauge_sum("deltaserve_state_pool_bytes"), "pool ")
                     + [(f"sum(deltaserve_state_pool_slots_used{{{SEL}}} * on (namespace, pod) "
                         f"deltaserve_state_pool_slot_bytes{{{SEL}}})", "in use all"),
                        (f"sum by (pod) (deltaserve_state_pool_slots_used{{{SEL}}} * on (namespace, pod) "
                         f"deltaserve_state_pool_slot_bytes{{{SEL}}})", "in use {{pod}}")], "bytes"), 12, 8)
  lay.add(timeseries("State pool usage", "Slots used / slots total.",
                     [(f"sum(deltaserve_state_pool_slots_used{{{SEL}}}) / sum(deltaserve_state_pool_slots{{{SEL}}})",
                       "all"),
                      (f"sum by (pod) (deltaserve_state_pool_slots_used{{{SEL}}}) / "
                       f"sum by (pod) (deltaserve_state_pool_slots{{{SEL}}})", "{{pod}}")], "percentunit"), 12, 8)

  lay.row("Latency")
  lay.add(timeseries("Time to first token", "deltaserve_time_to_first_token_seconds: p50 and p99 over all "
                     "selected pods, p99 per pod.", quantiles("deltaserve_time_to_first_token_seconds"), "s"), 12, 8)
  lay.add(timeseries("Inter-token latency", "deltaserve_inter_token_latency_seconds.",
                     quantiles("deltaserve_inter_token_latency_seconds"), "s"), 12, 8)
  lay.add(timeseries("End-to-end request duration", "deltaserve_request_duration_seconds.",
                     quantiles("deltaserve_request_duration_seconds"), "s"), 12, 8)
  lay.add(timeseries("Queue time", "deltaserve_queue_time_seconds: waiting for a state slot.",
                     quantiles("deltaserve_queue_time_seconds"), "s"), 12, 8)

  lay.row("Engine steps")
  lay.add(timeseries("Step time by phase", "deltaserve_step_duration_seconds by phase (prefill, decode, mixed).",
                     quantiles("deltaserve_step_duration_seconds", ", phase"), "s"), 12, 8)
  lay.add(timeseries("Batch size", "deltaserve_step_batch_size: sequences per engine step.",
                     [(f"sum(rate(deltaserve_step_batch_size_sum{{{SEL}}}[{RATE}])) / "
                       f"sum(rate(deltaserve_step_batch_size_count{{{SEL}}}[{RATE}]))", "mean all"),
                      (f"sum by (pod) (rate(deltaserve_step_batch_size_sum{{{SEL}}}[{RATE}])) / "
                       f"sum by (pod) (rate(deltaserve_step_batch_size_count{{{SEL}}}[{RATE}]))", "mean {{pod}}"),
                      (f"histogram_quantile(0.99, sum by (le) (rate(deltaserve_step_batch_size_bucket{{{SEL}}}[{RATE}])))",
                       "p99 all")], "short"), 12, 8)
  lay.add(timeseries("Steps/s by phase", "rate(deltaserve_step_duration_seconds_count) by phase.",
                     [(f"sum by (phase) (rate(deltaserve_step_duration_seconds_count{{{SEL}}}[{RATE}]))", "{{phase}}")],
                     "ops"), 12, 8)

  lay.row("Errors")
  lay.add(timeseries("Failed gRPC calls/s by status", "rate(deltaserve_grpc_requests_total{code!=\"OK\"}) by "
                     "method and status code.",
                     [(f"sum by (method, code) (rate(deltaserve_grpc_requests_total{{{SEL}, code!=\"OK\"}}[{RATE}]))",
                       "{{method}} {{code}}"),
                      (f"sum(rate(deltaserve_grpc_requests_total{{{SEL}, code!=\"OK\"}}[{RATE}]))", "all"),
                      (f"sum by (pod) (rate(deltaserve_grpc_requests_total{{{SEL}, code!=\"OK\"}}[{RATE}]))",
                       "{{pod}}")], "reqps"), 12, 8)
  lay.add(timeseries("Rejected requests/s by status", "rate(deltaserve_requests_rejected_total) by code: "
                     "requests refused before reaching the engine.",
                     [(f"sum by (code) (rate(deltaserve_requests_rejected_total{{{SEL}}}[{RATE}]))", "{{code}}"),
                      (f"sum by (pod) (rate(deltaserve_requests_rejected_total{{{SEL}}}[{RATE}]))", "{{pod}}")],
                     "reqps"), 12, 8)
  lay.add(timeseries("Requests failed by the engine/s", "rate(deltaserve_requests_total{finish_reason=\"error\"}).",
                     summed_and_per_pod(counter_rate("deltaserve_requests_total", ', finish_reason="error"'), ""),
                     "reqps"), 12, 8)
  lay.add(timeseries("Draining pods", "deltaserve_draining: 1 while a pod drains after SIGTERM.",
                     [(f"max by (pod) (deltaserve_draining{{{SEL}}})", "{{pod}}")], "short"), 12, 8)

  variables = [
      {"type": "datasource", "name": "datasource", "label": "Data source", "query": "prometheus",
       "refresh": 1, "hide": 0, "includeAll": False, "multi": False},
      {"type": "query", "name": "namespace", "label": "Namespace", "datasource": DS,
       "query": {"query": "label_values(deltaserve_model_info, namespace)", "refId": "namespace"},
       "refresh": 2, "hide": 0, "includeAll": False, "multi": False, "sort": 1},
      {"type": "query", "name": "pod", "label": "Pod", "datasource": DS,
       "query": {"query": 'label_values(deltaserve_model_info{namespace="$namespace"}, pod)', "refId": "pod"},
       "refresh": 2, "hide": 0, "includeAll": True, "allValue": ".+", "multi": True, "sort": 1},
  ]

  return {
      "uid": "deltaserve-overview",
      "title": "deltaserve",
      "description": "Throughput, requests, state pool, latency, engine steps and errors of deltaserve "
                     "servers, summed over the selected pods and per pod.",
      "tags": ["deltaserve"],
      "schemaVersion": 39,
      "version": 1,
      "editable": True,
      "graphTooltip": 1,
      "time": {"from": "now-1h", "to": "now"},
      "refresh": "30s",
      "timezone": "browser",
      "fiscalYearStartMonth": 0,
      "liveNow": False,
      "links": [],
      "annotations": {"list": [{
          "builtIn": 1, "datasource": {"type": "grafana", "uid": "-- Grafana --"}, "enable": True,
          "hide": True, "iconColor": "rgba(0, 211, 255, 1)", "name": "Annotations & Alerts",
          "type": "dashboard"}]},
      "templating": {"list": variables},
      "panels": lay.panels,
  }


def render():
  return json.dumps(build(), indent=2, sort_keys=False) + "\n"


def main():
  out = pathlib.Path(__file__).with_name("deltaserve.json")
  if len(sys.argv) > 1 and sys.argv[1] == "--check":
    if out.read_text() != render():
      print(f"{out} is out of date: run python3 {pathlib.Path(__file__).name}", file=sys.stderr)
      return 1
    print(f"{out.name} matches the generator")
    return 0
  out.write_text(render())
  return 0


if __name__ == "__main__":
  sys.exit(main())
