"""The learning-rate schedule of the MedSAM / SAM-Med2D recipe: linear warm-up, then cosine decay per optimizer step."""
from __future__ import annotations

import math


class WarmupCosine:
    """LR multiplier per optimizer step: linear warm-up over ``warmup`` steps, then cosine to ``min_ratio``."""

    def __init__(self, warmup: int, total: int, min_ratio: float):
        self.warmup, self.total, self.min_ratio = int(warmup), int(total), float(min_ratio)

    def __call__(self, step: int) -> float:
        if step < self.warmup:
            return (step + 1) / self.warmup
        progress = min(1.0, (step - self.warmup) / max(1, self.total - self.warmup))
        return self.min_ratio + (1.0 - self.min_ratio) * 0.5 * (1.0 + math.cos(math.pi * progress))
