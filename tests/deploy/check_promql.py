#!/usr/bin/env python3
"""Checks the PromQL of the deployment with promtool (Debian's prometheus package).

1. The alert rules (the rendered PrometheusRule's spec, exported as a rule file) pass
   `promtool check rules`.
2. The alert unit tests, deploy/monitoring/alerts_test.yaml, pass `promtool test rules`.
3. Every dashboard query (Grafana variables filled in) and every prometheus-adapter query
   (template filled in as the adapter does) parses: each becomes a recording rule of a generated
   rule file that `promtool check rules` must accept.
4. Every custom metric the HorizontalPodAutoscalers scale on is one the adapter rules serve.

Usage: check_promql.py --source-dir DIR --work DIR RENDERED.yaml...
"""

import argparse
import pathlib
import shutil
import subprocess
import sys

import yaml

import deploy_lib as lib


def promtool(*args, cwd=None):
  r = subprocess.run(["promtool", *args], cwd=cwd, capture_output=True, text=True)
  out = (r.stdout + r.stderr).strip()
  return r.returncode, out


def main():
  ap = argparse.ArgumentParser()
  ap.add_argument("--source-dir", required=True)
  ap.add_argument("--work", required=True)
  ap.add_argument("rendered", nargs="+")
  a = ap.parse_args()
  src = pathlib.Path(a.source_dir)
  work = pathlib.Path(a.work)
  shutil.rmtree(work, ignore_errors=True)
  work.mkdir(parents=True)
  docs = [d for f in a.rendered for d in lib.load_docs(f)]
  dashboard = lib.load_json(src / "deploy/grafana/deltaserve.json")
  adapter = yaml.safe_load((src / "deploy/k8s/prometheus-adapter/config.yaml").read_text())
  failed = []
  passed = 0

  # 1 and 2: every rendered PrometheusRule (overlays may not change them, but check each).
  rules = lib.find(docs, "PrometheusRule")
  specs = {yaml.safe_dump(r["spec"]) for r in rules}
  for i, spec in enumerate(sorted(specs)):
    d = work / f"rules{i}"
    d.mkdir()
    (d / "deltaserve.rules.yaml").write_text(spec)
    shutil.copy(src / "deploy/monitoring/alerts_test.yaml", d / "alerts_test.yaml")
    rc, out = promtool("check", "rules", "deltaserve.rules.yaml", cwd=d)
    print(out)
    (failed.append("promtool check rules") if rc else None)
    passed += rc == 0
    rc, out = promtool("test", "rules", "alerts_test.yaml", cwd=d)
    print(out)
    (failed.append("promtool test rules") if rc else None)
    passed += rc == 0

  # 3: dashboard and adapter queries parse.
  queries = lib.dashboard_queries(dashboard) + lib.adapter_queries(adapter)
  group = {"name": "deploy-query-parse-check", "rules": []}
  for i, (where, expr) in enumerate(queries):
    group["rules"].append({"record": f"deploy_query_check:q{i}", "expr": expr})
  (work / "queries.rules.yaml").write_text(yaml.safe_dump({"groups": [group]}, sort_keys=False))
  rc, out = promtool("check", "rules", "queries.rules.yaml", cwd=work)
  if rc:
    print(out)
    # Name the failing queries: promtool reports "group ..., rule N, ...".
    for i, (where, expr) in enumerate(queries):
      single = {"groups": [{"name": "one", "rules": [{"record": "deploy_query_check:q", "expr": expr}]}]}
      (work / "one.rules.yaml").write_text(yaml.safe_dump(single))
      rc1, out1 = promtool("check", "rules", "one.rules.yaml", cwd=work)
      if rc1:
        print(f"FAIL {where}: {expr}\n  {out1}")
    failed.append("dashboard/adapter queries parse")
  else:
    print(f"{len(queries)} dashboard and adapter queries parse")
    passed += 1

  # 4: HPA metrics are served by the adapter.
  served = lib.adapter_metric_names(adapter)
  for hpa, name in lib.hpa_metric_names(docs):
    if name not in served:
      print(f"FAIL HorizontalPodAutoscaler {hpa} scales on {name}, which no adapter rule serves "
            f"(served: {sorted(served)})")
      failed.append(f"HPA metric {name}")
    else:
      passed += 1
  print(f"{passed} passed, {len(failed)} failed")
  return 1 if failed else 0


if __name__ == "__main__":
  sys.exit(main())
