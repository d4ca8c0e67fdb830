"""A loaded promptable model: network + its input transform + how it is prompted.

Every SAM-family network exposes ``image_encoder``, ``prompt_encoder`` and ``mask_decoder`` with
segment-anything's signatures (LiteMedSAM's vendored copy included), so one class serves all
kinds; what differs per kind lives in :class:`ModelSpec` (registry.py).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

import numpy as np

from ..preprocess import ModelTransform, TransformSpec


@dataclass(frozen=True)
class ModelSpec:
    """Everything the engine needs to know about one model kind.

    multimask: ``"never"`` (one mask, token 0), ``"always"`` (3 masks, keep the best predicted
    IoU; SAM-Med2D), or ``"single-point"`` (multimask only for exactly one point and no box/mask;
    SAM's advice, used by SAM and MedicoSAM).
    """

    kind: str
    title: str
    transform: TransformSpec
    build: Callable[[], object]
    multimask: str = "never"
    default_checkpoint: Callable[[], str] | None = None
    known_sha256: dict = field(default_factory=dict)


class PromptableModel:
    """A network in eval mode on a device, with its transform. Thread-compatible, not thread-safe."""

    def __init__(self, spec: ModelSpec, net, device: str, checkpoint: str | None = None,
                 checkpoint_sha256: str | None = None):
        self.spec = spec
        self.net = net
        self.device = device
        self.checkpoint = checkpoint
        self.checkpoint_sha256 = checkpoint_sha256
        self.transform = ModelTransform(spec.transform)
        self.encoder_calls = 0  # counted so tests and benchmarks can prove cache hits

    @property
    def kind(self) -> str:
        return self.spec.kind

    @property
    def model_id(self) -> str:
        """Identity used in embedding-cache keys: kind + checkpoint hash (weights change -> new id)."""
        return f"{self.spec.kind}:{(self.checkpoint_sha256 or 'random')[:16]}:{id(self.net):x}"

    def encode(self, model_input: np.ndarray):
        """(3, S, S) float32 -> image embedding tensor (1, 256, E, E) on ``self.device``."""
        import torch

        x = torch.from_numpy(np.ascontiguousarray(model_input))[None].to(self.device)
        with torch.inference_mode():
            emb = self.net.image_encoder(x)
        self.encoder_calls += 1
        return emb

    def decode(self, embedding, coords=None, labels=None, box=None, mask_input=None, multimask: bool = False):
        """Run prompt encoder + mask decoder on a cached embedding.

        coords: (N, 2) float32 model-frame XY; labels: (N,) int (1 fg, 0 bg); box: (4,) model frame;
        mask_input: (L, L) float32 low-res logits. Returns (logits (M, L, L) tensor, iou (M,) tensor),
        M = 3 if multimask else 1.
        """
        import torch

        dev = embedding.device
        points = None
        if coords is not None and len(coords):
            points = (torch.as_tensor(coords, dtype=torch.float32, device=dev)[None],
                      torch.as_tensor(labels, dtype=torch.int64, device=dev)[None])
        boxes = None if box is None else torch.as_tensor(box, dtype=torch.float32, device=dev).reshape(1, 1, 4)
        masks = None
        if mask_input is not None:
            masks = torch.as_tensor(mask_input, dtype=torch.float32, device=dev).reshape(1, 1, *mask_input.shape[-2:])
        pe = self.net.prompt_encoder
        with torch.inference_mode():
            sparse, dense = pe(points=points, boxes=boxes, masks=masks)
            low_res, iou = self.net.mask_decoder(
                image_embeddings=embedding,
                image_pe=pe.get_dense_pe(),
                sparse_prompt_embeddings=sparse,
                dense_prompt_embeddings=dense,
                multimask_output=multimask,
            )
        return low_res[0], iou[0]

    @property
    def low_res_size(self) -> int:
        """Side of the low-res logits (4x the embedding grid): 256 for 64x64 embeddings."""
        size = self.net.prompt_encoder.mask_input_size
        return int(size[0])
