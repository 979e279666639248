"""Test harness for the deltaserve server: starts the real `deltaserve serve` process on loopback,
generates Python message classes from the .proto files with protoc, and calls RPCs through
grpcio's generic channel methods (no generated service stubs needed).

Environment (set by ctest): DELTASERVE_SOURCE_DIR, DELTASERVE_BUILD_DIR.
"""
import importlib
import importlib.util
import os
import signal
import subprocess
import sys
import tempfile
import time
import unittest
import urllib.request

import grpc

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "common"))
from ports import free_port, free_ports  # noqa: E402  (re-exported for the tests)

SOURCE_DIR = os.environ.get("DELTASERVE_SOURCE_DIR",
                            os.path.abspath(os.path.join(os.path.dirname(__file__), "..", "..")))
BUILD_DIR = os.environ.get("DELTASERVE_BUILD_DIR", os.path.join(SOURCE_DIR, "build"))
DELTASERVE = os.path.join(BUILD_DIR, "bin", "deltaserve")
LOADTEST = os.path.join(BUILD_DIR, "bin", "deltaserve-loadtest")
MODEL_DIR = os.path.join(SOURCE_DIR, "models", "default")
GRPC_PROTO_DIR = "/usr/share/grpc-proto"

_PROTO_OUT = tempfile.mkdtemp(prefix="deltaserve-pyproto-")
subprocess.run(
    ["protoc", "-I", os.path.join(SOURCE_DIR, "proto"), "-I", GRPC_PROTO_DIR,
     "--python_out=" + _PROTO_OUT, "deltaserve/v1/deltaserve.proto",
     "grpc/health/v1/health.proto", "grpc/reflection/v1alpha/reflection.proto"],
    check=True)


def _load(relpath, name):
    # Loaded by path: the generated grpc/... package would otherwise clash with grpcio's `grpc`.
    spec = importlib.util.spec_from_file_location(name, os.path.join(_PROTO_OUT, relpath))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


pb = _load("deltaserve/v1/deltaserve_pb2.py", "deltaserve_pb2")
health_pb = _load("grpc/health/v1/health_pb2.py", "health_pb2")
reflection_pb = _load("grpc/reflection/v1alpha/reflection_pb2.py", "reflection_pb2")

SERVICE = "/deltaserve.v1.DeltaServe/"


class Client:
    """Callables for every RPC of the server, over one channel."""

    def __init__(self, channel):
        self.channel = channel
        us, uu = channel.unary_stream, channel.unary_unary
        self.generate = us(SERVICE + "Generate", request_serializer=pb.GenerateRequest.SerializeToString,
                           response_deserializer=pb.GenerateResponse.FromString)
        self.complete = uu(SERVICE + "Complete", request_serializer=pb.GenerateRequest.SerializeToString,
                           response_deserializer=pb.CompleteResponse.FromString)
        self.tokenize = uu(SERVICE + "Tokenize", request_serializer=pb.TokenizeRequest.SerializeToString,
                           response_deserializer=pb.TokenizeResponse.FromString)
        self.detokenize = uu(SERVICE + "Detokenize",
                             request_serializer=pb.DetokenizeRequest.SerializeToString,
                             response_deserializer=pb.DetokenizeResponse.FromString)
        self.model_info = uu(SERVICE + "GetModelInfo",
                             request_serializer=pb.GetModelInfoRequest.SerializeToString,
                             response_deserializer=pb.ModelInfo.FromString)
        self.health_check = uu("/grpc.health.v1.Health/Check",
                               request_serializer=health_pb.HealthCheckRequest.SerializeToString,
                               response_deserializer=health_pb.HealthCheckResponse.FromString)
        self.reflection = channel.stream_stream(
            "/grpc.reflection.v1alpha.ServerReflection/ServerReflectionInfo",
            request_serializer=reflection_pb.ServerReflectionRequest.SerializeToString,
            response_deserializer=reflection_pb.ServerReflectionResponse.FromString)

    def health(self, service=""):
        return self.health_check(health_pb.HealthCheckRequest(service=service), timeout=5).status

    def stream_tokens(self, request, timeout=60, metadata=None):
        """Runs Generate; returns (token ids, text, last message)."""
        ids, text, last = [], "", None
        for msg in self.generate(request, timeout=timeout, metadata=metadata):
            ids.extend(msg.token_ids)
            text += msg.text
            last = msg
        return ids, text, last


def greedy_request(text="In the beginning", max_new_tokens=32, **kwargs):
    return pb.GenerateRequest(text=text, sampling=pb.SamplingParams(temperature=0),
                              stopping=pb.StoppingParams(max_new_tokens=max_new_tokens,
                                                         ignore_eos=True), **kwargs)


class Server:
    """A `deltaserve serve` process on loopback with free ports."""

    def __init__(self, *extra_args, pool_budget="64Mi", wait=True, tls_ca=None,
                 model_dir=MODEL_DIR):
        self.port, self.metrics_port = free_ports(2)
        self.log = tempfile.NamedTemporaryFile(prefix="deltaserve-server-", suffix=".log",
                                               delete=False)
        args = [DELTASERVE, "serve", "--model", model_dir, "--host", "127.0.0.1",
                "--port", str(self.port), "--metrics-port", str(self.metrics_port),
                "--pool-budget", pool_budget, "--threads", "1"] + list(extra_args)
        self.proc = subprocess.Popen(args, stdout=self.log, stderr=subprocess.STDOUT)
        self.address = "127.0.0.1:%d" % self.port
        if tls_ca is not None:
            creds = grpc.ssl_channel_credentials(root_certificates=tls_ca)
            self.channel = grpc.secure_channel(
                self.address, creds, options=[("grpc.ssl_target_name_override", "localhost")])
        else:
            self.channel = grpc.insecure_channel(self.address)
        self.client = Client(self.channel)
        if wait:
            self.wait_serving()

    def wait_serving(self, timeout=60):
        deadline = time.time() + timeout
        while time.time() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError("server exited with %d:\n%s" % (self.proc.returncode, self.output()))
            try:
                if self.client.health() == health_pb.HealthCheckResponse.SERVING:
                    return
            except grpc.RpcError:
                pass
            time.sleep(0.1)
        raise RuntimeError("server not SERVING after %ds:\n%s" % (timeout, self.output()))

    def metrics_text(self):
        with urllib.request.urlopen("http://127.0.0.1:%d/metrics" % self.metrics_port,
                                    timeout=10) as r:
            return r.read().decode()

    def metric(self, series):
        """Value of one exposed sample line, e.g. 'deltaserve_state_pool_slots_used'."""
        for line in self.metrics_text().splitlines():
            if line.startswith(series + " "):
                return float(line.split()[-1])
        raise KeyError(series)

    def output(self):
        self.log.flush()
        with open(self.log.name, errors="replace") as f:
            return f.read()

    def terminate(self):
        self.proc.send_signal(signal.SIGTERM)

    def wait_exit(self, timeout=60):
        return self.proc.wait(timeout=timeout)

    def stop(self):
        self.channel.close()
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        try:
            os.unlink(self.log.name)
        except OSError:
            pass


def wait_until(predicate, timeout=20, interval=0.05, message="condition"):
    deadline = time.time() + timeout
    while time.time() < deadline:
        if predicate():
            return
        time.sleep(interval)
    raise AssertionError("timed out waiting for " + message)


def main():
    unittest.main(verbosity=2)
