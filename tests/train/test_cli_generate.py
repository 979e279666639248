"""`deltaserve generate` (the README's first command) with greedy sampling continues the pinned
prompts of tests/train/data/greedy_samples.json exactly. The binary comes from $DELTASERVE_BIN."""

import json
import os
import subprocess
import unittest

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))


class CliGenerateTest(unittest.TestCase):
    def test_greedy_continuations(self):
        binary = os.environ.get("DELTASERVE_BIN", os.path.join(ROOT, "build", "bin", "deltaserve"))
        with open(os.path.join(ROOT, "tests", "train", "data", "greedy_samples.json")) as f:
            pinned = json.load(f)
        for s in pinned["samples"]:
            r = subprocess.run([binary, "generate", "--model", os.path.join(ROOT, "models", "default"),
                                "--prompt", s["prompt"], "--temperature", "0", "--threads", "2",
                                "--max-new-tokens", str(len(s["ids"])), "--print-ids"],
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=120)
            self.assertEqual(r.returncode, 0, r.stderr.decode(errors="replace"))
            out = r.stdout.decode("ascii")
            ids = [int(t) for t in out.strip().split("\n")[-1].split(",")]
            self.assertEqual(ids, s["ids"], f"prompt {s['prompt']!r}: output {out!r}")
            self.assertIn(s["text"], out)


if __name__ == "__main__":
    unittest.main()
