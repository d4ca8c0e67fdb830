"""Prompt records: how every model result was made, as versioned JSON that travels with the segmentation.

Single source of truth for the record format (schema :data:`SCHEMA`, version :data:`SCHEMA_VERSION`),
for building entries from the engine's prompts, for checking a record read back (a corrupt or foreign
record is refused with :class:`RecordError`, saying what is wrong and what to do), and for the two
places a record is stored outside Slicer's memory:

- a **segment tag** ``MedSAM.PromptRecord`` (:data:`TAG`): Slicer saves segment tags in the
  ``.seg.nrrd`` header as ``Segment<N>_Tags`` (``name:value|name:value|``, not escaped), so the JSON is
  written with ``%``, ``|``, ``:`` and line breaks percent-encoded (:func:`encode_tag`);
- a **JSON sidecar** ``<output>.prompts.json`` next to a CLI/batch output (:func:`sidecar_path`).

A record is ``{"schema": ..., "schema_version": 1, "entries": [entry, ...]}``; one entry per model
result (a box, points, a refinement, a propagation, a markers run, a batch case)::

    {"id": "3f2a9c0e1b7d", "kind": "box" | "points" | "box+points" | "refine" | "propagate" | "markers" |
                             "recist" | "batch",
     "segment": {"id": "tumour", "name": "tumour"},
     "time": "2026-12-02T23:50:01.123456+00:00", "model_seconds": 1.52,
     "image": {"shape": [K, J, I] | [H, W], "is_volume": true, "spacing": [si, sj, sk],
               "origin": [x, y, z], "direction": [9 numbers]},                   # LPS, as in the file
     "plane": {"axis": 0, "name": "axial", "index": 11} | null,                  # numpy axis of (K, J, I)
     "prompt": {"box": {"xy": [x0, y0, x1, y1], "ijk": [[i, j, k], [i, j, k]], "lps": [[...], [...]]},
                "points": [{"xy": [x, y], "ijk": [...], "lps": [...], "label": 1}],
                "previous": "<entry id>" | null,    # refine: that entry's prediction was the mask prompt
                "merge": "progressive" | null,      # refine: the click corrected only its region
                "plan": {"axis": 0, "boxes": {"11": [x0, y0, x1, y1]}, "marked": [11]} | null,
                "markers": [{"name": "long_11", "start_lps": [...], "end_lps": [...]}] | null,
                "options": {...}},                 # propagate: margin_px, score_threshold; markers: refine
     "window": {"mode": "range", "low": -910.0, "high": 590.0, "keep_zero": false, "label": "lung",
                "requested": "auto"},
     "model": {"kind": "litemedsam", "weights_sha256": "...", "adapter": {"name": ..., "sha256": ...} | null,
               "engine": "torch" | "onnx", "backend": "local" | "http://host:port"},
     "medsamkit_version": "0.1.0",
     "write": {"mode": "replace" | "add" | "remove", "region": "slice" | "slab" | "volume"},
     "result": {"voxels": 812, "mask_sha256": "...", "slices": [10, 11, 12], "scores": {"11": 0.93},
                "snapshot": "<zlib+base64 packed bits of the whole segment after this result>" | absent}}

Frames: ``xy`` are the slice's pixels exactly as given to the model (x = column, y = row; these are
what replay uses, so replay is exact); ``ijk`` continuous voxel indices; ``lps`` physical mm in the
volume file's frame (Slicer shows RAS = diag(-1, -1, 1) LPS). For a 2D image ``ijk`` is (x, y, 0) and
``lps`` uses the image's 2D spacing/origin/direction with z = 0.

Only the newest entry of a segment keeps its ``snapshot`` (the segment as the model left it: the
annotation report diffs it against the final segment to count manual edits); older entries drop it
so the tag stays small. Undo restores the previous tag text whole, snapshot included.
"""
from __future__ import annotations

import base64
import hashlib
import json
import os
import uuid
import zlib
from datetime import datetime, timezone
from pathlib import Path

import numpy as np

from .. import record_schema
from ..errors import InputError

SCHEMA = "medsamkit.prompt-record"
SCHEMA_VERSION = 1
TAG = "MedSAM.PromptRecord"
SIDECAR_SUFFIX = ".prompts.json"
KINDS, WRITE_MODES, REGIONS = record_schema.KINDS, record_schema.WRITE_MODES, record_schema.REGIONS


class RecordError(InputError):
    """A prompt record that cannot be used: not JSON, another program's, a newer schema, or damaged."""


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
    """One entry (module docstring). Raises InputError for an unknown kind, mode or region."""
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


# ---------------------------------------------------------------------------------------------------------
# Record: a list of entries; JSON in and out with checks
# ---------------------------------------------------------------------------------------------------------
def new_record(entries=()) -> dict:
    return {"schema": SCHEMA, "schema_version": SCHEMA_VERSION, "entries": list(entries)}


def append_entry(record: "dict | None", entry: dict) -> dict:
    """A new record with ``entry`` appended; older entries of the same segment lose their snapshot."""
    record = new_record() if record is None else record
    seg = entry["segment"]["id"]
    entries = []
    for e in record["entries"]:
        if e["segment"]["id"] == seg and "snapshot" in e.get("result", {}):
            e = dict(e, result={k: v for k, v in e["result"].items() if k != "snapshot"})
        entries.append(e)
    return new_record(entries + [entry])


def dumps(record: dict, indent: int | None = 1) -> str:
    check_record(record)
    return json.dumps(record, indent=indent, allow_nan=False)


def loads(text: str, source: str = "record") -> dict:
    """Parse and check a record; RecordError with what is wrong and what to do."""
    try:
        data = json.loads(text)
    except RecursionError:
        raise RecordError(f"{source} is not a prompt record: its JSON is nested too deeply. Use the record from the "
                          ".seg.nrrd or the sidecar written with it.") from None
    except (ValueError, TypeError) as exc:
        raise RecordError(f"{source} is not a prompt record: not valid JSON ({exc}). The file may be truncated or "
                          "edited by hand; use the record from the .seg.nrrd or the sidecar written with it.") from exc
    return check_record(data, source)


def check_record(data, source: str = "record") -> dict:
    """Checks a parsed record's schema and every entry's fields, types and limits (:mod:`medsamkit.record_schema`)
    before anything uses it; returns it. Raises RecordError naming the record, the entry and the field."""
    if not isinstance(data, dict) or data.get("schema") != SCHEMA:
        found = data.get("schema") if isinstance(data, dict) else type(data).__name__
        raise RecordError(f"{source} is not a medsamkit prompt record (schema {str(found)[:80]!r}, expected "
                          f"'{SCHEMA}'). Give the .prompts.json sidecar or a .seg.nrrd written by medsamkit.")
    version = data.get("schema_version")
    if not isinstance(version, int) or isinstance(version, bool) or version < 1:
        raise RecordError(f"{source} has no valid schema_version ({str(version)[:40]!r}); the record is damaged.")
    if version > SCHEMA_VERSION:
        raise RecordError(f"{source} uses prompt-record schema {version}, newer than this medsamkit reads "
                          f"({SCHEMA_VERSION}); update medsamkit (python -m pip install -U medsamkit).")
    entries = data.get("entries")
    if not isinstance(entries, list):
        raise RecordError(f"{source} has no list of entries; the record is damaged.")
    if len(entries) > record_schema.MAX_ENTRIES:
        raise RecordError(f"{source} holds {len(entries):,} entries; records of at most "
                          f"{record_schema.MAX_ENTRIES:,} are read. Split the record.")
    for n, e in enumerate(entries, 1):
        try:
            record_schema.check_entry(e)
        except record_schema.Problem as exc:
            name = e.get("id") if isinstance(e, dict) and isinstance(e.get("id"), str) else None
            where = f"{source}, entry {n}" + (f" (id {name[:16]})" if name else "")
            raise RecordError(f"{where}, field {exc.field}: {exc.what}. The record is damaged and cannot be used; "
                              "use an intact copy (the sidecar or the .seg.nrrd written with the result).") from None
    return data


# ---------------------------------------------------------------------------------------------------------
# Storage: segment tag text, sidecar file
# ---------------------------------------------------------------------------------------------------------
_ESCAPES = (("%", "%25"), ("|", "%7C"), (":", "%3A"), ("\n", "%0A"), ("\r", "%0D"))


def encode_tag(record: dict) -> str:
    """Record -> text safe inside Slicer's ``Segment<N>_Tags`` field (compact JSON, percent-escaped)."""
    text = json.dumps(check_record(record), separators=(",", ":"), allow_nan=False)
    for raw, esc in _ESCAPES:
        text = text.replace(raw, esc)
    return text


def decode_tag(text: str, source: str = "segment tag") -> dict:
    from urllib.parse import unquote

    return loads(unquote(text), source)


def sidecar_path(output: "str | os.PathLike") -> Path:
    """``lesion.seg.nrrd`` -> ``lesion.seg.nrrd.prompts.json`` (same folder)."""
    out = Path(output)
    return out.with_name(out.name + SIDECAR_SUFFIX)


def write_sidecar(output: "str | os.PathLike", record: dict) -> Path:
    """Write the record next to ``output`` atomically; returns the sidecar path."""
    from ..io import atomic_output

    path = sidecar_path(output)
    text = dumps(record)
    with atomic_output(path) as tmp:
        Path(tmp).write_text(text, encoding="utf-8")
    return path


def read_record(path: "str | os.PathLike") -> dict:
    """A record from a ``.prompts.json`` sidecar, or from the segment tags of a ``.seg.nrrd``
    (all segments' entries merged in time order). RecordError / InputError with a remedy."""
    path = Path(path)
    if not path.is_file():
        raise InputError(f"Record not found: {path}")
    if path.name.lower().endswith(".seg.nrrd"):
        records = seg_nrrd_records(path)
        if not records:
            side = sidecar_path(path)
            if side.is_file():
                return read_record(side)
            raise RecordError(f"{path} holds no medsamkit prompt record (no '{TAG}' segment tag) and has no "
                              f"{side.name} beside it.")
        entries = sorted((e for r in records.values() for e in r["entries"]), key=lambda e: e["time"])
        return new_record(entries)
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        raise RecordError(f"{path} is not a prompt record (not UTF-8 text): {exc}.") from exc
    return loads(text, str(path.name))


def seg_nrrd_records(path: "str | os.PathLike") -> dict:
    """{segment ID: record} from the ``Segment<N>_Tags`` of a .seg.nrrd (read with SimpleITK, header only)."""
    import SimpleITK as sitk

    reader = sitk.ImageFileReader()
    reader.SetFileName(str(path))
    reader.ReadImageInformation()
    out = {}
    for key in reader.GetMetaDataKeys():
        if not (key.startswith("Segment") and key.endswith("_Tags")):
            continue
        n = key[len("Segment"):-len("_Tags")]
        for item in reader.GetMetaData(key).split("|"):
            name, _, value = item.partition(":")
            if name == TAG:
                seg_id = reader.GetMetaData(f"Segment{n}_ID") if reader.HasMetaDataKey(f"Segment{n}_ID") else n
                out[seg_id] = decode_tag(value, f"{Path(path).name} segment {seg_id}")
    return out


def record_tags(record: dict) -> dict:
    """{segment ID: tag text} splitting a record by segment (for writing a .seg.nrrd)."""
    by_seg: dict = {}
    for e in record["entries"]:
        by_seg.setdefault(e["segment"]["id"], []).append(e)
    return {seg: encode_tag(new_record(es)) for seg, es in by_seg.items()}
