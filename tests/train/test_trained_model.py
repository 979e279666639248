"""The embedded default model and the check data exported with it (tests/train/data) belong
together, and the stored held-out loss is what the training code computes for that model."""

import hashlib
import json
import math
import os
import shutil
import sys
import unittest

import numpy as np
import torch

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
sys.path.insert(0, os.path.join(ROOT, "tools"))
sys.path.insert(0, os.path.join(ROOT, "tools", "train"))

import gdn2_config  # noqa: E402
import prepare_kjv  # noqa: E402
from gdn2_torch import Gdn2LM  # noqa: E402
from safetensors_io import SafetensorsFile  # noqa: E402
from train import BOS, evaluate  # noqa: E402

MODEL = os.path.join(ROOT, "models", "default")
DATA = os.path.join(ROOT, "tests", "train", "data")

torch.set_num_threads(1)


def load_json(name):
    with open(os.path.join(DATA, name)) as f:
        return json.load(f)


def sha256_file(path):
    with open(path, "rb") as f:
        return hashlib.sha256(f.read()).hexdigest()


class TrainedModelDataTest(unittest.TestCase):
    def test_check_data_belongs_to_the_model(self):
        sha = sha256_file(os.path.join(MODEL, "model.safetensors"))
        for name in ("heldout_slice_nll.json", "greedy_samples.json"):
            self.assertEqual(load_json(name)["model_safetensors_sha256"], sha,
                             f"{name} was exported for another models/default: re-run "
                             "tools/train/export_model.py")
        info = load_json("heldout_slice_nll.json")
        self.assertEqual(sha256_file(os.path.join(DATA, info["slice_file"])), info["slice_sha256"])

    def test_training_code_loss_on_slice(self):
        info = load_json("heldout_slice_nll.json")
        cfg = gdn2_config.load(os.path.join(MODEL, "config.json"))
        st = SafetensorsFile(os.path.join(MODEL, "model.safetensors"))
        model = Gdn2LM(cfg).double()
        model.load_state_dict({n: torch.from_numpy(st.get(n, np.float64)) for n in st.keys()})
        sl = np.fromfile(os.path.join(DATA, info["slice_file"]), dtype=np.uint8).astype(np.int64)
        x = np.concatenate([[BOS], sl[:-1]])
        nll = evaluate(model, [(x, sl)], "cpu", 1)
        self.assertAlmostEqual(nll / info["mean_nll_nats"], 1.0, delta=1e-9)
        self.assertLess(nll / math.log(2), 2.0)

    @unittest.skipUnless(shutil.which("bible"), "the bible program (Debian bible-kjv) is not installed")
    def test_slice_is_the_start_of_the_heldout_split(self):
        info = load_json("heldout_slice_nll.json")
        _, held = prepare_kjv.split(prepare_kjv.chapters(prepare_kjv.read_raw("")))
        with open(os.path.join(DATA, info["slice_file"]), "rb") as f:
            self.assertEqual(f.read(), held[:info["slice_bytes"]])


if __name__ == "__main__":
    unittest.main()
