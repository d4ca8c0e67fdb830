"""Validation Dice, measured the way a user sees it: through the backend every face uses.

Each fixed validation sample (its seeded prompt, no augmentation: the prompt :class:`SampleDataset`
draws for it) is segmented by ``open_backend("local", model=...)`` on the model being
trained: ``set_image`` of the display image inference makes (``TrainingData.display_and_masks``),
``predict`` with the prompt in that image's pixels, the model authors' multimask policy, the mask at
the original resolution. So the figure is what ``medsamkit segment`` (or the Slicer effect) would give
with the weights of that moment, and its Dice is :func:`medsamkit.metrics.dice` against the
original-resolution label.

Embeddings: the backend's embedding cache is kept across validations while the encoder is frozen
(each validation image is encoded once per run) and must be cleared by the caller when it trains.
"""
from __future__ import annotations

import numpy as np

from ..metrics import dice

#: SampleDataset's random stream for validation samples (train: 2); see dataset.SampleDataset.__getitem__.
VALIDATION_STREAM = 3


def validation_backend(model, cache_bytes: int = 1 << 30):
    """The in-process backend on ``model`` (the PromptableModel being trained; its net is shared, not copied)."""
    from ..backend import open_backend

    return open_backend("local", model=model, cache_bytes=cache_bytes)


def evaluate(backend, data, refs: list, prompt) -> dict:
    """-> {"dice": mean over samples, "per_case": {case/structure: mean}, "samples": [(id, dice)]}.

    backend: :func:`validation_backend` of the model being trained. Puts the network in eval mode;
    the caller restores training modes.
    """
    backend.predictor.model.net.eval()
    scores: list[tuple[str, float]] = []
    per_case: dict[str, list[float]] = {}
    for i, ref in enumerate(refs):
        rng = np.random.default_rng([data.cfg.seed, VALIDATION_STREAM, 0, i])
        display, mask, prompt_mask = data.display_and_masks(ref)
        p = prompt(prompt_mask, rng)  # the first draw of the sample's stream, as in TrainingData.sample
        backend.set_image(display, normalization="none")  # already the display values inference makes
        pred = backend.predict(box=p.box, points=p.points, point_labels=p.labels)
        d = dice(pred.mask, mask)
        scores.append((data.describe(ref), d))
        name = f"{data.sources[ref.case].case_id}/{data.structures[ref.case][ref.structure].name}"
        per_case.setdefault(name, []).append(d)
    mean = float(np.mean([d for _, d in scores])) if scores else None
    return {"dice": mean, "per_case": {k: float(np.mean(v)) for k, v in per_case.items()}, "samples": scores}
