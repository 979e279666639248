"""A real Prometheus server scrapes the metrics endpoint: the generated-token counter it stores
equals the tokens the client received, the other series are consistent, and `promtool check
metrics` accepts the exposition."""
import json
import os
import shutil
import subprocess
import tempfile
import threading
import time
import unittest
import urllib.parse
import urllib.request

import harness
from harness import pb


class PrometheusTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.server = harness.Server()
        cls.tmp = tempfile.mkdtemp(prefix="deltaserve-prometheus-")
        cls.prom_port = harness.free_port()
        config = os.path.join(cls.tmp, "prometheus.yml")
        with open(config, "w") as f:
            f.write("global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\n"
                    "scrape_configs:\n  - job_name: deltaserve\n    static_configs:\n"
                    "      - targets: ['127.0.0.1:%d']\n" % cls.server.metrics_port)
        cls.prom_log = open(os.path.join(cls.tmp, "prometheus.log"), "w")
        cls.prom = subprocess.Popen(
            ["prometheus", "--config.file=" + config, "--storage.tsdb.path=" + os.path.join(cls.tmp, "data"),
             "--web.listen-address=127.0.0.1:%d" % cls.prom_port],
            stdout=cls.prom_log, stderr=subprocess.STDOUT)

    @classmethod
    def tearDownClass(cls):
        cls.prom.terminate()
        try:
            cls.prom.wait(timeout=20)
        except subprocess.TimeoutExpired:
            cls.prom.kill()
            cls.prom.wait()
        cls.prom_log.close()
        cls.server.stop()
        shutil.rmtree(cls.tmp, ignore_errors=True)

    def query(self, expr):
        """The single value of an instant query, or None when there is none yet."""
        url = "http://127.0.0.1:%d/api/v1/query?%s" % (self.prom_port,
                                                       urllib.parse.urlencode({"query": expr}))
        try:
            with urllib.request.urlopen(url, timeout=5) as r:
                body = json.load(r)
        except OSError:
            return None
        result = body["data"]["result"]
        return float(result[0]["value"][1]) if len(result) == 1 else None

    def test_prometheus_scrapes_the_counters_the_client_saw(self):
        harness.wait_until(lambda: self.query('up{job="deltaserve"}') == 1, timeout=60,
                           message="prometheus scraping the server")
        received = [0] * 4

        def run(i):
            ids, _, last = self.server.client.stream_tokens(
                harness.greedy_request("request %d" % i, 20 + 7 * i))
            received[i] = len(ids)

        threads = [threading.Thread(target=run, args=(i,)) for i in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=120)
        total = sum(received)
        self.assertEqual(total, sum(20 + 7 * i for i in range(4)))
        harness.wait_until(lambda: self.query("deltaserve_generated_tokens_total") == total,
                           timeout=30, message="generated-token counter == %d" % total)
        self.assertEqual(self.query('deltaserve_requests_total{finish_reason="length"}'), 4)
        self.assertEqual(self.query('deltaserve_grpc_requests_total{method="Generate",code="OK"}'), 4)
        self.assertEqual(self.query("deltaserve_time_to_first_token_seconds_count"), 4)
        self.assertEqual(self.query("deltaserve_request_duration_seconds_count"), 4)
        self.assertEqual(self.query("deltaserve_inter_token_latency_seconds_count"), total - 4)
        self.assertGreater(self.query("deltaserve_prompt_tokens_total"), 0)
        self.assertGreater(self.query("sum(deltaserve_step_duration_seconds_count)"), 0)
        self.assertEqual(self.query("deltaserve_state_pool_slots_used"), 0)
        info = self.server.client.model_info(pb.GetModelInfoRequest(), timeout=10)
        self.assertEqual(self.query("deltaserve_state_pool_slots"), info.pool_slots)
        self.assertEqual(self.query("deltaserve_state_pool_bytes"),
                         info.pool_slots * info.state_bytes_per_slot)
        self.assertEqual(self.query('deltaserve_model_info{model="default",backend="cpu"}'), 1)
        self.assertEqual(self.query("deltaserve_draining"), 0)

    def test_promtool_check_metrics(self):
        text = self.server.metrics_text()
        check = subprocess.run(["promtool", "check", "metrics"], input=text, capture_output=True,
                               text=True, timeout=60)
        self.assertEqual(check.returncode, 0, check.stdout + check.stderr)


if __name__ == "__main__":
    harness.main()
