"""Tests of tools/gdn2_reference.py: an independent, loop-by-loop implementation written from
MODEL_SPEC sections 1-3 (no code shared with the reference), the algebraic identities of the
recurrence, split-prefill / decode continuity, the attention window and RoPE's relativity."""

import copy
import math
import os
import sys
import unittest

import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "tools"))
import gdn2_config  # noqa: E402
import gdn2_reference  # noqa: E402
import make_model  # noqa: E402

BYTE = {"vocab_size": 258, "padding_multiple": 64, "bos_token_id": 256, "eos_token_id": 257,
        "tokenizer": {"type": "byte", "file": "tokenizer.model"}}


def make_cfg(**kw):
    raw = copy.deepcopy(BYTE)
    raw.update(kw)
    return gdn2_config.normalize(raw)


HYBRID = make_cfg(n_layer=4, n_embd=48, intermediate_size=80, gdn2_per_layer=2,
                  gdn2={"num_heads": 2, "num_v_heads": 4, "head_k_dim": 8, "head_v_dim": 12,
                        "conv_size": 3, "gate_act": "silu", "allow_neg_eigval": True},
                  swa={"n_head": 6, "n_query_groups": 2, "head_size": 8, "local_window": 8,
                       "rotary_percentage": 0.5, "rope_base": 500.0})
PURE_SIGMOID = make_cfg(n_layer=2, n_embd=32, intermediate_size=64, gdn2_per_layer=1,
                        gdn2={"num_heads": 2, "num_v_heads": 2, "head_k_dim": 8, "head_v_dim": 8,
                              "conv_size": 4, "gate_act": "sigmoid", "allow_neg_eigval": False})
SWA_ONLY = make_cfg(n_layer=1, n_embd=32, intermediate_size=48, gdn2_per_layer=0,
                    swa={"n_head": 4, "n_query_groups": 4, "head_size": 8, "local_window": 5,
                         "rotary_percentage": 1.0, "rope_base": 10000.0})


def weights(cfg, seed):
    return {n: a.astype(np.float64) for n, a in make_model.generate(cfg, seed)}


# ---- an independent naive implementation (scalar-ish loops, straight from the spec) --------

def naive_logits(cfg, W, tokens):
    eps = cfg["norm_eps"]
    T, d = len(tokens), cfg["n_embd"]

    def sig(x):
        return 1.0 / (1.0 + math.exp(-x))

    def rms(x, gamma):
        return [x[c] / math.sqrt(sum(v * v for v in x) / len(x) + eps) * gamma[c] for c in range(len(x))]

    def matvec(M, x):
        return [float(np.dot(M[r], x)) for r in range(M.shape[0])]

    xs = [list(W["transformer.wte.weight"][t]) for t in tokens]
    for i in range(cfg["n_layer"]):
        p = f"transformer.h.{i}."
        us = [rms(x, W[p + "norm_1.weight"]) for x in xs]
        if gdn2_config.is_gdn2_layer(cfg, i):
            g = cfg["gdn2"]
            H, HV, dk, dv, Wc = g["num_heads"], g["num_v_heads"], g["head_k_dim"], g["head_v_dim"], g["conv_size"]
            pre = {n: [matvec(W[p + f"attn.{n}_proj.weight"], u) for u in us] for n in "qkv"}
            conv = {}
            for n in "qkv":
                cw = W[p + f"attn.{n}_conv1d.weight"]
                conv[n] = []
                for t in range(T):
                    row = []
                    for c in range(cw.shape[0]):
                        acc = 0.0
                        for j in range(Wc):
                            src = t - Wc + 1 + j
                            if src >= 0:
                                acc += cw[c, 0, j] * pre[n][src][c]
                        row.append(acc * sig(acc))
                    conv[n].append(row)
            S = [np.zeros((dk, dv)) for _ in range(HV)]
            ys = []
            for t in range(T):
                u = us[t]
                f = matvec(W[p + "attn.f_proj.1.weight"], matvec(W[p + "attn.f_proj.0.weight"], u))
                bl = matvec(W[p + "attn.b_proj.weight"], u)
                wl = matvec(W[p + "attn.w_proj.weight"], u)
                z = np.array(matvec(W[p + "attn.g_proj.1.weight"], matvec(W[p + "attn.g_proj.0.weight"], u))) \
                    + W[p + "attn.g_proj.1.bias"]
                y = []
                for hv in range(HV):
                    h = hv // (HV // H)
                    kk = np.array(conv["k"][t][h * dk:(h + 1) * dk])
                    qq = np.array(conv["q"][t][h * dk:(h + 1) * dk])
                    vv = np.array(conv["v"][t][hv * dv:(hv + 1) * dv])
                    kk = kk / math.sqrt(float(kk @ kk) + 1e-6)
                    qq = qq / math.sqrt(float(qq @ qq) + 1e-6) / math.sqrt(dk)
                    A = math.exp(W[p + "attn.A_log"][h])
                    alpha = np.array([math.exp(-A * math.log1p(math.exp(f[h * dk + c] + W[p + "attn.dt_bias"][h * dk + c])))
                                      for c in range(dk)])
                    b = np.array([sig(bl[h * dk + c]) for c in range(dk)]) * (2.0 if g["allow_neg_eigval"] else 1.0)
                    w = np.array([sig(wl[hv * dv + c]) for c in range(dv)])
                    # S_t = (I - k (b*k)^T) D S_{t-1} + k (w*v)^T
                    S[hv] = (np.eye(dk) - np.outer(kk, b * kk)) @ (np.diag(alpha) @ S[hv]) + np.outer(kk, w * vv)
                    o = S[hv].T @ qq
                    on = o / math.sqrt(float(o @ o) / dv + eps) * W[p + "attn.o_norm.weight"]
                    zz = z[hv * dv:(hv + 1) * dv]
                    act = zz * (1 / (1 + np.exp(-zz))) if g["gate_act"] == "silu" else 1 / (1 + np.exp(-zz))
                    y.extend(list(on * act))
                ys.append(matvec(W[p + "attn.o_proj.weight"], y))
        else:
            s = cfg["swa"]
            nh, ng, hs, win = s["n_head"], s["n_query_groups"], s["head_size"], s["local_window"]
            per = nh // ng
            n_rope = int(s["rotary_percentage"] * hs)
            A = W[p + "attn.attn.weight"]

            def head_rows(kind, h):  # litgpt layout: per group, `per` q heads, then k, then v
                grp = h // per if kind == "q" else h
                off = {"q": h % per, "k": per, "v": per + 1}[kind]
                start = (grp * (per + 2) + off) * hs
                return A[start:start + hs]

            def rotate(x, pos):
                x = list(x)
                half = n_rope // 2
                out = list(x)
                for c in range(half):
                    theta = pos * s["rope_base"] ** (-2.0 * c / n_rope)
                    x1, x2 = x[c], x[c + half]
                    out[c] = x1 * math.cos(theta) - x2 * math.sin(theta)
                    out[c + half] = x2 * math.cos(theta) + x1 * math.sin(theta)
                return np.array(out)

            Q = [[rotate(head_rows("q", h) @ u, t) for h in range(nh)] for t, u in enumerate(us)]
            K = [[rotate(head_rows("k", gi) @ u, t) for gi in range(ng)] for t, u in enumerate(us)]
            V = [[head_rows("v", gi) @ u for gi in range(ng)] for u in us]
            ys = []
            for t in range(T):
                y = []
                for h in range(nh):
                    gi = h // per
                    js = [j for j in range(T) if t - win < j <= t]
                    sc = [float(Q[t][h] @ K[j][gi]) / math.sqrt(hs) for j in js]
                    m = max(sc)
                    e = [math.exp(v - m) for v in sc]
                    y.extend(list(sum(e[n] / sum(e) * V[j][gi] for n, j in enumerate(js))))
                ys.append(matvec(W[p + "attn.proj.weight"], y))
        xs = [[xs[t][c] + ys[t][c] for c in range(d)] for t in range(T)]
        for t in range(T):
            n = rms(xs[t], W[p + "norm_2.weight"])
            a = matvec(W[p + "mlp.swiglu.w1.weight"], n)
            b = matvec(W[p + "mlp.swiglu.w2.weight"], n)
            h = [a[c] * sig(a[c]) * b[c] for c in range(len(a))]
            m = matvec(W[p + "mlp.swiglu.w3.weight"], h)
            xs[t] = [xs[t][c] + m[c] for c in range(d)]
    return np.array([matvec(W["lm_head.weight"], rms(x, W["transformer.ln_f.weight"])) for x in xs])


def rel_err(a, b):
    return float(np.max(np.abs(a - b)) / np.max(np.abs(b)))


class IndependentImplementationTest(unittest.TestCase):
    def check(self, cfg, seed, T):
        W = weights(cfg, seed)
        model = gdn2_reference.Gdn2Reference(cfg, W)
        tokens = np.random.default_rng(seed).integers(0, cfg["vocab_size"], size=T).tolist()
        got = model.forward(tokens, model.new_state())
        want = naive_logits(cfg, W, tokens)
        self.assertEqual(got.shape, (T, cfg["padded_vocab_size"]))
        self.assertLess(rel_err(got, want), 1e-11)

    def test_hybrid_grouped_negeig_partial_rope_gqa(self):
        self.check(HYBRID, 7, 12)  # window 8: the last positions drop keys

    def test_pure_sigmoid_gate(self):
        self.check(PURE_SIGMOID, 8, 9)

    def test_swa_only(self):
        self.check(SWA_ONLY, 9, 9)


class RecurrenceIdentityTest(unittest.TestCase):
    """One GDN-2 head step from MODEL_SPEC section 1, three equivalent ways."""

    def test_single_head_step(self):
        rng = np.random.default_rng(3)
        dk, dv = 6, 5
        S0 = rng.standard_normal((dk, dv))
        k = rng.standard_normal(dk)
        k /= np.linalg.norm(k)
        q = rng.standard_normal(dk) / math.sqrt(dk)
        v = rng.standard_normal(dv)
        b = rng.uniform(0, 2, dk)
        w = rng.uniform(0, 1, dv)
        g = -rng.uniform(0, 3, dk)
        # Delta form of section 1.
        S_bar = np.diag(np.exp(g)) @ S0
        r = S_bar.T @ (b * k)
        S1 = S_bar + np.outer(k, w * v - r)
        o1 = S1.T @ q
        # Householder-like form.
        S2 = (np.eye(dk) - np.outer(k, b * k)) @ np.diag(np.exp(g)) @ S0 + np.outer(k, w * v)
        np.testing.assert_allclose(S2, S1, rtol=1e-13, atol=1e-13)
        # One-pass read-out.
        o2 = S_bar.T @ q + (k @ q) * (w * v - r)
        np.testing.assert_allclose(o2, o1, rtol=1e-12, atol=1e-13)
        # The reference's batched routine.
        S = S0[None].copy()
        o = gdn2_reference.gdn2_recurrence(q[None, None], k[None, None], v[None, None], g[None, None],
                                           b[None, None], w[None, None], S)
        np.testing.assert_allclose(S[0], S1, rtol=1e-13, atol=1e-13)
        np.testing.assert_allclose(o[0, 0], o1, rtol=1e-13, atol=1e-13)

    def test_kda_special_case_erases_then_writes(self):
        # b = w = 1, no decay, unit k: writing v at k twice leaves exactly v at k (delta rule).
        dk, dv = 4, 3
        k = np.array([0.0, 1.0, 0.0, 0.0])
        v = np.array([1.0, -2.0, 0.5])
        S = np.zeros((1, dk, dv))
        ones_k, ones_v = np.ones((2, 1, dk)), np.ones((2, 1, dv))
        kk = np.stack([k, k])[:, None]
        vv = np.stack([v * 3, v])[:, None]
        o = gdn2_reference.gdn2_recurrence(kk, kk, vv, np.zeros((2, 1, dk)), ones_k, ones_v, S)
        np.testing.assert_allclose(S[0].T @ k, v, atol=1e-15)
        np.testing.assert_allclose(o[1, 0], v, atol=1e-15)


class StateContinuityTest(unittest.TestCase):
    """prefill(T) then n single-token steps == prefill(T + n), and any split of a prefill."""

    def run_split(self, cfg, seed, T, n):
        model = gdn2_reference.Gdn2Reference(cfg, weights(cfg, seed))
        tokens = np.random.default_rng(seed + 1).integers(0, cfg["vocab_size"], size=T + n)
        full = model.forward(tokens, model.new_state())
        st = model.new_state()
        parts = [model.forward(tokens[:T], st)] + [model.forward(tokens[T + j:T + j + 1], st) for j in range(n)]
        self.assertEqual(st.pos, T + n)
        np.testing.assert_allclose(np.concatenate(parts), full, rtol=1e-10, atol=1e-10)

    def test_hybrid(self):
        for T in (1, 7, 64):
            with self.subTest(T=T):
                self.run_split(HYBRID, 11, T, 10)  # window 8: every split crosses it

    def test_pure(self):
        for T in (1, 7, 64):
            with self.subTest(T=T):
                self.run_split(PURE_SIGMOID, 12, T, 5)

    def test_uneven_chunks_and_state_copy(self):
        model = gdn2_reference.Gdn2Reference(HYBRID, weights(HYBRID, 13))
        tokens = np.random.default_rng(5).integers(0, 258, size=30)
        full = model.forward(tokens, model.new_state())
        st = model.new_state()
        a = model.forward(tokens[:3], st)
        b = model.forward(tokens[3:14], st)
        fork = st.copy()
        c = model.forward(tokens[14:], st)
        np.testing.assert_allclose(np.concatenate([a, b, c]), full, rtol=1e-10, atol=1e-10)
        np.testing.assert_allclose(model.forward(tokens[14:], fork), c, rtol=1e-12, atol=1e-12)


class AttentionTest(unittest.TestCase):
    def test_window_limits_what_one_swa_layer_sees(self):
        model = gdn2_reference.Gdn2Reference(SWA_ONLY, weights(SWA_ONLY, 21))
        window = SWA_ONLY["swa"]["local_window"]
        rng = np.random.default_rng(0)
        tokens = rng.integers(0, 258, size=12)
        changed = tokens.copy()
        changed[2] = (changed[2] + 1) % 258
        a = model.forward(tokens, model.new_state())
        b = model.forward(changed, model.new_state())
        # Position t sees tokens t-window+1 .. t: only positions 2 .. 2+window-1 may change.
        affected = [t for t in range(12) if not np.allclose(a[t], b[t], rtol=0, atol=1e-12)]
        self.assertEqual(affected, list(range(2, 2 + window)))

    def test_rope_depends_on_relative_positions_only(self):
        cfg = copy.deepcopy(SWA_ONLY)
        cfg["swa"]["rotary_percentage"] = 0.5
        model = gdn2_reference.Gdn2Reference(cfg, weights(cfg, 22))
        tokens = np.random.default_rng(1).integers(0, 258, size=5)
        st = model.new_state()
        at0 = model.forward(tokens, st)
        shifted = model.new_state()
        shifted.pos = 1000  # empty caches, absolute positions 1000..1004
        at1000 = model.forward(tokens, shifted)
        np.testing.assert_allclose(at1000, at0, rtol=1e-9, atol=1e-9)
        # ... but the rotation is not the identity.
        cfg0 = copy.deepcopy(cfg)
        cfg0["swa"]["rotary_percentage"] = 0.0
        no_rope = gdn2_reference.Gdn2Reference(cfg0, model.w).forward(tokens, model.new_state())
        self.assertGreater(np.max(np.abs(no_rope[1:] - at0[1:])), 1e-6)


class DefaultModelTest(unittest.TestCase):
    def test_embedded_default_model_loads_and_is_realistic(self):
        root = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..")
        model = gdn2_reference.Gdn2Reference.from_dir(os.path.join(root, "models", "default"))
        cfg = model.cfg
        self.assertEqual((cfg["vocab_size"], cfg["padded_vocab_size"], cfg["bos_token_id"],
                          cfg["eos_token_id"], cfg["tokenizer"]["type"]), (258, 320, 256, 257, "byte"))
        self.assertEqual(cfg["gdn2_per_layer"], 2)
        self.assertEqual(model.w["transformer.wte.weight"].shape, (320, cfg["n_embd"]))
        logits = model.forward([256] + list(b"In the beginning"), model.new_state())
        self.assertTrue(np.all(np.isfinite(logits)))
        std = logits[:, :258].std(axis=1)
        self.assertTrue(np.all((std > 1.0) & (std < 10.0)), std)


if __name__ == "__main__":
    unittest.main()
