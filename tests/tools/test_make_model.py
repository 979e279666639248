"""Tests of tools/make_model.py and tools/gdn2_config.py: tensor names and shapes of the reference
configs (MODEL_SPEC section 5, shapes only), parameter counts (section 4), the config schema of
engine/model_config.h, weight ranges and determinism."""

import filecmp
import json
import os
import sys
import tempfile
import unittest

import numpy as np

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..")
sys.path.insert(0, os.path.join(ROOT, "tools"))
import gdn2_config  # noqa: E402
import make_model  # noqa: E402
import safetensors_io  # noqa: E402


class ReferenceConfigTest(unittest.TestCase):
    def test_non_embedding_parameter_counts(self):
        self.assertEqual(gdn2_config.non_embedding_params(gdn2_config.preset("gdn2_1.3B")), 1_302_638_112)
        self.assertEqual(gdn2_config.non_embedding_params(gdn2_config.preset("swa_gdn2_1.3B")), 1_300_314_384)

    def test_gdn2_1_3b_shapes(self):
        cfg = gdn2_config.preset("gdn2_1.3B")
        shapes = dict(gdn2_config.tensor_shapes(cfg))
        self.assertEqual(len(shapes), 3 + 18 * 22)  # 17 mixer + 2 norms + 3 MLP per layer
        p = "transformer.h.17."
        expect = {
            "transformer.wte.weight": (32000, 2304), "lm_head.weight": (32000, 2304),
            "transformer.ln_f.weight": (2304,),
            p + "norm_1.weight": (2304,), p + "norm_2.weight": (2304,),
            p + "mlp.swiglu.w1.weight": (6208, 2304), p + "mlp.swiglu.w2.weight": (6208, 2304),
            p + "mlp.swiglu.w3.weight": (2304, 6208),
            p + "attn.q_proj.weight": (2048, 2304), p + "attn.k_proj.weight": (2048, 2304),
            p + "attn.b_proj.weight": (2048, 2304), p + "attn.v_proj.weight": (2048, 2304),
            p + "attn.w_proj.weight": (2048, 2304),
            p + "attn.q_conv1d.weight": (2048, 1, 4), p + "attn.k_conv1d.weight": (2048, 1, 4),
            p + "attn.v_conv1d.weight": (2048, 1, 4),
            p + "attn.f_proj.0.weight": (128, 2304), p + "attn.f_proj.1.weight": (2048, 128),
            p + "attn.g_proj.0.weight": (128, 2304), p + "attn.g_proj.1.weight": (2048, 128),
            p + "attn.g_proj.1.bias": (2048,), p + "attn.A_log": (16,), p + "attn.dt_bias": (2048,),
            p + "attn.o_norm.weight": (128,), p + "attn.o_proj.weight": (2304, 2048),
        }
        for name, shape in expect.items():
            self.assertEqual(shapes[name], shape, name)
        self.assertFalse(any(".attn.attn." in n for n in shapes))

    def test_swa_gdn2_1_3b_shapes(self):
        cfg = gdn2_config.preset("swa_gdn2_1.3B")
        shapes = dict(gdn2_config.tensor_shapes(cfg))
        self.assertEqual(len(shapes), 3 + 9 * 22 + 9 * 7)
        self.assertEqual(shapes["transformer.h.1.attn.attn.weight"], (6912, 2304))
        self.assertEqual(shapes["transformer.h.1.attn.proj.weight"], (2304, 2304))
        self.assertEqual(shapes["transformer.h.1.mlp.swiglu.w1.weight"], (6784, 2304))
        self.assertEqual(shapes["transformer.h.16.attn.q_proj.weight"], (2048, 2304))
        self.assertNotIn("transformer.h.17.attn.q_proj.weight", shapes)
        self.assertEqual([i for i in range(18) if gdn2_config.is_gdn2_layer(cfg, i)], list(range(0, 18, 2)))
        self.assertEqual(cfg["padded_vocab_size"], 32000)


class ConfigSchemaTest(unittest.TestCase):
    def test_defaults_are_the_reference_values(self):
        cfg = gdn2_config.normalize({"gdn2": {}})
        self.assertEqual(cfg, gdn2_config.preset("gdn2_1.3B") | {"max_context": 1 << 20})
        self.assertEqual(cfg["gdn2"]["num_v_heads"], 16)
        self.assertEqual(gdn2_config.normalize({"gdn2_per_layer": 0, "swa": {"n_head": 6}})["swa"]["n_query_groups"], 6)

    def test_errors_name_the_key(self):
        cases = [
            ({"gdn2": {"num_heads": 4, "num_v_heads": 6}}, "gdn2.num_v_heads"),
            ({"gdn2": {"gate_act": "relu"}}, "gdn2.gate_act"),
            ({"gdn2": {}, "padded_vocab_size": 32001}, "padded_vocab_size"),
            ({}, "gdn2 is required"),
            ({"gdn2": {}, "gdn2_per_layer": 2}, "swa is required"),
            ({"gdn2": {}, "gdn2_per_layer": 2, "swa": {"head_size": 10, "rotary_percentage": 0.5}},
             "even number of rotary dims"),
            ({"gdn2": {}, "bos_token_id": 32000}, "bos_token_id"),
            ({"gdn2": {}, "n_layer": "18"}, "n_layer must be an integer"),
            ({"gdn2": {}, "tokenizer": {"type": "bpe"}}, "tokenizer.type"),
        ]
        for raw, msg in cases:
            with self.subTest(msg=msg):
                with self.assertRaisesRegex(gdn2_config.ConfigError, msg):
                    gdn2_config.normalize(raw)

    def test_null_ids_round_trip(self):
        cfg = gdn2_config.normalize({"gdn2": {}, "bos_token_id": None, "eos_token_id": None})
        self.assertEqual((cfg["bos_token_id"], cfg["eos_token_id"]), (-1, -1))
        out = gdn2_config.to_json_dict(cfg)
        self.assertIsNone(out["bos_token_id"])
        self.assertEqual(gdn2_config.normalize(json.loads(json.dumps(out))), cfg)


class GeneratorTest(unittest.TestCase):
    def setUp(self):
        self.tmp = tempfile.TemporaryDirectory()

    def tearDown(self):
        self.tmp.cleanup()

    def test_tiny_hybrid_is_reproducible_from_its_seed(self):
        outs = [os.path.join(self.tmp.name, d) for d in ("a", "b")]
        for out in outs:
            self.assertEqual(make_model.main(["--preset", "tiny-hybrid", "--seed", "1234", "--out", out]), 0)
        for name in ("config.json", "model.safetensors"):
            self.assertTrue(filecmp.cmp(os.path.join(outs[0], name), os.path.join(outs[1], name),
                                        shallow=False), name)
        self.assertLessEqual(os.path.getsize(os.path.join(outs[0], "model.safetensors")), 4 << 20)

    def test_weight_ranges(self):
        cfg = gdn2_config.preset("tiny-hybrid")
        w = dict(make_model.generate(cfg, 5))
        p = "transformer.h.0.attn."
        a = np.exp(w[p + "A_log"])
        self.assertTrue(np.all((a >= 1) & (a <= 16)))
        dt = np.logaddexp(0, w[p + "dt_bias"].astype(np.float64))
        self.assertTrue(np.all((dt >= 0.99e-3) & (dt <= 0.1001)), dt)
        for n in ("transformer.h.0.norm_1.weight", "transformer.ln_f.weight", p + "o_norm.weight"):
            self.assertLess(np.max(np.abs(w[n] - 1)), 0.3)
        q = w[p + "q_proj.weight"]
        self.assertAlmostEqual(float(q.std() * np.sqrt(q.shape[1])), 1.0, delta=0.05)
        o = w[p + "o_proj.weight"]
        self.assertLess(o.std(), q.std())
        self.assertTrue(all(a.dtype == np.float32 and np.all(np.isfinite(a)) for a in w.values()))

    def test_seed_and_name_determine_each_tensor(self):
        cfg = gdn2_config.preset("tiny-hybrid")
        name, shape = gdn2_config.tensor_shapes(cfg)[5]
        a = make_model.init_tensor(cfg, name, shape, 3)
        np.testing.assert_array_equal(a, make_model.init_tensor(cfg, name, shape, 3))
        self.assertFalse(np.array_equal(a, make_model.init_tensor(cfg, name, shape, 4)))

    def test_bf16_dir_and_skip_if_present(self):
        cfg_path = os.path.join(self.tmp.name, "cfg.json")
        raw = {"vocab_size": 100, "n_layer": 2, "n_embd": 32, "intermediate_size": 48, "gdn2_per_layer": 2,
               "gdn2": {"num_heads": 2, "head_k_dim": 8, "head_v_dim": 8},
               "swa": {"n_head": 2, "head_size": 16, "local_window": 4}}
        with open(cfg_path, "w") as f:
            json.dump(raw, f)
        out = os.path.join(self.tmp.name, "m")
        cfg = gdn2_config.load(cfg_path)
        self.assertFalse(make_model.is_present(out, cfg, "bf16"))
        self.assertEqual(make_model.main(["--config", cfg_path, "--dtype", "bf16", "--out", out]), 0)
        f = safetensors_io.SafetensorsFile(os.path.join(out, "model.safetensors"))
        self.assertEqual(f.shape("lm_head.weight"), (128, 32))
        self.assertEqual(f.dtype("transformer.h.0.attn.q_proj.weight"), "BF16")
        self.assertEqual(f.dtype("transformer.h.0.attn.A_log"), "F32")
        self.assertTrue(make_model.is_present(out, cfg, "bf16"))
        self.assertFalse(make_model.is_present(out, cfg, "f32"))
        other = dict(cfg, intermediate_size=64)
        self.assertFalse(make_model.is_present(out, other, "bf16"))


if __name__ == "__main__":
    unittest.main()
