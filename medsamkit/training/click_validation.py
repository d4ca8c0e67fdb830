"""Validation by the click protocol: what a user of the Segment Editor effect would get.

For each validation object (2D cases of a shared-format folder, ``manifest.json``; JSRT-style
overlapping structures from their ``structure_masks``), exactly as ``benchmarks/bench_prompts.py``
measures it, through the inference path (:class:`medsamkit.predictor.Predictor` and
:func:`medsamkit.refinement.refine`):

- ``box``: the tight bounding box;
- ``1 pt`` / ``3 pts`` / ``5 pts``: the first click at the object's centre, each further click at the
  centre of the largest error region, the previous low-res logits fed back as mask prompt;
- ``box + 2``: the box, then two correction clicks.

``score`` (what model selection maximises) is the mean of box, 1, 3 and 5 clicks, so a model that
learns clicks but forgets boxes is not selected. Used with ``medsamkit train --val-data``; the
validation folders are never trained on.
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from ..errors import InputError
from ..metrics import dice

PROTOCOL = ("box", "1 pt", "3 pts", "5 pts", "box + 2")


def manifest_objects(folders: list, max_objects: int = 0) -> list:
    """-> [(name, image array, gt (H, W) bool)] of every labelled 2D object (>= 16 px) in ``folders``.

    max_objects > 0 keeps that many, evenly spread over the list (so every dataset stays represented).
    """
    from PIL import Image

    out = []
    for folder in folders:
        folder = Path(folder)
        manifest = folder / "manifest.json" if folder.is_dir() else folder
        if not manifest.is_file():
            raise InputError(f"Validation data {folder} has no manifest.json (the shared dev-set format).")
        root = manifest.parent
        for case in json.loads(manifest.read_text(encoding="utf-8"))["cases"]:
            if case.get("kind", "2d") != "2d":
                continue
            image = np.array(Image.open(root / case["image"]))
            mask = np.array(Image.open(root / case["mask"]))
            structures = case.get("structure_masks", {})
            for label in case.get("labels_present", [1]):
                if str(label) in structures:
                    gt = np.array(Image.open(root / structures[str(label)])) > 0
                else:
                    gt = mask == int(label)
                if gt.sum() >= 16:
                    out.append((f"{case['dataset']}/{case['case_id']}/{label}", image, gt))
    if max_objects and len(out) > max_objects:
        keep = np.unique(np.linspace(0, len(out) - 1, max_objects).round().astype(int))
        out = [out[i] for i in keep]
    return out


class DiskEmbeddingCache:
    """An EmbeddingCache that also keeps entries on disk (float16 ``.pt`` files), for a frozen encoder.

    Predictor keys are ``(model_id, content digest)``; the model id holds the process-local network
    identity, so files are named by ``base_id`` (kind + base checkpoint SHA-256) and the digest only.
    """

    def __init__(self, folder, base_id: str, max_bytes: int = 2 << 30):
        from pathlib import Path

        from ..embedding_cache import EmbeddingCache

        self.memory = EmbeddingCache(max_bytes)
        self.folder = Path(folder)
        self.folder.mkdir(parents=True, exist_ok=True)
        self.base_id = base_id

    def _path(self, key):
        import hashlib

        return self.folder / (hashlib.sha1(f"{self.base_id}|val|{key[-1]}".encode()).hexdigest() + ".pt")

    def get(self, key):
        import torch

        value = self.memory.get(key)
        if value is None and self._path(key).is_file():
            try:
                value = torch.load(self._path(key), map_location="cpu", weights_only=True).float()
            except Exception:
                return None
            self.memory.put(key, value)
        return value

    def put(self, key, value) -> None:
        import torch

        from ..io import atomic_output

        self.memory.put(key, value)
        with atomic_output(self._path(key)) as tmp:
            torch.save(value.detach().to("cpu", torch.float16).clone(), tmp)


def box_of(gt: np.ndarray) -> list:
    ys, xs = np.nonzero(gt)
    return [int(xs.min()), int(ys.min()), int(xs.max()), int(ys.max())]


def evaluate_clicks(model, objects: list, cache=None) -> dict:
    """Mean Dice per prompt of :data:`PROTOCOL` over ``objects`` -> {"dice": score, "figures": {...}, "per_case": {...}}.

    model: a PromptableModel (its current weights); cache: an EmbeddingCache kept between calls
    (the encoder is frozen, so the embeddings stay valid).
    """
    from ..embedding_cache import EmbeddingCache
    from ..predictor import Predictor
    from ..refinement import refine

    if not objects:
        raise InputError("No validation objects: the validation folders hold no labelled 2D case.")
    predictor = Predictor(model, cache if cache is not None else EmbeddingCache())
    rows = {k: [] for k in PROTOCOL}
    per_case = {}
    for name, image, gt in objects:
        predictor.set_image(image)
        box = box_of(gt)
        boxed = refine(predictor, gt, box=box, n_clicks=2).masks
        clicks = refine(predictor, gt, box=None, n_clicks=5).masks
        rows["box"].append(dice(boxed[0], gt))
        rows["box + 2"].append(dice(boxed[min(2, len(boxed) - 1)], gt))
        for key, k in (("1 pt", 0), ("3 pts", 2), ("5 pts", 4)):
            rows[key].append(dice(clicks[min(k, len(clicks) - 1)], gt))
        per_case[name] = {k: rows[k][-1] for k in PROTOCOL}
    figures = {k: float(np.mean(v)) for k, v in rows.items()}
    score = float(np.mean([figures[k] for k in ("box", "1 pt", "3 pts", "5 pts")]))
    return {"dice": score, "figures": figures, "per_case": per_case, "objects": len(objects)}
