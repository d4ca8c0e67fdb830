"""Validation Dice, measured the way a user would see it: at the original resolution.

For each fixed validation sample (fixed seeded prompt, no augmentation) the network runs in eval
mode without autocast, the chosen low-res logits go through the model's own
``ModelTransform.logits_to_original`` and are thresholded at 0 — the arithmetic of
``Predictor.predict`` — and Dice is computed against the original-resolution label.
"""
from __future__ import annotations

import numpy as np
import torch

from ..metrics import dice
from .dataset import SampleDataset, TrainingData, collate
from .train_step import TrainStep, batch_to_device


def evaluate(step: TrainStep, data: TrainingData, refs: list, prompt, device, embed=None,
             batch_size: int = 4) -> dict:
    """-> {"dice": mean over samples, "per_case": {case/structure: mean}, "samples": [(id, dice)]}.

    embed: a FrozenEmbeddings (cached encoder output) or None to run the current encoder.
    Leaves the network in eval mode; the caller restores training modes.
    """
    net = step.net
    net.eval()
    dataset = SampleDataset(data, refs, prompt, epoch=0, train=False)
    scores: list[tuple[str, float]] = []
    per_case: dict[str, list[float]] = {}
    with torch.no_grad():
        for start in range(0, len(dataset), batch_size):
            samples = [dataset[i] for i in range(start, min(len(dataset), start + batch_size))]
            batch = batch_to_device(collate(samples), device)
            if embed is not None:
                emb = embed(batch["image"], batch["key"])
            else:
                emb = net.image_encoder(batch["image"])
            logits, _ = step.predict(emb, batch)
            for i, (s, ref) in enumerate(zip(samples, refs[start:start + len(samples)])):
                h, w = s["hw"]
                full = data.transform.logits_to_original(logits[i:i + 1].float(), h, w)[0, 0] > 0
                d = dice(full.cpu().numpy(), s["gt"])
                scores.append((s["id"], d))
                name = f"{data.sources[ref.case].case_id}/{data.structures[ref.case][ref.structure].name}"
                per_case.setdefault(name, []).append(d)
    mean = float(np.mean([d for _, d in scores])) if scores else None
    return {"dice": mean, "per_case": {k: float(np.mean(v)) for k, v in per_case.items()}, "samples": scores}
