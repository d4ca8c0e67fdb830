"""Building a prompt record's entry from what the engine was given and what it returned.

One function per block of an entry (layout: :mod:`medsamkit.records.record`): the image's geometry,
the prompt in slice pixels, voxel indices and LPS millimetres, the markers and their box plan, the
window, the model, the resulting mask (digest and packed snapshot); :func:`make_entry` puts them
together. The ``*_from_block`` functions turn blocks back into the engine's objects for replay.
"""
from __future__ import annotations

import base64
import hashlib
import uuid
import zlib
from datetime import datetime, timezone
from pathlib import Path

import numpy as np

from ..errors import InputError
from .document import KINDS, REGIONS, WRITE_MODES, RecordError


# ---------------------------------------------------------------------------------------------------------
# Geometry of the image a record refers to
# ---------------------------------------------------------------------------------------------------------
def image_geometry(shape, spacing=None, origin=None, direction=None) -> dict:
    """The ``image`` block: numpy shape and LPS geometry (3D: 3/3/9 numbers; 2D: 2/2/4)."""
    shape = [int(n) for n in shape]
    nd = 3 if len(shape) == 3 else 2
    spacing = [1.0] * nd if spacing is None else [float(v) for v in spacing]
    origin = [0.0] * nd if origin is None else [float(v) for v in origin]
    direction = np.eye(nd).ravel().tolist() if direction is None else [float(v) for v in direction]
    return {"shape": shape, "is_volume": nd == 3, "spacing": spacing, "origin": origin, "direction": direction}


def geometry_of(image) -> dict:
    """The ``image`` block of a :class:`medsamkit.io.ImageData` (a 2D RGB image keeps its (H, W))."""
    shape = image.array.shape[:2] if not image.is_3d else image.array.shape
    return image_geometry(shape, image.spacing, image.origin, image.direction)


def _ijk_to_lps(block: dict) -> np.ndarray:
    nd = 3 if block["is_volume"] else 2
    m = np.eye(4)
    d = np.asarray(block["direction"], dtype=float).reshape(nd, nd) * np.asarray(block["spacing"], dtype=float)
    m[:nd, :nd] = d
    m[:nd, 3] = block["origin"]
    return m


def plane_name(axis: int, direction) -> str | None:
    """'axial' / 'coronal' / 'sagittal' for the numpy axis whose slices are closest to that plane."""
    from ..volume import PLANES, numpy_axis

    for name in PLANES:
        if numpy_axis(name, direction) == int(axis):
            return name
    return None


def _slice_ijk(block: dict, xy, axis, index) -> np.ndarray:
    from ..geometry import SLICE_INDEX_IJK, SLICE_XY_IJK

    xy = np.asarray(xy, dtype=float).reshape(-1, 2)
    out = np.zeros((len(xy), 3))
    if axis is None:  # a 2D image: (x, y, 0)
        out[:, :2] = xy
        return out
    ax_x, ax_y = SLICE_XY_IJK[int(axis)]
    out[:, ax_x], out[:, ax_y] = xy[:, 0], xy[:, 1]
    out[:, SLICE_INDEX_IJK[int(axis)]] = index
    return out


def _lps(block: dict, ijk: np.ndarray) -> np.ndarray:
    m = _ijk_to_lps(block)
    return ijk @ m[:3, :3].T + m[:3, 3]


def _coords(block, xy, axis, index) -> dict:
    ijk = _slice_ijk(block, xy, axis, index)
    return {"ijk": ijk.tolist(), "lps": _lps(block, ijk).tolist()}


def prompt_block(image: dict, axis=None, index=None, box=None, points=None, labels=None) -> dict:
    """``prompt`` block for prompts in slice pixels (box (4,) XYXY, points (N, 2) XY, labels (N,))."""
    out: dict = {"box": None, "points": [], "previous": None, "merge": None, "plan": None, "markers": None,
                 "options": {}}
    if box is not None:
        b = [float(v) for v in np.asarray(box, dtype=float).reshape(4)]
        c = _coords(image, [b[:2], b[2:]], axis, index)
        out["box"] = {"xy": b, "ijk": c["ijk"], "lps": c["lps"]}
    if points is not None and len(points):
        pts = np.asarray(points, dtype=float).reshape(-1, 2)
        labs = np.ones(len(pts), int) if labels is None else np.asarray(labels).reshape(-1)
        c = _coords(image, pts, axis, index)
        out["points"] = [{"xy": [float(p[0]), float(p[1])], "ijk": c["ijk"][n], "lps": c["lps"][n],
                          "label": int(labs[n])} for n, p in enumerate(pts)]
    return out


def plan_block(plan) -> dict:
    """A :class:`medsamkit.markers.BoxPlan` as JSON (the boxes replay uses, exactly)."""
    return {"axis": int(plan.axis), "boxes": {str(int(k)): [float(v) for v in np.asarray(b).reshape(4)]
                                              for k, b in sorted(plan.boxes.items())},
            "marked": [int(k) for k in plan.marked]}


def plan_from_block(block: dict):
    from ..markers import BoxPlan

    return BoxPlan(axis=int(block["axis"]), boxes={int(k): np.asarray(v, dtype=float) for k, v in
                                                   sorted(block["boxes"].items(), key=lambda kv: int(kv[0]))},
                   marked=[int(k) for k in block.get("marked", [])], warnings=[])


def markers_block(markers) -> list:
    """Marker lines (RAS in memory) -> LPS for the record."""
    flip = np.array([-1.0, -1.0, 1.0])
    return [{"name": m.name, "start_lps": (np.asarray(m.start_ras) * flip).tolist(),
             "end_lps": (np.asarray(m.end_ras) * flip).tolist()} for m in markers]


def markers_from_block(block) -> list:
    from ..markers import Marker

    flip = np.array([-1.0, -1.0, 1.0])
    return [Marker(np.asarray(m["start_lps"], dtype=float) * flip, np.asarray(m["end_lps"], dtype=float) * flip,
                   str(m.get("name", ""))) for m in (block or [])]


def window_block(norm, requested=None) -> dict:
    """The resolved :class:`medsamkit.preprocess.Normalization` (exact floats) and what the user asked for."""
    return {"mode": norm.mode, "low": None if norm.low is None else float(norm.low),
            "high": None if norm.high is None else float(norm.high), "keep_zero": bool(norm.keep_zero),
            "label": norm.label, "requested": None if requested is None else str(requested)}


def normalization_from_block(block: dict):
    from ..preprocess import Normalization

    return Normalization(block["mode"], block.get("low"), block.get("high"), bool(block.get("keep_zero")),
                         block.get("label") or "")


def model_block(source, backend_spec: str = "local") -> dict:
    """What model made a result: a Backend, a Predictor or a (possibly adapted / ONNX) model.

    A local model gives its full weights SHA-256 (of the adapted weights when an adapter is applied:
    ``models.loader.load_model``); a server gives the 16-hex-digit prefix in its model id.
    """
    model = getattr(getattr(source, "predictor", source), "model", source)
    if hasattr(source, "info") and not hasattr(source, "predictor") and not hasattr(model, "kind"):
        info = source.info()  # a remote backend: what the server says about its model
        extra = info.extra or {}
        model_id = extra.get("model_id") or ""
        # full SHA-256 and adapter from servers of this version; older ones give the id's 16-digit prefix
        sha = extra.get("weights_sha256") or (model_id.split(":")[1] if model_id.count(":") >= 1 else None)
        return {"kind": info.kind, "weights_sha256": sha, "adapter": extra.get("adapter"),
                "engine": extra.get("engine") or "torch",
                "backend": (info.url or backend_spec) if info.remote else backend_spec}
    return {"kind": model.kind, **weights_block(model), "engine": getattr(model, "engine", "torch") or "torch",
            "backend": backend_spec}


def weights_block(model) -> dict:
    """{"weights_sha256", "adapter"} of a loaded model: the full SHA-256 of its (adapted) weights and the adapter's
    file name and SHA-256 (None without one). Also what a server reports in its /version."""
    base = getattr(model, "reference", None) or model  # an ONNX model wraps its torch reference
    adapter = getattr(model, "adapter", None) or getattr(base, "adapter", None)
    sha = getattr(model, "checkpoint_sha256", None) or getattr(base, "checkpoint_sha256", None)
    return {"weights_sha256": sha,
            "adapter": None if not adapter else {"name": Path(adapter["path"]).name, "sha256": adapter["sha256"]}}


def mask_digest(mask) -> str:
    """SHA-256 of a binary mask (shape and bits): equal digests = voxel-identical masks."""
    arr = np.ascontiguousarray(np.asarray(mask) != 0)
    h = hashlib.sha256(repr(arr.shape).encode())
    h.update(np.packbits(arr).tobytes())
    return h.hexdigest()


def pack_mask(mask) -> str:
    """Binary mask -> zlib-compressed packed bits, base64 text (a lung CT tumour mask: ~200 bytes)."""
    arr = np.asarray(mask) != 0
    return base64.b64encode(zlib.compress(np.packbits(arr).tobytes(), 6)).decode("ascii")


def unpack_mask(text: str, shape) -> np.ndarray:
    """Inverse of :func:`pack_mask` -> uint8 0/1 of ``shape``. RecordError when the data are damaged; never
    inflates more than the shape's packed size."""
    n = int(np.prod(shape))
    want = (n + 7) // 8
    try:
        d = zlib.decompressobj()
        raw = d.decompress(base64.b64decode(text.encode("ascii"), validate=True), want + 1)
        if len(raw) != want or not d.eof:
            raise ValueError(f"{len(raw)}{'+' if len(raw) > want else ''} bytes of mask bits where the image's "
                             f"shape {tuple(shape)} needs {want}")
        bits = np.frombuffer(raw, np.uint8)
        return np.unpackbits(bits, count=n).reshape(tuple(shape)).astype(np.uint8)
    except (ValueError, zlib.error) as exc:
        raise RecordError(f"The mask snapshot in this record is damaged ({exc}); the record cannot be used for "
                          "the manual-edit count. Replay it to rebuild the model's masks.") from exc


def result_block(mask, scores=None, slices=None, snapshot=None) -> dict:
    """``result`` block: voxel count and digest of the mask this entry produced (2D or 3D)."""
    arr = np.asarray(mask)
    out = {"voxels": int(np.count_nonzero(arr)), "mask_sha256": mask_digest(arr)}
    if slices is not None:
        out["slices"] = [int(k) for k in slices]
    if scores:
        out["scores"] = {str(int(k)): float(v) for k, v in scores.items()}
    if snapshot is not None:
        out["snapshot"] = pack_mask(snapshot)
    return out


def make_entry(kind: str, image: dict, prompt: dict, window: dict, model: dict, result: dict,
               segment_id: str = "Segment_1", segment_name: str | None = None, plane_axis=None, plane_index=None,
               model_seconds: float = 0.0, mode: str = "replace", region: str = "volume",
               when: "datetime | None" = None) -> dict:
    """One entry (layout: :mod:`medsamkit.records.record`). Raises InputError for an unknown kind, mode or region."""
    from .. import __version__

    if kind not in KINDS:
        raise InputError(f"Unknown prompt kind '{kind}'; one of {', '.join(KINDS)}.")
    if mode not in WRITE_MODES or region not in REGIONS:
        raise InputError(f"Write mode/region must be one of {WRITE_MODES} / {REGIONS}; got {mode}/{region}.")
    plane = None
    if plane_axis is not None and image["is_volume"]:
        plane = {"axis": int(plane_axis), "name": plane_name(int(plane_axis), image["direction"]),
                 "index": None if plane_index is None else int(plane_index)}
    return {"id": uuid.uuid4().hex[:12], "kind": kind,
            "segment": {"id": str(segment_id), "name": str(segment_name or segment_id)},
            "time": (when or datetime.now(timezone.utc)).isoformat(), "model_seconds": float(model_seconds),
            "image": image, "plane": plane, "prompt": prompt, "window": window, "model": model,
            "medsamkit_version": __version__, "write": {"mode": mode, "region": region}, "result": result}


def prompt_kind(box, points, previous=None) -> str:
    if previous is not None and points is not None and len(points):
        return "refine"
    has_pts = points is not None and len(points)
    return "box+points" if box is not None and has_pts else ("box" if box is not None else "points")
