"""Review queue on dev 3D marker runs: the slices it ranks first are the run's worst far more often than chance.

Runs (simulated reader every 5 slices, real LiteMedSAM): pyradiomics lung1 and brain1, and BraTS label 4
(enhancing tumour, 49 slices), the cheapest set that still has enough slices to score a ranking. The
full set (all four BraTS labels) is in benchmarks/bench_records.py; RESULTS.md (prompt records) has both.
"""
from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))
from dev_runs import marker_runs  # noqa: E402

pytestmark = pytest.mark.slow  # among the slowest modules: `pytest -m "not slow"` skips them


def test_review_queue_finds_the_worst_slices(dev_data, lite_model):
    from medsamkit.fast.engine import with_engine
    from medsamkit.predictor import Predictor
    from medsamkit.records.review import next_to_review, precision_at

    # the engine every face uses by default (--engine auto: ONNX Runtime when installed, as in CI): the
    # ~60 slices encode about twice as fast as with PyTorch; the export is shared with the session's other users
    predictor = Predictor(with_engine(lite_model, "auto"))
    runs = list(marker_runs(predictor, dev_data, every=5,
                            labels={("lung1", 1), ("brain1", 1), ("brats_2013_pat0002_1", 4)}))
    assert len(runs) == 3
    hits = chance = total = 0.0
    for r in runs:
        prec, ch = precision_at(r["queue"], r["dice"])
        n = max(1, int(round(0.2 * len(r["dice"]))))
        hits, chance, total = hits + prec * n, chance + ch * n, total + n
        print(f"{r['case']} label {r['label']}: {len(r['dice'])} slices, precision at 20 % {prec:.2f} (chance {ch:.2f})")
        assert sorted(q.index for q in r["queue"]) == sorted(r["dice"])  # every segmented slice is ranked once
    precision, chance = hits / total, chance / total
    print(f"pooled precision at 20 %: {precision:.2f}, chance {chance:.2f}")
    # measured 0.50 against a chance of 0.21 with both engines (torch and ONNX Runtime; deterministic on CPU)
    assert precision >= chance + 0.15, (precision, chance)
    queue = runs[-1]["queue"]
    first, second = next_to_review(queue), next_to_review(queue)
    assert (first.index, second.index) == (queue[0].index, queue[1].index) and first.reviewed
    assert first.score >= second.score and np.isfinite(first.score)


def test_review_queue_uses_each_sign():
    """A synthetic run: a slice whose mask fills its box, a low-IoU slice and a far-interpolated slice
    are each ranked above clean slices when only their sign counts."""
    from medsamkit.records.review import review_queue

    mask = np.zeros((9, 40, 40), np.uint8)
    for k in range(9):
        mask[k, 10:30, 10:30] = 1
    boxes = {k: [5, 5, 34, 34] for k in range(9)}
    boxes[3] = [10, 10, 29, 29]  # the mask touches this box all round
    scores = {k: 0.9 for k in range(9)}
    scores[6] = 0.3
    only = lambda name: {n: (1.0 if n == name else 0.0) for n in
                         ("low_iou", "disagreement", "box_edge", "far_from_marks", "small")}
    assert review_queue(mask, 0, boxes=boxes, weights=only("box_edge"))[0].index == 3
    assert review_queue(mask, 0, scores=scores, weights=only("low_iou"))[0].index == 6
    assert review_queue(mask, 0, marked=[0, 8], weights=only("far_from_marks"))[0].index == 4
    mask[5, 10:30, 10:14] = 0  # a shrunken slice between two full neighbours
    assert review_queue(mask, 0, weights=only("disagreement"))[0].index == 5
    with pytest.raises(Exception):
        review_queue(mask, 5)
