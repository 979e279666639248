#!/usr/bin/env python3
"""Turns a train.py run into a model directory and the held-out check data of tests/train.

Steps:
  1. weights*.npz of the run -> a reference-layout checkpoint {"model": state_dict} (ckpt.pth in
     --work) -> tools/convert_checkpoint.py (float32) -> --out; the converted config must equal the
     trained one.
  2. The held-out check slice: the first --slice-bytes bytes of the held-out split, written to
     --slice-out; its mean NLL under the trained model, computed by train.py's evaluation code in
     float64 (one window: <bos> then the slice), goes to --slice-json with the model's SHA-256.
  3. Greedy continuations of a few prompts (prompt preceded by <bos>), by the PyTorch model and
     the NumPy float64 reference (tools/gdn2_reference.py), which must agree; written to
     --samples-json for the model card and tests/train.

Usage: export_model.py --run DIR --data DIR --out models/default --work DIR
"""

import argparse
import glob
import hashlib
import json
import math
import os
import subprocess
import sys

import numpy as np
import torch

HERE = os.path.dirname(os.path.abspath(__file__))
TOOLS = os.path.join(HERE, "..")
sys.path.insert(0, HERE)
sys.path.insert(0, TOOLS)

import gdn2_config  # noqa: E402
from gdn2_reference import Gdn2Reference  # noqa: E402
from gdn2_torch import Gdn2LM  # noqa: E402
from train import BOS, evaluate  # noqa: E402

PROMPTS = ["In the beginning", "And the LORD said unto Moses,", "Blessed are the"]


def load_run_weights(run):
    files = sorted(glob.glob(os.path.join(run, "weights*.npz")))
    if not files:
        raise SystemExit(f"no weights*.npz in {run}")
    sd = {}
    for f in files:
        with np.load(f) as z:
            for k in z.files:
                sd[k] = torch.from_numpy(np.array(z[k], dtype=np.float32))
    return sd


def sha256(path):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def greedy_torch(model, prompt, n, vocab):
    ids = [BOS] + list(prompt.encode("ascii"))
    out = []
    with torch.no_grad():
        for _ in range(n):
            logits = model(torch.tensor([ids + out]))[0, -1, :vocab]
            out.append(int(torch.argmax(logits)))
    return out


def greedy_reference(ref, prompt, n, vocab):
    """Greedy ids (argmax over the real vocabulary) and the smallest top-1/top-2 logit gap seen."""
    st = ref.new_state()
    logits = ref.forward([BOS] + list(prompt.encode("ascii")), st)
    out, gap = [], float("inf")
    for _ in range(n):
        row = logits[-1, :vocab]
        top2 = np.sort(row)[-2:]
        gap = min(gap, float(top2[1] - top2[0]))
        out.append(int(np.argmax(row)))
        logits = ref.forward([out[-1]], st)
    return out, gap


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--run", required=True, help="train.py output folder")
    ap.add_argument("--data", required=True, help="prepare_kjv.py output folder")
    ap.add_argument("--out", required=True, help="model directory to write")
    ap.add_argument("--work", required=True, help="scratch folder (checkpoint)")
    ap.add_argument("--slice-bytes", type=int, default=1024)
    ap.add_argument("--slice-out", required=True)
    ap.add_argument("--slice-json", required=True)
    ap.add_argument("--samples-json", required=True)
    ap.add_argument("--greedy-tokens", type=int, default=64)
    args = ap.parse_args()
    torch.set_num_threads(1)

    with open(os.path.join(args.run, "config.json")) as f:
        raw = json.load(f)
    cfg = gdn2_config.normalize(raw)
    sd = load_run_weights(args.run)
    os.makedirs(args.work, exist_ok=True)
    ckpt = os.path.join(args.work, "ckpt.pth")
    torch.save({"model": sd, "config": raw}, ckpt)
    s, g = cfg["swa"], cfg["gdn2"]
    cmd = [sys.executable, os.path.join(TOOLS, "convert_checkpoint.py"), "--checkpoint", ckpt,
           "--out", args.out, "--dtype", "f32", "--tokenizer-type", "byte",
           "--vocab-size", str(cfg["vocab_size"]), "--padding-multiple", str(cfg["padding_multiple"]),
           "--norm-eps", repr(cfg["norm_eps"]), "--head-size", str(s["head_size"]),
           "--local-window", str(s["local_window"]), "--rotary-percentage", repr(s["rotary_percentage"]),
           "--rope-base", repr(s["rope_base"]), "--gate-act", g["gate_act"],
           "--bos-token-id", str(cfg["bos_token_id"]), "--eos-token-id", str(cfg["eos_token_id"]),
           "--max-context", str(cfg["max_context"])]
    if g["allow_neg_eigval"]:
        cmd.append("--allow-neg-eigval")
    subprocess.run(cmd, check=True)
    conv_cfg = gdn2_config.load(os.path.join(args.out, "config.json"))
    if conv_cfg != cfg:
        raise SystemExit(f"converted config differs from the trained one:\n{conv_cfg}\n{cfg}")
    model_sha = sha256(os.path.join(args.out, "model.safetensors"))

    # The training script's loss on the check slice, float64.
    model = Gdn2LM(cfg).double()
    model.load_state_dict({k: v.double() for k, v in sd.items()})
    model.eval()
    held = np.fromfile(os.path.join(args.data, "heldout.bin"), dtype=np.uint8)
    sl = held[:args.slice_bytes]
    os.makedirs(os.path.dirname(os.path.abspath(args.slice_out)), exist_ok=True)
    with open(args.slice_out, "wb") as f:
        f.write(sl.tobytes())
    x = np.concatenate([[BOS], sl[:-1].astype(np.int64)])
    nll64 = evaluate(model, [(x, sl.astype(np.int64))], "cpu", 1)
    model32 = Gdn2LM(cfg)
    model32.load_state_dict(sd)
    nll32 = evaluate(model32, [(x, sl.astype(np.int64))], "cpu", 1)
    slice_info = {
        "model_safetensors_sha256": model_sha,
        "slice_file": os.path.basename(args.slice_out),
        "slice_bytes": int(len(sl)),
        "slice_sha256": hashlib.sha256(sl.tobytes()).hexdigest(),
        "input": "<bos> followed by the slice without its last byte; targets: every slice byte",
        "mean_nll_nats": nll64,
        "mean_nll_nats_fp32": nll32,
        "bits_per_byte": nll64 / math.log(2),
    }
    with open(args.slice_json, "w") as f:
        json.dump(slice_info, f, indent=2)
    print(json.dumps(slice_info, indent=2))

    ref = Gdn2Reference.from_dir(args.out)
    samples = []
    for p in PROMPTS:
        t = greedy_torch(model, p, args.greedy_tokens, cfg["vocab_size"])
        r, gap = greedy_reference(ref, p, args.greedy_tokens, cfg["vocab_size"])
        if t != r:
            raise SystemExit(f"greedy continuation of {p!r}: PyTorch {t} != NumPy reference {r}")
        # A near-tie could flip between fp32 and float64; pinned continuations must not have one.
        if gap < 1e-3:
            raise SystemExit(f"greedy continuation of {p!r} has a near-tie (logit gap {gap:.2e})")
        samples.append({"prompt": p, "ids": t, "min_logit_gap": gap,
                        "text": bytes(i for i in t if i < 256).decode("ascii", "replace")})
        print(repr(p), "->", repr(samples[-1]["text"]), f"(min logit gap {gap:.3f})")
    with open(args.samples_json, "w") as f:
        json.dump({"model_safetensors_sha256": model_sha, "bos": True, "max_new_tokens": args.greedy_tokens,
                   "samples": samples}, f, indent=2)


if __name__ == "__main__":
    main()
