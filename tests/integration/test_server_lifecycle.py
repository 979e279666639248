"""Server life cycle: health NOT_SERVING (and calls UNAVAILABLE) while the model loads; SIGTERM
during streaming lets in-flight streams complete, refuses new requests, reports NOT_SERVING and
draining, and exits 0; streams still running when the grace period ends are cut off and the
process still exits 0. Also: JSON logs have one parseable line per request, and bad flags fail
at start with a message naming the flag."""
import errno
import json
import os
import shutil
import subprocess
import tempfile
import threading
import time
import unittest

import grpc

import harness
from harness import health_pb, pb


def run_streams(client, n_streams, n_tokens, timeout=120):
    """Starts n streams in threads; returns (threads, counts, results)."""
    counts = [0] * n_streams
    results = [None] * n_streams
    finishes = [None] * n_streams

    def read(i):
        try:
            for msg in client.generate(harness.greedy_request("drain %d" % i, n_tokens),
                                       timeout=timeout):
                counts[i] += len(msg.token_ids)
                if msg.HasField("finished"):
                    finishes[i] = msg.finished.finish_reason
            results[i] = "ok"
        except grpc.RpcError as e:
            results[i] = e.code()

    threads = [threading.Thread(target=read, args=(i,)) for i in range(n_streams)]
    for t in threads:
        t.start()
    return threads, counts, results, finishes


class LifecycleTest(unittest.TestCase):
    def test_not_serving_while_loading(self):
        # The model directory's config.json is a FIFO: the server reads it once before it starts
        # listening and again when the runner loads the model, and each read waits until this
        # test writes the file -- so the loading state lasts exactly as long as the test wants.
        tmp = tempfile.mkdtemp(prefix="deltaserve-model-")
        with open(os.path.join(harness.MODEL_DIR, "config.json"), "rb") as f:
            config = f.read()
        fifo = os.path.join(tmp, "config.json")
        os.mkfifo(fifo)
        for name in os.listdir(harness.MODEL_DIR):
            if name != "config.json":
                os.symlink(os.path.join(harness.MODEL_DIR, name), os.path.join(tmp, name))
        done = threading.Event()

        def feed_once(timeout=30):
            deadline = time.time() + timeout
            while time.time() < deadline and not done.is_set():
                try:
                    fd = os.open(fifo, os.O_WRONLY | os.O_NONBLOCK)
                except OSError as e:
                    if e.errno != errno.ENXIO:  # ENXIO: no reader yet
                        raise
                    time.sleep(0.01)
                    continue
                os.set_blocking(fd, True)
                os.write(fd, config)
                os.close(fd)
                return True
            return False

        server = harness.Server("--log-format", "json", model_dir=tmp, wait=False)
        feeder = None
        try:
            self.assertTrue(feed_once(), "the server never read config.json")
            harness.wait_until(lambda: self._health(server) == health_pb.HealthCheckResponse.NOT_SERVING,
                               timeout=30, message="NOT_SERVING while loading")
            for call, request in [(server.client.complete, harness.greedy_request("x", 2)),
                                  (server.client.tokenize, pb.TokenizeRequest(text="x"))]:
                with self.assertRaises(grpc.RpcError) as ctx:
                    call(request, timeout=10)
                self.assertEqual(ctx.exception.code(), grpc.StatusCode.UNAVAILABLE)
                self.assertIn("loading", ctx.exception.details())
            self.assertEqual(
                server.metric('deltaserve_requests_rejected_total{code="UNAVAILABLE"}'), 1)

            feeder = threading.Thread(target=feed_once)  # the runner's read
            feeder.start()
            server.wait_serving()
            resp = server.client.complete(harness.greedy_request("x", 3), timeout=30)
            self.assertEqual(len(resp.token_ids), 3)
            server.terminate()
            self.assertEqual(server.wait_exit(), 0)
            records = []
            for line in server.output().splitlines():
                entry = json.loads(line)  # every line is JSON
                if entry.get("event") == "request_finished":
                    records.append(entry)
            ok = [r for r in records if r["code"] == "OK"]
            self.assertEqual(len(ok), 1)
            self.assertEqual(ok[0]["generated_tokens"], 3)
            self.assertEqual(ok[0]["finish_reason"], "length")
            self.assertTrue(ok[0]["id"].startswith("req-"))
            for key in ("prompt_tokens", "queue_s", "ttft_s", "total_s", "method", "time", "level"):
                self.assertIn(key, ok[0])
        finally:
            done.set()
            if feeder is not None:
                feeder.join()
            server.stop()
            shutil.rmtree(tmp, ignore_errors=True)

    @staticmethod
    def _health(server):
        try:
            return server.client.health()
        except grpc.RpcError:
            return None

    def test_sigterm_drains_in_flight_streams(self):
        server = harness.Server("--drain-grace", "60")
        try:
            n = 300
            threads, counts, results, finishes = run_streams(server.client, 3, n)
            harness.wait_until(lambda: min(counts) >= 1, timeout=60, message="streams started")
            server.terminate()
            harness.wait_until(
                lambda: server.client.health() == health_pb.HealthCheckResponse.NOT_SERVING,
                timeout=10, message="NOT_SERVING after SIGTERM")
            self.assertEqual(server.metric("deltaserve_draining"), 1)
            with self.assertRaises(grpc.RpcError) as ctx:
                server.client.complete(harness.greedy_request("late", 2), timeout=10)
            self.assertEqual(ctx.exception.code(), grpc.StatusCode.UNAVAILABLE)
            self.assertIn("draining", ctx.exception.details())
            self.assertLess(min(counts), n, "streams finished before the drain began")
            for t in threads:
                t.join(timeout=120)
            self.assertEqual(results, ["ok"] * 3)
            self.assertEqual(counts, [n] * 3)
            self.assertEqual(finishes, [pb.FINISH_REASON_LENGTH] * 3)
            self.assertEqual(server.wait_exit(timeout=30), 0)
            self.assertIn("drained; exiting", server.output())
        finally:
            server.stop()

    def test_grace_period_cuts_off_long_streams(self):
        server = harness.Server("--drain-grace", "1")
        try:
            threads, counts, results, _ = run_streams(server.client, 1, 4000)
            harness.wait_until(lambda: counts[0] >= 1, timeout=60, message="stream started")
            start = time.time()
            server.terminate()
            self.assertEqual(server.wait_exit(timeout=30), 0)
            self.assertLess(time.time() - start, 15)
            threads[0].join(timeout=30)
            self.assertIn(results[0], (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.CANCELLED))
            self.assertLess(counts[0], 4000)
        finally:
            server.stop()

    def test_bad_flags_fail_at_start(self):
        for args, message in [
            (["--port", "99999"], "--port: must be in 0..65535"),
            (["--model", "/nonexistent"], "--model /nonexistent"),
            (["--backend", "tpu"], "--backend: must be cpu or cuda"),
            (["--log-format", "xml"], "--log-format: expected text or json"),
            (["--tls-cert", "/nonexistent.pem", "--tls-key", "/nonexistent.key"], "--tls-cert: cannot read"),
        ]:
            port, metrics_port = harness.free_ports(2)
            full = [harness.DELTASERVE, "serve", "--model", harness.MODEL_DIR,
                    "--metrics-port", str(metrics_port), "--port", str(port)]
            out = subprocess.run(full + args, capture_output=True, text=True, timeout=60)
            self.assertNotEqual(out.returncode, 0, args)
            self.assertIn(message, out.stderr + out.stdout)


if __name__ == "__main__":
    harness.main()
