"""Benchmark a model on a dataset folder (the shared dev-set format): DSC / NSD / HD95 per case.

Protocols (prompts are derived from the reference mask, no person needed):

- ``box``: the tight bounding box of the reference, each side enlarged by a seeded random 0..jitter
  pixels (MedSAM's training perturbation; jitter 0 = tight). 3D: every reference slice along the
  axial axis gets its own 2D box (the upper bound of the marker workflow).
- ``points``: one positive click at the interior point farthest from the boundary (per slice in 3D).
- ``markers`` (3D only): the simulated reader (:mod:`medsamkit.simulated_reader`) draws long/short axes every
  ``every`` slices -> :func:`~medsamkit.markers.boxes_from_markers` -> :func:`segment_volume`.
- ``propagate`` (3D only): the tight box of the slice with the largest reference area, then
  :func:`~medsamkit.volume_segmentation.propagate` both ways.

Each label of each case is one record. Spacing: 3D from the image; 2D from ``pixel_spacing_mm`` when
the manifest gives it, else 1 (NSD tolerance and HD95 then in pixels; ``spacing_unit`` says which).
Intensities follow the manifest's ``preprocessing`` (CT window, or percentiles over the volume).
"""
from __future__ import annotations

import json
import os
import resource
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from ..errors import InputError
from ..metrics import DEFAULT_TOLERANCE_MM, evaluate
from ..backend.base import Backend
from ..preprocess import Normalization, normalize_to_uint8, resolve_normalization
from ..progress import CancelFn, ProgressFn, check_cancel, report

PROTOCOLS = ("box", "points", "markers", "propagate")
PROTOCOLS_3D_ONLY = ("markers", "propagate")


@dataclass
class BenchSettings:
    protocol: str = "box"
    every: int = 5               # markers: a simulated reader marks every N slices
    jitter: int = 0              # box: enlarge each side by a random 0..jitter pixels
    seed: int = 0
    tolerance_mm: float = DEFAULT_TOLERANCE_MM
    refine: bool = False         # markers: refinement pass
    margin_mm: float | None = None  # markers: box margin (None: markers.DEFAULT_MARGIN_MM)
    datasets: tuple | None = None   # only these dataset names
    limit: int | None = None        # at most this many cases per dataset
    overlays: str | None = None     # folder for overlay PNGs


def _manifest_cases(path: Path) -> list[dict]:
    """The manifest's ``cases`` list; InputError (not a traceback) for a malformed file."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise InputError(f"Cannot read {path}: {exc}. Give a manifest.json in the shared dev-set format.") from exc
    cases = data.get("cases") if isinstance(data, dict) else None
    if not isinstance(cases, list) or not all(isinstance(c, dict) for c in cases):
        raise InputError(f"{path} has no 'cases' list of objects; give a manifest.json in the shared dev-set format.")
    need = ("dataset", "kind")
    for n, c in enumerate(cases):
        missing = [k for k in need if k not in c]
        if missing:
            raise InputError(f"{path}: case {n} has no {', '.join(repr(k) for k in missing)}.")
    return cases


def load_cases(dataset_dir, settings: BenchSettings) -> list[dict]:
    """Cases of ``dataset_dir/manifest.json`` that the protocol applies to, in manifest order."""
    root = Path(dataset_dir)
    if not (root / "manifest.json").is_file():
        raise InputError(f"{root} has no manifest.json; give a folder in the shared dev-set format.")
    cases = _manifest_cases(root / "manifest.json")
    if settings.datasets:
        unknown = set(settings.datasets) - {c["dataset"] for c in cases}
        if unknown:
            raise InputError(f"Unknown dataset(s) {sorted(unknown)}; the manifest has "
                             f"{sorted({c['dataset'] for c in cases})}.")
        cases = [c for c in cases if c["dataset"] in settings.datasets]
    if settings.protocol in PROTOCOLS_3D_ONLY:
        cases = [c for c in cases if c["kind"] == "3d"]
    if settings.limit:
        per, kept = {}, []
        for c in cases:
            per[c["dataset"]] = per.get(c["dataset"], 0) + 1
            if per[c["dataset"]] <= settings.limit:
                kept.append(c)
        cases = kept
    return cases


def case_normalization(case: dict, array: np.ndarray) -> "Normalization | str":
    """The manifest's recommended preprocessing, resolved on the whole image/volume."""
    pre = case.get("preprocessing") or {}
    if pre.get("method") == "ct_window" and pre.get("recommended"):
        rec = pre["recommended"]
        return Normalization.window(float(rec["width"]), float(rec["level"]), label=rec.get("name", ""))
    if pre.get("method") == "percentile_clip":
        if array.ndim == 3 and "minimum" in str(pre.get("mask", "")):  # BraTS: constant background value
            return resolve_normalization("percentile", array[array > array.min()])
        return resolve_normalization("percentile", array)
    return "auto"


def tight_box(mask2d: np.ndarray, jitter: int = 0, rng=None) -> np.ndarray:
    """(4,) XYXY tight box of a 2D mask, each side pushed out by a random 0..jitter pixels."""
    ys, xs = np.nonzero(mask2d)
    box = np.array([xs.min(), ys.min(), xs.max(), ys.max()], dtype=np.float64)
    if jitter > 0:
        rng = rng or np.random.default_rng(0)
        box += rng.integers(0, jitter + 1, size=4) * np.array([-1, -1, 1, 1])
    h, w = mask2d.shape
    return np.clip(box, 0, [w - 1, h - 1, w - 1, h - 1])


def deepest_point(mask2d: np.ndarray) -> np.ndarray:
    """(1, 2) XY of the interior pixel farthest from the mask boundary."""
    from scipy import ndimage

    dist = ndimage.distance_transform_edt(np.pad(mask2d, 1))[1:-1, 1:-1]
    y, x = np.unravel_index(int(np.argmax(dist)), dist.shape)
    return np.array([[x, y]], dtype=np.float64)


def _reference_masks(root: Path, case: dict, labels_array: np.ndarray) -> dict[int, np.ndarray]:
    out = {}
    for v in case.get("labels_present", [1]):
        struct = (case.get("structure_masks") or {}).get(str(v))
        if struct:  # JSRT: overlapping structures, the full extent is in its own file
            from PIL import Image

            out[int(v)] = np.array(Image.open(root / struct)) > 0
        else:
            out[int(v)] = labels_array == int(v)
    return out


def _encoder_calls(backend: Backend) -> "int | None":
    """Image encodings so far, when the model runs in this process (None on a server)."""
    predictor = getattr(backend, "predictor", None)
    return None if predictor is None else int(predictor.model.encoder_calls)


def run_case(backend: Backend, root: Path, case: dict, settings: BenchSettings,
             cancel: CancelFn = None) -> list[dict]:
    """Segment every label of one case with the protocol; one record (dict) per label.

    ``backend``: where the model runs (medsamkit.backend.open_backend: local or a server).
    """
    from ..io import read_image

    image = read_image(root / case["image"])
    labels = read_image(root / case["mask"]).array
    refs = _reference_masks(root, case, labels)
    norm = case_normalization(case, image.array)
    is_3d = image.is_3d
    spacing = tuple(image.spacing[::-1]) if is_3d else (float(case.get("pixel_spacing_mm", 1.0)),) * 2
    records = []
    for value, ref in refs.items():
        check_cancel(cancel)
        if not ref.any():
            continue
        rng = np.random.default_rng([settings.seed, int(value), len(case["case_id"])])
        calls0, t0 = _encoder_calls(backend), time.perf_counter()
        if is_3d:
            pred, info = _run_3d(backend, image, ref, norm, settings, rng)
        else:
            pred, info = _run_2d(backend, image.array, ref, norm, settings, rng)
        calls = None if calls0 is None else _encoder_calls(backend) - calls0
        seconds = time.perf_counter() - t0
        scores = evaluate(pred, ref, spacing, settings.tolerance_mm)
        rec = {"dataset": case["dataset"], "case_id": case["case_id"], "label": int(value),
               "label_name": (case.get("labels") or {}).get(str(value), ""), "kind": case["kind"],
               "modality": case.get("modality"), "protocol": settings.protocol, **scores,
               "spacing_unit": "mm" if is_3d or "pixel_spacing_mm" in case else "px",
               "seconds": round(seconds, 3), "encoder_calls": calls, **info}
        records.append(rec)
        if settings.overlays:
            _overlay(image.array, pred, ref, norm, Path(settings.overlays) / f"{case['dataset']}_{case['case_id']}_{value}.png")
    return records


def _run_2d(backend, array, ref, norm, settings, rng):
    backend.set_image(array, normalization=norm)
    if settings.protocol == "box":
        box = tight_box(ref, settings.jitter, rng)
        res = backend.predict(box=box)
        return res.mask, {"box": box.tolist(), "score": res.score}
    if settings.protocol == "points":
        pt = deepest_point(ref)
        res = backend.predict(points=pt, point_labels=[1])
        return res.mask, {"point": pt[0].tolist(), "score": res.score}
    raise InputError(f"Protocol '{settings.protocol}' applies to 3D cases only.")


def _run_3d(backend, image, ref, norm, settings, rng):
    from ..geometry import VolumeGeometry
    from ..markers import DEFAULT_MARGIN_MM, BoxPlan, boxes_from_markers
    from ..simulated_reader import simulate_markers
    from ..volume import extract_slice, numpy_axis, put_slice

    axis = numpy_axis("axial", image.direction)
    other = tuple(a for a in range(3) if a != axis)
    present = [int(k) for k in np.nonzero(ref.any(axis=other))[0]]
    # resolved on the whole volume, here, so that a server maps intensities exactly as local runs do
    backend.set_volume(image.array, normalization=resolve_normalization(norm, image.array), direction=image.direction)
    if settings.protocol == "box":
        plan = BoxPlan(axis, {k: tight_box(extract_slice(ref, k, axis), settings.jitter, rng) for k in present}, present)
        res = backend.segment_plan(plan)
        return res.mask, {"slices": len(present)}
    if settings.protocol == "points":
        out = np.zeros(ref.shape, dtype=np.uint8)
        for k in present:
            res = backend.predict(points=deepest_point(extract_slice(ref, k, axis)), point_labels=[1],
                                  slice_index=k, axis=axis)
            put_slice(out, res.mask.astype(np.uint8), k, axis)
        return out, {"slices": len(present)}
    if settings.protocol == "markers":
        geom = VolumeGeometry.from_image(image)
        markers = simulate_markers(ref, geom, axis, settings.every)
        margin = DEFAULT_MARGIN_MM if settings.margin_mm is None else settings.margin_mm
        plan = boxes_from_markers(markers, geom, axis=axis, margin_mm=margin)
        res = backend.segment_plan(plan, refine=settings.refine)
        return res.mask, {"slices": len(plan.boxes), "marked": plan.marked, "refined": res.refined}
    if settings.protocol == "propagate":
        k0 = int(np.argmax(ref.sum(axis=other)))
        box = tight_box(extract_slice(ref, k0, axis), settings.jitter, rng)
        res = backend.propagate(k0, axis, box=box)
        return res.mask, {"start_slice": k0, "slices": len(res.slices), "reference_slices": len(present),
                          "stops": res.warnings}
    raise InputError(f"Unknown protocol '{settings.protocol}'; choose one of {', '.join(PROTOCOLS)}.")


def _overlay(array, pred, ref, norm, path: Path) -> None:
    from ..io import write_overlay_png

    if pred.ndim == 3:
        k = int(np.argmax(ref.sum(axis=(1, 2))))
        array, pred, ref = array[k], pred[k], ref[k]
    rgb = normalize_to_uint8(array, resolve_normalization(norm, array) if isinstance(norm, str) else norm)
    ys, xs = np.nonzero(ref)
    write_overlay_png(rgb, pred > 0, path, box=[xs.min(), ys.min(), xs.max(), ys.max()])


def summarize(records: list[dict]) -> dict:
    """dataset -> {n, dsc_mean, dsc_median, nsd_mean, nsd_median, hd95_median, seconds_mean}."""
    out = {}
    for name in sorted({r["dataset"] for r in records}) + ["ALL"]:
        rs = [r for r in records if name == "ALL" or r["dataset"] == name]
        if not rs:
            continue
        dsc, nsd_ = np.array([r["dsc"] for r in rs]), np.array([r["nsd"] for r in rs])
        out[name] = {"n": len(rs), "dsc_mean": float(dsc.mean()), "dsc_median": float(np.median(dsc)),
                     "nsd_mean": float(nsd_.mean()), "nsd_median": float(np.median(nsd_)),
                     "hd95_median": float(np.median([r["hd95"] for r in rs])),
                     "seconds_mean": float(np.mean([r["seconds"] for r in rs]))}
    return out


def format_table(summary: dict, title: str = "") -> str:
    lines = [title] if title else []
    lines.append(f"{'dataset':<12} {'n':>4} {'DSC mean':>9} {'median':>7} {'NSD mean':>9} {'median':>7} "
                 f"{'HD95 med':>9} {'s/case':>7}")
    for name, s in summary.items():
        lines.append(f"{name:<12} {s['n']:>4} {s['dsc_mean']:>9.3f} {s['dsc_median']:>7.3f} {s['nsd_mean']:>9.3f} "
                     f"{s['nsd_median']:>7.3f} {s['hd95_median']:>9.2f} {s['seconds_mean']:>7.2f}")
    return "\n".join(lines)


def peak_rss_mb() -> float:
    """Peak resident memory of this process so far (MiB; Linux reports KiB, macOS bytes)."""
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / (1 << 20) if os.uname().sysname == "Darwin" else peak / 1024


def run_bench(backend: Backend, dataset_dir, settings: BenchSettings, progress: ProgressFn = None,
              cancel: CancelFn = None) -> dict:
    """Run one protocol over the cases; returns {"settings", "model", "cases", "summary", "wall_s", ...}.

    ``backend``: a LocalBackend or a RemoteBackend (``medsamkit bench --backend URL``), as open_backend gives.
    """
    if settings.protocol not in PROTOCOLS:
        raise InputError(f"Unknown protocol '{settings.protocol}'; choose one of {', '.join(PROTOCOLS)}.")
    root = Path(dataset_dir)
    cases = load_cases(root, settings)
    if not cases:
        raise InputError(f"No case in {root} fits protocol '{settings.protocol}' with the chosen datasets.")
    t0, records = time.perf_counter(), []
    for n, case in enumerate(cases):
        report(progress, n, len(cases), f"{case['dataset']}/{case['case_id']}")
        records.extend(run_case(backend, root, case, settings, cancel))
    report(progress, len(cases), len(cases), "done")
    info = backend.info()
    predictor = getattr(backend, "predictor", None)
    model = {"kind": info.kind, "device": str(info.device), "engine": info.extra.get("engine"),
             "remote": info.url if info.remote else None,
             "checkpoint_sha256": predictor.model.checkpoint_sha256 if predictor is not None else
             info.extra.get("checkpoint_sha256")}
    return {"settings": asdict(settings), "model": model,
            "cases": records, "summary": summarize(records), "wall_s": round(time.perf_counter() - t0, 2),
            "peak_rss_mb": round(peak_rss_mb(), 1), "encoder_calls": _encoder_calls(backend)}
