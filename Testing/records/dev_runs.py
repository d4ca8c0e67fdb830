"""Dev-set 3D marker runs for the review-queue measurement (shared by test_review.py and bench_records.py).

A simulated reader (medsamkit.simulated_reader) draws long/short axis lines every ``every`` slices on each
label of each 3D dev case (pyradiomics lung1 / brain1, BraTS); the markers plan is segmented with the
real model and every segmented slice gets its Dice against the reference, the truth the review queue
is scored on (medsamkit.records.review.precision_at).
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np


def marker_runs(predictor, dev_dir: Path, every: int = 5, case_ids=None, labels=None):
    """Yield dicts {case, label, queue, dice (slice -> Dice), seconds} for each (case, label) run."""
    import time

    from medsamkit.cli.bench import case_normalization
    from medsamkit.geometry import VolumeGeometry
    from medsamkit.io import read_image
    from medsamkit.markers import boxes_from_markers
    from medsamkit.simulated_reader import simulate_markers
    from medsamkit.records.review import review_queue
    from medsamkit.volume import extract_slice, numpy_axis
    from medsamkit.volume_segmentation import segment_volume

    manifest = json.loads((Path(dev_dir) / "manifest.json").read_text(encoding="utf-8"))
    for case in manifest["cases"]:
        if case["kind"] != "3d" or (case_ids and case["case_id"] not in case_ids):
            continue
        image = read_image(Path(dev_dir) / case["image"])
        labels_arr = read_image(Path(dev_dir) / case["mask"]).array
        norm = case_normalization(case, image.array)
        geom = VolumeGeometry.from_image(image)
        axis = numpy_axis("axial", image.direction)
        for value in case.get("labels_present", [1]):
            if labels and (case["case_id"], int(value)) not in labels:
                continue
            ref = labels_arr == int(value)
            plan = boxes_from_markers(simulate_markers(ref, geom, axis, every), geom, axis=axis)
            t0 = time.perf_counter()
            res = segment_volume(predictor, image.array, plan, normalization=norm)
            seconds = time.perf_counter() - t0
            dice = {}
            for k in res.slices:
                a, b = extract_slice(res.mask, k, axis) > 0, extract_slice(ref, k, axis)
                s = int(a.sum()) + int(b.sum())
                dice[k] = 1.0 if s == 0 else 2.0 * int((a & b).sum()) / s
            queue = review_queue(res.mask, axis, slices=res.slices, scores=res.scores, boxes=plan.boxes,
                                 marked=plan.marked)
            yield {"case": case["case_id"], "label": int(value), "queue": queue, "dice": dice, "seconds": seconds,
                   "mask": res.mask, "plan": plan, "result": res}
