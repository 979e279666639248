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
Finally it sends SIGTERM and expects the server to drain and exit 0 within its grace period.

Usage: check_metric_names.py --binary FILE --source-dir DIR --work DIR RENDERED_CPU.yaml
"""

import argparse
import pathlib
import signal
import subprocess
import sys
import time

import yaml

import deploy_lib as lib


def main():
  ap = argparse.ArgumentParser()
  ap.add_argument("--binary", required=True)
  ap.add_argument("--source-dir", required=True)
  ap.add_argument("--work", required=True)
  ap.add_argument("rendered")
  a = ap.parse_args()
  src = pathlib.Path(a.source_dir)
  work = pathlib.Path(a.work)
  work.mkdir(parents=True, exist_ok=True)
  docs = lib.load_docs(a.rendered)
  stubs = lib.make_stubs(src, work / "stubs")

  port, mport = lib.free_port(), lib.free_port()
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
