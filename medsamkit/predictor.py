"""Predictor: set an image once (encode, cached), then prompt it as often as needed.

The engine's main API, in the spirit of ``segment_anything.SamPredictor``::

    model = load_model()                       # LiteMedSAM with its bundled weights
    predictor = Predictor(model)
    predictor.set_image(ct_slice, normalization="lung")
    result = predictor.predict(box=[x0, y0, x1, y1])
    result.mask        # (H, W) bool on the original grid
    result.score       # predicted IoU of the returned mask
    result.low_res_logits  # (L, L) float32, pass back as mask_input= to refine

All prompt coordinates are XY pixels of the image given to ``set_image`` (see prompts.py).
"""
from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np

from .embedding_cache import EmbeddingCache, digest
from .errors import InputError
from .models.base import PromptableModel
from .preprocess import Normalization, normalize_to_uint8, resolve_normalization, validate_image
from .prompts import make_prompt


@dataclass
class Prediction:
    """A prediction made in this process. A remote backend returns its own type with the same reading
    interface (``mask``, ``score``, ``low_res_logits``, ``logits``, :meth:`with_mask`)."""

    mask: np.ndarray            # (H, W) bool, original resolution
    score: float                # predicted IoU of the chosen mask
    low_res_logits: np.ndarray  # (L, L) float32, model frame; usable as a mask prompt
    logits: np.ndarray          # (H, W) float32 logits on the original grid (mask = logits > 0)

    def with_mask(self, mask: np.ndarray) -> "Prediction":
        """The same prediction with another mask (a merged correction); the logits stay the model's own."""
        return replace(self, mask=np.asarray(mask, dtype=bool))


class Predictor:
    """Holds one current image (its embedding) for one model. Not thread-safe: one per worker."""

    def __init__(self, model: PromptableModel, cache: EmbeddingCache | None = None):
        self.model = model
        self.cache = cache if cache is not None else EmbeddingCache()
        self._embedding = None
        self._hw: tuple[int, int] | None = None
        self.normalization: Normalization | None = None

    def reset(self) -> None:
        """Forget the current image (the embedding cache keeps its entries)."""
        self._embedding = None
        self._hw = None
        self.normalization = None

    @property
    def image_hw(self) -> tuple[int, int]:
        if self._hw is None:
            raise InputError("No image is set: call set_image() before predict().")
        return self._hw

    def set_image(self, image: np.ndarray, normalization: "str | Normalization | None" = "auto",
                  modality: str | None = None) -> None:
        """Preprocess ``image`` ((H, W) raw intensities or (H, W, 3) colour) and get its embedding.

        normalization: a CT preset name, "W,L", "percentile", "none", "auto", or a resolved
        :class:`Normalization` (pass the one resolved on the whole volume for volume slices).
        The caller's array is never modified. Raises InputError on bad images.
        """
        arr = validate_image(image)
        norm = resolve_normalization(normalization, arr, modality)
        rgb = normalize_to_uint8(arr, norm)
        self.set_display_image(rgb, norm)

    def set_display_image(self, rgb: np.ndarray, norm: Normalization | None = None) -> None:
        """Set an already normalised (H, W, 3) uint8 image (skips intensity preprocessing)."""
        key = (self.model.model_id, digest(rgb))
        embedding = self.cache.get(key)
        if embedding is None:
            embedding = self.model.encode(self.model.transform.image_to_input(rgb))
            self.cache.put(key, embedding)
        self._embedding = embedding
        self._hw = rgb.shape[:2]
        self.normalization = norm

    def predict(self, box=None, points=None, point_labels=None, mask_input=None,
                multimask_output: bool | None = None) -> Prediction:
        """Segment the current image from prompts (original-image XY pixels).

        box: [x0, y0, x1, y1]; points: (N, 2) XY; point_labels: (N,) 1/0; mask_input: (L, L) logits
        of a previous prediction. multimask_output: None = the model authors' policy (see
        ModelSpec.multimask); True = 3 candidates, keep the highest predicted IoU.
        """
        h, w = self.image_hw
        prompt = make_prompt((h, w), box, points, point_labels, mask_input, self.model.low_res_size)
        tf = self.model.transform
        coords = tf.coords_to_input(prompt.points, h, w) if prompt.points is not None else None
        box_in = tf.box_to_input(prompt.box, h, w) if prompt.box is not None else None
        if multimask_output is None:
            policy = self.model.spec.multimask
            multimask_output = policy == "always" or (
                policy == "single-point" and prompt.n_points == 1 and prompt.box is None and prompt.mask_input is None)
        low_res, iou = self.model.decode(self._embedding, coords, prompt.labels, box_in, prompt.mask_input,
                                         multimask=bool(multimask_output))
        best = int(iou.argmax()) if multimask_output else 0
        chosen = low_res[best:best + 1][None]  # (1, 1, L, L): numpy (ONNX engine) or torch
        if isinstance(chosen, np.ndarray):
            chosen = chosen.astype(np.float32, copy=False)
            logits_np = tf.logits_to_original(chosen, h, w)[0, 0]
            low_np = np.array(chosen[0, 0], dtype=np.float32)
        else:
            logits_np = tf.logits_to_original(chosen.float(), h, w)[0, 0].detach().cpu().numpy().astype(np.float32)
            low_np = chosen[0, 0].detach().cpu().numpy().astype(np.float32)
        return Prediction(mask=logits_np > 0.0, score=float(iou[best]), low_res_logits=low_np, logits=logits_np)
