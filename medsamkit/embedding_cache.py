"""Bounded LRU cache of image embeddings.

Keyed by (model id, preprocessing key, content digest of the preprocessed slice): the digest
stands for "image identity + slice + axis", so the same slice reached twice (another click, the
same volume reloaded) never re-encodes, and any change of pixels, window or weights does. Bounded
by bytes (default 1 GiB; a LiteMedSAM embedding is 4 MiB, a SAM ViT-B one 4 MiB, SAM-Med2D 0.25 MiB).
"""
from __future__ import annotations

import hashlib
import threading
from collections import OrderedDict

import numpy as np


def digest(array: np.ndarray) -> str:
    """Content digest of an array (shape, dtype and bytes); ~1 ms for a 512x512x3 uint8 slice."""
    h = hashlib.blake2b(digest_size=16)
    h.update(f"{array.shape}{array.dtype}".encode())
    h.update(np.ascontiguousarray(array).data)
    return h.hexdigest()


class EmbeddingCache:
    def __init__(self, max_bytes: int = 1 << 30):
        self.max_bytes = int(max_bytes)
        self._items: OrderedDict = OrderedDict()
        self._bytes = 0
        self._lock = threading.Lock()
        self.hits = 0
        self.misses = 0

    @staticmethod
    def _size(value) -> int:
        return int(value.element_size() * value.nelement()) if hasattr(value, "nelement") else int(value.nbytes)

    def get(self, key):
        with self._lock:
            value = self._items.get(key)
            if value is None:
                self.misses += 1
                return None
            self._items.move_to_end(key)
            self.hits += 1
            return value

    def put(self, key, value) -> None:
        size = self._size(value)
        with self._lock:
            if key in self._items:
                self._bytes -= self._size(self._items.pop(key))
            if size > self.max_bytes:
                return
            self._items[key] = value
            self._bytes += size
            while self._bytes > self.max_bytes:
                _, old = self._items.popitem(last=False)
                self._bytes -= self._size(old)

    def clear(self) -> None:
        with self._lock:
            self._items.clear()
            self._bytes = 0

    @property
    def nbytes(self) -> int:
        return self._bytes

    def __len__(self) -> int:
        return len(self._items)
