#!/usr/bin/env python3
"""NumPy float64 reference of a GDN-2 / hybrid GDN-2 + SWA language model (MODEL_SPEC sections
1-3). It is the ground truth the C++ backends are checked against; it favours plainness over
speed (the recurrence and the attention run token by token).

The model runs from an explicit `State` (per GDN-2 layer: recurrent state [HV, dk, dv] and the
last W-1 pre-convolution inputs of q, k, v; per SWA layer: the last local_window rotated keys and
values; the number of tokens consumed), so a prefill can be split anywhere:

    model = Gdn2Reference.from_dir("models/default")
    state = model.new_state()
    logits = model.forward([256, 72, 105], state)   # [T, padded_vocab] float64; state advanced

Command line (greedy generation, byte tokenizer or token ids):
    tools/gdn2_reference.py --model models/default --prompt "In the beginning" --max-new-tokens 16
    tools/gdn2_reference.py --model models/default --tokens 256,72,105 --max-new-tokens 4
"""

import argparse
import os
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import gdn2_config  # noqa: E402
from safetensors_io import SafetensorsFile  # noqa: E402

L2_EPS = 1e-6


def sigmoid(x):
    return 0.5 * (1.0 + np.tanh(0.5 * x))


def silu(x):
    return x * sigmoid(x)


def softplus(x):
    return np.logaddexp(0.0, x)


def rmsnorm(x, gamma, eps):
    return x / np.sqrt(np.mean(x * x, axis=-1, keepdims=True) + eps) * gamma


def l2norm(x):
    return x / np.sqrt(np.sum(x * x, axis=-1, keepdims=True) + L2_EPS)


def causal_conv(x, history, weight):
    """Depthwise causal convolution. x [T, C], history [W-1, C] (inputs before x, oldest first),
    weight [C, 1, W] (weight[..., W-1] multiplies the current token). Returns (y [T, C], new history)."""
    w = weight[:, 0, :]
    width = w.shape[1]
    xx = np.concatenate([history, x], axis=0)
    t = x.shape[0]
    y = np.zeros_like(x)
    for j in range(width):
        y += w[:, j] * xx[j:j + t]
    return y, xx[xx.shape[0] - (width - 1):].copy()


def gdn2_recurrence(q, k, v, g, b, w, S):
    """The Gated Delta Rule-2 of MODEL_SPEC section 1, token by token, all heads at once.
    q, k, g, b: [T, HV, dk] (already expanded to value heads); v, w: [T, HV, dv];
    S: [HV, dk, dv], updated in place. Returns o [T, HV, dv]."""
    out = np.empty_like(v)
    for t in range(q.shape[0]):
        S *= np.exp(g[t])[:, :, None]                       # S_bar = diag(alpha) S
        r = np.einsum("hkv,hk->hv", S, b[t] * k[t])          # S_bar^T (b * k)
        S += k[t][:, :, None] * (w[t] * v[t] - r)[:, None, :]
        out[t] = np.einsum("hkv,hk->hv", S, q[t])            # S_t^T q
    return out


def rope(x, positions, n_dims, base):
    """NeoX rotary embedding on the first n_dims of the last axis. x [T, heads, hs]."""
    if n_dims == 0:
        return x
    inv_freq = 1.0 / (base ** (np.arange(0, n_dims, 2, dtype=np.float64) / n_dims))
    ang = np.outer(positions.astype(np.float64), inv_freq)            # [T, n/2]
    cos = np.concatenate([np.cos(ang), np.cos(ang)], axis=-1)[:, None, :]
    sin = np.concatenate([np.sin(ang), np.sin(ang)], axis=-1)[:, None, :]
    xr = x[..., :n_dims]
    half = n_dims // 2
    rotated = np.concatenate([-xr[..., half:], xr[..., :half]], axis=-1)
    return np.concatenate([xr * cos + rotated * sin, x[..., n_dims:]], axis=-1)


class State:
    """Decode state of one sequence (float64 here; the engine stores fp32)."""

    def __init__(self, cfg):
        self.pos = 0
        self.layers = []
        for i in range(cfg["n_layer"]):
            if gdn2_config.is_gdn2_layer(cfg, i):
                g = cfg["gdn2"]
                kd, vd, hist = gdn2_config.key_dim(cfg), gdn2_config.value_dim(cfg), g["conv_size"] - 1
                self.layers.append({
                    "S": np.zeros((g["num_v_heads"], g["head_k_dim"], g["head_v_dim"])),
                    "conv_q": np.zeros((hist, kd)), "conv_k": np.zeros((hist, kd)),
                    "conv_v": np.zeros((hist, vd)),
                })
            else:
                s = cfg["swa"]
                shape = (0, s["n_query_groups"], s["head_size"])
                self.layers.append({"k": np.zeros(shape), "v": np.zeros(shape),
                                    "k_pos": np.zeros((0,), dtype=np.int64)})

    def copy(self):
        other = State.__new__(State)
        other.pos = self.pos
        other.layers = [{k: v.copy() for k, v in layer.items()} for layer in self.layers]
        return other


class Gdn2Reference:
    def __init__(self, cfg, weights):
        """cfg: a normalised config (gdn2_config.normalize); weights: name -> array (any float
        dtype; converted to float64). Names and shapes must be exactly those of MODEL_SPEC 5."""
        self.cfg = cfg
        want = dict(gdn2_config.tensor_shapes(cfg))
        missing = sorted(set(want) - set(weights))
        extra = sorted(set(weights) - set(want))
        if missing or extra:
            raise ValueError(f"weights do not match the config: missing {missing[:8]}, "
                             f"unexpected {extra[:8]}")
        self.w = {}
        for name, shape in want.items():
            a = np.asarray(weights[name], dtype=np.float64)
            if a.shape != tuple(shape):
                raise ValueError(f"tensor {name}: shape {list(a.shape)}, expected {list(shape)}")
            self.w[name] = a

    @classmethod
    def from_dir(cls, model_dir):
        cfg = gdn2_config.load(os.path.join(model_dir, "config.json"))
        st = SafetensorsFile(os.path.join(model_dir, "model.safetensors"))
        return cls(cfg, {n: st.get(n, np.float64) for n in st.keys()})

    def new_state(self):
        return State(self.cfg)

    # ---- mixers -------------------------------------------------------------------------

    def _gdn2(self, i, u, st):
        cfg, g = self.cfg, self.cfg["gdn2"]
        p = f"transformer.h.{i}.attn."
        W = self.w
        T = u.shape[0]
        H, HV, dk, dv = g["num_heads"], g["num_v_heads"], g["head_k_dim"], g["head_v_dim"]
        rep = HV // H
        q, st["conv_q"] = causal_conv(u @ W[p + "q_proj.weight"].T, st["conv_q"], W[p + "q_conv1d.weight"])
        k, st["conv_k"] = causal_conv(u @ W[p + "k_proj.weight"].T, st["conv_k"], W[p + "k_conv1d.weight"])
        v, st["conv_v"] = causal_conv(u @ W[p + "v_proj.weight"].T, st["conv_v"], W[p + "v_conv1d.weight"])
        q = l2norm(silu(q).reshape(T, H, dk)) * dk ** -0.5
        k = l2norm(silu(k).reshape(T, H, dk))
        v = silu(v).reshape(T, HV, dv)
        f = (u @ W[p + "f_proj.0.weight"].T) @ W[p + "f_proj.1.weight"].T
        decay = -np.exp(W[p + "A_log"])[None, :, None] * softplus((f + W[p + "dt_bias"]).reshape(T, H, dk))
        b = sigmoid(u @ W[p + "b_proj.weight"].T).reshape(T, H, dk)
        if g["allow_neg_eigval"]:
            b = 2.0 * b
        w = sigmoid(u @ W[p + "w_proj.weight"].T).reshape(T, HV, dv)
        expand = lambda x: np.repeat(x, rep, axis=1)  # key head hv // rep serves value head hv
        o = gdn2_recurrence(expand(q), expand(k), v, expand(decay), expand(b), w, st["S"])
        z = (u @ W[p + "g_proj.0.weight"].T) @ W[p + "g_proj.1.weight"].T + W[p + "g_proj.1.bias"]
        z = z.reshape(T, HV, dv)
        act = silu(z) if g["gate_act"] == "silu" else sigmoid(z)
        y = rmsnorm(o, W[p + "o_norm.weight"], cfg["norm_eps"]) * act
        return y.reshape(T, HV * dv) @ W[p + "o_proj.weight"].T

    def _swa(self, i, u, st, pos0):
        s = self.cfg["swa"]
        p = f"transformer.h.{i}.attn."
        T = u.shape[0]
        nh, ng, hs, window = s["n_head"], s["n_query_groups"], s["head_size"], s["local_window"]
        per = nh // ng
        qkv = (u @ self.w[p + "attn.weight"].T).reshape(T, ng, per + 2, hs)
        q = qkv[:, :, :per, :].reshape(T, nh, hs)     # query head g*per + j belongs to group g
        k = qkv[:, :, per, :]
        v = qkv[:, :, per + 1, :]
        positions = pos0 + np.arange(T)
        n_rope = gdn2_config.rope_dims(self.cfg)
        q = rope(q, positions, n_rope, s["rope_base"])
        k = rope(k, positions, n_rope, s["rope_base"])
        keys = np.concatenate([st["k"], k], axis=0)
        vals = np.concatenate([st["v"], v], axis=0)
        kpos = np.concatenate([st["k_pos"], positions])
        out = np.empty((T, nh, hs))
        scale = hs ** -0.5
        for t in range(T):
            sel = (kpos <= positions[t]) & (kpos > positions[t] - window)
            K = keys[sel][:, np.arange(nh) // per, :]      # [n, nh, hs]
            V = vals[sel][:, np.arange(nh) // per, :]
            scores = np.einsum("hd,nhd->hn", q[t], K) * scale
            scores -= scores.max(axis=1, keepdims=True)
            pr = np.exp(scores)
            pr /= pr.sum(axis=1, keepdims=True)
            out[t] = np.einsum("hn,nhd->hd", pr, V)
        keep = max(0, keys.shape[0] - window)
        st["k"], st["v"], st["k_pos"] = keys[keep:], vals[keep:], kpos[keep:]
        return out.reshape(T, nh * hs) @ self.w[p + "proj.weight"].T

    # ---- whole model --------------------------------------------------------------------

    def forward(self, tokens, state):
        """Consumes `tokens` from `state` (advanced in place); returns logits [T, padded_vocab]."""
        cfg, W, eps = self.cfg, self.w, self.cfg["norm_eps"]
        tokens = np.asarray(tokens, dtype=np.int64).reshape(-1)
        if tokens.size and (tokens.min() < 0 or tokens.max() >= cfg["padded_vocab_size"]):
            raise ValueError(f"token ids must be in [0, {cfg['padded_vocab_size']})")
        x = W["transformer.wte.weight"][tokens]
        for i in range(cfg["n_layer"]):
            p = f"transformer.h.{i}."
            u = rmsnorm(x, W[p + "norm_1.weight"], eps)
            if gdn2_config.is_gdn2_layer(cfg, i):
                x = x + self._gdn2(i, u, state.layers[i])
            else:
                x = x + self._swa(i, u, state.layers[i], state.pos)
            n = rmsnorm(x, W[p + "norm_2.weight"], eps)
            x = x + (silu(n @ W[p + "mlp.swiglu.w1.weight"].T) * (n @ W[p + "mlp.swiglu.w2.weight"].T)) \
                @ W[p + "mlp.swiglu.w3.weight"].T
        state.pos += tokens.size
        return rmsnorm(x, W["transformer.ln_f.weight"], eps) @ W["lm_head.weight"].T


def main(argv=None):
    ap = argparse.ArgumentParser(description="Greedy generation with the float64 reference.")
    ap.add_argument("--model", required=True, help="model directory")
    src = ap.add_mutually_exclusive_group(required=True)
    src.add_argument("--prompt", help="text (byte tokenizer only); <bos> is prepended")
    src.add_argument("--tokens", help="comma-separated token ids")
    ap.add_argument("--max-new-tokens", type=int, default=16)
    args = ap.parse_args(argv)
    model = Gdn2Reference.from_dir(args.model)
    cfg = model.cfg
    if args.prompt is not None:
        if cfg["tokenizer"]["type"] != "byte":
            ap.error("--prompt needs a byte-tokenizer model; use --tokens")
        ids = ([cfg["bos_token_id"]] if cfg["bos_token_id"] >= 0 else []) + list(args.prompt.encode("utf-8"))
    else:
        ids = [int(t) for t in args.tokens.split(",") if t.strip()]
    state = model.new_state()
    logits = model.forward(ids, state)[-1]
    out = []
    for _ in range(args.max_new_tokens):
        nxt = int(np.argmax(logits[:cfg["vocab_size"]]))
        out.append(nxt)
        if nxt == cfg["eos_token_id"]:
            break
        logits = model.forward([nxt], state)[-1]
    print("tokens:", ",".join(map(str, out)))
    if cfg["tokenizer"]["type"] == "byte":
        print("text:", repr(bytes(t for t in out if t < 256).decode("utf-8", errors="replace")))
    return 0


if __name__ == "__main__":
    sys.exit(main())
