"""Prompt records: how every model result was made, as versioned JSON that travels with the segmentation.

Single source of truth for the record format (schema :data:`SCHEMA`, version :data:`SCHEMA_VERSION`) and
the one module to import it from: entries are built from the engine's prompts in :mod:`.entries`, a
record read back is checked in :mod:`.document` (a corrupt or foreign record is refused with
:class:`RecordError`, saying what is wrong and what to do), and this module stores records in the two
places outside Slicer's memory:

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

import json
import os
from pathlib import Path

from ..errors import InputError
from .document import (KINDS, REGIONS, SCHEMA, SCHEMA_VERSION, WRITE_MODES,  # noqa: F401 (public here too)
                       RecordError, append_entry, check_record, dumps, loads, new_record)
from .entries import (geometry_of, image_geometry, make_entry, markers_block,  # noqa: F401 (public here too)
                      markers_from_block, mask_digest, model_block, normalization_from_block, pack_mask,
                      plan_block, plan_from_block, plane_name, prompt_block, prompt_kind, result_block,
                      unpack_mask, weights_block, window_block)

TAG = "MedSAM.PromptRecord"
SIDECAR_SUFFIX = ".prompts.json"
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
