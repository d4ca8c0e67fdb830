"""Encode the next slices in the background while the current one is decoded (volume workflows).

Whole-volume work (markers -> one box per slice, propagation) calls ``predictor.set_image`` and
``predictor.predict`` slice after slice. Encoding dominates (LiteMedSAM: ~0.5 s ONNX / ~2 s torch
per 256² slice on 2 cores, decoding ~0.03-0.1 s), so the Python work between encodes (decoding,
resizing logits to the slice, writing the mask, progress callbacks) can overlap with the next
encode. :func:`encode_ahead` does that without changing the caller's loop::

    norm = resolve_normalization("auto", volume)          # one mapping for the whole volume
    slices = [volume[k] for k in plan.marked]
    with encode_ahead(predictor, slices, normalization=norm, depth=2):
        for k, image in zip(plan.marked, slices):
            predictor.set_image(image, normalization=norm)  # cache hit, or waits for its encode
            result = predictor.predict(box=plan.boxes[k])

While active it puts a pending-aware view in front of ``predictor.cache``: a lookup of a slice
that the background thread is encoding waits for that encode instead of starting a second one,
so every slice is encoded exactly once. The background thread runs at most ``depth`` slices
ahead of what the caller has consumed (memory: depth x 4 MiB embeddings). Slices are
normalised in the background exactly as ``Predictor.set_image`` does, so cache keys match.

Threads: ONNX Runtime sessions are thread-safe and release the GIL, and both engines use all
cores for one encode; the overlap gains the decode/post-processing time per slice, not more
(measured in benchmarks/bench_fast.py, "40-slice workflow").
"""
from __future__ import annotations

import contextlib
import threading
from concurrent.futures import Future
from typing import Iterable, Iterator

import numpy as np

from ..embedding_cache import EmbeddingCache, digest
from ..preprocess import normalize_to_uint8, resolve_normalization, validate_image


class _PendingCache:
    """Wraps an EmbeddingCache for :func:`encode_ahead`; same get/put API as the cache.

    ``get`` of a key the background thread is encoding waits for it. A miss that the caller will
    encode itself is *claimed* until its ``put``, so the background thread skips that key: every
    slice is encoded once, whoever gets to it first.
    """

    def __init__(self, inner: EmbeddingCache, on_consumed):
        self.inner = inner
        self._pending: dict = {}      # key -> Future, encoded by the background thread
        self._claimed: set = set()    # keys the caller is encoding
        self._prefetched: set = set()  # background-encoded keys not yet consumed by the caller
        self._lock = threading.Lock()
        self._on_consumed = on_consumed

    def begin(self, key) -> Future | None:
        """Background: mark ``key`` as being encoded; None if cached, pending or claimed (skip it)."""
        with self._lock:
            if key in self._pending or key in self._claimed or _peek(self.inner, key):
                return None
            fut: Future = Future()
            self._pending[key] = fut
            return fut

    def finish(self, key, fut: Future, value=None, error: BaseException | None = None) -> None:
        """Background: store the embedding (or record the failure) and wake a waiting caller."""
        with self._lock:
            if error is None:
                self.inner.put(key, value)
                self._prefetched.add(key)
            self._pending.pop(key, None)
        if error is None:
            fut.set_result(value)
        else:
            fut.set_exception(error)

    def get(self, key):
        with self._lock:
            fut = self._pending.get(key)
        if fut is not None:
            try:
                fut.result()
            except BaseException:  # the background encode failed: the caller encodes (and sees the error)
                pass
        with self._lock:
            value = self.inner.get(key)
            if value is None:
                self._claimed.add(key)
            consumed = key in self._prefetched
            self._prefetched.discard(key)
        if consumed:
            self._on_consumed()
        return value

    def put(self, key, value) -> None:
        with self._lock:
            self.inner.put(key, value)
            self._claimed.discard(key)

    def __getattr__(self, name):  # clear, hits, misses, nbytes ... of the real cache
        return getattr(self.inner, name)

    def __len__(self) -> int:
        return len(self.inner)


def _peek(cache, key) -> bool:
    """Is ``key`` cached? Without counting a hit/miss (EmbeddingCache keeps its items in ``_items``)."""
    items = getattr(cache, "_items", None)
    return key in items if items is not None else cache.get(key) is not None


@contextlib.contextmanager
def encode_ahead(predictor, images: Iterable[np.ndarray], normalization="auto", modality: str | None = None,
                 depth: int = 2):
    """Encode ``images`` (2D slices, in the order they will be set) ahead in a background thread.

    predictor: a :class:`~medsamkit.predictor.Predictor` (any engine). images: iterable of (H, W)
    or (H, W, 3) arrays (consumed lazily, so a generator over a volume is fine). normalization:
    as for ``set_image`` — pass the one resolved on the whole volume for volume slices.
    depth: how many slices may be encoded ahead of the caller (>= 1).
    Yields a small status object (``.encoded``: slices encoded in the background, ``.error``).
    On exit the thread is stopped (an encode in progress finishes) and the predictor's own cache
    is restored, keeping everything encoded. The caller's arrays are never modified.
    """
    depth = max(1, int(depth))
    model = predictor.model
    slots = threading.Semaphore(depth)
    stop = threading.Event()
    status = _Status()
    inner = predictor.cache
    view = _PendingCache(inner, on_consumed=slots.release)

    def worker():
        try:
            for image in images:
                while not slots.acquire(timeout=0.1):
                    if stop.is_set():
                        return
                if stop.is_set():
                    return
                arr = validate_image(image)
                rgb = normalize_to_uint8(arr, resolve_normalization(normalization, arr, modality))
                key = (model.model_id, digest(rgb))
                fut = view.begin(key)
                if fut is None:  # already cached/pending: nothing to consume later
                    slots.release()
                    continue
                try:
                    emb = model.encode(model.transform.image_to_input(rgb))
                except BaseException as exc:
                    view.finish(key, fut, error=exc)
                    raise
                view.finish(key, fut, emb)
                status.encoded += 1
        except BaseException as exc:  # reported through status; the caller's own set_image re-raises it
            status.error = exc

    thread = threading.Thread(target=worker, name="medsamkit-encode-ahead", daemon=True)
    predictor.cache = view
    thread.start()
    try:
        yield status
    finally:
        stop.set()
        thread.join()
        predictor.cache = inner


class _Status:
    def __init__(self):
        self.encoded = 0
        self.error: BaseException | None = None


def iter_embeddings(model, model_inputs: Iterable[np.ndarray], depth: int = 2) -> Iterator:
    """Yield ``model.encode(x)`` for each (3, S, S) input, encoding up to ``depth`` inputs ahead.

    For callers that drive the model directly (no Predictor). Order is preserved; an encoder
    error is raised at the position of the failing input.
    """
    import queue

    depth = max(1, int(depth))
    q: queue.Queue = queue.Queue(maxsize=depth)
    stop = threading.Event()
    done = object()

    def worker():
        try:
            for x in model_inputs:
                if stop.is_set():
                    return
                item = (model.encode(x), None)
                while not stop.is_set():
                    try:
                        q.put(item, timeout=0.1)
                        break
                    except queue.Full:
                        continue
        except BaseException as exc:
            q.put((None, exc))
        q.put((done, None))

    thread = threading.Thread(target=worker, name="medsamkit-iter-embeddings", daemon=True)
    thread.start()
    try:
        while True:
            value, error = q.get()
            if error is not None:
                raise error
            if value is done:
                return
            yield value
    finally:
        stop.set()
        while thread.is_alive():
            try:
                q.get_nowait()
            except queue.Empty:
                thread.join(timeout=0.05)
