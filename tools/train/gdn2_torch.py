"""A trainable PyTorch GDN-2 language model (pure or hybrid with sliding-window attention), written
from MODEL_SPEC.md. Parameter names and shapes are those of MODEL_SPEC section 5, so
`model.state_dict()` is a reference-layout checkpoint that tools/convert_checkpoint.py converts.

The recurrence (MODEL_SPEC section 1) has two implementations:
  * `gdn2_recurrence_serial`: token by token, the equations as written (the check);
  * `gdn2_recurrence_chunked`: a chunkwise form used for training (see its docstring).
Both run on torch 1.13 (CPU) and torch 2.x (CUDA). Everything is computed in the dtype of the
parameters (fp32 here); decays are applied through exp of log-decay differences that are <= 0,
so nothing overflows whatever the gates.
"""

import math

import torch
import torch.nn as nn
import torch.nn.functional as F


def _l2norm(x):
    return x / torch.sqrt((x * x).sum(-1, keepdim=True) + 1e-6)


def gdn2_recurrence_serial(q, k, v, g, b, w, state=None):
    """Token-serial Gated Delta Rule-2. q, k, g, b: [B, H, T, dk]; v, w: [B, H, T, dv].
    Returns (o [B, H, T, dv], final state [B, H, dk, dv])."""
    B, H, T, dk = k.shape
    dv = v.shape[-1]
    S = k.new_zeros(B, H, dk, dv) if state is None else state
    outs = []
    for t in range(T):
        s_bar = torch.exp(g[:, :, t])[..., None] * S                     # diag(alpha) S
        r = torch.einsum("bhkv,bhk->bhv", s_bar, b[:, :, t] * k[:, :, t])
        delta = w[:, :, t] * v[:, :, t] - r
        S = s_bar + k[:, :, t, :, None] * delta[:, :, None, :]
        outs.append(torch.einsum("bhkv,bhk->bhv", S, q[:, :, t]))
    return torch.stack(outs, dim=2), S


def gdn2_recurrence_chunked(q, k, v, g, b, w, chunk=16, state=None):
    """Chunkwise Gated Delta Rule-2, same contract as `gdn2_recurrence_serial`.

    Within a chunk starting from state S0, with G_t the inclusive cumulative log-decay, a_t = b_t*k_t,
    u_t = w_t*v_t and delta_t = u_t - S_bar_t^T a_t (so S_t = diag(alpha_t) S_{t-1} + k_t delta_t^T):
        S_bar_t = diag(e^{G_t}) S0 + sum_{s<t} diag(e^{G_t-G_s}) k_s delta_s^T
        (I + A) delta = U - (e^{G} * a) S0,   A[t,s] = sum_i a_t[i] k_s[i] e^{G_t[i]-G_s[i]}  (s < t)
        o_t = (e^{G_t} * q_t)^T S0 + sum_{s<=t} P[t,s] delta_s,  P like A with q, s <= t
        S_C = diag(e^{G_C}) S0 + sum_s (e^{G_C-G_s} * k_s) delta_s^T
    Solving the unit lower-triangular system once per chunk gives delta = Wu - M S0, so the
    chunk-to-chunk scan is two small matrix products per chunk:
        o = P Wu + (Qg - P M) S0,   S_C = (diag(e^{G_C}) - Kc^T M) S0 + Kc^T Wu.
    """
    B, H, T, dk = k.shape
    dv = v.shape[-1]
    pad = (-T) % chunk
    a = b * k
    u = w * v
    if pad:
        # Zero keys/values and zero log-decay leave the state unchanged; padded outputs are dropped.
        padf = lambda x: F.pad(x, (0, 0, 0, pad))
        q, k, a, u, g = padf(q), padf(k), padf(a), padf(u), padf(g)
    N = (T + pad) // chunk
    C = chunk
    rs = lambda x: x.reshape(B, H, N, C, x.shape[-1])
    q, k, a, u, g = rs(q), rs(k), rs(a), rs(u), rs(g)
    G = torch.cumsum(g, dim=3)                                           # [B,H,N,C,dk]
    diff = G[:, :, :, :, None, :] - G[:, :, :, None, :, :]                # [.., t, s, dk] G_t - G_s
    idx = torch.arange(C, device=k.device)
    incl = (idx[None, :] <= idx[:, None])                                 # s <= t
    strict = (idx[None, :] < idx[:, None])                                # s < t
    decay_incl = torch.exp(diff.masked_fill(~incl[:, :, None], float("-inf")))
    decay_strict = decay_incl * strict[:, :, None].to(decay_incl.dtype)
    A = torch.einsum("bhntk,bhnsk,bhntsk->bhnts", a, k, decay_strict)
    P = torch.einsum("bhntk,bhnsk,bhntsk->bhnts", q, k, decay_incl)
    eye = torch.eye(C, dtype=k.dtype, device=k.device)
    eG = torch.exp(G)
    rhs = torch.cat([u, eG * a], dim=-1)                                  # [.., C, dv + dk]
    sol = torch.linalg.solve_triangular(eye + A, rhs, upper=False, unitriangular=True)
    Wu, M = sol[..., :dv], sol[..., dv:]
    Qg = eG * q
    G_last = G[:, :, :, -1:, :]                                           # [.., 1, dk]
    Kc = torch.exp(G_last - G) * k                                        # [.., C, dk]
    PW = P @ Wu                                                           # [.., C, dv]
    R = Qg - P @ M                                                        # [.., C, dk]
    KcT = Kc.transpose(-1, -2)
    Phi = torch.diag_embed(torch.exp(G_last[..., 0, :])) - KcT @ M        # [.., dk, dk]
    Psi = KcT @ Wu                                                        # [.., dk, dv]
    S = k.new_zeros(B, H, dk, dv) if state is None else state
    outs = []
    for n in range(N):
        outs.append(PW[:, :, n] + R[:, :, n] @ S)
        S = Phi[:, :, n] @ S + Psi[:, :, n]
    o = torch.stack(outs, dim=2).reshape(B, H, N * C, dv)[:, :, :T]
    return o, S


class RMSNorm(nn.Module):
    def __init__(self, dim, eps):
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(dim))

    def forward(self, x):
        return x * torch.rsqrt((x * x).mean(-1, keepdim=True) + self.eps) * self.weight


class Gdn2Mixer(nn.Module):
    """MODEL_SPEC section 2."""

    def __init__(self, cfg, chunk=16):
        super().__init__()
        d = cfg["n_embd"]
        gc = cfg["gdn2"]
        self.H, self.HV = gc["num_heads"], gc["num_v_heads"]
        self.dk, self.dv = gc["head_k_dim"], gc["head_v_dim"]
        self.W = gc["conv_size"]
        self.gate_act = gc["gate_act"]
        self.neg_eig = bool(gc["allow_neg_eigval"])
        self.eps = cfg["norm_eps"]
        self.chunk = chunk
        kd, vd = self.H * self.dk, self.HV * self.dv
        self.q_proj = nn.Linear(d, kd, bias=False)
        self.k_proj = nn.Linear(d, kd, bias=False)
        self.v_proj = nn.Linear(d, vd, bias=False)
        self.b_proj = nn.Linear(d, kd, bias=False)
        self.w_proj = nn.Linear(d, vd, bias=False)
        self.q_conv1d = nn.Conv1d(kd, kd, self.W, groups=kd, bias=False)
        self.k_conv1d = nn.Conv1d(kd, kd, self.W, groups=kd, bias=False)
        self.v_conv1d = nn.Conv1d(vd, vd, self.W, groups=vd, bias=False)
        self.f_proj = nn.Sequential(nn.Linear(d, self.dv, bias=False), nn.Linear(self.dv, kd, bias=False))
        self.g_proj = nn.Sequential(nn.Linear(d, self.dv, bias=False), nn.Linear(self.dv, vd, bias=True))
        self.A_log = nn.Parameter(torch.zeros(self.H))
        self.dt_bias = nn.Parameter(torch.zeros(kd))
        self.o_norm = RMSNorm(self.dv, cfg["norm_eps"])
        self.o_proj = nn.Linear(vd, d, bias=False)

    def init_gates(self, generator=None):
        """Mamba-style decay init: A in [1, 16], softplus(dt_bias) log-uniform in [1e-3, 1e-1]."""
        with torch.no_grad():
            A = torch.empty(self.H).uniform_(1.0, 16.0, generator=generator)
            self.A_log.copy_(torch.log(A))
            dt = torch.exp(torch.rand(self.dt_bias.shape, generator=generator)
                           * (math.log(0.1) - math.log(1e-3)) + math.log(1e-3))
            self.dt_bias.copy_(dt + torch.log(-torch.expm1(-dt)))          # softplus^-1(dt)

    def _conv(self, conv, x):
        # Causal depthwise conv over time then SiLU. x: [B, T, C].
        y = F.conv1d(F.pad(x.transpose(1, 2), (self.W - 1, 0)), conv.weight, groups=x.shape[-1])
        return F.silu(y).transpose(1, 2)

    def gates(self, u):
        """Per-token inputs of the recurrence, each [B, HV, T, *]."""
        Bsz, T, _ = u.shape
        H, HV, dk, dv = self.H, self.HV, self.dk, self.dv
        q = self._conv(self.q_conv1d, self.q_proj(u)).view(Bsz, T, H, dk)
        k = self._conv(self.k_conv1d, self.k_proj(u)).view(Bsz, T, H, dk)
        v = self._conv(self.v_conv1d, self.v_proj(u)).view(Bsz, T, HV, dv)
        q = _l2norm(q) * (dk ** -0.5)
        k = _l2norm(k)
        f = self.f_proj(u).view(Bsz, T, H, dk)
        g = -torch.exp(self.A_log)[:, None] * F.softplus(f + self.dt_bias.view(H, dk))
        b = torch.sigmoid(self.b_proj(u)).view(Bsz, T, H, dk)
        if self.neg_eig:
            b = b * 2.0
        w = torch.sigmoid(self.w_proj(u)).view(Bsz, T, HV, dv)
        rep = HV // H
        if rep > 1:
            q, k, g, b = (x.repeat_interleave(rep, dim=2) for x in (q, k, g, b))
        tr = lambda x: x.transpose(1, 2)
        return tr(q), tr(k), tr(v), tr(g), tr(b), tr(w)

    def forward(self, u, serial=False):
        Bsz, T, _ = u.shape
        q, k, v, g, b, w = self.gates(u)
        if serial:
            o, _ = gdn2_recurrence_serial(q, k, v, g, b, w)
        else:
            o, _ = gdn2_recurrence_chunked(q, k, v, g, b, w, chunk=self.chunk)
        o = o.transpose(1, 2)                                             # [B, T, HV, dv]
        z = self.g_proj(u).view(Bsz, T, self.HV, self.dv)
        act = F.silu(z) if self.gate_act == "silu" else torch.sigmoid(z)
        y = self.o_norm(o) * act
        return self.o_proj(y.reshape(Bsz, T, self.HV * self.dv))


def rope_cache(T, n_elem, base, device, dtype):
    theta = 1.0 / (base ** (torch.arange(0, n_elem, 2, device=device, dtype=torch.float64) / n_elem))
    ang = torch.outer(torch.arange(T, device=device, dtype=torch.float64), theta).repeat(1, 2)
    return torch.cos(ang).to(dtype), torch.sin(ang).to(dtype)


def apply_rope(x, cos, sin):
    """NeoX rotate-halves over the first cos.shape[-1] dims of x [B, nh, T, hs]."""
    n = cos.shape[-1]
    xr, xp = x[..., :n], x[..., n:]
    x1, x2 = xr[..., : n // 2], xr[..., n // 2:]
    rot = torch.cat([-x2, x1], dim=-1)
    return torch.cat([xr * cos + rot * sin, xp], dim=-1)


class SwaMixer(nn.Module):
    """Sliding-window causal attention (MODEL_SPEC section 3). The fused projection is laid out per
    query group as [q heads of the group..., k, v] x head_size (for MHA: [n_head][q,k,v][hs])."""

    def __init__(self, cfg):
        super().__init__()
        s = cfg["swa"]
        d = cfg["n_embd"]
        self.nh, self.ng, self.hs = s["n_head"], s["n_query_groups"], s["head_size"]
        self.window = s["local_window"]
        self.n_rope = int(s["rotary_percentage"] * self.hs)
        self.base = s["rope_base"]
        self.attn = nn.Linear(d, (self.nh + 2 * self.ng) * self.hs, bias=False)
        self.proj = nn.Linear(self.nh * self.hs, d, bias=False)

    def forward(self, u):
        Bsz, T, _ = u.shape
        per = self.nh // self.ng
        qkv = self.attn(u).view(Bsz, T, self.ng, per + 2, self.hs)
        q = qkv[:, :, :, :per].reshape(Bsz, T, self.nh, self.hs).transpose(1, 2)
        k = qkv[:, :, :, per].transpose(1, 2)
        v = qkv[:, :, :, per + 1].transpose(1, 2)
        cos, sin = rope_cache(T, self.n_rope, self.base, u.device, u.dtype)
        q, k = apply_rope(q, cos, sin), apply_rope(k, cos, sin)
        if per > 1:
            k = k.repeat_interleave(per, dim=1)
            v = v.repeat_interleave(per, dim=1)
        t = torch.arange(T, device=u.device)
        allowed = (t[None, :] <= t[:, None]) & (t[:, None] - t[None, :] < self.window)  # [q, k]
        if hasattr(F, "scaled_dot_product_attention"):
            y = F.scaled_dot_product_attention(q, k, v, attn_mask=allowed)
        else:
            att = (q @ k.transpose(-1, -2)) * (self.hs ** -0.5)
            att = att.masked_fill(~allowed, float("-inf")).softmax(-1)
            y = att @ v
        return self.proj(y.transpose(1, 2).reshape(Bsz, T, self.nh * self.hs))


class SwiGLU(nn.Module):
    def __init__(self, d, inter):
        super().__init__()
        self.w1 = nn.Linear(d, inter, bias=False)
        self.w2 = nn.Linear(d, inter, bias=False)
        self.w3 = nn.Linear(inter, d, bias=False)

    def forward(self, x):
        return self.w3(F.silu(self.w1(x)) * self.w2(x))


class Mlp(nn.Module):
    def __init__(self, d, inter):
        super().__init__()
        self.swiglu = SwiGLU(d, inter)

    def forward(self, x):
        return self.swiglu(x)


class Block(nn.Module):
    def __init__(self, cfg, layer, chunk):
        super().__init__()
        self.is_gdn2 = cfg["gdn2_per_layer"] > 0 and layer % cfg["gdn2_per_layer"] == 0
        self.norm_1 = RMSNorm(cfg["n_embd"], cfg["norm_eps"])
        self.attn = Gdn2Mixer(cfg, chunk) if self.is_gdn2 else SwaMixer(cfg)
        self.norm_2 = RMSNorm(cfg["n_embd"], cfg["norm_eps"])
        self.mlp = Mlp(cfg["n_embd"], cfg["intermediate_size"])

    def forward(self, x, serial=False):
        n = self.norm_1(x)
        x = x + (self.attn(n, serial=serial) if self.is_gdn2 else self.attn(n))
        return x + self.mlp(self.norm_2(x))


class Transformer(nn.Module):
    def __init__(self, cfg, chunk):
        super().__init__()
        self.wte = nn.Embedding(cfg["padded_vocab_size"], cfg["n_embd"])
        self.h = nn.ModuleList([Block(cfg, i, chunk) for i in range(cfg["n_layer"])])
        self.ln_f = RMSNorm(cfg["n_embd"], cfg["norm_eps"])


class Gdn2LM(nn.Module):
    """The whole model (MODEL_SPEC section 3). cfg: a normalised config dict (tools/gdn2_config.py)."""

    def __init__(self, cfg, chunk=16):
        super().__init__()
        self.cfg = cfg
        self.transformer = Transformer(cfg, chunk)
        self.lm_head = nn.Linear(cfg["n_embd"], cfg["padded_vocab_size"], bias=False)

    def init_weights(self, seed=0):
        gen = torch.Generator().manual_seed(seed)
        out_std = 0.02 / math.sqrt(2 * self.cfg["n_layer"])
        for name, p in self.named_parameters():
            with torch.no_grad():
                if name.endswith("norm_1.weight") or name.endswith("norm_2.weight") \
                        or name.endswith("ln_f.weight") or name.endswith("o_norm.weight"):
                    p.fill_(1.0)
                elif name.endswith("conv1d.weight"):
                    bound = 1.0 / math.sqrt(p.shape[-1])
                    p.uniform_(-bound, bound, generator=gen)
                elif name.endswith(".bias"):
                    p.zero_()
                elif name.endswith("o_proj.weight") or name.endswith("proj.weight") \
                        and ".attn.proj" in name or name.endswith("w3.weight"):
                    p.normal_(0.0, out_std, generator=gen)
                elif p.dim() == 2:
                    p.normal_(0.0, 0.02, generator=gen)
        for blk in self.transformer.h:
            if blk.is_gdn2:
                blk.attn.init_gates(gen)

    def forward(self, idx, serial=False):
        x = self.transformer.wte(idx)
        for blk in self.transformer.h:
            x = blk(x, serial=serial)
        return self.lm_head(self.transformer.ln_f(x))


def nll(logits, targets):
    """Mean negative log-likelihood in nats over all positions; softmax over the padded vocabulary."""
    return F.cross_entropy(logits.reshape(-1, logits.shape[-1]).float(), targets.reshape(-1))
