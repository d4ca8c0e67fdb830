"""Embeddings of a frozen image encoder, computed once per distinct model input and cached.

When neither the encoder nor adapters train (decoder/prompt-encoder tuning), the encoder's output
for a given input never changes, so it is computed once — in eval mode, float32, without autocast,
i.e. exactly the embedding the predictor computes at inference — and reused for every later epoch
(a LiteMedSAM 256² encoding costs ≈1.5 s on a 2-core CPU, a decoder step ≈0.1 s). Keys are the
content digest of the model input plus the base model's identity (kind + checkpoint SHA-256), so
a cache may be shared between runs on the same base weights (the tests do this).

``disk_dir`` also keeps every embedding as a float16 file (``<sha1 of base id + key>.pt``, written
atomically), so a resumed or repeated run, or a second process pre-encoding the same data, never
encodes an input twice. float16 rounding changes an embedding by < 0.1 % (relative); that is
noise for decoder training, and inference always encodes in float32.
"""
from __future__ import annotations

import hashlib
import os
from pathlib import Path

import torch

from ..embedding_cache import EmbeddingCache


class FrozenEmbeddings:
    """callable(images (B, 3, S, S) tensor on the device, keys list[str]) -> (B, C, E, E) tensor, no grad."""

    def __init__(self, net, base_id: str, cache: EmbeddingCache | None = None, max_batch: int = 8,
                 disk_dir: "str | os.PathLike | None" = None):
        self.net = net
        self.base_id = base_id
        self.cache = cache
        self.max_batch = max_batch
        self.encoder_calls = 0
        self.disk_dir = Path(disk_dir) if disk_dir else None
        if self.disk_dir is not None:
            self.disk_dir.mkdir(parents=True, exist_ok=True)

    def _disk_path(self, key: str) -> Path:
        return self.disk_dir / (hashlib.sha1(f"{self.base_id}|{key}".encode()).hexdigest() + ".pt")

    def _from_disk(self, key: str):
        if self.disk_dir is None:
            return None
        path = self._disk_path(key)
        if not path.is_file():
            return None
        try:
            return torch.load(path, map_location="cpu", weights_only=True).float()
        except Exception:  # a damaged file (e.g. disk full): encode again
            return None

    def _to_disk(self, key: str, emb: torch.Tensor) -> None:
        if self.disk_dir is None:
            return
        from ..io import atomic_output

        with atomic_output(self._disk_path(key)) as tmp:
            torch.save(emb.detach().to("cpu", torch.float16).clone(), tmp)

    def __call__(self, images: torch.Tensor, keys: list) -> torch.Tensor:
        found = [None if self.cache is None else self.cache.get((self.base_id, k)) for k in keys]
        for i, k in enumerate(keys):
            if found[i] is None:
                found[i] = self._from_disk(k)
                if found[i] is not None and self.cache is not None:
                    self.cache.put((self.base_id, k), found[i])
        first = {}
        for i, k in enumerate(keys):  # the same slice twice in a batch (two labels of one image): encode once
            first.setdefault(k, i)
        missing = [i for i, e in enumerate(found) if e is None and first[keys[i]] == i]
        encoder = self.net.image_encoder
        was_training = encoder.training
        encoder.train(False)
        try:
            with torch.no_grad():
                for start in range(0, len(missing), self.max_batch):
                    idx = missing[start:start + self.max_batch]
                    out = encoder(images[idx].float())
                    self.encoder_calls += len(idx)
                    for j, i in enumerate(idx):
                        found[i] = out[j:j + 1].float()
                        if self.cache is not None:
                            self.cache.put((self.base_id, keys[i]), found[i])
                        self._to_disk(keys[i], found[i])
        finally:
            encoder.train(was_training)
        for i, k in enumerate(keys):
            if found[i] is None:
                found[i] = found[first[k]]
        return torch.cat([e.to(images.device) for e in found])
