#!/usr/bin/env python3
"""Builds the training corpus of the default model: the King James Bible (public domain) as shipped
by Debian's bible-kjv-text package, read with its `bible` program (package bible-kjv).

Text form: for each chapter, a heading line "<Book> <chapter>", then one line per verse
"<verse number> <text>", chapters separated by a blank line (pure ASCII, about 4.3 MB).
Held-out split: every 20th chapter (chapter index % 20 == 19, counted over the whole Bible in
order, 59 of 1189 chapters, about 5% of the bytes); the rest is the training split.

Writes into --out: train.bin and heldout.bin (raw bytes = byte-tokenizer ids), and meta.json
(sizes, SHA-256 of each split, the split rule).

Usage: prepare_kjv.py --out DIR [--bible-text FILE]   (FILE: the output of
       `bible -l0 gen1:1-rev22:21`, if the bible program is not installed here)
"""

import argparse
import hashlib
import json
import os
import re
import subprocess

HELDOUT_EVERY = 20
HELDOUT_INDEX = 19


def read_raw(path):
    if path:
        with open(path, "rb") as f:
            return f.read().decode("ascii")
    # -l0: no line wrapping.
    return subprocess.run(["bible", "-l0", "gen1:1-rev22:21"], check=True,
                          stdout=subprocess.PIPE).stdout.decode("ascii")


def chapters(raw):
    """Splits the `bible` output into chapter texts in the form the module docstring describes."""
    out = []
    cur = None
    for line in raw.split("\n"):
        s = line.strip()
        if not s:
            continue
        if line.startswith(" "):  # verses are indented, headings ("1 Samuel 3") are not
            if not re.match(r"^\d+ ", s):
                raise ValueError(f"unexpected verse line: {s[:40]!r}")
            if cur is None:
                raise ValueError(f"verse before any chapter heading: {s[:40]!r}")
            cur.append(s)
        else:
            cur = [s]
            out.append(cur)
    return ["\n".join(c) + "\n" for c in out]


def split(chaps):
    train, held = [], []
    for i, c in enumerate(chaps):
        (held if i % HELDOUT_EVERY == HELDOUT_INDEX else train).append(c)
    return "\n".join(train).encode("ascii"), "\n".join(held).encode("ascii")


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", required=True)
    ap.add_argument("--bible-text", default="")
    args = ap.parse_args()
    chaps = chapters(read_raw(args.bible_text))
    if len(chaps) != 1189:
        raise SystemExit(f"expected 1189 chapters, found {len(chaps)}")
    train, held = split(chaps)
    os.makedirs(args.out, exist_ok=True)
    with open(os.path.join(args.out, "train.bin"), "wb") as f:
        f.write(train)
    with open(os.path.join(args.out, "heldout.bin"), "wb") as f:
        f.write(held)
    meta = {
        "source": "Debian package bible-kjv-text (King James Version, 1611; public domain), "
                  "read with `bible -l0 gen1:1-rev22:21`",
        "chapters": len(chaps),
        "heldout_rule": f"chapter index % {HELDOUT_EVERY} == {HELDOUT_INDEX}",
        "train_bytes": len(train),
        "heldout_bytes": len(held),
        "train_sha256": hashlib.sha256(train).hexdigest(),
        "heldout_sha256": hashlib.sha256(held).hexdigest(),
    }
    with open(os.path.join(args.out, "meta.json"), "w") as f:
        json.dump(meta, f, indent=2)
    print(json.dumps(meta, indent=2))


if __name__ == "__main__":
    main()
