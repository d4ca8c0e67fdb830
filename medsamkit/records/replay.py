"""Replay a prompt record: the same prompts, run again, on the recorded model or on another one.

:func:`replay` re-runs every entry of a record (:mod:`medsamkit.records.record`) in order through a
:class:`medsamkit.backend.Backend` (local or a server: built by :func:`open_replay_backend` through
``medsamkit.backend.open_backend``, so both share this code) and composes the segments the way the
results were written (replace / add / remove inside the entry's slice, slab or whole volume).

- Same model, weights, adapter and engine -> every entry's mask digest equals the recorded one
  (voxel-identical; ``EntryReplay.identical``).
- Another model or adapter -> the same prompts, new masks; :func:`dice_table` compares each segment
  with the recorded result (the snapshot the model left, else the original segmentation file).

What a record does not hold is not replayed: manual edits (paint, erase, scissors) and the Segment
Editor's editable-area / intensity masks of the original session. The Dice table therefore compares
with the model's own last result when the record carries its snapshot.
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field

import numpy as np

from ..errors import InputError
from ..metrics import dice
from .record import (RecordError, append_entry, mask_digest, model_block,
                      normalization_from_block, plan_from_block, result_block, unpack_mask)


@dataclass
class EntryReplay:
    entry: dict
    mask: np.ndarray            # this entry's mask: (H, W) for slice prompts, (K, J, I) for 3D runs
    seconds: float
    identical: bool             # digest equals the recorded one
    score: float | None = None
    scores: dict = field(default_factory=dict)
    slices: list = field(default_factory=list)


@dataclass
class ReplayResult:
    entries: list               # EntryReplay per record entry, in order
    segments: dict              # segment ID -> composed uint8 mask on the image grid
    names: dict                 # segment ID -> name
    seconds: float
    record: dict                # the replay's own record (new model, times and digests)

    @property
    def all_identical(self) -> bool:
        return all(e.identical for e in self.entries)


def _recorded_model(record: dict) -> dict:
    models = {(e["model"]["kind"], e["model"].get("weights_sha256"), str(e["model"].get("adapter")),
               e["model"].get("engine")) for e in record["entries"]}
    if not record["entries"]:
        raise RecordError("The record holds no entries: nothing to replay.")
    if len(models) > 1:
        raise InputError("The record's entries were made by different models; replay them with --model/--checkpoint "
                         "to run all on one model.")
    return record["entries"][0]["model"]


#: Spacing/origin (mm) and direction cosines may differ by this much (rounding in file headers).
GEOMETRY_TOLERANCE = 1e-3


def check_image(record: dict, image) -> None:
    """Refuse an image of another shape or geometry (spacing, origin, direction) than the record's entries."""
    from .record import geometry_of

    have = geometry_of(image)
    for e in record["entries"]:
        want = tuple(e["image"]["shape"])
        if want != tuple(have["shape"]):
            raise RecordError(f"Entry {e['id']} ({e['kind']}) was made on an image of shape {want}; the image "
                              f"given has shape {tuple(have['shape'])}. Give the volume the record was made on.")
        for key in ("spacing", "origin", "direction"):
            a, b = np.asarray(e["image"][key], dtype=float), np.asarray(have[key], dtype=float)
            if a.shape != b.shape or not np.allclose(a, b, rtol=0, atol=GEOMETRY_TOLERANCE):
                raise RecordError(f"Entry {e['id']} ({e['kind']}) was made on an image with {key} "
                                  f"{_fmt(a)}; the image given has {key} {_fmt(b)} (same shape, other geometry). "
                                  "Give the volume the record was made on (its recorded prompts are positions "
                                  "in that volume).")


def _fmt(values) -> str:
    return "(" + ", ".join(f"{float(v):.4g}" for v in np.ravel(values)) + ")"


def replay(backend, record: dict, image, model: dict | None = None, progress=None) -> ReplayResult:
    """Re-run ``record``'s entries on ``image`` (:class:`medsamkit.io.ImageData`) through ``backend``.

    model: the backend's model block for the replay's own record (default: asked from the backend).
    Raises RecordError when the image does not match the record; the engine's errors as they are.
    """
    from ..refinement import progressive_merge
    from ..volume import put_slice

    check_image(record, image)
    model = model or model_block(backend)
    t_all = time.perf_counter()
    shape = image.array.shape if image.is_3d else image.array.shape[:2]
    segments, names, done, new = {}, {}, [], None
    predictions: dict = {}
    current_key = None
    for n, e in enumerate(record["entries"]):
        if progress is not None:
            progress(n, len(record["entries"]), f"{e['kind']} {n + 1}")
        norm = normalization_from_block(e["window"])
        key = (norm.key, e["window"]["mode"])
        if key != current_key:  # one upload / normalisation per window
            if image.is_3d:
                backend.set_volume(image.array, normalization=norm, modality=image.modality, direction=image.direction)
            else:
                backend.set_image(image.array, normalization=norm, modality=image.modality)
            current_key = key
        p, plane = e["prompt"], e["plane"]
        t0 = time.perf_counter()
        scores, slices, score = {}, [], None
        if p.get("plan") is not None:
            plan = plan_from_block(p["plan"])
            if e["kind"] == "recist" and p["options"].get("single_slice") == "propagate" and len(plan.marked) == 1:
                k = plan.marked[0]  # RECIST lesion measured on one slice: propagated from it (medsamkit.recist)
                res = backend.propagate(k, plan.axis, box=[float(v) for v in plan.boxes[k]])
            else:
                res = backend.segment_plan(plan, refine=bool(p["options"].get("refine")))
            mask, scores, slices, axis = res.mask, res.scores, res.slices, res.axis
        elif e["kind"] == "propagate":
            box = p["box"]["xy"] if p.get("box") else None
            pts = [q["xy"] for q in p["points"]] or None
            labels = [q["label"] for q in p["points"]] or None
            opts = {k: v for k, v in p["options"].items() if k in ("margin_px", "score_threshold", "min_area",
                                                                    "max_slices")}
            res = backend.propagate(plane["index"], plane["axis"], box=box, points=pts, point_labels=labels, **opts)
            mask, scores, slices, axis = res.mask, res.scores, res.slices, res.axis
        else:
            box = p["box"]["xy"] if p.get("box") else None
            pts = np.array([q["xy"] for q in p["points"]], dtype=float) if p["points"] else None
            labels = np.array([q["label"] for q in p["points"]], dtype=np.int64) if p["points"] else None
            previous = predictions.get(p.get("previous")) if p.get("previous") else None
            if p.get("previous") and previous is None:
                raise RecordError(f"Entry {e['id']} refines entry {p['previous']}, which is not in the record; "
                                  "the record is incomplete.")
            kw = {"slice_index": plane["index"], "axis": plane["axis"]} if image.is_3d else {}
            pred = backend.predict(box=box, points=pts, point_labels=labels, mask_input=previous, **kw)
            mask = pred.mask
            if p.get("merge") == "progressive" and previous is not None and pts is not None:
                mask = progressive_merge(previous.mask, pred.mask, pts[-1], int(labels[-1]) == 1)
                pred = _with_mask(pred, mask)  # the next refinement starts from the merged mask, as in the effect
            predictions[e["id"]] = pred
            score, axis = float(pred.score), (plane["axis"] if plane else None)
        seconds = time.perf_counter() - t0
        mask = np.asarray(mask)
        seg_id = e["segment"]["id"]
        names[seg_id] = e["segment"]["name"]
        composed = segments.setdefault(seg_id, np.zeros(shape, np.uint8))
        full = mask.astype(np.uint8)
        if image.is_3d and mask.ndim == 2:
            full = np.zeros(shape, np.uint8)
            put_slice(full, mask.astype(np.uint8), plane["index"], plane["axis"])
        _write(composed, full, e, plane, slices, axis if image.is_3d else None)
        identical = mask_digest(mask) == e["result"]["mask_sha256"]
        done.append(EntryReplay(e, mask, seconds, identical, score, dict(scores), list(slices)))
        entry = dict(e, model=model, model_seconds=seconds,
                     result=result_block(mask, scores=scores or None, slices=slices or None, snapshot=composed))
        new = append_entry(new, entry)
    return ReplayResult(done, segments, names, time.perf_counter() - t_all, new)


def _with_mask(pred, mask):
    from dataclasses import is_dataclass, replace

    if is_dataclass(pred):
        return replace(pred, mask=mask)
    pred.mask = mask  # a remote prediction: its logits stay on the server
    return pred


def _write(composed: np.ndarray, full: np.ndarray, entry: dict, plane, slices, axis) -> None:
    """Apply one entry's mask to a segment as the original session did (mode within region)."""
    region = [slice(None)] * composed.ndim
    where = entry["write"]["region"]
    if composed.ndim == 3 and where == "slice" and plane:
        region[plane["axis"]] = slice(plane["index"], plane["index"] + 1)
    elif composed.ndim == 3 and where == "slab" and slices:
        region[axis] = slice(min(slices), max(slices) + 1)
    region = tuple(region)
    mode = entry["write"]["mode"]
    if mode == "replace":
        composed[region] = full[region]
    elif mode == "add":
        composed[region] |= full[region]
    else:
        composed[region] &= (1 - full[region]).astype(np.uint8)


def recorded_segments(record: dict) -> dict:
    """{segment ID: the segment as the model last left it}, from the newest snapshot of each segment."""
    out = {}
    for e in record["entries"]:
        snap = e["result"].get("snapshot")
        if snap is not None:
            out[e["segment"]["id"]] = unpack_mask(snap, e["image"]["shape"])
    return out


def dice_table(result: ReplayResult, original: dict) -> list[dict]:
    """Rows {segment, name, entries, voxels_recorded, voxels_replayed, dice, identical} per segment."""
    rows = []
    for seg_id, mask in result.segments.items():
        ref = original.get(seg_id)
        entries = [r for r in result.entries if r.entry["segment"]["id"] == seg_id]
        rows.append({"segment": seg_id, "name": result.names.get(seg_id, seg_id), "entries": len(entries),
                     "voxels_recorded": None if ref is None else int(np.count_nonzero(ref)),
                     "voxels_replayed": int(np.count_nonzero(mask)),
                     "dice": None if ref is None else dice(ref, mask),
                     "identical": all(r.identical for r in entries)})
    return rows


def format_table(rows: list[dict]) -> str:
    lines = [f"{'segment':<20} {'entries':>7} {'recorded':>9} {'replayed':>9} {'Dice':>6}  identical"]
    for r in rows:
        d = "-" if r["dice"] is None else f"{r['dice']:.3f}"
        rec = "-" if r["voxels_recorded"] is None else str(r["voxels_recorded"])
        lines.append(f"{r['name'][:20]:<20} {r['entries']:>7} {rec:>9} {r['voxels_replayed']:>9} {d:>6}  "
                     f"{'yes' if r['identical'] else 'no'}")
    return "\n".join(lines)
