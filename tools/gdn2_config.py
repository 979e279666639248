"""Model configuration shared by the Python tools: the config.json schema of engine/model_config.h
(same keys, same defaults, same validation), the reference presets of MODEL_SPEC section 4, and
the list of tensor names and shapes of MODEL_SPEC section 5.

A config is a plain dict in the normalised form that `normalize` returns: every key present,
nested "gdn2" / "swa" / "tokenizer" objects filled with their defaults.
"""

import copy
import json

GDN2_DEFAULTS = {
    "num_heads": 16,
    "num_v_heads": None,  # = num_heads
    "head_k_dim": 128,
    "head_v_dim": 128,
    "conv_size": 4,
    "gate_act": "silu",
    "allow_neg_eigval": False,
}

SWA_DEFAULTS = {
    "n_head": 18,
    "n_query_groups": None,  # = n_head
    "head_size": 128,
    "local_window": 2048,
    "rotary_percentage": 1.0,
    "rope_base": 10000.0,
}

TOP_DEFAULTS = {
    "vocab_size": 32000,
    "padding_multiple": 64,
    "padded_vocab_size": None,  # derived
    "n_layer": 18,
    "n_embd": 2304,
    "intermediate_size": 6208,
    "norm_eps": 1e-5,
    "gdn2_per_layer": 1,
    "bos_token_id": 1,
    "eos_token_id": 2,
    "max_context": 1 << 20,
}

TOKENIZER_DEFAULTS = {"type": "sentencepiece", "file": "tokenizer.model"}

# Byte tokenizer of small models: ids 0-255 are bytes, then <bos>, <eos>.
BYTE_VOCAB_SIZE = 258
BYTE_BOS_ID = 256
BYTE_EOS_ID = 257


class ConfigError(ValueError):
    """config.json violates the schema; the message names the key."""


def round_up(x, m):
    return (x + m - 1) // m * m


def is_gdn2_layer(cfg, i):
    return cfg["gdn2_per_layer"] > 0 and i % cfg["gdn2_per_layer"] == 0


def num_gdn2_layers(cfg):
    return sum(1 for i in range(cfg["n_layer"]) if is_gdn2_layer(cfg, i))


def _int(obj, key, path):
    v = obj[key]
    if isinstance(v, bool) or not (isinstance(v, int) or (isinstance(v, float) and v == int(v))):
        raise ConfigError(f"config.json: {path}{key} must be an integer, got {v!r}")
    return int(v)


def _num(obj, key, path):
    v = obj[key]
    if isinstance(v, bool) or not isinstance(v, (int, float)):
        raise ConfigError(f"config.json: {path}{key} must be a number, got {v!r}")
    return float(v)


def normalize(raw):
    """Applies defaults and validates, like ModelConfig::FromJson. Returns a new dict."""
    if not isinstance(raw, dict):
        raise ConfigError("config.json: top level must be a JSON object")
    cfg = {}
    for k, d in TOP_DEFAULTS.items():
        if k in ("bos_token_id", "eos_token_id"):
            v = raw.get(k, d)
            cfg[k] = -1 if v is None else _int({k: v}, k, "")
        elif k == "norm_eps":
            cfg[k] = _num(raw, k, "") if k in raw else d
        elif k == "padded_vocab_size":
            continue
        else:
            cfg[k] = _int(raw, k, "") if k in raw else d
    want = round_up(cfg["vocab_size"], cfg["padding_multiple"]) if cfg["padding_multiple"] > 0 else None
    cfg["padded_vocab_size"] = _int(raw, "padded_vocab_size", "") if "padded_vocab_size" in raw else want

    n_gdn2 = num_gdn2_layers(cfg) if cfg["n_layer"] > 0 else 0
    any_swa = cfg["n_layer"] > 0 and n_gdn2 < cfg["n_layer"]
    if "gdn2" not in raw and n_gdn2 > 0:
        raise ConfigError(f"config.json: gdn2 is required: gdn2_per_layer ({cfg['gdn2_per_layer']}) "
                          "makes layer 0 a GDN-2 layer")
    if "swa" not in raw and any_swa:
        raise ConfigError(f"config.json: swa is required: gdn2_per_layer ({cfg['gdn2_per_layer']}) "
                          f"with n_layer ({cfg['n_layer']}) gives SWA layers")
    g_raw = raw.get("gdn2", {})
    s_raw = raw.get("swa", {})
    t_raw = raw.get("tokenizer", {})
    for name, obj in (("gdn2", g_raw), ("swa", s_raw), ("tokenizer", t_raw)):
        if not isinstance(obj, dict):
            raise ConfigError(f"config.json: {name} must be an object")
    g = {}
    for k, d in GDN2_DEFAULTS.items():
        if k == "gate_act":
            g[k] = g_raw.get(k, d)
        elif k == "allow_neg_eigval":
            g[k] = g_raw.get(k, d)
            if not isinstance(g[k], bool):
                raise ConfigError(f"config.json: gdn2.allow_neg_eigval must be true or false, got {g[k]!r}")
        elif k == "num_v_heads":
            g[k] = _int(g_raw, k, "gdn2.") if k in g_raw else g["num_heads"]
        else:
            g[k] = _int(g_raw, k, "gdn2.") if k in g_raw else d
    if g["gate_act"] not in ("silu", "sigmoid"):
        raise ConfigError(f'config.json: gdn2.gate_act must be "silu" or "sigmoid", got {g["gate_act"]!r}')
    s = {}
    for k, d in SWA_DEFAULTS.items():
        if k in ("rotary_percentage", "rope_base"):
            s[k] = _num(s_raw, k, "swa.") if k in s_raw else d
        elif k == "n_query_groups":
            s[k] = _int(s_raw, k, "swa.") if k in s_raw else s["n_head"]
        else:
            s[k] = _int(s_raw, k, "swa.") if k in s_raw else d
    t = dict(TOKENIZER_DEFAULTS)
    for k in ("type", "file"):
        if k in t_raw:
            if not isinstance(t_raw[k], str):
                raise ConfigError(f"config.json: tokenizer.{k} must be a string, got {t_raw[k]!r}")
            t[k] = t_raw[k]
    if t["type"] not in ("byte", "sentencepiece"):
        raise ConfigError(f'config.json: tokenizer.type must be "byte" or "sentencepiece", got {t["type"]!r}')
    cfg["gdn2"], cfg["swa"], cfg["tokenizer"] = g, s, t
    validate(cfg)
    return cfg


def validate(cfg):
    """The checks of ModelConfig::Validate."""
    def positive(v, name):
        if v < 1:
            raise ConfigError(f"config.json: {name} ({v}) must be >= 1")

    positive(cfg["vocab_size"], "vocab_size")
    positive(cfg["padding_multiple"], "padding_multiple")
    want = round_up(cfg["vocab_size"], cfg["padding_multiple"])
    if cfg["padded_vocab_size"] != want:
        raise ConfigError(f"config.json: padded_vocab_size ({cfg['padded_vocab_size']}) must equal "
                          f"vocab_size ({cfg['vocab_size']}) rounded up to padding_multiple "
                          f"({cfg['padding_multiple']}), i.e. {want}")
    for k in ("n_layer", "n_embd", "intermediate_size"):
        positive(cfg[k], k)
    if not cfg["norm_eps"] > 0:
        raise ConfigError(f"config.json: norm_eps ({cfg['norm_eps']}) must be > 0")
    if cfg["gdn2_per_layer"] < 0:
        raise ConfigError(f"config.json: gdn2_per_layer ({cfg['gdn2_per_layer']}) must be >= 0")
    if num_gdn2_layers(cfg) > 0:
        g = cfg["gdn2"]
        for k in ("num_heads", "num_v_heads", "head_k_dim", "head_v_dim", "conv_size"):
            positive(g[k], "gdn2." + k)
        if g["num_v_heads"] % g["num_heads"]:
            raise ConfigError(f"config.json: gdn2.num_v_heads ({g['num_v_heads']}) must be a multiple "
                              f"of gdn2.num_heads ({g['num_heads']})")
    if num_gdn2_layers(cfg) < cfg["n_layer"]:
        s = cfg["swa"]
        for k in ("n_head", "n_query_groups", "head_size", "local_window"):
            positive(s[k], "swa." + k)
        if s["n_head"] % s["n_query_groups"]:
            raise ConfigError(f"config.json: swa.n_head ({s['n_head']}) must be a multiple of "
                              f"swa.n_query_groups ({s['n_query_groups']})")
        if not 0.0 <= s["rotary_percentage"] <= 1.0:
            raise ConfigError(f"config.json: swa.rotary_percentage ({s['rotary_percentage']}) must be in [0, 1]")
        if rope_dims(cfg) % 2:
            raise ConfigError(f"config.json: swa.rotary_percentage ({s['rotary_percentage']}) * "
                              f"swa.head_size ({s['head_size']}) must give an even number of rotary "
                              f"dims, got {rope_dims(cfg)}")
        if not s["rope_base"] > 0:
            raise ConfigError(f"config.json: swa.rope_base ({s['rope_base']}) must be > 0")
    for k in ("bos_token_id", "eos_token_id"):
        if not -1 <= cfg[k] < cfg["vocab_size"]:
            raise ConfigError(f"config.json: {k} ({cfg[k]}) must be null or in [0, vocab_size "
                              f"({cfg['vocab_size']}))")
    if not cfg["tokenizer"]["file"]:
        raise ConfigError("config.json: tokenizer.file must not be empty")
    positive(cfg["max_context"], "max_context")


def rope_dims(cfg):
    s = cfg["swa"]
    return int(s["rotary_percentage"] * s["head_size"])


def key_dim(cfg):
    return cfg["gdn2"]["num_heads"] * cfg["gdn2"]["head_k_dim"]


def value_dim(cfg):
    return cfg["gdn2"]["num_v_heads"] * cfg["gdn2"]["head_v_dim"]


def to_json_dict(cfg):
    """The normalised config as written to config.json (null for absent bos/eos ids). The gdn2 /
    swa objects are written only when some layer uses that mixer."""
    out = {k: cfg[k] for k in ("vocab_size", "padding_multiple", "padded_vocab_size", "n_layer",
                               "n_embd", "intermediate_size", "norm_eps", "gdn2_per_layer")}
    if num_gdn2_layers(cfg) > 0:
        out["gdn2"] = dict(cfg["gdn2"])
    if num_gdn2_layers(cfg) < cfg["n_layer"]:
        out["swa"] = dict(cfg["swa"])
    out["bos_token_id"] = None if cfg["bos_token_id"] < 0 else cfg["bos_token_id"]
    out["eos_token_id"] = None if cfg["eos_token_id"] < 0 else cfg["eos_token_id"]
    out["tokenizer"] = dict(cfg["tokenizer"])
    out["max_context"] = cfg["max_context"]
    return out


def load(path):
    """Reads and normalises a config.json file."""
    with open(path, "r", encoding="utf-8") as f:
        try:
            raw = json.load(f)
        except json.JSONDecodeError as e:
            raise ConfigError(f"{path}: invalid JSON: {e}") from None
    try:
        return normalize(raw)
    except ConfigError as e:
        raise ConfigError(f"{path}: {e}") from None


def save(cfg, path):
    with open(path, "w", encoding="utf-8") as f:
        json.dump(to_json_dict(cfg), f, indent=2)
        f.write("\n")


# ---- presets (MODEL_SPEC section 4) ---------------------------------------------------------

_BYTE_TOKENIZER = {"vocab_size": BYTE_VOCAB_SIZE, "padding_multiple": 64,
                   "bos_token_id": BYTE_BOS_ID, "eos_token_id": BYTE_EOS_ID,
                   "tokenizer": {"type": "byte", "file": "tokenizer.model"}}

PRESETS = {
    # The embedded default model: hybrid so both mixers are exercised, grouped value heads.
    "tiny-hybrid": dict(_BYTE_TOKENIZER, **{
        "n_layer": 4, "n_embd": 128, "intermediate_size": 352, "gdn2_per_layer": 2,
        "gdn2": {"num_heads": 2, "num_v_heads": 4, "head_k_dim": 32, "head_v_dim": 32,
                 "conv_size": 4, "gate_act": "silu", "allow_neg_eigval": False},
        "swa": {"n_head": 4, "n_query_groups": 4, "head_size": 32, "local_window": 64,
                "rotary_percentage": 1.0, "rope_base": 10000.0},
        "max_context": 1 << 20,
    }),
    "gdn2_1.3B": {
        "vocab_size": 32000, "padding_multiple": 64, "n_layer": 18, "n_embd": 2304,
        "intermediate_size": 6208, "gdn2_per_layer": 1,
        "gdn2": {"num_heads": 16, "num_v_heads": 16, "head_k_dim": 128, "head_v_dim": 128,
                 "conv_size": 4, "gate_act": "silu", "allow_neg_eigval": False},
        "bos_token_id": 1, "eos_token_id": 2,
        "tokenizer": {"type": "sentencepiece", "file": "tokenizer.model"},
    },
    "swa_gdn2_1.3B": {
        "vocab_size": 32000, "padding_multiple": 64, "n_layer": 18, "n_embd": 2304,
        "intermediate_size": 6784, "gdn2_per_layer": 2,
        "gdn2": {"num_heads": 16, "num_v_heads": 16, "head_k_dim": 128, "head_v_dim": 128,
                 "conv_size": 4, "gate_act": "silu", "allow_neg_eigval": False},
        "swa": {"n_head": 18, "n_query_groups": 18, "head_size": 128, "local_window": 2048,
                "rotary_percentage": 1.0, "rope_base": 10000.0},
        "bos_token_id": 1, "eos_token_id": 2,
        "tokenizer": {"type": "sentencepiece", "file": "tokenizer.model"},
    },
}

# Non-embedding parameters (per-layer tensors only) of the reference configs, MODEL_SPEC section 4.
REFERENCE_NON_EMBEDDING_PARAMS = {"gdn2_1.3B": 1_302_638_112, "swa_gdn2_1.3B": 1_300_314_384}


def preset(name):
    if name not in PRESETS:
        raise ConfigError(f"unknown preset {name!r}; known: {', '.join(PRESETS)}")
    return normalize(copy.deepcopy(PRESETS[name]))


# ---- tensor names and shapes (MODEL_SPEC section 5) -----------------------------------------

def layer_tensor_shapes(cfg, i):
    """[(name, shape)] of layer i, in a fixed order."""
    d, inter = cfg["n_embd"], cfg["intermediate_size"]
    p = f"transformer.h.{i}."
    out = [(p + "norm_1.weight", (d,))]
    if is_gdn2_layer(cfg, i):
        g = cfg["gdn2"]
        kd, vd, dv, w = key_dim(cfg), value_dim(cfg), g["head_v_dim"], g["conv_size"]
        out += [
            (p + "attn.q_proj.weight", (kd, d)),
            (p + "attn.k_proj.weight", (kd, d)),
            (p + "attn.v_proj.weight", (vd, d)),
            (p + "attn.b_proj.weight", (kd, d)),
            (p + "attn.w_proj.weight", (vd, d)),
            (p + "attn.q_conv1d.weight", (kd, 1, w)),
            (p + "attn.k_conv1d.weight", (kd, 1, w)),
            (p + "attn.v_conv1d.weight", (vd, 1, w)),
            (p + "attn.f_proj.0.weight", (dv, d)),
            (p + "attn.f_proj.1.weight", (kd, dv)),
            (p + "attn.g_proj.0.weight", (dv, d)),
            (p + "attn.g_proj.1.weight", (vd, dv)),
            (p + "attn.g_proj.1.bias", (vd,)),
            (p + "attn.A_log", (g["num_heads"],)),
            (p + "attn.dt_bias", (kd,)),
            (p + "attn.o_norm.weight", (dv,)),
            (p + "attn.o_proj.weight", (d, vd)),
        ]
    else:
        s = cfg["swa"]
        out += [
            (p + "attn.attn.weight", ((s["n_head"] + 2 * s["n_query_groups"]) * s["head_size"], d)),
            (p + "attn.proj.weight", (d, s["n_head"] * s["head_size"])),
        ]
    out += [
        (p + "norm_2.weight", (d,)),
        (p + "mlp.swiglu.w1.weight", (inter, d)),
        (p + "mlp.swiglu.w2.weight", (inter, d)),
        (p + "mlp.swiglu.w3.weight", (d, inter)),
    ]
    return out


def tensor_shapes(cfg):
    """[(name, shape)] of the whole model, embedding first, head last."""
    d, pv = cfg["n_embd"], cfg["padded_vocab_size"]
    out = [("transformer.wte.weight", (pv, d))]
    for i in range(cfg["n_layer"]):
        out += layer_tensor_shapes(cfg, i)
    out += [("transformer.ln_f.weight", (d,)), ("lm_head.weight", (pv, d))]
    return out


# Tensors kept in float32 whatever the file's dtype (they are fp32 in the reference checkpoints).
FP32_ALWAYS_SUFFIXES = ("attn.A_log", "attn.dt_bias")


def storage_dtype(name, dtype):
    """The safetensors dtype a tensor is stored in for a model written as `dtype` (F32 | BF16)."""
    return "F32" if name.endswith(FP32_ALWAYS_SUFFIXES) else dtype


def non_embedding_params(cfg):
    """Sum over the per-layer tensors (wte, lm_head and ln_f excluded)."""
    n = 0
    for i in range(cfg["n_layer"]):
        for _, shape in layer_tensor_shapes(cfg, i):
            c = 1
            for x in shape:
                c *= x
            n += c
    return n
