#!/usr/bin/env python3
"""Writes deltaserve's alert rules as a plain Prometheus rule file.

The rules live in one place, the PrometheusRule of deploy/k8s/base/prometheusrule.yaml; this
prints its `spec` (the `groups:` document Prometheus reads with `rule_files`) for a Prometheus
that is not run by the Prometheus Operator, and for `promtool check rules` / `promtool test rules`.

Usage: python3 deploy/monitoring/export_rules.py [OUT.yaml]   (default: standard output)
"""

import pathlib
import sys

import yaml

SOURCE = pathlib.Path(__file__).resolve().parents[1] / "k8s" / "base" / "prometheusrule.yaml"


def rule_groups(path=SOURCE):
  doc = yaml.safe_load(path.read_text())
  if doc.get("kind") != "PrometheusRule" or "groups" not in doc.get("spec", {}):
    raise SystemExit(f"{path}: expected a PrometheusRule with spec.groups")
  return {"groups": doc["spec"]["groups"]}


def main():
  text = ("# Generated from deploy/k8s/base/prometheusrule.yaml by deploy/monitoring/export_rules.py.\n"
          + yaml.safe_dump(rule_groups(), sort_keys=False, width=100))
  if len(sys.argv) > 1:
    pathlib.Path(sys.argv[1]).write_text(text)
  else:
    sys.stdout.write(text)


if __name__ == "__main__":
  main()
