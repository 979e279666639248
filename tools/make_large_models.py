#!/usr/bin/env python3
"""Writes the two reference 1.3B configurations (MODEL_SPEC section 4) with random bf16 weights
for loader tests and benchmarks, and checks their non-embedding parameter counts:

    tools/make_large_models.py --out build/large_models
        -> build/large_models/gdn2_1.3B, build/large_models/swa_gdn2_1.3B (about 2.9 GB each)

A model already present with the same config and a complete bf16 model.safetensors is kept.
"""

import argparse
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import gdn2_config  # noqa: E402
import make_model  # noqa: E402
from safetensors_io import SafetensorsFile  # noqa: E402

NAMES = ("gdn2_1.3B", "swa_gdn2_1.3B")


def count_non_embedding(path):
    """Parameters of the per-layer tensors of a written file (wte, lm_head, ln_f excluded)."""
    st = SafetensorsFile(path)
    n = 0
    for name in st.keys():
        if name.startswith("transformer.h."):
            c = 1
            for d in st.shape(name):
                c *= d
            n += c
    return n


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--out", required=True)
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args(argv)
    for name in NAMES:
        cfg = gdn2_config.preset(name)
        out = os.path.join(args.out, name)
        t0 = time.time()
        if make_model.is_present(out, cfg, "bf16"):
            status = "present"
        else:
            make_model.write_model_dir(cfg, out, "bf16", args.seed,
                                       metadata={"seed": str(args.seed), "dtype": "bf16"})
            status = "written"
        n = count_non_embedding(os.path.join(out, "model.safetensors"))
        want = gdn2_config.REFERENCE_NON_EMBEDDING_PARAMS[name]
        print(f"{name}: {status} in {time.time() - t0:.1f} s, non-embedding parameters {n:,} "
              f"(MODEL_SPEC: {want:,})")
        if n != want:
            print(f"{name}: parameter count mismatch", file=sys.stderr)
            return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
