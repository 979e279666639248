#!/usr/bin/env python3
"""Checks that every metric the deployment uses exists in a running server's /metrics.

Starts the real `deltaserve serve` binary on loopback with the command line of the rendered cpu
overlay's Deployment (its ConfigMap flags expanded; only --model, --host, --port and
--metrics-port replaced), waits for grpc.health.v1 SERVING, exercises every RPC (one streamed
generation, one invalid request, ...), scrapes /metrics and checks:
  - every deltaserve_* name read by an alert rule, a dashboard query or a prometheus-adapter rule
    is an exported family or series (histogram families count with _bucket/_sum/_count);
  - every label those queries match on is carried by the family's series (for families with
    series), and every equality-matched label value is one the server produced (a warning only:
    prometheus-cpp exports a labelled series once it has been touched);
Then a real Prometheus (Debian's prometheus) scrapes the server every second, with the
ServiceMonitor's target labels (namespace, pod) added and the alert rules loaded; after traffic
and a few scrapes:
  - every dashboard query and every prometheus-adapter metricsQuery evaluates without error and
    returns at least one series (this catches what parsing cannot: label-matching errors,
    selectors that match nothing), and the adapter's pool-usage ratio lies in [0, 1];
  - every alert rule has been evaluated with health "ok".
Finally it sends SIGTERM and expects the server to drain and exit 0 within its grace period.

Usage: check_metric_names.py --binary FILE --source-dir DIR --work DIR RENDERED_CPU.yaml
"""

import argparse
import json
import pathlib
import shutil
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.parse

import yaml

import deploy_lib as lib


PROM_NAMESPACE, PROM_POD = "deltaserve", "deltaserve-test"


def prom_query(pport, expr):
  url = f"http://127.0.0.1:{pport}/api/v1/query?" + urllib.parse.urlencode({"query": expr})
  try:
    return json.loads(lib.scrape(url))
  except urllib.error.HTTPError as e:  # 400/422: bad query or evaluation error
    return json.loads(e.read().decode())


def evaluate_in_prometheus(work, docs, mport, stubs, target, dashboard, adapter):
  """Runs Prometheus against the server; returns a list of problems."""
  if shutil.which("prometheus") is None:
    return ["prometheus is not installed (Debian package prometheus, tools/install_deps.sh)"]
  pdir = work / "prometheus"
  shutil.rmtree(pdir, ignore_errors=True)
  pdir.mkdir(parents=True)
  rules = {"groups": lib.find(docs, "PrometheusRule")[0]["spec"]["groups"]}
  (pdir / "rules.yaml").write_text(yaml.safe_dump(rules, sort_keys=False))
  cfg = {
      "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
      "rule_files": [str(pdir / "rules.yaml")],
      "scrape_configs": [{
          "job_name": "deltaserve",
          "static_configs": [{"targets": [f"127.0.0.1:{mport}"],
                              "labels": {"namespace": PROM_NAMESPACE, "pod": PROM_POD}}],
      }],
  }
  (pdir / "prometheus.yml").write_text(yaml.safe_dump(cfg))
  pport = lib.free_port()
  plog = open(pdir / "prometheus.log", "w")
  prom = subprocess.Popen(["prometheus", f"--config.file={pdir / 'prometheus.yml'}",
                           f"--storage.tsdb.path={pdir / 'data'}", f"--web.listen-address=127.0.0.1:{pport}",
                           "--log.level=warn"], stdout=plog, stderr=subprocess.STDOUT)
  errors = []
  try:
    deadline = time.monotonic() + 30
    while True:
      try:
        lib.scrape(f"http://127.0.0.1:{pport}/-/ready", timeout_s=2)
        break
      except OSError:
        if time.monotonic() > deadline or prom.poll() is not None:
          return [f"Prometheus did not start: {(pdir / 'prometheus.log').read_text()[-2000:]}"]
        time.sleep(0.3)

    def samples():
      r = prom_query(pport, "count_over_time(deltaserve_running_requests[5m])")
      res = r.get("data", {}).get("result", [])
      return int(float(res[0]["value"][1])) if res else 0

    # Traffic between scrapes, so that rates and histograms have something to show.
    for _ in range(3):
      lib.generate(stubs, target, prompt="Prometheus warm-up", max_new_tokens=4)
      start = samples()
      deadline = time.monotonic() + 20
      while samples() < start + 2 and time.monotonic() < deadline:
        time.sleep(0.3)
    print(f"Prometheus has {samples()} scrapes of the server")

    subst = {"namespace": PROM_NAMESPACE}
    queries = [(w, e.replace('namespace="deltaserve"', f'namespace="{subst["namespace"]}"'))
               for w, e in lib.dashboard_queries(dashboard)]
    queries += [(w, e.replace('pod=~"a|b"', f'pod=~"{PROM_POD}"'))
                for w, e in lib.adapter_queries(adapter) if w.endswith("metricsQuery")]
    empty = 0
    for where, expr in queries:
      r = prom_query(pport, expr)
      if r.get("status") != "success":
        errors.append(f"{where}: Prometheus cannot evaluate it: {r.get('error')}: {expr}")
      elif not r["data"]["result"]:
        empty += 1
        errors.append(f"{where}: returns no series from a scraped server: {expr}")
      elif "usage_ratio" in where:
        v = float(r["data"]["result"][0]["value"][1])
        if not 0 <= v <= 1:
          errors.append(f"{where}: pool usage ratio {v} is outside [0, 1]")
    print(f"Prometheus evaluated {len(queries)} dashboard and adapter queries: "
          f"{len(queries) - empty} returned series")

    # Alert rules: wait for one evaluation of every rule, then require health ok.
    deadline = time.monotonic() + 10
    while True:
      groups = json.loads(lib.scrape(f"http://127.0.0.1:{pport}/api/v1/rules"))["data"]["groups"]
      rules_seen = [r for g in groups for r in g["rules"]]
      if all(r.get("health") != "unknown" for r in rules_seen) or time.monotonic() > deadline:
        break
      time.sleep(0.3)
    expected = sum(len(g["rules"]) for g in rules["groups"])
    if len(rules_seen) != expected:
      errors.append(f"Prometheus loaded {len(rules_seen)} alert rules, the PrometheusRule has {expected}")
    for r in rules_seen:
      if r.get("health") != "ok":
        errors.append(f"alert {r['name']}: health {r.get('health')}: {r.get('lastError')}")
    firing = [r["name"] for r in rules_seen if r.get("state") == "firing"]
    print(f"Prometheus evaluated {len(rules_seen)} alert rules: "
          f"{sum(r.get('health') == 'ok' for r in rules_seen)} healthy, firing: {firing or 'none'}")
    return errors
  finally:
    prom.terminate()
    try:
      prom.wait(timeout=10)
    except subprocess.TimeoutExpired:
      prom.kill()
    plog.close()


def main():
  ap = argparse.ArgumentParser()
  ap.add_argument("--binary", required=True)
  ap.add_argument("--source-dir", required=True)
  ap.add_argument("--work", required=True)
  ap.add_argument("rendered")
  a = ap.parse_args()
  src = pathlib.Path(a.source_dir)
  work = pathlib.Path(a.work).resolve()
  work.mkdir(parents=True, exist_ok=True)
  docs = lib.load_docs(a.rendered)
  stubs = lib.make_stubs(src, work / "stubs")

  port, mport = lib.free_ports(2)
  args = lib.server_args(docs, {"--model": str(src / "models/default"), "--host": "127.0.0.1",
                                "--port": str(port), "--metrics-port": str(mport)})
  cmd = [a.binary] + args
  print("starting:", " ".join(cmd), flush=True)
  log = open(work / "server.log", "w")
  proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT)
  target = f"127.0.0.1:{port}"
  try:
    waited = lib.wait_serving(stubs, target, 60, lambda: proc.poll() is None)
    print(f"SERVING after {waited:.1f}s")
    info = lib.exercise(stubs, target)
    print(f"model {info.model} on {info.backend}: {info.pool_slots} slots of {info.state_bytes_per_slot} bytes")
    text = lib.scrape(f"http://127.0.0.1:{mport}/metrics")
    (work / "metrics.txt").write_text(text)
    families = lib.parse_metrics(text)
    exported = lib.exported_series_names(families)

    dashboard = lib.load_json(src / "deploy/grafana/deltaserve.json")
    adapter = yaml.safe_load((src / "deploy/k8s/prometheus-adapter/config.yaml").read_text())
    queries = lib.rule_queries(docs) + lib.dashboard_queries(dashboard) + lib.adapter_queries(adapter)

    errors, warnings = [], []
    used = {}
    for where, expr in queries:
      for name in lib.metric_names(expr):
        used.setdefault(name, where)
        if name in lib.PROMETHEUS_SERIES:
          continue
        if name not in exported:
          errors.append(f"{where}: metric {name} is not in the server's /metrics")
      for metric, label, op, value in lib.label_matchers(expr):
        fam = lib.family_of(metric, families)
        if fam is None or label in lib.TARGET_LABELS:
          continue
        samples = [s for s in families[fam]["samples"] if s[0] == metric or metric == fam]
        if not samples:
          continue
        if not any(label in s[1] for s in samples):
          errors.append(f"{where}: {metric} has no label {label} (its labels: "
                        f"{sorted({k for s in samples for k in s[1]})})")
        elif op == "=" and value and value not in {s[1].get(label) for s in samples}:
          warnings.append(f"{where}: {metric}{{{label}=\"{value}\"}} not exported yet (values seen: "
                          f"{sorted({s[1].get(label) for s in samples if label in s[1]})})")

    ours = sorted(n for n in used if n.startswith("deltaserve_"))
    print(f"{len(queries)} queries use {len(ours)} deltaserve series names; the server exports "
          f"{len([f for f in families if f.startswith('deltaserve_')])} deltaserve families")
    empty = sorted(f for f, v in families.items() if f.startswith("deltaserve_") and not v["samples"])
    if empty:
      warnings.append(f"families exported without any series (labelled series not pre-created): {empty}")
    unused = sorted(f for f in families if f.startswith("deltaserve_") and not any(
        lib.family_of(n, families) == f for n in used))
    if unused:
      print(f"note: families the deployment does not use: {unused}")
    errors += evaluate_in_prometheus(work, docs, mport, stubs, target, dashboard, adapter)
    for w in sorted(set(warnings)):
      print("WARNING", w)
    for e in errors:
      print("FAIL", e)

    # Drain: SIGTERM with nothing in flight must end the process with status 0 within the grace.
    grace = float(next(x.split("=", 1)[1] for x in args if x.startswith("--drain-grace=")))
    proc.send_signal(signal.SIGTERM)
    t0 = time.monotonic()
    try:
      rc = proc.wait(timeout=grace + 10)
    except subprocess.TimeoutExpired:
      errors.append(f"server still running {grace + 10:.0f}s after SIGTERM")
      rc = None
    else:
      print(f"SIGTERM: exited {rc} after {time.monotonic() - t0:.1f}s")
      if rc != 0:
        errors.append(f"server exited {rc} after SIGTERM, expected 0")
    print(f"checked {len(ours)} metric names and their labels: {len(errors)} problem(s)")
    return 1 if errors else 0
  finally:
    if proc.poll() is None:
      proc.kill()
      proc.wait()
    log.close()
    tail = (work / "server.log").read_text().splitlines()[-15:]
    print("server log (last lines):\n  " + "\n  ".join(tail))


if __name__ == "__main__":
  sys.exit(main())
