"""Tests of tools/golden.py: the files of a case follow the golden format, the logits are those of
the reference on the written weights (also when the prefill is split), and the case configs cover
what the C++ golden test relies on."""

import json
import os
import sys
import tempfile
import unittest

import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "tools"))
import gdn2_config  # noqa: E402
import golden  # noqa: E402
from gdn2_reference import Gdn2Reference  # noqa: E402


class GoldenTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.tmp = tempfile.TemporaryDirectory()
        for name in ("hybrid", "converted"):
            golden.make_case(name, cls.tmp.name)

    @classmethod
    def tearDownClass(cls):
        cls.tmp.cleanup()

    def check_case(self, name):
        d = os.path.join(self.tmp.name, name)
        with open(os.path.join(d, "golden.json")) as f:
            meta = json.load(f)
        cfg = gdn2_config.load(os.path.join(d, "config.json"))
        T, V = meta["logits_shape"]
        self.assertEqual((T, V), (len(meta["prompt_tokens"]), cfg["padded_vocab_size"]))
        self.assertEqual(meta["logits_file"], "logits.f64")
        self.assertEqual(os.path.getsize(os.path.join(d, "logits.f64")), T * V * 8)
        logits = np.fromfile(os.path.join(d, "logits.f64"), dtype="<f8").reshape(T, V)
        model = Gdn2Reference.from_dir(d)
        self.assertEqual(meta["prompt_tokens"][0], cfg["bos_token_id"])
        state = model.new_state()
        split = np.concatenate([model.forward(meta["prompt_tokens"][:T - 3], state)] +
                               [model.forward([t], state) for t in meta["prompt_tokens"][T - 3:]])
        np.testing.assert_allclose(split, logits, rtol=1e-10, atol=1e-10)
        self.assertTrue(np.all(np.isfinite(logits)))
        return cfg, T

    def test_hybrid_crosses_the_window(self):
        cfg, T = self.check_case("hybrid")
        s = cfg["swa"]
        self.assertGreater(T, 2 * s["local_window"])
        self.assertLess(s["n_query_groups"], s["n_head"])
        self.assertEqual(gdn2_config.rope_dims(cfg), s["head_size"] // 2)

    def test_converted(self):
        cfg, _ = self.check_case("converted")
        self.assertEqual(cfg, golden.CASES["converted"][0])

    def test_case_coverage(self):
        c = {name: golden.CASES[name][0] for name in golden.CASES}
        self.assertGreater(c["pure_grouped"]["gdn2"]["num_v_heads"], c["pure_grouped"]["gdn2"]["num_heads"])
        self.assertEqual((c["pure_negeig_sigmoid"]["gdn2"]["gate_act"],
                          c["pure_negeig_sigmoid"]["gdn2"]["allow_neg_eigval"]), ("sigmoid", True))
        self.assertEqual(c["hybrid_sigmoid_conv2"]["gdn2"]["conv_size"], 2)
        for name, (cfg, length, _, _) in golden.CASES.items():
            self.assertTrue(24 <= length <= 40, name)


if __name__ == "__main__":
    unittest.main()
