"""Checks the PyTorch training model (tools/train/gdn2_torch.py) against the NumPy float64
reference (tools/gdn2_reference.py) and its chunked recurrence against the token-serial one,
values and gradients, in float64."""

import os
import sys
import unittest

import numpy as np
import torch

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
sys.path.insert(0, os.path.join(ROOT, "tools"))
sys.path.insert(0, os.path.join(ROOT, "tools", "train"))

import gdn2_config  # noqa: E402
from gdn2_reference import Gdn2Reference  # noqa: E402
from gdn2_torch import Gdn2LM, gdn2_recurrence_chunked, gdn2_recurrence_serial  # noqa: E402

torch.set_num_threads(1)


def small_config(**over):
    raw = {
        "vocab_size": 258, "padding_multiple": 64, "n_layer": 4, "n_embd": 32,
        "intermediate_size": 48, "gdn2_per_layer": 2,
        "gdn2": {"num_heads": 2, "num_v_heads": 4, "head_k_dim": 8, "head_v_dim": 6,
                 "conv_size": 4, "gate_act": "silu", "allow_neg_eigval": False},
        "swa": {"n_head": 4, "n_query_groups": 2, "head_size": 8, "local_window": 7,
                "rotary_percentage": 0.5, "rope_base": 10000.0},
        "bos_token_id": 256, "eos_token_id": 257, "tokenizer": {"type": "byte"},
    }
    for k, v in over.items():
        if isinstance(v, dict):
            raw[k] = {**raw[k], **v}
        else:
            raw[k] = v
    return gdn2_config.normalize(raw)


def random_inputs(gen, B, H, T, dk, dv, neg_eig=False):
    r = lambda *s: torch.randn(*s, generator=gen, dtype=torch.float64)
    q = r(B, H, T, dk) * dk ** -0.5
    k = torch.nn.functional.normalize(r(B, H, T, dk), dim=-1)
    v = r(B, H, T, dv)
    # Log-decays from near 0 to -30 per token (strong enough to underflow a naive cumulative product).
    scale = torch.logspace(-3, 1.5, H, dtype=torch.float64).view(1, H, 1, 1)
    g = -torch.rand(B, H, T, dk, generator=gen, dtype=torch.float64) * scale
    b = torch.rand(B, H, T, dk, generator=gen, dtype=torch.float64) * (2.0 if neg_eig else 1.0)
    w = torch.rand(B, H, T, dv, generator=gen, dtype=torch.float64)
    return q, k, v, g, b, w


class RecurrenceTest(unittest.TestCase):
    def test_chunked_equals_serial(self):
        gen = torch.Generator().manual_seed(1)
        for T, chunk, neg in ((37, 16, False), (37, 16, True), (64, 16, False), (5, 8, True), (40, 1, False)):
            q, k, v, g, b, w = random_inputs(gen, 2, 3, T, 8, 6, neg)
            s0 = torch.randn(2, 3, 8, 6, generator=gen, dtype=torch.float64)
            o1, S1 = gdn2_recurrence_serial(q, k, v, g, b, w, state=s0)
            o2, S2 = gdn2_recurrence_chunked(q, k, v, g, b, w, chunk=chunk, state=s0)
            scale = o1.abs().max().item()
            self.assertLess((o1 - o2).abs().max().item(), 1e-10 * scale, f"T={T} chunk={chunk}")
            self.assertLess((S1 - S2).abs().max().item(), 1e-10 * S1.abs().max().item())

    def test_chunked_gradients_equal_serial(self):
        gen = torch.Generator().manual_seed(2)
        ins = [x.requires_grad_() for x in random_inputs(gen, 1, 2, 23, 4, 3, True)]
        proj = torch.randn(1, 2, 23, 3, generator=gen, dtype=torch.float64)
        grads = []
        for fn in (gdn2_recurrence_serial, lambda *a: gdn2_recurrence_chunked(*a, chunk=8)):
            o, S = fn(*ins)
            gr = torch.autograd.grad((o * proj).sum() + S.sum(), ins)
            grads.append(gr)
        for a, b in zip(*grads):
            self.assertLess((a - b).abs().max().item(), 1e-10 * max(a.abs().max().item(), 1.0))


class ModelVsReferenceTest(unittest.TestCase):
    def check(self, cfg, T=29, seed=3):
        torch.manual_seed(seed)
        model = Gdn2LM(cfg, chunk=8).double()
        model.init_weights(seed)
        # Widen every weight so the gates, decays and attention are far from their init values.
        with torch.no_grad():
            for name, p in model.named_parameters():
                if p.dim() == 2 or name.endswith("conv1d.weight"):
                    p.mul_(8.0)
                elif not name.endswith("A_log"):
                    p.add_(0.3 * torch.randn_like(p))
        tokens = torch.randint(0, cfg["vocab_size"], (1, T))
        tokens[0, 0] = 256
        with torch.no_grad():
            got = model(tokens)[0].numpy()
            got_serial = model(tokens, serial=True)[0].numpy()
        ref = Gdn2Reference(cfg, {k: v.numpy() for k, v in model.state_dict().items()})
        want = ref.forward(tokens[0].numpy(), ref.new_state())
        err = np.abs(got - want).max() / np.abs(want).max()
        self.assertLess(err, 1e-9)
        self.assertLess(np.abs(got_serial - want).max() / np.abs(want).max(), 1e-9)
        # The logits must not be trivially small (a broken model would pass a relative check on ~0).
        self.assertGreater(np.abs(want).std(), 1e-2)

    def test_hybrid_grouped_heads_partial_rope(self):
        self.check(small_config())

    def test_pure_gdn2_neg_eigval_sigmoid_gate(self):
        self.check(small_config(gdn2_per_layer=1, gdn2={"allow_neg_eigval": True, "gate_act": "sigmoid"}))

    def test_default_config_shapes(self):
        import train  # noqa: E402  (tools/train/train.py)
        cfg = gdn2_config.normalize(train.DEFAULT_CONFIG)
        model = Gdn2LM(cfg)
        want = dict(gdn2_config.tensor_shapes(cfg))
        got = {k: list(v.shape) for k, v in model.state_dict().items()}
        self.assertEqual(got, {k: list(v) for k, v in want.items()})


if __name__ == "__main__":
    unittest.main()
