#!/usr/bin/env python3
"""Generates a model directory (config.json + model.safetensors) with random weights whose ranges
resemble a trained GDN-2 / hybrid model, for any config (MODEL_SPEC sections 4-5).

    tools/make_model.py --preset tiny-hybrid --seed 1234 --out models/default
    tools/make_model.py --preset gdn2_1.3B --dtype bf16 --out /tmp/gdn2_1.3B
    tools/make_model.py --config my_config.json --out /tmp/m

Every tensor comes from its own generator seeded by (seed, tensor name), so the weights do not
depend on the order of generation, and the file is written tensor by tensor (peak memory is a
few times the largest tensor, ~250 MB for the 1.3B configs).

Initialisation (fan_in = number of input features):
  input projections (q/k/v/b/w, f_proj.0, g_proj.0, attn, mlp w1/w2)  N(0, 1/fan_in)
  output projections (o_proj, proj, mlp w3)      N(0, 1/fan_in) / sqrt(2 n_layer)
  f_proj.1                                       N(0, 1/fan_in): f ~ N(0, 1)
  g_proj.1 weight / bias                         N(0, 1/fan_in) / N(0, 0.1^2)
  A_log                                          log(U(1, 16))
  dt_bias                                        softplus^-1(dt), dt log-uniform in [1e-3, 0.1]
                                                 (per-token decay exp(g) roughly exp(-5) .. 1)
  conv weights [C,1,W]                           N(0, 0.25/W), plus 0.5 on the current-token tap
  RMSNorm / o_norm gains                         1 + N(0, 0.05^2)
  wte                                            N(0, 0.05^2)
  lm_head                                        N(0, 9/n_embd): logits with std ~3
Padded vocabulary rows are random like the others (serving must mask them).
"""

import argparse
import json
import math
import os
import shutil
import sys
import time
import zlib

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import gdn2_config  # noqa: E402
from safetensors_io import SafetensorsWriter  # noqa: E402


def _rng(seed, name):
    return np.random.default_rng([int(seed), zlib.crc32(name.encode("utf-8"))])


def _normal(rng, shape, std):
    a = rng.standard_normal(shape, dtype=np.float32)
    a *= np.float32(std)
    return a


def init_tensor(cfg, name, shape, seed):
    """float32 array for tensor `name` of `shape` (see the file comment for the distributions)."""
    rng = _rng(seed, name)
    n_layer = cfg["n_layer"]
    fan_in = shape[-1] if len(shape) == 2 else None
    out_scale = 1.0 / math.sqrt(2.0 * n_layer)
    base = name.split(".", 3)[-1] if name.startswith("transformer.h.") else name

    if base.endswith(("norm_1.weight", "norm_2.weight", "o_norm.weight")) or base == "transformer.ln_f.weight":
        a = _normal(rng, shape, 0.05)
        a += np.float32(1.0)
        return a
    if base == "transformer.wte.weight":
        return _normal(rng, shape, 0.05)
    if base == "lm_head.weight":
        return _normal(rng, shape, 3.0 / math.sqrt(fan_in))
    if base == "attn.A_log":
        return np.log(rng.uniform(1.0, 16.0, size=shape)).astype(np.float32)
    if base == "attn.dt_bias":
        dt = np.exp(rng.uniform(math.log(1e-3), math.log(0.1), size=shape))
        return (dt + np.log(-np.expm1(-dt))).astype(np.float32)  # inverse softplus
    if base.endswith("conv1d.weight"):
        w = shape[-1]
        a = _normal(rng, shape, 0.5 / math.sqrt(w))
        a[..., w - 1] += np.float32(0.5)
        return a
    if base == "attn.g_proj.1.bias":
        return _normal(rng, shape, 0.1)
    if base == "attn.f_proj.1.weight":
        return _normal(rng, shape, 1.0 / math.sqrt(fan_in))
    if base in ("attn.o_proj.weight", "attn.proj.weight", "mlp.swiglu.w3.weight"):
        return _normal(rng, shape, out_scale / math.sqrt(fan_in))
    if fan_in is not None:
        return _normal(rng, shape, 1.0 / math.sqrt(fan_in))
    raise ValueError(f"no initialisation rule for tensor {name!r}")


def generate(cfg, seed):
    """Yields (name, float32 array) for every tensor of the model, in file order."""
    for name, shape in gdn2_config.tensor_shapes(cfg):
        yield name, init_tensor(cfg, name, shape, seed)


def write_model_dir(cfg, out_dir, dtype="f32", seed=0, tokenizer_file=None, tensors=None,
                    metadata=None):
    """Writes config.json and model.safetensors into out_dir (created if needed).

    `tensors`: an iterable of (name, array) to write instead of random weights (used by the
    converter); it must produce exactly the names of gdn2_config.tensor_shapes(cfg).
    The safetensors file is written to a temporary name and renamed when complete.
    """
    if dtype not in ("f32", "bf16"):
        raise ValueError(f"--dtype must be f32 or bf16, got {dtype!r}")
    st_dtype = "F32" if dtype == "f32" else "BF16"
    os.makedirs(out_dir, exist_ok=True)
    shapes = gdn2_config.tensor_shapes(cfg)
    specs = [(n, gdn2_config.storage_dtype(n, st_dtype), s) for n, s in shapes]
    meta = {"format": "pt"}
    meta.update(metadata or {})
    final = os.path.join(out_dir, "model.safetensors")
    tmp = final + ".partial"
    source = tensors if tensors is not None else generate(cfg, seed)
    with SafetensorsWriter(tmp, specs, meta) as w:
        for name, array in source:
            w.write(name, array)
    if tokenizer_file:
        shutil.copyfile(tokenizer_file, os.path.join(out_dir, cfg["tokenizer"]["file"]))
    gdn2_config.save(cfg, os.path.join(out_dir, "config.json"))
    os.replace(tmp, final)


def load_config_arg(args):
    if args.config:
        return gdn2_config.load(args.config)
    return gdn2_config.preset(args.preset)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--preset", choices=sorted(gdn2_config.PRESETS))
    src.add_argument("--config", help="a config.json (schema of engine/model_config.h)")
    p.add_argument("--out", required=True, help="output model directory")
    p.add_argument("--dtype", choices=("f32", "bf16"), default="f32")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--tokenizer", help="SentencePiece model file to copy into the directory")
    p.add_argument("--skip-if-present", action="store_true",
                   help="do nothing if OUT already holds this config and a complete model.safetensors")
    args = p.parse_args(argv)
    try:
        cfg = load_config_arg(args)
    except gdn2_config.ConfigError as e:
        p.error(str(e))
    if args.skip_if_present and is_present(args.out, cfg, args.dtype):
        print(f"{args.out}: already present, skipped")
        return 0
    t0 = time.time()
    write_model_dir(cfg, args.out, args.dtype, args.seed, args.tokenizer,
                    metadata={"seed": str(args.seed), "dtype": args.dtype})
    size = os.path.getsize(os.path.join(args.out, "model.safetensors"))
    print(f"{args.out}: {gdn2_config.non_embedding_params(cfg):,} non-embedding parameters, "
          f"{size / 1e6:.1f} MB, {time.time() - t0:.1f} s")
    return 0


def is_present(out_dir, cfg, dtype):
    """True when out_dir/config.json equals cfg and model.safetensors is complete for it in dtype."""
    from safetensors_io import SafetensorsError, SafetensorsFile
    try:
        with open(os.path.join(out_dir, "config.json"), encoding="utf-8") as f:
            if gdn2_config.normalize(json.load(f)) != cfg:
                return False
        st = SafetensorsFile(os.path.join(out_dir, "model.safetensors"))
    except (OSError, ValueError, SafetensorsError):
        return False
    want = dict(gdn2_config.tensor_shapes(cfg))
    st_dtype = "F32" if dtype == "f32" else "BF16"
    return set(st.keys()) == set(want) and all(
        st.shape(n) == tuple(s) and st.dtype(n) == gdn2_config.storage_dtype(n, st_dtype)
        for n, s in want.items())


if __name__ == "__main__":
    sys.exit(main())
