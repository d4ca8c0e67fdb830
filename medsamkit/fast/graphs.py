"""LiteMedSAM's ONNX graphs shipped without their weights, and binding the weights to them by name.

``graphs/litemedsam-{encoder,decoder-image,decoder-prompt}.onnx`` are the graphs of
:mod:`.onnx_export` (written by ``tools/export_litemedsam_graphs.py``) with every initialiser that
is a checkpoint tensor removed; ``graphs/graphs.json`` lists, per graph, its file's SHA-256 and the
removed tensors' checkpoint keys, shapes and dtypes. :func:`bind` puts a state dict's arrays back
(each name must exist with exactly that shape and dtype, else CheckpointError) and returns the
complete model as bytes for ONNX Runtime. No torch, no onnx package: an initialiser is one
``TensorProto`` (dims, data_type, name, raw_data) appended to the ``GraphProto`` inside the
``ModelProto``, which protobuf's wire format allows without decoding the rest.
"""
from __future__ import annotations

import hashlib
import json
from functools import lru_cache
from pathlib import Path

import numpy as np

from ..errors import CheckpointError

FOLDER = Path(__file__).resolve().parent / "graphs"
MANIFEST = "graphs.json"
COMPONENTS = ("encoder", "decoder-image", "decoder-prompt")
_ONNX_TYPES = {"float32": 1, "int64": 7, "int32": 6, "float16": 10, "float64": 11}


@lru_cache(maxsize=1)
def manifest() -> dict:
    path = FOLDER / MANIFEST
    if not path.is_file():
        raise CheckpointError(f"The ONNX graphs are missing from this medsamkit installation ({path.name}); "
                              "reinstall medsamkit.")
    return json.loads(path.read_text(encoding="utf-8"))


def weight_names() -> set:
    """Every checkpoint key that the shipped graphs need."""
    return {w[0] for g in manifest()["graphs"].values() for w in g["weights"]}


def check_state(state: dict, source: str = "the checkpoint", kind: str = "litemedsam") -> None:
    """CheckpointError unless ``state`` holds exactly the graphs' weights (BatchNorm's num_batches_tracked
    counters aside: inference never reads them), as strict as the PyTorch loader and in its words: the
    kind, the first missing / unexpected keys and shape mismatches, and the expected layout."""
    from ..models.checkpoints import LAYOUT_HINTS

    expected = {name: tuple(shape) for g in manifest()["graphs"].values() for name, shape, _dtype in g["weights"]}
    missing = sorted(k for k in expected if k not in state)
    unexpected = sorted(k for k in state if k not in expected and not k.endswith(".num_batches_tracked"))
    wrong = [f"{k} {tuple(state[k].shape)} != {shape}" for k, shape in expected.items()
             if k in state and tuple(state[k].shape) != shape]
    if missing or unexpected or wrong:
        raise CheckpointError(
            f"{source} does not fit model kind '{kind}'."
            + (f" Missing {len(missing)} keys, e.g. {', '.join(missing[:4])}." if missing else "")
            + (f" Unexpected {len(unexpected)} keys, e.g. {', '.join(unexpected[:4])}." if unexpected else "")
            + (f" Shape mismatches: {'; '.join(wrong[:3])}." if wrong else "")
            + f" Expected layout: {LAYOUT_HINTS.get(kind, kind)}. Other model kinds need PyTorch: "
            + 'python -m pip install "medsamkit[torch]".')


def _varint(n: int) -> bytes:
    out = bytearray()
    while True:
        b = n & 0x7F
        n >>= 7
        out.append(b | (0x80 if n else 0))
        if not n:
            return bytes(out)


def _field(number: int, payload: bytes) -> bytes:
    """A length-delimited protobuf field."""
    return _varint(number << 3 | 2) + _varint(len(payload)) + payload


def _tensor_proto(name: str, array: np.ndarray, dtype: str) -> bytes:
    arr = np.ascontiguousarray(array, dtype=np.dtype(dtype).newbyteorder("<"))
    dims = b"".join(_varint(1 << 3) + _varint(int(d)) for d in arr.shape)
    return dims + _varint(2 << 3) + _varint(_ONNX_TYPES[dtype]) + _field(8, name.encode()) + _field(9, arr.tobytes())


def _read_varint(data, pos: int) -> tuple[int, int]:
    n = shift = 0
    while True:
        b = data[pos]
        pos += 1
        n |= (b & 0x7F) << shift
        shift += 7
        if not b & 0x80:
            return n, pos


def _with_initializers(model: bytes, extra: bytes) -> bytes:
    """ModelProto bytes with ``extra`` (GraphProto initializer fields) appended to its graph (field 7)."""
    out, pos = [], 0
    while pos < len(model):
        start = pos
        tag, pos = _read_varint(model, pos)
        wire = tag & 7
        if wire == 0:
            _, pos = _read_varint(model, pos)
        elif wire == 2:
            size, body = _read_varint(model, pos)
            pos = body + size
            if tag >> 3 == 7:
                out.append(_field(7, bytes(model[body:pos]) + extra))
                continue
        elif wire in (1, 5):
            pos += 8 if wire == 1 else 4
        else:
            raise CheckpointError("The shipped ONNX graph is damaged (unexpected protobuf field); reinstall medsamkit.")
        out.append(bytes(model[start:pos]))
    return b"".join(out)


def graph_bytes(component: str) -> bytes:
    """The shipped weightless graph, its SHA-256 checked against graphs.json."""
    info = manifest()["graphs"][component]
    data = (FOLDER / info["file"]).read_bytes()
    if hashlib.sha256(data).hexdigest() != info["sha256"]:
        raise CheckpointError(f"{info['file']} does not match its recorded SHA-256; reinstall medsamkit.")
    return data


def bind(component: str, state: dict) -> bytes:
    """The complete ONNX model of ``component`` with ``state``'s arrays as its named weights."""
    info = manifest()["graphs"][component]
    parts = []
    for name, shape, dtype in info["weights"]:
        arr = state.get(name)
        if arr is None or tuple(arr.shape) != tuple(shape):
            check_state(state)
        parts.append(_field(5, _tensor_proto(name, arr, dtype)))
    return _with_initializers(graph_bytes(component), b"".join(parts))
