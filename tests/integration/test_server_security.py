"""API-key authentication and TLS: calls without the right `authorization: Bearer <key>` get
UNAUTHENTICATED (health stays open); a TLS server (self-signed certificate made by openssl here)
serves TLS clients and refuses plaintext ones."""
import os
import subprocess
import tempfile
import unittest

import grpc

import harness
from harness import health_pb, pb


class ApiKeyTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.tmp = tempfile.TemporaryDirectory()
        keys = os.path.join(cls.tmp.name, "keys")
        with open(keys, "w") as f:
            f.write("# API keys\nkey-one\nkey-two\n")
        cls.server = harness.Server("--api-key-file", keys)
        cls.client = cls.server.client

    @classmethod
    def tearDownClass(cls):
        cls.server.stop()
        cls.tmp.cleanup()

    def test_keys(self):
        req = harness.greedy_request("hi", 4)
        for metadata, message in [(None, "missing"), ((("authorization", "Bearer nope"),), "invalid"),
                                  ((("authorization", "key-one"),), "the authorization")]:
            with self.assertRaises(grpc.RpcError) as ctx:
                self.client.complete(req, timeout=10, metadata=metadata)
            self.assertEqual(ctx.exception.code(), grpc.StatusCode.UNAUTHENTICATED)
            self.assertIn(message, ctx.exception.details())
        with self.assertRaises(grpc.RpcError) as ctx:
            self.client.model_info(pb.GetModelInfoRequest(), timeout=10)
        self.assertEqual(ctx.exception.code(), grpc.StatusCode.UNAUTHENTICATED)
        ok = self.client.complete(req, timeout=30, metadata=(("authorization", "Bearer key-two"),))
        self.assertEqual(len(ok.token_ids), 4)
        ids, _, _ = self.client.stream_tokens(req, metadata=(("authorization", "Bearer key-one"),))
        self.assertEqual(ids, list(ok.token_ids))
        self.assertEqual(self.client.health(), health_pb.HealthCheckResponse.SERVING)
        self.assertEqual(
            self.server.metric('deltaserve_requests_rejected_total{code="UNAUTHENTICATED"}'), 3)
        self.assertEqual(
            self.server.metric('deltaserve_grpc_requests_total{code="UNAUTHENTICATED",method="Complete"}'), 3)


class TlsTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.tmp = tempfile.TemporaryDirectory()
        cls.cert = os.path.join(cls.tmp.name, "cert.pem")
        key = os.path.join(cls.tmp.name, "key.pem")
        subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
                        "-subj", "/CN=localhost", "-addext", "subjectAltName=DNS:localhost",
                        "-keyout", key, "-out", cls.cert],
                       check=True, capture_output=True, timeout=60)
        with open(cls.cert, "rb") as f:
            ca = f.read()
        cls.server = harness.Server("--tls-cert", cls.cert, "--tls-key", key, tls_ca=ca)

    @classmethod
    def tearDownClass(cls):
        cls.server.stop()
        cls.tmp.cleanup()

    def test_tls_client_works_plaintext_fails(self):
        resp = self.server.client.complete(harness.greedy_request("hi", 4), timeout=30)
        self.assertEqual(len(resp.token_ids), 4)
        with grpc.insecure_channel(self.server.address) as plain:
            with self.assertRaises(grpc.RpcError) as ctx:
                harness.Client(plain).model_info(pb.GetModelInfoRequest(), timeout=5)
            self.assertEqual(ctx.exception.code(), grpc.StatusCode.UNAVAILABLE)

    def test_loadtest_over_tls(self):
        out = subprocess.run(
            [harness.LOADTEST, "--target", self.server.address, "--tls_ca", self.cert,
             "--tls_server_name", "localhost", "--duration", "1", "--concurrency", "2",
             "--prompt_len", "8", "--output_len", "4"],
            capture_output=True, text=True, timeout=60)
        self.assertEqual(out.returncode, 0, out.stdout + out.stderr)
        self.assertIn("requests failed", out.stdout)


if __name__ == "__main__":
    harness.main()
