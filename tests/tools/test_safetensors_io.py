"""Tests of tools/safetensors_io.py: round trips of every float dtype, bf16 rounding (ties to
even, NaN/inf), the on-disk layout, the streaming writer's checks and the reader's validation."""

import json
import os
import struct
import sys
import tempfile
import unittest

import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "tools"))
import safetensors_io as st  # noqa: E402


class Bf16Test(unittest.TestCase):
    def test_exact_values_survive(self):
        x = np.array([0.0, -0.0, 1.0, -2.5, 3.140625, 65280.0, 2.0 ** -130, np.inf, -np.inf], np.float32)
        np.testing.assert_array_equal(st.bf16_bits_to_f32(st.to_bf16_bits(x)), x)
        self.assertEqual(st.to_bf16_bits(np.float32(-0.0)).item(), 0x8000)

    def test_round_to_nearest_even(self):
        # 1 + 2^-8 is halfway between bf16 1.0 and 1 + 2^-7: ties to even -> 1.0.
        # 1 + 3*2^-8 is halfway between 1 + 2^-7 (odd) and 1 + 2^-6 (even) -> 1 + 2^-6.
        x = np.array([1 + 2 ** -8, 1 + 3 * 2 ** -8, 1 + 2 ** -8 + 2 ** -20, -(1 + 2 ** -8)], np.float32)
        want = np.array([1.0, 1 + 2 ** -6, 1 + 2 ** -7, -1.0], np.float32)
        np.testing.assert_array_equal(st.bf16_bits_to_f32(st.to_bf16_bits(x)), want)

    def test_matches_float64_nearest_on_random_values(self):
        x = np.random.default_rng(0).standard_normal(20000).astype(np.float32) * 10
        y = st.bf16_bits_to_f32(st.to_bf16_bits(x)).astype(np.float64)
        # |error| <= half an ulp of bf16 (8 significant bits).
        ulp = 2.0 ** (np.floor(np.log2(np.abs(x.astype(np.float64)))) - 7)
        self.assertTrue(np.all(np.abs(y - x) <= ulp / 2))

    def test_overflow_to_inf_and_nan_stays_nan(self):
        x = np.array([3.4e38, np.nan, -np.nan], np.float32)
        y = st.bf16_bits_to_f32(st.to_bf16_bits(x))
        self.assertEqual(y[0], np.inf)
        self.assertTrue(np.isnan(y[1]) and np.isnan(y[2]))


class RoundTripTest(unittest.TestCase):
    def setUp(self):
        self.dir = tempfile.TemporaryDirectory()
        self.path = os.path.join(self.dir.name, "t.safetensors")

    def tearDown(self):
        self.dir.cleanup()

    def test_all_float_dtypes(self):
        rng = np.random.default_rng(1)
        a = rng.standard_normal((3, 5)).astype(np.float32)
        tensors = {"f32": a, "bf16": a, "f16": a, "f64": a.astype(np.float64),
                   "i64": np.arange(4, dtype=np.int64), "scalar": np.float32(2.0), "empty": np.zeros((0, 3))}
        dtypes = {"f32": "F32", "bf16": "BF16", "f16": "F16", "f64": "F64", "i64": "I64",
                  "scalar": "F32", "empty": "F32"}
        st.save_file(tensors, self.path, dtype=dtypes, metadata={"format": "pt", "note": "x"})
        f = st.SafetensorsFile(self.path)
        self.assertEqual(f.metadata, {"format": "pt", "note": "x"})
        self.assertEqual({n: f.dtype(n) for n in f.keys()}, dtypes)
        back = st.load_file(self.path)
        np.testing.assert_array_equal(back["f32"], a)
        np.testing.assert_array_equal(back["f64"], a.astype(np.float64))
        np.testing.assert_array_equal(back["f16"], a.astype(np.float16))
        np.testing.assert_array_equal(back["bf16"], st.bf16_bits_to_f32(st.to_bf16_bits(a)))
        self.assertLess(np.max(np.abs(back["bf16"] - a) / np.abs(a)), 2 ** -8)
        np.testing.assert_array_equal(back["i64"], np.arange(4))
        self.assertEqual(back["scalar"].shape, ())
        self.assertEqual(back["empty"].shape, (0, 3))
        self.assertEqual(back["bf16"].dtype, np.float32)

    def test_on_disk_layout(self):
        st.save_file({"b": np.array([1.0, 2.0], np.float32), "a": np.array([3.0], np.float32)}, self.path)
        with open(self.path, "rb") as f:
            raw = f.read()
        (n,) = struct.unpack("<Q", raw[:8])
        self.assertEqual((8 + n) % 8, 0)
        header = json.loads(raw[8:8 + n])
        self.assertEqual(header["b"], {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]})
        self.assertEqual(header["a"]["data_offsets"], [8, 12])
        self.assertEqual(raw[8 + n:], np.array([1, 2, 3], "<f4").tobytes())

    def test_streaming_writer_any_order_and_checks(self):
        specs = [("x", "BF16", (4, 3)), ("y", "F32", (2,))]
        w = st.SafetensorsWriter(self.path, specs)
        w.write("y", np.array([5.0, 6.0]))
        with self.assertRaisesRegex(st.SafetensorsError, "declared shape"):
            w.write("x", np.zeros((3, 4)))
        with self.assertRaisesRegex(st.SafetensorsError, "not declared"):
            w.write("z", np.zeros(1))
        with self.assertRaisesRegex(st.SafetensorsError, "written twice"):
            w.write("y", np.zeros(2))
        with self.assertRaisesRegex(st.SafetensorsError, r"not written: \['x'\]"):
            w.close()
        with st.SafetensorsWriter(self.path, specs) as w:
            w.write("x", np.arange(12, dtype=np.float32).reshape(4, 3))
            w.write("y", np.array([5.0, 6.0]))
        back = st.load_file(self.path)
        np.testing.assert_array_equal(back["x"], np.arange(12).reshape(4, 3))

    def test_chunked_large_tensor(self):
        n = st._CHUNK_ELEMENTS * 2 + 17
        a = np.random.default_rng(2).standard_normal(n).astype(np.float32)
        st.save_file({"big": a}, self.path, dtype="BF16")
        np.testing.assert_array_equal(st.load_file(self.path)["big"], st.bf16_bits_to_f32(st.to_bf16_bits(a)))

    def write_raw(self, header, data):
        blob = json.dumps(header).encode()
        with open(self.path, "wb") as f:
            f.write(struct.pack("<Q", len(blob)) + blob + data)

    def test_reader_rejects_malformed_files(self):
        cases = [
            ({"a": {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]}}, b"\0" * 4, "do not fit"),
            ({"a": {"dtype": "F32", "shape": [2], "data_offsets": [0, 4]}}, b"\0" * 4, "do not fit"),
            ({"a": {"dtype": "Q8", "shape": [2], "data_offsets": [0, 2]}}, b"\0" * 2, "unsupported dtype"),
            ({"a": {"dtype": "F32", "shape": [1], "data_offsets": [4, 8]}}, b"\0" * 8, "contiguous"),
            ({"a": {"dtype": "F32", "shape": [1], "data_offsets": [0, 4]}}, b"\0" * 8, "trailing"),
            ({"a": {"dtype": "F32"}}, b"", "malformed"),
        ]
        for header, data, msg in cases:
            with self.subTest(msg=msg):
                self.write_raw(header, data)
                with self.assertRaisesRegex(st.SafetensorsError, msg):
                    st.SafetensorsFile(self.path)
        with open(self.path, "wb") as f:
            f.write(struct.pack("<Q", 1000) + b"{}")
        with self.assertRaisesRegex(st.SafetensorsError, "exceeds the file size"):
            st.SafetensorsFile(self.path)
        with open(self.path, "wb") as f:
            f.write(struct.pack("<Q", 3) + b"{x}")
        with self.assertRaisesRegex(st.SafetensorsError, "not valid JSON"):
            st.SafetensorsFile(self.path)


if __name__ == "__main__":
    unittest.main()
