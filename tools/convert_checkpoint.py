#!/usr/bin/env python3
"""Converts a reference training checkpoint (a torch pickle holding {"model": state_dict, ...})
into a deltaserve model directory: config.json + model.safetensors (+ tokenizer.model).

    tools/convert_checkpoint.py --checkpoint ckpt.pth --out models/gdn2_1.3B \\
        --tokenizer tokenizer.model --dtype bf16

The config is inferred from the tensor shapes where they determine it: n_layer, n_embd,
padded vocabulary, intermediate_size, which layers are GDN-2 and which SWA (hence
gdn2_per_layer), GDN-2 key/value heads and widths (A_log has one entry per key head, o_norm one
per value channel of a head), conv width, SWA head count and query groups (given --head-size).
Everything else comes from flags whose defaults are the reference values: --vocab-size 32000
(258 with --tokenizer-type byte),
--gate-act silu, --allow-neg-eigval off, --local-window 2048, --rotary-percentage 1.0,
--rope-base 10000, --head-size 128. --head-k-dim / --head-v-dim, when given, must agree with the
inferred values.

A_log and dt_bias stay float32 in a bf16 directory; every other tensor takes --dtype.
Errors name the offending tensor or flag; the output directory is not touched on error.
"""

import argparse
import os
import re
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import gdn2_config  # noqa: E402
import make_model  # noqa: E402

_LAYER_RE = re.compile(r"^transformer\.h\.(\d+)\.(.+)$")
_TOP_LEVEL = ("transformer.wte.weight", "transformer.ln_f.weight", "lm_head.weight")


class ConversionError(ValueError):
    pass


def load_state_dict(path):
    """torch.load(path)["model"] with every tensor kept as a torch tensor."""
    import torch
    try:
        ckpt = torch.load(path, map_location="cpu")
    except Exception as e:  # noqa: BLE001 - torch raises many kinds; all mean "cannot read"
        raise ConversionError(f"{path}: cannot load as a torch checkpoint: {type(e).__name__}: {e}") from None
    if not isinstance(ckpt, dict) or "model" not in ckpt:
        keys = list(ckpt.keys()) if isinstance(ckpt, dict) else type(ckpt).__name__
        raise ConversionError(f'{path}: expected a dict with a "model" key (the state_dict), got {keys}')
    sd = ckpt["model"]
    if not hasattr(sd, "items"):
        raise ConversionError(f'{path}: "model" is a {type(sd).__name__}, not a state_dict')
    for name, t in sd.items():
        if not isinstance(t, torch.Tensor):
            raise ConversionError(f"{path}: state_dict entry {name!r} is a {type(t).__name__}, not a tensor")
    return dict(sd)


def _strip_prefixes(sd, prefixes):
    for prefix in prefixes:
        if sd and all(k.startswith(prefix) for k in sd):
            sd = {k[len(prefix):]: v for k, v in sd.items()}
    return sd


def _shape(sd, name):
    if name not in sd:
        raise ConversionError(f"missing tensor {name}")
    return tuple(sd[name].shape)


def _div(a, b, what):
    if b <= 0 or a % b:
        raise ConversionError(f"inconsistent shapes: {what} ({a} / {b}) is not a whole number")
    return a // b


def infer_config(sd, args):
    """Returns a normalised config from the state_dict's shapes plus the flags in `args`."""
    missing = [n for n in _TOP_LEVEL if n not in sd]
    if missing:
        raise ConversionError(f"missing tensors {missing}")
    layers = {}
    unexpected = []
    for name in sd:
        m = _LAYER_RE.match(name)
        if m:
            layers.setdefault(int(m.group(1)), set()).add(m.group(2))
        elif name not in _TOP_LEVEL:
            unexpected.append(name)
    if unexpected:
        raise ConversionError(f"unexpected tensors {sorted(unexpected)[:10]}")
    if not layers:
        raise ConversionError("no layer tensors (transformer.h.<i>.*) found")
    n_layer = max(layers) + 1
    absent = [i for i in range(n_layer) if i not in layers]
    if absent:
        raise ConversionError(f"layers {absent} have no tensors (layers found: 0..{n_layer - 1})")

    is_gdn2 = []
    for i in range(n_layer):
        gdn, swa = "attn.q_proj.weight" in layers[i], "attn.attn.weight" in layers[i]
        if gdn == swa:
            raise ConversionError(
                f"layer {i}: cannot tell the mixer type: expected transformer.h.{i}.attn.q_proj.weight "
                f"(GDN-2) or transformer.h.{i}.attn.attn.weight (SWA), "
                f"found {'both' if gdn else 'neither'}")
        is_gdn2.append(gdn)
    if all(is_gdn2):
        per_layer = 1
    elif not any(is_gdn2):
        per_layer = 0
    else:
        per_layer = next((p for p in range(2, n_layer + 1)
                          if all(is_gdn2[i] == (i % p == 0) for i in range(n_layer))), None)
        if per_layer is None:
            pattern = "".join("G" if g else "S" for g in is_gdn2)
            raise ConversionError(f"layer pattern {pattern} (G = GDN-2, S = SWA) is not 'GDN-2 iff "
                                  "i % gdn2_per_layer == 0' for any gdn2_per_layer")

    wte = _shape(sd, "transformer.wte.weight")
    if len(wte) != 2:
        raise ConversionError(f"transformer.wte.weight has shape {list(wte)}, expected [padded_vocab, n_embd]")
    padded, n_embd = wte
    if gdn2_config.round_up(args.vocab_size, args.padding_multiple) != padded:
        raise ConversionError(
            f"transformer.wte.weight has {padded} rows but --vocab-size {args.vocab_size} rounded up "
            f"to --padding-multiple {args.padding_multiple} is "
            f"{gdn2_config.round_up(args.vocab_size, args.padding_multiple)}; pass the right --vocab-size")
    w1 = _shape(sd, "transformer.h.0.mlp.swiglu.w1.weight")
    raw = {
        "vocab_size": args.vocab_size, "padding_multiple": args.padding_multiple,
        "n_layer": n_layer, "n_embd": n_embd, "intermediate_size": w1[0],
        "norm_eps": args.norm_eps, "gdn2_per_layer": per_layer,
        "max_context": args.max_context,
    }
    if any(is_gdn2):
        i = is_gdn2.index(True)
        p = f"transformer.h.{i}.attn."
        key_dim = _shape(sd, p + "q_proj.weight")[0]
        value_dim = _shape(sd, p + "v_proj.weight")[0]
        a_log = _shape(sd, p + "A_log")
        o_norm = _shape(sd, p + "o_norm.weight")
        if len(a_log) != 1 or len(o_norm) != 1:
            raise ConversionError(f"{p}A_log {list(a_log)} and {p}o_norm.weight {list(o_norm)} must be 1-D")
        heads, dv = a_log[0], o_norm[0]
        dk = _div(key_dim, heads, f"{p}q_proj.weight rows / {p}A_log entries (head_k_dim)")
        hv = _div(value_dim, dv, f"{p}v_proj.weight rows / {p}o_norm.weight entries (num_v_heads)")
        if args.head_k_dim is not None and args.head_k_dim != dk:
            raise ConversionError(f"--head-k-dim {args.head_k_dim} disagrees with the checkpoint: "
                                  f"{p}q_proj.weight has {key_dim} rows for {heads} heads (dk {dk})")
        if args.head_v_dim is not None and args.head_v_dim != dv:
            raise ConversionError(f"--head-v-dim {args.head_v_dim} disagrees with the checkpoint: "
                                  f"{p}o_norm.weight has {dv} entries")
        conv = _shape(sd, p + "q_conv1d.weight")
        if len(conv) != 3:
            raise ConversionError(f"{p}q_conv1d.weight has shape {list(conv)}, expected [C, 1, W]")
        raw["gdn2"] = {"num_heads": heads, "num_v_heads": hv, "head_k_dim": dk, "head_v_dim": dv,
                       "conv_size": conv[2], "gate_act": args.gate_act,
                       "allow_neg_eigval": args.allow_neg_eigval}
    if not all(is_gdn2):
        i = is_gdn2.index(False)
        p = f"transformer.h.{i}.attn."
        hs = args.head_size
        n_head = _div(_shape(sd, p + "proj.weight")[1], hs, f"{p}proj.weight columns / --head-size")
        rows = _div(_shape(sd, p + "attn.weight")[0], hs, f"{p}attn.weight rows / --head-size")
        groups = _div(rows - n_head, 2, f"({p}attn.weight rows / head_size - n_head) / 2 (n_query_groups)")
        raw["swa"] = {"n_head": n_head, "n_query_groups": groups, "head_size": hs,
                      "local_window": args.local_window,
                      "rotary_percentage": args.rotary_percentage, "rope_base": args.rope_base}
    if args.tokenizer_type == "byte":
        raw["tokenizer"] = {"type": "byte", "file": "tokenizer.model"}
        bos = gdn2_config.BYTE_BOS_ID if args.bos_token_id is None else args.bos_token_id
        eos = gdn2_config.BYTE_EOS_ID if args.eos_token_id is None else args.eos_token_id
    else:
        raw["tokenizer"] = {"type": "sentencepiece", "file": "tokenizer.model"}
        bos = 1 if args.bos_token_id is None else args.bos_token_id
        eos = 2 if args.eos_token_id is None else args.eos_token_id
    raw["bos_token_id"] = None if bos < 0 else bos
    raw["eos_token_id"] = None if eos < 0 else eos
    try:
        cfg = gdn2_config.normalize(raw)
    except gdn2_config.ConfigError as e:
        raise ConversionError(f"inferred config is invalid: {e}") from None

    want = dict(gdn2_config.tensor_shapes(cfg))
    missing = sorted(set(want) - set(sd))
    extra = sorted(set(sd) - set(want))
    if missing:
        raise ConversionError(f"missing tensors {missing[:10]}" + (f" (and {len(missing) - 10} more)" if len(missing) > 10 else ""))
    if extra:
        raise ConversionError(f"unexpected tensors {extra[:10]}")
    for name, shape in want.items():
        got = tuple(sd[name].shape)
        if got != tuple(shape):
            raise ConversionError(f"inconsistent shapes: {name} is {list(got)}, expected {list(shape)} "
                                  "from the rest of the checkpoint")
    return cfg


def convert(checkpoint, out_dir, args):
    """Converts; returns the config. `args` carries the flags (see build_parser)."""
    if args.tokenizer and args.tokenizer_type == "byte":
        raise ConversionError("--tokenizer (a SentencePiece file) conflicts with --tokenizer-type byte")
    if args.tokenizer and not os.path.isfile(args.tokenizer):
        raise ConversionError(f"--tokenizer {args.tokenizer}: no such file")
    sd = load_state_dict(checkpoint)
    sd = _strip_prefixes(sd, ("_orig_mod.", "module."))
    if args.ignore:
        pattern = re.compile(args.ignore)
        sd = {k: v for k, v in sd.items() if not pattern.search(k)}
    args = argparse.Namespace(**vars(args))
    if args.vocab_size is None:
        args.vocab_size = gdn2_config.BYTE_VOCAB_SIZE if args.tokenizer_type == "byte" else 32000
    cfg = infer_config(sd, args)

    def tensors():
        for name, _ in gdn2_config.tensor_shapes(cfg):
            t = sd.pop(name)  # drop our reference as we go: bounded memory
            yield name, t.detach().to(dtype=_torch_float32()).numpy()

    make_model.write_model_dir(cfg, out_dir, args.dtype, tokenizer_file=args.tokenizer,
                               tensors=tensors(),
                               metadata={"source": os.path.basename(checkpoint), "dtype": args.dtype})
    return cfg


def _torch_float32():
    import torch
    return torch.float32


def build_parser():
    p = argparse.ArgumentParser(description="Convert a reference training checkpoint to a model directory.")
    p.add_argument("--checkpoint", required=True, help='torch pickle holding {"model": state_dict}')
    p.add_argument("--out", required=True, help="output model directory")
    p.add_argument("--dtype", choices=("f32", "bf16"), default="bf16")
    p.add_argument("--vocab-size", type=int, default=None, help="default 32000 (byte tokenizer: 258)")
    p.add_argument("--padding-multiple", type=int, default=64)
    p.add_argument("--norm-eps", type=float, default=1e-5)
    p.add_argument("--head-k-dim", type=int, default=None, help="checked against the inferred dk (reference 128)")
    p.add_argument("--head-v-dim", type=int, default=None, help="checked against the inferred dv (reference 128)")
    p.add_argument("--gate-act", choices=("silu", "sigmoid"), default="silu")
    p.add_argument("--allow-neg-eigval", action="store_true")
    p.add_argument("--head-size", type=int, default=128, help="SWA head size")
    p.add_argument("--local-window", type=int, default=2048)
    p.add_argument("--rotary-percentage", type=float, default=1.0)
    p.add_argument("--rope-base", type=float, default=10000.0)
    p.add_argument("--tokenizer", help="SentencePiece model file, copied to OUT/tokenizer.model")
    p.add_argument("--tokenizer-type", choices=("sentencepiece", "byte"), default="sentencepiece")
    p.add_argument("--bos-token-id", type=int, default=None, help="-1 for none (default 1; byte: 256)")
    p.add_argument("--eos-token-id", type=int, default=None, help="-1 for none (default 2; byte: 257)")
    p.add_argument("--max-context", type=int, default=1 << 20)
    p.add_argument("--ignore", help="regex of state_dict keys to drop (non-parameter buffers)")
    return p


def main(argv=None):
    args = build_parser().parse_args(argv)
    try:
        cfg = convert(args.checkpoint, args.out, args)
    except (ConversionError, gdn2_config.ConfigError) as e:
        print(f"convert_checkpoint: error: {e}", file=sys.stderr)
        return 1
    if cfg["tokenizer"]["type"] == "sentencepiece" and not args.tokenizer:
        print("convert_checkpoint: warning: no --tokenizer given; put the SentencePiece model at "
              f"{os.path.join(args.out, 'tokenizer.model')} before serving", file=sys.stderr)
    print(f"{args.out}: n_layer {cfg['n_layer']}, n_embd {cfg['n_embd']}, gdn2_per_layer "
          f"{cfg['gdn2_per_layer']}, {gdn2_config.non_embedding_params(cfg):,} non-embedding parameters")
    return 0


if __name__ == "__main__":
    sys.exit(main())
