#!/usr/bin/env python3
"""Writes golden test cases for the C++ backends: small random models and the float64 reference
logits of one prefill of a prompt from the zero state.

    tools/golden.py --out build/golden [--case hybrid ...]

One subdirectory per case:
    config.json, model.safetensors (float32)   the model (a normal model directory)
    golden.json   {"prompt_tokens": [...], "logits_shape": [T, padded_vocab],
                   "logits_file": "logits.f64", "description": "..."}
    logits.f64    raw little-endian float64, row-major [T, padded_vocab]: logits of every position

Cases (each a fraction of a second of NumPy):
    pure_grouped          all GDN-2, H=2, HV=4 (grouped value heads), dk=16, dv=32, SiLU gate, conv 4
    pure_negeig_sigmoid   all GDN-2, allow_neg_eigval, sigmoid gate, HV=H
    hybrid                GDN-2/SWA alternating, 4 layers, SWA 4 heads in 2 query groups, head 16,
                          window 8, rotary_percentage 0.5; T=40 crosses the window many times
    hybrid_sigmoid_conv2  hybrid with conv_size 2, sigmoid gate, allow_neg_eigval
    converted             a hybrid model saved as a training checkpoint (torch pickle) and turned into
                          a model directory by convert_checkpoint.py; logits from the converted weights
Everything is deterministic (fixed seeds): rerunning gives identical files.
"""

import argparse
import copy
import json
import os
import shutil
import sys
import tempfile
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import gdn2_config  # noqa: E402
import make_model  # noqa: E402
from gdn2_reference import Gdn2Reference  # noqa: E402

_BYTE = {"vocab_size": 258, "padding_multiple": 64, "bos_token_id": 256, "eos_token_id": 257,
         "tokenizer": {"type": "byte", "file": "tokenizer.model"}}


def _cfg(**kw):
    raw = copy.deepcopy(_BYTE)
    raw.update(kw)
    return gdn2_config.normalize(raw)


# name -> (config, prompt length, seed, description)
CASES = {
    "pure_grouped": (
        _cfg(n_layer=2, n_embd=64, intermediate_size=160, gdn2_per_layer=1,
             gdn2={"num_heads": 2, "num_v_heads": 4, "head_k_dim": 16, "head_v_dim": 32,
                   "conv_size": 4, "gate_act": "silu", "allow_neg_eigval": False}),
        32, 101, "all GDN-2, grouped value heads (H=2, HV=4), dk 16, dv 32, SiLU gate, conv 4"),
    "pure_negeig_sigmoid": (
        _cfg(n_layer=2, n_embd=64, intermediate_size=160, gdn2_per_layer=1,
             gdn2={"num_heads": 2, "num_v_heads": 2, "head_k_dim": 32, "head_v_dim": 16,
                   "conv_size": 4, "gate_act": "sigmoid", "allow_neg_eigval": True}),
        28, 102, "all GDN-2, HV=H=2, dk 32, dv 16, sigmoid gate, allow_neg_eigval"),
    "hybrid": (
        _cfg(n_layer=4, n_embd=64, intermediate_size=176, gdn2_per_layer=2,
             gdn2={"num_heads": 2, "num_v_heads": 4, "head_k_dim": 16, "head_v_dim": 16,
                   "conv_size": 4, "gate_act": "silu", "allow_neg_eigval": False},
             swa={"n_head": 4, "n_query_groups": 2, "head_size": 16, "local_window": 8,
                  "rotary_percentage": 0.5, "rope_base": 10000.0}),
        40, 103, "GDN-2 on even layers, SWA (4 heads, 2 query groups, head 16, window 8, "
                 "rotary 0.5) on odd layers"),
    "hybrid_sigmoid_conv2": (
        _cfg(n_layer=4, n_embd=64, intermediate_size=128, gdn2_per_layer=2,
             gdn2={"num_heads": 4, "num_v_heads": 4, "head_k_dim": 16, "head_v_dim": 16,
                   "conv_size": 2, "gate_act": "sigmoid", "allow_neg_eigval": True},
             swa={"n_head": 2, "n_query_groups": 2, "head_size": 32, "local_window": 16,
                  "rotary_percentage": 1.0, "rope_base": 10000.0}),
        36, 104, "hybrid, conv_size 2, sigmoid gate, allow_neg_eigval, SWA 2 heads x 32, window 16"),
    "converted": (
        _cfg(n_layer=4, n_embd=64, intermediate_size=160, gdn2_per_layer=2,
             gdn2={"num_heads": 2, "num_v_heads": 2, "head_k_dim": 32, "head_v_dim": 16,
                   "conv_size": 4, "gate_act": "silu", "allow_neg_eigval": False},
             swa={"n_head": 4, "n_query_groups": 4, "head_size": 16, "local_window": 12,
                  "rotary_percentage": 1.0, "rope_base": 10000.0}),
        30, 105, "hybrid model converted from a torch training checkpoint by convert_checkpoint.py"),
}


def prompt_tokens(cfg, length, seed):
    """<bos> followed by random ids of the real vocabulary."""
    rng = np.random.default_rng(seed)
    body = rng.integers(0, cfg["vocab_size"], size=length - 1).tolist()
    return [cfg["bos_token_id"]] + body


def write_checkpoint(cfg, seed, path):
    """Saves make_model's random weights as a reference training checkpoint (torch pickle)."""
    import torch
    sd = {name: torch.from_numpy(np.ascontiguousarray(a)) for name, a in make_model.generate(cfg, seed)}
    # A training run's checkpoint carries more than the weights.
    torch.save({"model": sd, "iter_num": 1000, "step_count": 250}, path)


def make_case(name, out_root):
    cfg, length, seed, description = CASES[name]
    case_dir = os.path.join(out_root, name)
    if os.path.isdir(case_dir):
        shutil.rmtree(case_dir)
    if name == "converted":
        import convert_checkpoint
        with tempfile.TemporaryDirectory() as tmp:
            ckpt = os.path.join(tmp, "checkpoint.pth")
            write_checkpoint(cfg, seed, ckpt)
            s = cfg["swa"]
            args = convert_checkpoint.build_parser().parse_args([
                "--checkpoint", ckpt, "--out", case_dir, "--dtype", "f32", "--tokenizer-type", "byte",
                "--head-size", str(s["head_size"]), "--local-window", str(s["local_window"]),
                "--rotary-percentage", str(s["rotary_percentage"]),
                "--gate-act", cfg["gdn2"]["gate_act"]])
            converted_cfg = convert_checkpoint.convert(ckpt, case_dir, args)
        if converted_cfg != cfg:
            raise RuntimeError(f"converted config differs from the source config:\n{converted_cfg}\n{cfg}")
    else:
        make_model.write_model_dir(cfg, case_dir, "f32", seed, metadata={"seed": str(seed)})
    model = Gdn2Reference.from_dir(case_dir)  # logits from the files' weights
    tokens = prompt_tokens(cfg, length, seed)
    logits = model.forward(tokens, model.new_state())
    logits.astype("<f8").tofile(os.path.join(case_dir, "logits.f64"))
    with open(os.path.join(case_dir, "golden.json"), "w", encoding="utf-8") as f:
        json.dump({"prompt_tokens": tokens, "logits_shape": list(logits.shape),
                   "logits_file": "logits.f64", "description": description}, f, indent=1)
        f.write("\n")
    return logits


def main(argv=None):
    p = argparse.ArgumentParser(description="Write golden logits of small random models.")
    p.add_argument("--out", required=True, help="output directory (one subdirectory per case)")
    p.add_argument("--case", action="append", choices=sorted(CASES), help="only these cases")
    args = p.parse_args(argv)
    os.makedirs(args.out, exist_ok=True)
    for name in args.case or list(CASES):
        t0 = time.time()
        logits = make_case(name, args.out)
        print(f"{name}: logits {list(logits.shape)}, {time.time() - t0:.2f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
