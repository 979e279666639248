#!/usr/bin/env python3
"""Builds the cpu image from scratch and serves from it (podman, rootful, on loopback).

1. deploy/container/build_image.sh --variant cpu stages the server binary, its libraries, the
   loader and models/default and builds the image.
2. The image must declare the non-root user 10001.
3. A container runs it with the command line of the rendered cpu overlay's Deployment (the
   model path is the embedded /models/default) under the pod's restrictions: read-only root
   file system with a /tmp tmpfs, all capabilities dropped, no privilege escalation. Its gRPC
   and metrics ports are published on 127.0.0.1.
4. From the host: grpc.health.v1 Check answers SERVING, a Generate call streams 8 tokens, and
   /metrics counts them.
5. `podman stop` (SIGTERM) ends the container with exit status 0 within the drain grace.
The image, the container and the staged build context are removed afterwards. The test is
skipped (exit 77) only when `podman info` fails, i.e. no container engine can run on this machine
at all.

Usage: check_container.py --binary FILE --source-dir DIR --work DIR RENDERED_CPU.yaml
"""

import argparse
import json
import os
import pathlib
import resource
import shutil
import subprocess
import sys
import time

import deploy_lib as lib

SKIP = 77


def run(cmd, timeout, check=True, quiet=False):
  if not quiet:
    print("+", " ".join(cmd), flush=True)
  r = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
  if check and r.returncode:
    print(r.stdout[-4000:], r.stderr[-4000:], sep="\n")
    raise SystemExit(f"command failed with status {r.returncode}: {' '.join(cmd)}")
  return r


def main():
  ap = argparse.ArgumentParser()
  ap.add_argument("--binary", required=True)
  ap.add_argument("--source-dir", required=True)
  ap.add_argument("--work", required=True)
  ap.add_argument("rendered")
  a = ap.parse_args()
  src = pathlib.Path(a.source_dir).resolve()
  work = pathlib.Path(a.work).resolve()
  shutil.rmtree(work, ignore_errors=True)
  work.mkdir(parents=True)

  if shutil.which("podman") is None:
    raise SystemExit("podman is not installed (tools/install_deps.sh installs it)")
  info = subprocess.run(["podman", "info", "--format", "json"], capture_output=True, text=True, timeout=60)
  if info.returncode:
    print(f"SKIP: no container engine can run here: `podman info` failed:\n{info.stderr.strip()}")
    return SKIP
  # crun cannot start containers where cgroup v1 and v2 are mounted side by side (hybrid
  # hierarchy, as in some CI sandboxes); runc can. Use runc when it is installed.
  runtime = ["--runtime", "runc"] if shutil.which("runc") else []

  docs = lib.load_docs(a.rendered)
  stubs = lib.make_stubs(src, work / "stubs")
  tag = f"localhost/deltaserve-ci:cpu-{os.getpid()}"
  name = f"deltaserve-ci-{os.getpid()}"
  t0 = time.monotonic()
  try:
    run([str(src / "deploy/container/build_image.sh"), "--variant", "cpu", "--binary", a.binary,
         "--model", str(src / "models/default"), "--context", str(work / "context"), "--tag", tag,
         "--version", "ci"], timeout=240)
    t_build = time.monotonic() - t0
    img = json.loads(run(["podman", "image", "inspect", tag], timeout=30).stdout)[0]
    user = img["Config"].get("User")
    size_mb = img["Size"] / 2**20
    print(f"image {tag}: {size_mb:.0f} MiB, {len(img['RootFS']['Layers'])} layer(s), user {user}, "
          f"built in {t_build:.1f}s")
    if user != "10001:10001":
      raise SystemExit(f"image user is {user!r}, expected the non-root 10001:10001")

    port, mport = lib.free_ports(2)
    args = lib.server_args(docs, {})  # the Deployment's command line as is
    dep = lib.find(docs, "Deployment", "deltaserve")[0]
    cports = {p["name"]: p["containerPort"] for p in dep["spec"]["template"]["spec"]["containers"][0]["ports"]}
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    run(["podman", *runtime, "run", "-d", "--name", name,
         # Rootful podman raises these limits by default, which needs CAP_SYS_RESOURCE; keep
         # this process's own.
         "--ulimit", f"nofile={soft}:{hard}", "--ulimit", "nproc=4096:4096",
         "--read-only", "--tmpfs", "/tmp:rw,size=64m,mode=1777", "--cap-drop", "ALL",
         "--security-opt", "no-new-privileges",
         "-p", f"127.0.0.1:{port}:{cports['grpc']}", "-p", f"127.0.0.1:{mport}:{cports['metrics']}",
         tag, *args], timeout=60)

    def alive():
      st = run(["podman", "inspect", "--format", "{{.State.Running}}", name], timeout=30, check=False,
               quiet=True)
      return st.stdout.strip() == "true"

    target = f"127.0.0.1:{port}"
    waited = lib.wait_serving(stubs, target, 60, alive)
    print(f"container SERVING after {waited:.1f}s")
    ids, text, finished = lib.generate(stubs, target, prompt="Hello from a container", max_new_tokens=8)
    print(f"Generate: {len(ids)} tokens, {finished}, text {text!r}")
    if len(ids) != 8 or finished != "FINISH_REASON_LENGTH":
      raise SystemExit(f"expected 8 tokens and FINISH_REASON_LENGTH, got {len(ids)} and {finished}")
    fams = lib.parse_metrics(lib.scrape(f"http://127.0.0.1:{mport}/metrics"))
    gen = sum(float(s[2]) for s in fams.get("deltaserve_generated_tokens_total", {"samples": []})["samples"])
    print(f"/metrics: deltaserve_generated_tokens_total = {gen:g}")
    if gen < 8:
      raise SystemExit("the container's /metrics does not count the generated tokens")

    grace = float(next(x.split("=", 1)[1] for x in args if x.startswith("--drain-grace=")))
    t1 = time.monotonic()
    run(["podman", "stop", "-t", str(int(grace) + 10), name], timeout=grace + 30)
    code = run(["podman", "inspect", "--format", "{{.State.ExitCode}}", name], timeout=30).stdout.strip()
    print(f"podman stop: exit status {code} after {time.monotonic() - t1:.1f}s")
    if code != "0":
      raise SystemExit(f"container exited {code} on SIGTERM, expected 0")
    print(f"container check passed in {time.monotonic() - t0:.1f}s")
    return 0
  finally:
    logs = subprocess.run(["podman", "logs", "--tail", "15", name], capture_output=True, text=True, timeout=30)
    if logs.returncode == 0:
      print("container log (last lines):\n  " + "\n  ".join((logs.stdout + logs.stderr).splitlines()))
    subprocess.run(["podman", "rm", "-f", name], capture_output=True, timeout=60)
    subprocess.run(["podman", "rmi", "-f", tag], capture_output=True, timeout=60)
    shutil.rmtree(work / "context", ignore_errors=True)  # the staged image tree (~600 MB)


if __name__ == "__main__":
  sys.exit(main())
