"""Smoke tests of the `deltaserve` program: `generate` on a real model directory, and errors.

Usage: cli_smoke_test.py DELTASERVE_BINARY MODEL_DIR {generate|errors}
       cli_smoke_test.py DELTASERVE_BINARY MODEL_DIR sentencepiece VOCAB_FILE SPM_ENCODE SPM_DECODE

`generate` runs the byte-tokenizer model through the real engine and checks what it prints: the
streamed text is exactly the UTF-8 decoding (ill-formed bytes as U+FFFD) of the ids that
--print-ids reports, --ignore-eos yields exactly --max-new-tokens ids, the same seed gives the
same output, --prompt-ids is the same prompt as --prompt, and --stop cuts the text.
`errors` checks that bad command lines exit non-zero with a message naming the problem.
`sentencepiece` runs a model with a SentencePiece tokenizer in the same process as gRPC's
protobuf, and checks the streamed text against the pieces of the model's .vocab file and
against Debian's spm_encode / spm_decode.
"""

import re
import signal
import subprocess
import sys


def run(binary, *args):
    p = subprocess.run([binary, *args], capture_output=True, timeout=120)
    return p.returncode, p.stdout.decode("utf-8"), p.stderr.decode("utf-8", errors="replace")


class Checker:
    def __init__(self):
        self.failures = 0

    def check(self, ok, what, detail=""):
        print(("ok   " if ok else "FAIL ") + what + ("" if ok else "\n     " + detail))
        if not ok:
            self.failures += 1


def generate(binary, model, c):
    n = 24
    base = ["generate", "--model", model, "--max-new-tokens", str(n), "--ignore-eos",
            "--print-ids"]

    def gen(*extra):
        rc, out, err = run(binary, *base, *extra)
        c.check(rc == 0, "generate %s exits 0" % " ".join(extra), "rc=%d stderr=%s" % (rc, err))
        lines = out.split("\n")
        # stdout: the continuation, one newline, the ids line, a newline.
        c.check(len(lines) >= 3 and lines[-1] == "", "output ends with the ids line", repr(out))
        ids_line = lines[-2] if len(lines) >= 2 else ""
        text = "\n".join(lines[:-2])
        try:
            ids = [int(x) for x in ids_line.split(",")]
        except ValueError:
            ids = []
        return text, ids, err

    text, ids, err = gen("--prompt", "Hello", "--temperature", "0")
    c.check(len(ids) == n, "greedy: --print-ids prints %d ids" % n, "got %r" % ids)
    c.check(all(0 <= i < 258 for i in ids), "ids are in the vocabulary", repr(ids))
    c.check(len(text) > 0, "greedy: a non-empty continuation")
    expected = bytes(i for i in ids if i < 256).decode("utf-8", errors="replace")
    c.check(text == expected, "text is the decoding of the printed ids",
            "text=%r expected=%r" % (text, expected))
    c.check("6 prompt tokens" in err, "BOS is prepended (6 prompt tokens)", err)

    again, again_ids, _ = gen("--prompt", "Hello", "--temperature", "0")
    c.check(again_ids == ids and again == text, "greedy is deterministic")

    same, same_ids, _ = gen("--prompt-ids", "256,72,101,108,108,111", "--no-bos",
                            "--temperature", "0")
    c.check(same_ids == ids, "--prompt-ids equals --prompt", "%r vs %r" % (same_ids, ids))

    _, _, err = gen("--prompt", "Hello", "--temperature", "0", "--no-bos")
    c.check("5 prompt tokens" in err, "--no-bos drops BOS (5 prompt tokens)", err)

    s1, ids1, _ = gen("--prompt", "Hello", "--temperature", "1", "--seed", "7", "--top-k", "50",
                      "--top-p", "0.95", "--min-p", "0.01", "--repetition-penalty", "1.2")
    s2, ids2, _ = gen("--prompt", "Hello", "--temperature", "1", "--seed", "7", "--top-k", "50",
                      "--top-p", "0.95", "--min-p", "0.01", "--repetition-penalty", "1.2")
    c.check(len(ids1) == n and ids1 == ids2 and s1 == s2, "sampling with a seed is repeatable")

    _, bf16_ids, _ = gen("--prompt", "Hello", "--temperature", "0", "--state-dtype", "bf16")
    c.check(len(bf16_ids) == n, "--state-dtype bf16 runs")

    # --stop: pick an ASCII character of the greedy text after its first character; the output
    # must end right before its first occurrence and the request finish with reason stop.
    stop = next((ch for ch in text[1:] if ch.isascii() and ch.isprintable()), None)
    if stop is None:
        print("skip --stop check: the greedy text has no printable ASCII character")
    else:
        rc, out, err = run(binary, *base, "--prompt", "Hello", "--temperature", "0",
                           "--stop", stop)
        cut = text[: text.index(stop)]
        printed = out.split("\n")
        printed_text = "\n".join(printed[:-2])
        c.check(rc == 0 and printed_text == cut, "--stop %r cuts the text" % stop,
                "got %r expected %r" % (printed_text, cut))
        c.check("stop" in err.split(":")[0], "finish reason is stop", err)

    interrupt(binary, model, c)


def interrupt(binary, model, c):
    """Ctrl-C cancels the request: the text so far stays printed, the exit code is 130."""
    p = subprocess.Popen([binary, "generate", "--model", model, "--prompt", "Hello",
                          "--max-new-tokens", "60000", "--ignore-eos"],
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    first = p.stdout.read(1)  # the text is streamed: this returns once the first token is out
    p.send_signal(signal.SIGINT)
    try:
        rest, err = p.communicate(timeout=60)
    except subprocess.TimeoutExpired:
        p.kill()
        rest, err = p.communicate()
    c.check(len(first) == 1, "streams text before the request ends")
    c.check(p.returncode == 130 and b"cancelled" in err,
            "SIGINT cancels the request and exits 130", "rc=%d stderr=%r" % (p.returncode, err))


def errors(binary, model, c):
    def expect(args, rc_expected, needle):
        rc, out, err = run(binary, *args)
        ok = rc == rc_expected and needle in err
        c.check(ok, "%s -> exit %d, message %r" % (" ".join(args), rc_expected, needle),
                "rc=%d stderr=%r" % (rc, err))

    rc, out, _ = run(binary, "--help")
    c.check(rc == 0 and "generate" in out, "deltaserve --help lists generate", out)
    rc, out, _ = run(binary, "generate", "--help")
    c.check(rc == 0 and "--max-new-tokens" in out and "--prompt-ids" in out,
            "deltaserve generate --help lists the flags", out)
    expect([], 2, "Usage")
    expect(["frobnicate"], 2, "unknown command")
    g = ["generate", "--model", model]
    expect(["generate", "--prompt", "x"], 2, "--model")
    expect(g + ["--prompt", "x", "--frob"], 2, "unknown flag --frob")
    expect(g + ["--prompt", "x", "--temperature", "-1"], 2, "--temperature")
    expect(g + ["--prompt", "x", "--max-new-tokens", "0"], 2, "--max-new-tokens")
    expect(g + ["--prompt", "x", "--top-p", "2"], 2, "--top-p")
    expect(g + ["--prompt", "x", "--backend", "tpu"], 2, "--backend")
    expect(g + ["--prompt-ids", "1,258"], 2, "vocabulary")
    expect(g + ["--prompt", "", "--no-bos"], 2, "empty")
    expect(["generate", "--model", model + "/does-not-exist", "--prompt", "x"], 1,
           "does-not-exist")


def piece_bytes(vocab_file):
    """TokenBytes of every id, from spm_train's .vocab file (one "piece<TAB>score" per id)."""
    out = []
    with open(vocab_file, encoding="utf-8") as f:
        for line in f:
            piece = line.rstrip("\n").split("\t")[0]
            if piece in ("<s>", "</s>"):
                out.append(b"")
            elif piece == "<unk>":
                out.append(" \u2047 ".encode("utf-8"))
            elif len(piece) == 6 and piece.startswith("<0x") and piece.endswith(">"):
                out.append(bytes([int(piece[3:5], 16)]))
            else:
                out.append(piece.replace("\u2581", " ").encode("utf-8"))
    return out


def sentencepiece(binary, model, c, vocab_file, spm_encode, spm_decode):
    tokenizer = model + "/tokenizer.model"
    pieces = piece_bytes(vocab_file)
    prompt = "The quick brown fox"
    enc = subprocess.run([spm_encode, "--model=" + tokenizer, "--output_format=id"],
                         input=(prompt + "\n").encode(), capture_output=True, check=True)
    prompt_ids = [int(x) for x in enc.stdout.split()]

    n = 32
    base = ["generate", "--model", model, "--max-new-tokens", str(n), "--ignore-eos",
            "--print-ids", "--temperature", "0"]
    rc, out, err = run(binary, *base, "--prompt", prompt)
    c.check(rc == 0, "generate with a SentencePiece model exits 0", "rc=%d %s" % (rc, err))
    lines = out.split("\n")
    text = "\n".join(lines[:-2])
    ids = [int(x) for x in lines[-2].split(",")] if len(lines) >= 3 and lines[-2] else []
    c.check(len(ids) == n, "%d ids" % n, repr(out))
    c.check("%d prompt tokens" % (len(prompt_ids) + 1) in err,
            "prompt is BOS + spm_encode's %d ids" % len(prompt_ids), err)
    expected = b"".join(pieces[i] for i in ids).decode("utf-8", errors="replace")
    c.check(text == expected, "streamed text is the concatenation of the pieces' bytes",
            "text=%r expected=%r" % (text, expected))

    rc, out2, _ = run(binary, *base, "--prompt-ids", ",".join(str(i) for i in [1] + prompt_ids),
                      "--no-bos")
    c.check(rc == 0 and out2 == out, "--prompt-ids of spm_encode's ids gives the same output")

    # The library's own decoder agrees. Both replace ill-formed UTF-8 by U+FFFD, but with
    # different granularity (the engine one per maximal ill-formed subpart, the library one per
    # byte), so runs of U+FFFD are compared as one.
    def decode(id_list):
        p = subprocess.run([spm_decode, "--model=" + tokenizer, "--input_format=id"],
                           input=(" ".join(map(str, id_list)) + "\n").encode(),
                           capture_output=True, check=True)
        return p.stdout.decode("utf-8", errors="replace").rstrip("\n")

    def collapse(t):
        return re.sub("\ufffd+", "\ufffd", t)

    whole = decode(prompt_ids + ids)
    c.check(collapse(whole) == collapse(decode(prompt_ids) + text),
            "spm_decode(prompt + output) == spm_decode(prompt) + streamed text",
            "%r vs %r" % (whole, decode(prompt_ids) + text))


def main():
    binary, model, mode = sys.argv[1:4]
    c = Checker()
    if mode == "sentencepiece":
        sentencepiece(binary, model, c, *sys.argv[4:7])
    else:
        {"generate": generate, "errors": errors}[mode](binary, model, c)
    if c.failures:
        print("%d check(s) failed" % c.failures)
        sys.exit(1)


if __name__ == "__main__":
    main()
