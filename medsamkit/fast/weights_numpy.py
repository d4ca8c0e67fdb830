"""Torch-free readers of weight files: PyTorch zip checkpoints and safetensors, into numpy arrays.

:func:`read_pth` opens a ``torch.save`` zip file (``ARCHIVE/data.pkl`` + ``ARCHIVE/data/N``
storages) with a *restricted* unpickler: it accepts only the globals a plain state dict needs
(``collections.OrderedDict``, ``torch._utils._rebuild_tensor_v2``/``_rebuild_parameter`` and the
typed storage classes, which are never imported: each maps to a numpy dtype) and refuses any other,
so a file carrying pickled objects cannot run code. Tensors become numpy views of the storages
(strides honoured, copied to contiguous arrays).

:func:`read_safetensors` reads the safetensors format (8-byte little-endian header length, a JSON
header ``{name: {dtype, shape, data_offsets}}``, ``__metadata__``, then the raw data).
"""
from __future__ import annotations

import collections
import json
import pickle
import zipfile
from pathlib import Path

import numpy as np

from ..errors import CheckpointError

_STORAGES = {"FloatStorage": np.float32, "DoubleStorage": np.float64, "HalfStorage": np.float16,
             "LongStorage": np.int64, "IntStorage": np.int32, "ShortStorage": np.int16,
             "CharStorage": np.int8, "ByteStorage": np.uint8, "BoolStorage": np.bool_}
_ST_DTYPES = {"F32": np.float32, "F16": np.float16, "F64": np.float64, "I64": np.int64, "I32": np.int32,
              "I16": np.int16, "I8": np.int8, "U8": np.uint8, "BOOL": np.bool_}


class _Storage:
    def __init__(self, dtype):
        self.dtype = np.dtype(dtype)


def _rebuild_tensor_v2(storage, offset, size, stride, requires_grad=False, hooks=None, metadata=None):
    data = storage  # an ndarray (1-D) from persistent_load
    item = data.itemsize
    if not size:
        return np.array(data[offset], copy=True)
    view = np.lib.stride_tricks.as_strided(data[offset:], shape=tuple(size),
                                           strides=tuple(s * item for s in stride))
    return np.ascontiguousarray(view)


def _rebuild_parameter(data, requires_grad=False, hooks=None):
    return data


class _Unpickler(pickle.Unpickler):
    def __init__(self, fh, archive: zipfile.ZipFile, prefix: str):
        super().__init__(fh)
        self._zip, self._prefix = archive, prefix

    def find_class(self, module, name):
        if (module, name) == ("collections", "OrderedDict"):
            return collections.OrderedDict
        if module == "torch._utils" and name == "_rebuild_tensor_v2":
            return _rebuild_tensor_v2
        if module == "torch._utils" and name == "_rebuild_parameter":
            return _rebuild_parameter
        if module == "torch" and name in _STORAGES:
            return _Storage(_STORAGES[name])
        raise pickle.UnpicklingError(f"{module}.{name}")

    def persistent_load(self, pid):
        if not (isinstance(pid, tuple) and len(pid) >= 5 and pid[0] == "storage" and isinstance(pid[1], _Storage)):
            raise pickle.UnpicklingError(f"persistent id {str(pid)[:60]}")
        dtype, key = pid[1].dtype, str(pid[2])
        raw = self._zip.read(f"{self._prefix}data/{key}")
        return np.frombuffer(raw, dtype=dtype.newbyteorder("<"))


def read_pth(path: "str | Path") -> dict:
    """A ``torch.save`` zip file holding a state dict -> ``{key: ndarray}``; CheckpointError otherwise."""
    path = Path(path)
    try:
        with zipfile.ZipFile(path) as archive:
            pkl = [n for n in archive.namelist() if n.endswith("/data.pkl") or n == "data.pkl"]
            if len(pkl) != 1:
                raise CheckpointError(f"{path} is not a PyTorch zip checkpoint (no single data.pkl inside).")
            prefix = pkl[0][:-len("data.pkl")]
            order = archive.read(prefix + "byteorder").decode() if prefix + "byteorder" in archive.namelist() else "little"
            if order != "little":
                raise CheckpointError(f"{path} was saved on a big-endian machine; convert it to little-endian first.")
            with archive.open(pkl[0]) as fh:
                obj = _Unpickler(fh, archive, prefix).load()
    except pickle.UnpicklingError as exc:
        raise CheckpointError(f"Refusing to read {path}: it holds pickled Python objects ({exc}) besides a plain state "
                              "dict of tensors; medsamkit never unpickles them. Use the authors' weights file.") from exc
    except (zipfile.BadZipFile, OSError, EOFError, KeyError, ValueError) as exc:
        raise CheckpointError(f"Cannot read checkpoint {path}: it is truncated or not a PyTorch zip checkpoint "
                              f"({exc}). Download it again and compare its SHA-256.") from exc
    for key in ("model", "state_dict", "model_state"):
        if isinstance(obj, dict) and isinstance(obj.get(key), dict):
            obj = obj[key]
            break
    if not isinstance(obj, dict) or not obj or not all(isinstance(v, np.ndarray) for v in obj.values()):
        raise CheckpointError(f"{path} does not hold a state dict of tensors.")
    return dict(obj)


def read_safetensors(path: "str | Path") -> tuple[dict, dict]:
    """-> ({name: ndarray}, metadata). CheckpointError when the file is damaged or uses an unknown dtype."""
    path = Path(path)
    try:
        raw = path.read_bytes()
        n = int.from_bytes(raw[:8], "little")
        header = json.loads(raw[8:8 + n])
        meta = dict(header.pop("__metadata__", None) or {})
        base = 8 + n
        tensors = {}
        for name, info in header.items():
            start, end = info["data_offsets"]
            dtype = np.dtype(_ST_DTYPES[info["dtype"]]).newbyteorder("<")
            if base + end > len(raw):
                raise ValueError(f"{name} runs past the end of the file")
            arr = np.frombuffer(raw, dtype=dtype, count=(end - start) // dtype.itemsize, offset=base + start)
            tensors[name] = arr.reshape(info["shape"]).astype(dtype.newbyteorder("="))
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise CheckpointError(f"{path.name} is not a readable safetensors file ({exc}); reinstall medsamkit.") from exc
    return tensors, meta
