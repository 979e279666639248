"""Read and write safetensors files with NumPy only.

Format: an 8-byte little-endian header length N, then N bytes of UTF-8 JSON mapping each tensor
name to {"dtype", "shape", "data_offsets": [begin, end]} (offsets relative to the end of the
header), an optional "__metadata__" object of string -> string, then the tensor bytes, row-major,
little-endian, packed back to back. The header is padded with spaces to a multiple of 8 bytes.

BF16 has no NumPy dtype: it is held as uint16 bit patterns. `to_bf16_bits` rounds float32 to the
nearest bfloat16 (ties to even, NaN kept a quiet NaN) and `bf16_bits_to_f32` widens exactly.

`SafetensorsWriter` writes one tensor at a time, so a multi-gigabyte file never has to be in memory:
the caller declares every (name, dtype, shape) up front (the header needs all offsets), then hands
the tensors over in any order; each is converted and written at its offset.
"""

import json
import os
import struct

import numpy as np

# safetensors dtype name -> (numpy storage dtype, bytes per element)
_DTYPES = {
    "F64": np.dtype("<f8"),
    "F32": np.dtype("<f4"),
    "F16": np.dtype("<f2"),
    "BF16": np.dtype("<u2"),  # bit patterns
    "I64": np.dtype("<i8"),
    "I32": np.dtype("<i4"),
    "I16": np.dtype("<i2"),
    "I8": np.dtype("i1"),
    "U64": np.dtype("<u8"),
    "U32": np.dtype("<u4"),
    "U16": np.dtype("<u2"),
    "U8": np.dtype("u1"),
    "BOOL": np.dtype("?"),
}

FLOAT_DTYPES = ("F64", "F32", "F16", "BF16")
_MAX_HEADER_BYTES = 100 * 1024 * 1024
_CHUNK_ELEMENTS = 1 << 22


class SafetensorsError(ValueError):
    """A malformed file or a tensor that does not match its declaration."""


def to_bf16_bits(x):
    """float32 (or anything castable) -> uint16 bfloat16 bit patterns, round to nearest even."""
    f = np.ascontiguousarray(x, dtype=np.float32)
    bits = f.view(np.uint32)
    rounded = bits + np.uint32(0x7FFF) + ((bits >> np.uint32(16)) & np.uint32(1))
    out = (rounded >> np.uint32(16)).astype(np.uint16)
    nan = np.isnan(f)
    if nan.any():
        out[nan] = ((bits[nan] >> np.uint32(16)) | np.uint32(0x0040)).astype(np.uint16)
    return out


def bf16_bits_to_f32(bits):
    """uint16 bfloat16 bit patterns -> float32 (exact)."""
    b = np.ascontiguousarray(bits, dtype=np.uint16)
    return (b.astype(np.uint32) << np.uint32(16)).view(np.float32)


def _storage_for(array, dtype):
    """Converts `array` to the little-endian storage representation of safetensors `dtype`."""
    if dtype == "BF16":
        a = np.asarray(array)
        if a.dtype == np.uint16:
            raise SafetensorsError("BF16 tensors are given as float arrays, not uint16 bit patterns")
        return to_bf16_bits(a)
    if dtype not in _DTYPES:
        raise SafetensorsError(f"unsupported dtype {dtype!r}")
    return np.ascontiguousarray(array, dtype=_DTYPES[dtype])


def _nbytes(dtype, shape):
    n = _DTYPES[dtype].itemsize
    for d in shape:
        n *= int(d)
    return n


class SafetensorsWriter:
    """Streaming writer. Usage:

        with SafetensorsWriter(path, [(name, "BF16", shape), ...], metadata={...}) as w:
            for name, array in ...:
                w.write(name, array)   # float data for float dtypes; converted on the way
    Closing checks that every declared tensor was written exactly once.
    """

    def __init__(self, path, specs, metadata=None):
        self._path = path
        self._layout = {}
        header = {}
        if metadata:
            if not all(isinstance(k, str) and isinstance(v, str) for k, v in metadata.items()):
                raise SafetensorsError("__metadata__ must map str to str")
            header["__metadata__"] = dict(metadata)
        offset = 0
        for name, dtype, shape in specs:
            if name in self._layout or name == "__metadata__":
                raise SafetensorsError(f"duplicate or reserved tensor name {name!r}")
            if dtype not in _DTYPES:
                raise SafetensorsError(f"tensor {name!r}: unsupported dtype {dtype!r}")
            shape = [int(d) for d in shape]
            if any(d < 0 for d in shape):
                raise SafetensorsError(f"tensor {name!r}: negative dimension in {shape}")
            size = _nbytes(dtype, shape)
            self._layout[name] = (dtype, tuple(shape), offset)
            header[name] = {"dtype": dtype, "shape": shape, "data_offsets": [offset, offset + size]}
            offset += size
        blob = json.dumps(header, separators=(",", ":")).encode("utf-8")
        blob += b" " * ((-len(blob)) % 8)
        self._data_start = 8 + len(blob)
        self._total = offset
        self._written = set()
        self._file = open(path, "wb")
        self._file.write(struct.pack("<Q", len(blob)))
        self._file.write(blob)
        self._file.truncate(self._data_start + self._total)

    def write(self, name, array):
        if name not in self._layout:
            raise SafetensorsError(f"tensor {name!r} was not declared")
        if name in self._written:
            raise SafetensorsError(f"tensor {name!r} written twice")
        dtype, shape, offset = self._layout[name]
        if tuple(np.shape(array)) != shape:
            raise SafetensorsError(
                f"tensor {name!r}: declared shape {list(shape)}, got {list(np.shape(array))}")
        self._file.seek(self._data_start + offset)
        flat = np.ascontiguousarray(array).reshape(-1)
        for begin in range(0, max(flat.size, 1), _CHUNK_ELEMENTS):  # bounds conversion temporaries
            _storage_for(flat[begin:begin + _CHUNK_ELEMENTS], dtype).tofile(self._file)
        self._written.add(name)

    def close(self):
        if self._file is None:
            return
        self._file.close()
        self._file = None
        missing = [n for n in self._layout if n not in self._written]
        if missing:
            raise SafetensorsError(f"{self._path}: tensors declared but not written: {missing}")

    def abort(self):
        if self._file is not None:
            self._file.close()
            self._file = None

    def __enter__(self):
        return self

    def __exit__(self, exc_type, exc, tb):
        if exc_type is None:
            self.close()
        else:
            self.abort()
        return False


def save_file(tensors, path, dtype=None, metadata=None):
    """Writes a dict name -> array. `dtype` is a safetensors dtype for every tensor, a dict
    name -> dtype, or None (inferred from each array's NumPy dtype; float32 -> F32)."""
    inverse = {"f8": "F64", "f4": "F32", "f2": "F16", "i8": "I64", "i4": "I32", "i2": "I16",
               "i1": "I8", "u8": "U64", "u4": "U32", "u2": "U16", "u1": "U8", "b1": "BOOL"}
    specs = []
    for name, a in tensors.items():
        if isinstance(dtype, dict):
            dt = dtype[name]
        elif dtype is not None:
            dt = dtype
        else:
            key = np.asarray(a).dtype.str.lstrip("<>|=")
            if key not in inverse:
                raise SafetensorsError(f"tensor {name!r}: no safetensors dtype for {np.asarray(a).dtype}")
            dt = inverse[key]
        specs.append((name, dt, np.shape(a)))
    with SafetensorsWriter(path, specs, metadata) as w:
        for name, a in tensors.items():
            w.write(name, a)


class SafetensorsFile:
    """Lazy reader: parses and validates the header; tensors are memory-mapped on access."""

    def __init__(self, path):
        self.path = path
        file_size = os.path.getsize(path)
        with open(path, "rb") as f:
            raw = f.read(8)
            if len(raw) != 8:
                raise SafetensorsError(f"{path}: shorter than the 8-byte header length")
            (n,) = struct.unpack("<Q", raw)
            if n > _MAX_HEADER_BYTES or 8 + n > file_size:
                raise SafetensorsError(f"{path}: header length {n} exceeds the file size {file_size}")
            try:
                header = json.loads(f.read(n).decode("utf-8"))
            except (UnicodeDecodeError, json.JSONDecodeError) as e:
                raise SafetensorsError(f"{path}: header is not valid JSON: {e}") from None
        if not isinstance(header, dict):
            raise SafetensorsError(f"{path}: header is not a JSON object")
        self.metadata = header.pop("__metadata__", None) or {}
        self._data_start = 8 + n
        data_size = file_size - self._data_start
        self._entries = {}
        spans = []
        for name, e in header.items():
            try:
                dtype, shape, (begin, end) = e["dtype"], [int(d) for d in e["shape"]], e["data_offsets"]
            except (KeyError, TypeError, ValueError):
                raise SafetensorsError(f"{path}: tensor {name!r}: malformed header entry {e}") from None
            if dtype not in _DTYPES:
                raise SafetensorsError(f"{path}: tensor {name!r}: unsupported dtype {dtype!r}")
            if end - begin != _nbytes(dtype, shape) or begin < 0 or end > data_size:
                raise SafetensorsError(
                    f"{path}: tensor {name!r}: offsets [{begin}, {end}] do not fit shape {shape} "
                    f"{dtype} within {data_size} data bytes")
            self._entries[name] = (dtype, tuple(shape), begin, end)
            spans.append((begin, end, name))
        spans.sort()
        pos = 0
        for begin, end, name in spans:
            if begin != pos:
                raise SafetensorsError(f"{path}: tensor {name!r} starts at {begin}, expected {pos} "
                                       "(tensors must be contiguous and non-overlapping)")
            pos = end
        if pos != data_size:
            raise SafetensorsError(f"{path}: {data_size - pos} trailing bytes after the last tensor")
        self._mmap = None

    def keys(self):
        return list(self._entries)

    def __contains__(self, name):
        return name in self._entries

    def dtype(self, name):
        return self._entries[name][0]

    def shape(self, name):
        return self._entries[name][1]

    def raw(self, name):
        """The stored array (BF16 as uint16 bits), a read-only memory map when possible."""
        if name not in self._entries:
            raise KeyError(f"{self.path}: no tensor {name!r}")
        dtype, shape, begin, end = self._entries[name]
        if end == begin:
            return np.zeros(shape, dtype=_DTYPES[dtype])
        if self._mmap is None:
            self._mmap = np.memmap(self.path, dtype=np.uint8, mode="r")
        buf = self._mmap[self._data_start + begin:self._data_start + end]
        return buf.view(_DTYPES[dtype]).reshape(shape)

    def get(self, name, dtype=None):
        """The tensor as a NumPy array: BF16 widened to float32; `dtype` casts the result."""
        a = self.raw(name)
        if self._entries[name][0] == "BF16":
            a = bf16_bits_to_f32(a)
        return np.array(a, dtype=dtype if dtype is not None else a.dtype)


def load_file(path, dtype=None):
    """Reads every tensor into memory: dict name -> array (BF16 widened to float32)."""
    f = SafetensorsFile(path)
    return {name: f.get(name, dtype) for name in f.keys()}
