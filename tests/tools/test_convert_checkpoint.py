"""Tests of tools/convert_checkpoint.py: round trips of training checkpoints (torch pickles) into
model directories, config inference from shapes, and its error messages."""

import contextlib
import copy
import io
import os
import sys
import tempfile
import unittest

import numpy as np
import torch

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "tools"))
import convert_checkpoint  # noqa: E402
import gdn2_config  # noqa: E402
import make_model  # noqa: E402
import safetensors_io  # noqa: E402

BYTE = {"vocab_size": 258, "padding_multiple": 64, "bos_token_id": 256, "eos_token_id": 257,
        "tokenizer": {"type": "byte", "file": "tokenizer.model"}}


def make_cfg(**kw):
    raw = copy.deepcopy(BYTE)
    raw.update(kw)
    return gdn2_config.normalize(raw)


GDN2 = {"num_heads": 2, "num_v_heads": 4, "head_k_dim": 8, "head_v_dim": 6, "conv_size": 3,
        "gate_act": "sigmoid", "allow_neg_eigval": True}
SWA = {"n_head": 4, "n_query_groups": 2, "head_size": 8, "local_window": 16,
       "rotary_percentage": 0.5, "rope_base": 10000.0}
HYBRID = make_cfg(n_layer=4, n_embd=32, intermediate_size=40, gdn2_per_layer=2, gdn2=GDN2, swa=SWA)
FLAGS = ["--tokenizer-type", "byte", "--gate-act", "sigmoid", "--allow-neg-eigval",
         "--head-size", "8", "--local-window", "16", "--rotary-percentage", "0.5"]


class ConvertTest(unittest.TestCase):
    def setUp(self):
        self.tmp = tempfile.TemporaryDirectory()
        self.ckpt = os.path.join(self.tmp.name, "ckpt.pth")
        self.out = os.path.join(self.tmp.name, "model")

    def tearDown(self):
        self.tmp.cleanup()

    def save(self, cfg, seed=0, edit=None, wrap=True, prefix=""):
        weights = dict(make_model.generate(cfg, seed))
        sd = {prefix + n: torch.from_numpy(a.copy()) for n, a in weights.items()}
        if edit:
            edit(sd)
        torch.save({"model": sd, "iter_num": 7} if wrap else sd, self.ckpt)
        return weights

    def run_main(self, *flags):
        err = io.StringIO()
        with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
            rc = convert_checkpoint.main(["--checkpoint", self.ckpt, "--out", self.out, *flags])
        return rc, err.getvalue()

    def test_round_trip_f32_exact(self):
        weights = self.save(HYBRID, prefix="_orig_mod.")
        rc, err = self.run_main("--dtype", "f32", *FLAGS)
        self.assertEqual(rc, 0, err)
        self.assertEqual(gdn2_config.load(os.path.join(self.out, "config.json")), HYBRID)
        back = safetensors_io.load_file(os.path.join(self.out, "model.safetensors"))
        self.assertEqual(set(back), set(weights))
        for n, a in weights.items():
            np.testing.assert_array_equal(back[n], a, err_msg=n)

    def test_round_trip_bf16_keeps_decay_parameters_fp32(self):
        weights = self.save(HYBRID)
        rc, err = self.run_main("--dtype", "bf16", *FLAGS)
        self.assertEqual(rc, 0, err)
        f = safetensors_io.SafetensorsFile(os.path.join(self.out, "model.safetensors"))
        for n, a in weights.items():
            if n.endswith(("A_log", "dt_bias")):
                self.assertEqual(f.dtype(n), "F32")
                np.testing.assert_array_equal(f.get(n), a)
            else:
                self.assertEqual(f.dtype(n), "BF16")
                np.testing.assert_array_equal(f.get(n), safetensors_io.bf16_bits_to_f32(safetensors_io.to_bf16_bits(a)))

    def test_infers_layer_pattern_and_dims(self):
        for per_layer in (0, 1, 3):
            with self.subTest(gdn2_per_layer=per_layer):
                cfg = make_cfg(n_layer=5, n_embd=32, intermediate_size=24, gdn2_per_layer=per_layer,
                               gdn2=GDN2, swa=SWA)
                self.save(cfg)
                rc, err = self.run_main("--dtype", "f32", *FLAGS)
                self.assertEqual(rc, 0, err)
                got = gdn2_config.load(os.path.join(self.out, "config.json"))
                self.assertEqual(got["gdn2_per_layer"], per_layer)
                if per_layer:
                    self.assertEqual(got["gdn2"], cfg["gdn2"])
                if per_layer != 1:
                    self.assertEqual(got["swa"], cfg["swa"])

    def test_sentencepiece_defaults_and_tokenizer_copy(self):
        cfg = make_cfg(n_layer=2, n_embd=16, intermediate_size=24, gdn2_per_layer=1, gdn2=GDN2)
        cfg["vocab_size"], cfg["padded_vocab_size"] = 1000, 1024
        self.save(cfg)
        tok = os.path.join(self.tmp.name, "sp.model")
        with open(tok, "wb") as f:
            f.write(b"not really a sentencepiece model")
        rc, err = self.run_main("--dtype", "f32", "--vocab-size", "1000", "--tokenizer", tok)
        self.assertEqual(rc, 0, err)
        got = gdn2_config.load(os.path.join(self.out, "config.json"))
        self.assertEqual((got["bos_token_id"], got["eos_token_id"], got["tokenizer"]["type"]),
                         (1, 2, "sentencepiece"))
        self.assertEqual((got["gdn2"]["gate_act"], got["gdn2"]["allow_neg_eigval"]), ("silu", False))
        with open(os.path.join(self.out, "tokenizer.model"), "rb") as f:
            self.assertEqual(f.read(), b"not really a sentencepiece model")

    def expect_error(self, pattern, *flags, **save):
        self.save(HYBRID, **save)
        rc, err = self.run_main("--dtype", "f32", *(flags or FLAGS))
        self.assertEqual(rc, 1)
        self.assertRegex(err, pattern)
        self.assertFalse(os.path.exists(os.path.join(self.out, "model.safetensors")))

    def test_error_missing_model_key(self):
        self.expect_error(r'expected a dict with a "model" key', wrap=False)

    def test_error_unexpected_tensor(self):
        def edit(sd):
            sd["transformer.h.1.attn.rope_cache"] = torch.zeros(3)
        self.expect_error(r"unexpected tensors \['transformer.h.1.attn.rope_cache'\]", edit=edit)
        rc, err = self.run_main("--dtype", "f32", "--ignore", r"rope_cache$", *FLAGS)
        self.assertEqual(rc, 0, err)

    def test_error_unexpected_top_level(self):
        def edit(sd):
            sd["transformer.wpe.weight"] = torch.zeros(3)
        self.expect_error(r"unexpected tensors \['transformer.wpe.weight'\]", edit=edit)

    def test_error_missing_tensor(self):
        self.expect_error(r"missing tensors \['transformer.h.2.attn.dt_bias'\]",
                          edit=lambda sd: sd.pop("transformer.h.2.attn.dt_bias"))
        self.expect_error(r"missing tensors \['lm_head.weight'\]", edit=lambda sd: sd.pop("lm_head.weight"))

    def test_error_inconsistent_shapes(self):
        def edit(sd):
            sd["transformer.h.2.attn.k_proj.weight"] = torch.zeros(17, 32)
        self.expect_error(r"inconsistent shapes: transformer.h.2.attn.k_proj.weight is \[17, 32\], "
                          r"expected \[16, 32\]", edit=edit)

    def test_error_wrong_vocab(self):
        self.expect_error(r"wte.weight has 320 rows but --vocab-size 32000 .* is 32000",
                          "--vocab-size", "32000", *FLAGS)

    def test_error_head_dim_flag_disagrees(self):
        self.expect_error(r"--head-k-dim 128 disagrees", "--head-k-dim", "128", *FLAGS)

    def test_error_swa_head_size_does_not_divide(self):
        self.expect_error(r"proj.weight columns / --head-size", *FLAGS, "--head-size", "7")

    def test_error_layer_pattern(self):
        def edit(sd):  # make layer 3 a GDN-2 layer: G S G G
            for k in [k for k in sd if k.startswith("transformer.h.3.attn.")]:
                del sd[k]
            for k in [k for k in sd if k.startswith("transformer.h.2.attn.")]:
                sd[k.replace("h.2.", "h.3.")] = sd[k].clone()
        self.expect_error(r"layer pattern GSGG", edit=edit)

    def test_error_missing_layer(self):
        def edit(sd):
            for k in [k for k in sd if k.startswith("transformer.h.1.")]:
                del sd[k]
        self.expect_error(r"layers \[1\] have no tensors", edit=edit)

    def test_error_not_a_checkpoint(self):
        with open(self.ckpt, "wb") as f:
            f.write(b"garbage")
        rc, err = self.run_main(*FLAGS)
        self.assertEqual(rc, 1)
        self.assertIn("cannot load as a torch checkpoint", err)


if __name__ == "__main__":
    unittest.main()
