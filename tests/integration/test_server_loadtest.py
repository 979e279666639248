"""The C++ load generator against the CPU server: 20 s closed loop at concurrency 8 with zero
errors (CI's acceptance run), and a short open-loop run; both reports are checked for
consistency with the server's own counters."""
import json
import os
import subprocess
import tempfile
import unittest

import harness


class LoadtestTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.server = harness.Server("--threads", "0")
        cls.tmp = tempfile.TemporaryDirectory()

    @classmethod
    def tearDownClass(cls):
        cls.server.stop()
        cls.tmp.cleanup()

    def run_loadtest(self, *args):
        out_json = os.path.join(self.tmp.name, "report.json")
        before = self.server.metric("deltaserve_generated_tokens_total")
        proc = subprocess.run([harness.LOADTEST, "--target", self.server.address,
                               "--json_out", out_json] + list(args),
                              capture_output=True, text=True, timeout=240)
        print(proc.stdout)
        self.assertEqual(proc.returncode, 0, proc.stdout + proc.stderr)
        with open(out_json) as f:
            report = json.load(f)
        self.assertEqual(report["requests_failed"], 0, report["first_error"])
        self.assertGreater(report["requests_ok"], 0)
        self.assertEqual(self.server.metric("deltaserve_generated_tokens_total") - before,
                         report["generated_tokens"])
        for key in ("time_to_first_token_seconds", "inter_token_latency_seconds",
                    "end_to_end_latency_seconds"):
            p = report[key]
            self.assertGreater(p["count"], 0)
            self.assertLessEqual(p["p50"], p["p90"])
            self.assertLessEqual(p["p90"], p["p99"])
        self.assertGreater(report["generated_tokens_per_second"], 0)
        self.assertIn("time to first token", proc.stdout)
        return report

    def test_closed_loop_concurrency_8_for_20s(self):
        report = self.run_loadtest("--mode", "closed", "--concurrency", "8", "--duration", "20",
                                   "--prompt_len", "uniform:16:64", "--output_len", "uniform:16:64")
        self.assertGreaterEqual(report["wall_seconds"], 20)
        self.assertEqual(report["concurrency"], 8)

    def test_open_loop(self):
        report = self.run_loadtest("--mode", "open", "--rate", "4", "--duration", "3",
                                   "--prompt_len", "exp:16", "--output_len", "8", "--seed", "3")
        self.assertEqual(report["mode"], "open")
        self.assertEqual(report["generated_tokens"], 8 * report["requests_ok"])


if __name__ == "__main__":
    harness.main()
