"""Helpers shared by deltaserve's deployment checks (tests/deploy/*.py).

Reads rendered Kubernetes manifests, collects every PromQL expression the deployment uses
(alert rules, dashboard queries, prometheus-adapter rules), turns the cpu overlay's container
arguments into a real command line, talks to a running server over gRPC (stubs generated with
protoc at run time from proto/ and grpc-proto's health.proto) and parses its /metrics text.
"""

import json
import math
import pathlib
import re
import shutil
import subprocess
import sys
import time
import urllib.request

import yaml

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent.parent / "common"))
from ports import free_port, free_ports  # noqa: E402  (re-exported for the checks)

# Labels that Prometheus (scrape config of the ServiceMonitor) attaches to every scraped series;
# they are never in the server's own output.
TARGET_LABELS = {"namespace", "pod", "job", "instance", "service", "endpoint", "container"}
# Series that Prometheus itself creates for every target.
PROMETHEUS_SERIES = {"up"}


def load_docs(path):
  return [d for d in yaml.safe_load_all(pathlib.Path(path).read_text()) if d]


def find(docs, kind, name=None):
  found = [d for d in docs if d["kind"] == kind and (name is None or d["metadata"]["name"] == name)]
  if not found:
    raise SystemExit(f"rendered manifests have no {kind} {name or ''}")
  return found


# ---------------------------------------------------------------------------------------------
# The server's command line as the Deployment runs it.

def _cpu_cores(quantity):
  q = str(quantity)
  return int(q[:-1]) / 1000 if q.endswith("m") else float(q)


def server_args(docs, overrides):
  """The `deltaserve` arguments of the rendered Deployment, $(VAR)s expanded from its ConfigMap.

  overrides maps a flag (e.g. "--port") to the value to use instead of the manifest's.
  """
  dep = find(docs, "Deployment", "deltaserve")[0]
  container = dep["spec"]["template"]["spec"]["containers"][0]
  env = {}
  for src in container.get("envFrom", []):
    cm = find(docs, "ConfigMap", src["configMapRef"]["name"])[0]
    env.update(cm.get("data", {}))
  for e in container.get("env", []):
    if "value" in e:
      env[e["name"]] = e["value"]
      continue
    ref = e.get("valueFrom", {}).get("resourceFieldRef")
    if not ref or ref["resource"] != "limits.cpu":
      raise SystemExit(f"Deployment env {e['name']}: only values and limits.cpu references are understood")
    env[e["name"]] = str(math.ceil(_cpu_cores(container["resources"]["limits"]["cpu"])
                                   / _cpu_cores(ref.get("divisor", "1"))))

  def expand(arg):
    def sub(m):
      if m.group(1) not in env:
        raise SystemExit(f"Deployment argument {arg!r} uses $({m.group(1)}), which no ConfigMap defines")
      return env[m.group(1)]
    return re.sub(r"\$\(([A-Za-z_][A-Za-z0-9_]*)\)", sub, arg)

  args = [expand(a) for a in container.get("command", []) + container["args"]]
  seen = set()
  out = []
  for a in args:
    flag = a.split("=", 1)[0]
    if flag in overrides:
      a = f"{flag}={overrides[flag]}"
      seen.add(flag)
    out.append(a)
  for flag, value in overrides.items():
    if flag not in seen:
      out.append(f"{flag}={value}")
  return out


# ---------------------------------------------------------------------------------------------
# PromQL the deployment uses.

DASHBOARD_VARS = {
    "__rate_interval": "5m", "__interval": "1m", "__range": "1h",
    "namespace": "deltaserve", "pod": ".+", "datasource": "prometheus",
}


def _dashboard_subst(expr):
  return re.sub(r"\$\{(\w+)\}|\$(\w+)", lambda m: DASHBOARD_VARS[m.group(1) or m.group(2)], expr)


def dashboard_queries(dashboard):
  """(where, PromQL) for every panel query and every query variable of the dashboard."""
  out = []

  def panels(ps):
    for p in ps:
      yield p
      yield from panels(p.get("panels", []))

  for p in panels(dashboard.get("panels", [])):
    for t in p.get("targets", []):
      out.append((f"dashboard panel {p['id']} '{p.get('title')}' query {t['refId']}", _dashboard_subst(t["expr"])))
  for v in dashboard.get("templating", {}).get("list", []):
    if v.get("type") != "query":
      continue
    q = v["query"]["query"] if isinstance(v["query"], dict) else v["query"]
    m = re.fullmatch(r"\s*label_values\((.*),\s*(\w+)\)\s*", q)
    if not m:
      raise SystemExit(f"dashboard variable {v['name']}: cannot read query {q!r}")
    out.append((f"dashboard variable {v['name']}", _dashboard_subst(m.group(1))))
  return out


def rule_queries(docs):
  out = []
  seen = set()
  for pr in find(docs, "PrometheusRule"):
    for g in pr["spec"]["groups"]:
      for r in g["rules"]:
        name = r.get("alert") or r.get("record")
        if (g["name"], name) in seen:
          continue
        seen.add((g["name"], name))
        out.append((f"rule {g['name']}/{name}", r["expr"]))
  return out


def adapter_rules(adapter_cfg):
  return adapter_cfg.get("rules", []) + adapter_cfg.get("externalRules", [])


def adapter_queries(adapter_cfg):
  """seriesQuery and metricsQuery of every adapter rule, the latter with its template filled in
  the way the adapter does for a request about pods a and b of namespace deltaserve."""
  out = []
  for i, r in enumerate(adapter_rules(adapter_cfg)):
    series = re.match(r"\s*([a-zA-Z_:][a-zA-Z0-9_:]*)", r["seriesQuery"]).group(1)
    where = f"adapter rule {i} ({r.get('name', {}).get('as', series)})"
    out.append((where + " seriesQuery", r["seriesQuery"]))
    q = (r["metricsQuery"].replace("<<.Series>>", series)
         .replace("<<.LabelMatchers>>", 'namespace="deltaserve",pod=~"a|b"')
         .replace("<<.GroupBy>>", "pod"))
    if "<<" in q:
      raise SystemExit(f"{where}: metricsQuery uses a template field this check does not know: {q}")
    out.append((where + " metricsQuery", q))
  return out


def adapter_metric_names(adapter_cfg):
  """Names of the custom metrics the adapter serves (name.as, or the series name)."""
  names = set()
  for r in adapter_rules(adapter_cfg):
    series = re.match(r"\s*([a-zA-Z_:][a-zA-Z0-9_:]*)", r["seriesQuery"]).group(1)
    name = r.get("name", {})
    if "as" in name:
      names.add(name["as"])
    elif "matches" not in name:
      names.add(series)
    else:
      names.add(re.sub(name["matches"], "", series) if name["matches"] else series)
  return names


def hpa_metric_names(docs):
  out = []
  for hpa in find(docs, "HorizontalPodAutoscaler"):
    for m in hpa["spec"]["metrics"]:
      if m["type"] in ("Pods", "Object", "External"):
        key = m["type"].lower() if m["type"] != "Object" else "object"
        out.append((hpa["metadata"]["name"], m[key]["metric"]["name"]))
  return out


_STRING = re.compile(r'"(?:[^"\\]|\\.)*"|\'(?:[^\'\\]|\\.)*\'|`[^`]*`')
_IDENT = re.compile(r"(?<![\w:.])([a-zA-Z_:][a-zA-Z0-9_:]*)")
_SELECTOR = re.compile(r"(?<![\w:])(deltaserve_[a-zA-Z0-9_]*)\s*\{([^}]*)\}")
_MATCHER = re.compile(r'\s*([a-zA-Z_][a-zA-Z0-9_]*)\s*(=~|!~|!=|=)\s*"((?:[^"\\]|\\.)*)"\s*,?')


def metric_names(expr):
  """Every deltaserve_* metric name and Prometheus-made series (`up`) an expression reads."""
  code = _STRING.sub('""', expr)
  names = {m for m in _IDENT.findall(code) if m.startswith("deltaserve_")}
  names |= {m for m in _IDENT.findall(code) if m in PROMETHEUS_SERIES and re.search(rf"\b{m}\s*[{{\[]", code)}
  return names


def label_matchers(expr):
  """(metric, label, op, value) for every matcher of a deltaserve_* selector."""
  out = []
  for metric, body in _SELECTOR.findall(expr):
    for label, op, value in _MATCHER.findall(body):
      out.append((metric, label, op, value))
  return out


# ---------------------------------------------------------------------------------------------
# A running server: gRPC and /metrics.

def make_stubs(source_dir, work):
  """Generates Python protobuf/gRPC modules for deltaserve.v1 and grpc.health.v1 into work."""
  work = pathlib.Path(work)
  work.mkdir(parents=True, exist_ok=True)
  proto_root = pathlib.Path(source_dir) / "proto"
  # grpc-proto's health.proto, copied to another path: a generated `grpc.health` Python package
  # would be hidden by the installed `grpc` package. The proto package (the wire name,
  # grpc.health.v1.Health) is unchanged.
  health_root = work / "protos"
  (health_root / "deploy_health").mkdir(parents=True, exist_ok=True)
  shutil.copy("/usr/share/grpc-proto/grpc/health/v1/health.proto", health_root / "deploy_health/health.proto")
  cmd = ["protoc", f"-I{proto_root}", f"-I{health_root}", f"--python_out={work}",
         f"--grpc_python_out={work}", "--plugin=protoc-gen-grpc_python=/usr/bin/grpc_python_plugin",
         "deltaserve/v1/deltaserve.proto", "deploy_health/health.proto"]
  subprocess.run(cmd, check=True)
  sys.path.insert(0, str(work))
  import grpc  # noqa: F401  (Debian's python3-grpcio)
  from deltaserve.v1 import deltaserve_pb2, deltaserve_pb2_grpc
  from deploy_health import health_pb2, health_pb2_grpc
  return {"pb": deltaserve_pb2, "svc": deltaserve_pb2_grpc, "hpb": health_pb2, "hsvc": health_pb2_grpc}


def wait_serving(stubs, target, timeout_s, proc_alive=lambda: True):
  """Polls grpc.health.v1 Check("") until SERVING; returns seconds waited."""
  import grpc
  start = time.monotonic()
  last = None
  while time.monotonic() - start < timeout_s:
    if not proc_alive():
      raise SystemExit(f"server exited before it became healthy (last health answer: {last})")
    try:
      with grpc.insecure_channel(target) as ch:
        resp = stubs["hsvc"].HealthStub(ch).Check(stubs["hpb"].HealthCheckRequest(service=""), timeout=2)
        last = stubs["hpb"].HealthCheckResponse.ServingStatus.Name(resp.status)
        if resp.status == stubs["hpb"].HealthCheckResponse.SERVING:
          return time.monotonic() - start
    except grpc.RpcError as e:
      last = e.code().name
    time.sleep(0.3)
  raise SystemExit(f"server at {target} not SERVING after {timeout_s}s (last health answer: {last})")


def generate(stubs, target, prompt="Hello", max_new_tokens=8, timeout_s=60):
  """One streamed Generate call; returns (token ids, text, finish reason name)."""
  import grpc
  pb = stubs["pb"]
  req = pb.GenerateRequest(text=prompt, sampling=pb.SamplingParams(temperature=0.0),
                           stopping=pb.StoppingParams(max_new_tokens=max_new_tokens, ignore_eos=True))
  ids, text, finished = [], "", None
  with grpc.insecure_channel(target) as ch:
    for msg in stubs["svc"].DeltaServeStub(ch).Generate(req, timeout=timeout_s):
      ids += list(msg.token_ids)
      text += msg.text
      if msg.HasField("finished"):
        finished = pb.FinishReason.Name(msg.finished.finish_reason)
  return ids, text, finished


def exercise(stubs, target):
  """Touches every RPC once, plus one invalid request, so that labelled series exist."""
  import grpc
  pb = stubs["pb"]
  ids, text, finished = generate(stubs, target)
  if len(ids) != 8 or finished != "FINISH_REASON_LENGTH":
    raise SystemExit(f"Generate returned {len(ids)} tokens, finish {finished}; expected 8, LENGTH")
  with grpc.insecure_channel(target) as ch:
    s = stubs["svc"].DeltaServeStub(ch)
    info = s.GetModelInfo(pb.GetModelInfoRequest(), timeout=10)
    toks = s.Tokenize(pb.TokenizeRequest(text="abc"), timeout=10)
    s.Detokenize(pb.DetokenizeRequest(token_ids=list(toks.token_ids)), timeout=10)
    s.Complete(pb.GenerateRequest(text="Hi", stopping=pb.StoppingParams(max_new_tokens=2)), timeout=60)
    try:
      s.Complete(pb.GenerateRequest(text="Hi", sampling=pb.SamplingParams(top_p=5.0)), timeout=10)
      raise SystemExit("a request with sampling.top_p=5 was accepted")
    except grpc.RpcError as e:
      if e.code() != grpc.StatusCode.INVALID_ARGUMENT:
        raise SystemExit(f"invalid request gave {e.code().name}, expected INVALID_ARGUMENT")
  return info


def scrape(url, timeout_s=10):
  with urllib.request.urlopen(url, timeout=timeout_s) as r:
    return r.read().decode()


_SAMPLE = re.compile(r"^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{(.*)\})?\s+(\S+)")
_LABEL = re.compile(r'([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"')


def parse_metrics(text):
  """{family: {"type": t, "samples": [(sample name, {label: value}, value)]}} of a text exposition."""
  families = {}
  for line in text.splitlines():
    if line.startswith("# TYPE "):
      _, _, name, typ = line.split(None, 3)
      families.setdefault(name, {"type": typ, "samples": []})["type"] = typ
    elif line and not line.startswith("#"):
      m = _SAMPLE.match(line)
      if not m:
        raise SystemExit(f"/metrics: cannot parse line {line!r}")
      name, labels, value = m.group(1), dict(_LABEL.findall(m.group(3) or "")), m.group(4)
      fam = name
      for suffix in ("_bucket", "_sum", "_count"):
        base = name[: -len(suffix)]
        if name.endswith(suffix) and families.get(base, {}).get("type") in ("histogram", "summary"):
          fam = base
      families.setdefault(fam, {"type": "untyped", "samples": []})["samples"].append((name, labels, value))
  return families


def exported_series_names(families):
  """Every name a query may use: each family name, each sample name, and for histograms the
  _bucket/_sum/_count series even when the family has no sample yet."""
  names = set()
  for fam, f in families.items():
    names.add(fam)
    names |= {s[0] for s in f["samples"]}
    if f["type"] == "histogram":
      names |= {fam + "_bucket", fam + "_sum", fam + "_count"}
  return names


def family_of(name, families):
  if name in families:
    return name
  for suffix in ("_bucket", "_sum", "_count"):
    if name.endswith(suffix) and name[: -len(suffix)] in families:
      return name[: -len(suffix)]
  return None


def load_json(path):
  return json.loads(pathlib.Path(path).read_text())
