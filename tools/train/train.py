#!/usr/bin/env python3
"""Trains a small byte-level GDN-2 language model (pure or hybrid) on the corpus that
prepare_kjv.py writes, on one GPU (or the CPU, slowly), for a fixed wall-clock budget.

Samples: random windows of --seq bytes from the training split, each preceded by <bos> (id 256);
the loss is the mean NLL of every byte of the window (softmax over the padded vocabulary).
Learning rate: linear warm-up, then cosine decay to 10%, both as a function of elapsed time over
--time-budget (so the schedule ends when the budget does). The held-out split is evaluated every
--eval-every seconds; the weights with the lowest held-out loss are the ones written.

Held-out evaluation: the held-out bytes cut into consecutive windows of --seq bytes (the last one
shorter), each preceded by <bos>; mean NLL over all held-out bytes, and bits per byte = NLL / ln 2.

Outputs (in --out): weights.npz (or weights.0.npz, weights.1.npz when larger than --shard-mb),
float32 arrays named as in MODEL_SPEC section 5; config.json (the model config); train_log.json
(settings, device, steps, time, loss curve, held-out history and final numbers).

Usage: train.py --data DIR --out DIR [--time-budget 300] [--device cuda] ...
"""

import argparse
import json
import math
import os
import sys
import time

import numpy as np
import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

import gdn2_config  # noqa: E402  (tools/)
from gdn2_torch import Gdn2LM, nll  # noqa: E402

BOS = 256

# The embedded default model: hybrid (GDN-2 on even layers, SWA on odd), byte vocabulary.
DEFAULT_CONFIG = {
    "vocab_size": 258,
    "padding_multiple": 64,
    "n_layer": 6,
    "n_embd": 256,
    "intermediate_size": 768,
    "norm_eps": 1e-5,
    "gdn2_per_layer": 2,
    "gdn2": {"num_heads": 4, "num_v_heads": 4, "head_k_dim": 64, "head_v_dim": 64,
             "conv_size": 4, "gate_act": "silu", "allow_neg_eigval": False},
    "swa": {"n_head": 4, "n_query_groups": 4, "head_size": 64, "local_window": 256,
            "rotary_percentage": 1.0, "rope_base": 10000.0},
    "bos_token_id": 256,
    "eos_token_id": 257,
    "tokenizer": {"type": "byte"},
    "max_context": 1 << 20,
}


def heldout_windows(data, seq):
    """[(inputs, targets)] of the held-out evaluation (see module docstring), as int64 arrays."""
    out = []
    for s in range(0, len(data), seq):
        w = data[s:s + seq].astype(np.int64)
        out.append((np.concatenate([[BOS], w[:-1]]), w))
    return out


@torch.no_grad()
def evaluate(model, windows, device, batch):
    """Mean NLL (nats per byte) over all target bytes of `windows`."""
    model.eval()
    total, count = 0.0, 0
    by_len = {}
    for x, y in windows:
        by_len.setdefault(len(x), []).append((x, y))
    for group in by_len.values():
        for i in range(0, len(group), batch):
            xs = torch.from_numpy(np.stack([g[0] for g in group[i:i + batch]])).to(device)
            ys = torch.from_numpy(np.stack([g[1] for g in group[i:i + batch]])).to(device)
            logits = model(xs)
            lp = torch.log_softmax(logits.double(), dim=-1)
            total += -lp.gather(-1, ys[..., None]).sum().item()
            count += ys.numel()
    model.train()
    return total / count


def unigram_baselines(train, held):
    """Bits per byte of two unigram models on the held-out bytes: add-one-smoothed training-split
    frequencies (a real baseline), and the held-out split's own frequencies (its entropy)."""
    c = np.bincount(train, minlength=256).astype(np.float64) + 1.0
    p = c / c.sum()
    h = np.bincount(held, minlength=256).astype(np.float64)
    cross = -(h * np.log2(p)).sum() / h.sum()
    ph = h / h.sum()
    nz = ph > 0
    ent = -(ph[nz] * np.log2(ph[nz])).sum()
    return float(cross), float(ent)


def save_weights(model, out, shard_mb):
    sd = {k: v.detach().float().cpu().numpy() for k, v in model.state_dict().items()}
    total = sum(a.nbytes for a in sd.values())
    if total <= shard_mb * 2**20:
        np.savez(os.path.join(out, "weights.npz"), **sd)
        return ["weights.npz"]
    shards, cur, size = [], {}, 0
    for k, a in sd.items():
        if cur and size + a.nbytes > shard_mb * 2**20:
            shards.append(cur)
            cur, size = {}, 0
        cur[k] = a
        size += a.nbytes
    shards.append(cur)
    names = []
    for i, s in enumerate(shards):
        names.append(f"weights.{i}.npz")
        np.savez(os.path.join(out, names[-1]), **s)
    return names


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", required=True, help="folder with train.bin and heldout.bin")
    ap.add_argument("--out", required=True)
    ap.add_argument("--config", default="", help="config.json to train (default: the embedded default)")
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--time-budget", type=float, default=300.0, help="training seconds")
    ap.add_argument("--max-steps", type=int, default=0, help="stop after this many steps (0: none)")
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--seq", type=int, default=512)
    ap.add_argument("--chunk", type=int, default=16, help="chunk length of the GDN-2 scan")
    ap.add_argument("--lr", type=float, default=2e-3)
    ap.add_argument("--min-lr-frac", type=float, default=0.1)
    ap.add_argument("--warmup-frac", type=float, default=0.03)
    ap.add_argument("--weight-decay", type=float, default=0.1)
    ap.add_argument("--eval-every", type=float, default=30.0, help="seconds between held-out evals")
    ap.add_argument("--eval-batch", type=int, default=64)
    ap.add_argument("--eval-max-bytes", type=int, default=0, help="periodic evals use this prefix (0: all)")
    ap.add_argument("--seed", type=int, default=1234)
    ap.add_argument("--threads", type=int, default=1, help="CPU threads (CPU runs)")
    ap.add_argument("--shard-mb", type=float, default=15.0, help="max size of one weights file")
    args = ap.parse_args()

    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    dev = torch.device(args.device)
    if dev.type == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
    if args.config:
        with open(args.config) as f:
            raw = json.load(f)
    else:
        raw = DEFAULT_CONFIG
    cfg = gdn2_config.normalize(raw)
    os.makedirs(args.out, exist_ok=True)
    with open(os.path.join(args.out, "config.json"), "w") as f:
        json.dump(raw, f, indent=2)

    train = np.fromfile(os.path.join(args.data, "train.bin"), dtype=np.uint8)
    held = np.fromfile(os.path.join(args.data, "heldout.bin"), dtype=np.uint8)
    uni_cross, uni_ent = unigram_baselines(train, held)
    windows = heldout_windows(held, args.seq)
    eval_windows = windows if not args.eval_max_bytes else \
        heldout_windows(held[:args.eval_max_bytes], args.seq)

    model = Gdn2LM(cfg, chunk=args.chunk)
    model.init_weights(args.seed)
    model.to(dev)
    n_params = sum(p.numel() for p in model.parameters())
    decay = [p for n, p in model.named_parameters() if p.dim() == 2]
    no_decay = [p for n, p in model.named_parameters() if p.dim() != 2]
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": args.weight_decay},
                             {"params": no_decay, "weight_decay": 0.0}],
                            lr=args.lr, betas=(0.9, 0.95), eps=1e-8)
    train_dev = torch.from_numpy(train.astype(np.int64)).to(dev)
    gen = torch.Generator(device=dev).manual_seed(args.seed)
    ar = torch.arange(args.seq, device=dev)
    bos_col = torch.full((args.batch, 1), BOS, dtype=torch.int64, device=dev)

    def lr_at(frac):
        if frac < args.warmup_frac:
            return args.lr * max(frac / args.warmup_frac, 0.01)
        p = min((frac - args.warmup_frac) / (1 - args.warmup_frac), 1.0)
        return args.lr * (args.min_lr_frac + (1 - args.min_lr_frac) * 0.5 * (1 + math.cos(math.pi * p)))

    print(f"params {n_params}  device {dev}  train {len(train)} B  held-out {len(held)} B  "
          f"unigram {uni_cross:.4f} bpb", flush=True)
    log = {"train_loss": [], "heldout": []}
    best = (float("inf"), None, 0)
    step, t0 = 0, time.time()
    train_time = 0.0
    next_eval = args.eval_every
    while True:
        if dev.type == "cuda":
            torch.cuda.synchronize()
        elapsed = train_time + (time.time() - t0)
        if elapsed >= args.time_budget or (args.max_steps and step >= args.max_steps):
            break
        if elapsed >= next_eval:
            # Evaluation time does not count against the training budget.
            train_time, pause = elapsed, time.time()
            h = evaluate(model, eval_windows, dev, args.eval_batch)
            log["heldout"].append({"step": step, "time_s": round(elapsed, 1), "nll": h,
                                   "bpb": h / math.log(2)})
            print(f"step {step:6d}  t {elapsed:6.1f}s  held-out {h:.4f} nats  {h / math.log(2):.4f} bpb",
                  flush=True)
            if h < best[0]:
                best = (h, {k: v.detach().clone() for k, v in model.state_dict().items()}, step)
                save_weights(model, args.out, args.shard_mb)  # kept if the run is cut short
            next_eval += args.eval_every
            t0 = time.time()
        for gp in opt.param_groups:
            gp["lr"] = lr_at(elapsed / args.time_budget)
        off = torch.randint(0, len(train) - args.seq, (args.batch, 1), device=dev, generator=gen)
        y = train_dev[off + ar]
        x = torch.cat([bos_col, y[:, :-1]], dim=1)
        loss = nll(model(x), y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        step += 1
        if step % 50 == 0 or step <= 5:
            lv = loss.item()
            log["train_loss"].append({"step": step, "time_s": round(elapsed, 1), "nll": lv})
            print(f"step {step:6d}  t {elapsed:6.1f}s  loss {lv:.4f}  lr {opt.param_groups[0]['lr']:.2e}",
                  flush=True)
    train_time = elapsed

    # Final: the last weights against the best periodic ones, on the whole held-out split in fp32.
    if dev.type == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = False
        torch.backends.cudnn.allow_tf32 = False
    last = evaluate(model, windows, dev, args.eval_batch)
    final_step = step
    if best[1] is not None and best[0] < last and not args.eval_max_bytes:
        model.load_state_dict(best[1])
        final, final_step = best[0], best[2]
        final = evaluate(model, windows, dev, args.eval_batch)
    else:
        final = last
    files = save_weights(model, args.out, args.shard_mb)
    log.update({
        "settings": vars(args),
        "config": raw,
        "params": n_params,
        "device": torch.cuda.get_device_name(dev) if dev.type == "cuda" else "cpu",
        "torch": torch.__version__,
        "steps": step,
        "weights_step": final_step,
        "tokens_seen": step * args.batch * args.seq,
        "train_time_s": round(train_time, 1),
        "heldout_bytes": int(len(held)),
        "heldout_nll_last": last,
        "heldout_nll": final,
        "heldout_bpb": final / math.log(2),
        "heldout_ppl_per_byte": math.exp(final),
        "unigram_bpb_train_freqs": uni_cross,
        "unigram_bpb_heldout_entropy": uni_ent,
        "weights_files": files,
    })
    with open(os.path.join(args.out, "train_log.json"), "w") as f:
        json.dump(log, f, indent=1)
    print(f"done: {step} steps in {train_time:.1f}s; held-out {final:.4f} nats/byte = "
          f"{final / math.log(2):.4f} bits/byte (unigram {uni_cross:.4f})", flush=True)


if __name__ == "__main__":
    main()
