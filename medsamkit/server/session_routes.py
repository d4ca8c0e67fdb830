"""Session endpoints: open one (an image or a volume), keep it alive, close it; prompt it.

A session is a LocalBackend held by the SessionStore (sessions.py). Opening one reads the array's
shape from its frame header and reserves its memory before decoding a byte, so an upload the store
cannot hold is refused (413 or 503) without the work of decoding it. Prompts run under the
session's lock; their replies are mask or logits frames with a meta header (``binary``).
"""
from __future__ import annotations

import math
import time

from fastapi import Request
from fastapi.concurrency import run_in_threadpool

from ..errors import InputError
from ..preprocess import Normalization
from .. import protocol
from ..protocol import wire
from .models import PredictRequest


def add_session_routes(app, store, max_session_bytes: int) -> None:
    """Register opening, heartbeat and closing of sessions on ``app``."""

    @app.post(protocol.PATH_SESSIONS)
    async def create_session(request: Request):
        meta = wire.decode_meta(request.headers.get(protocol.META_HEADER))
        kind = meta.get("kind", "image")
        if kind not in ("image", "volume"):
            raise wire.WireError(f"Session kind must be 'image' or 'volume'; got {kind!r}.")
        norm = _normalization(meta.get("normalization", "auto"))
        modality = _modality(meta.get("modality"))
        direction = _direction(meta.get("direction"))
        body = await request.body()
        shape, dtype = wire.peek_array(body)
        nbytes = int(dtype.itemsize) * math.prod(shape)
        if nbytes > max_session_bytes:
            raise wire.WireTooLarge(f"The {kind} {tuple(shape)} {dtype} needs {nbytes / 2**20:.0f} MiB; this server "
                                    f"accepts at most {max_session_bytes / 2**20:.0f} MiB per session.")
        budget = store.budget(shape, dtype.itemsize, kind == "volume")
        reservation = store.reserve(budget)  # atomic: concurrent creates cannot pass --max-sessions

        def build():
            array = wire.decode_array(body, max_session_bytes)
            backend = store.new_backend()
            try:
                if kind == "volume":
                    info = backend.set_volume(array, norm, modality, direction)
                else:
                    info = backend.set_image(array, norm, modality)
            except BaseException:
                backend.close()
                raise
            return store.add(backend, budget, reservation), info

        try:
            session, info = await run_in_threadpool(build)
        finally:
            store.release_reservation(reservation)
        return {"session": session.sid, "shape": list(info.shape), "is_volume": info.is_volume,
                "normalization": info.normalization, "normalization_key": info.normalization_key,
                "ttl_s": store.ttl_s}

    @app.delete(protocol.PATH_SESSIONS + "/{sid}")
    def close_session(sid: str) -> dict:
        return {"closed": store.close(sid)}  # idempotent: closing an unknown session is not an error

    @app.post(protocol.PATH_SESSIONS + "/{sid}/heartbeat")
    def heartbeat(sid: str) -> dict:
        store.get(sid)
        return {"expires_in": store.ttl_s}


def add_prompt_routes(app, store, model, binary) -> None:
    """Register mask uploads, predictions and their logits on ``app``; ``binary(body, meta)`` builds a framed reply."""

    @app.post(protocol.PATH_SESSIONS + "/{sid}/masks")
    async def upload_mask(sid: str, request: Request) -> dict:
        session = store.get(sid)
        size = model.low_res_size
        array = wire.decode_array(await request.body(), max_bytes=size * size * 4)
        if array.dtype.name != "float32" or array.shape != (size, size):
            raise InputError(f"A mask prompt must be float32 low-res logits of shape ({size}, {size}); "
                             f"got {array.dtype} {array.shape}.")
        with session.lock:
            session.check_open()
            return {"mask_id": session.remember_mask(array)}

    @app.post(protocol.PATH_SESSIONS + "/{sid}/predict")
    def predict(sid: str, req: PredictRequest, request: Request):
        session = store.get(sid)
        codec = wire.choose_codec(request.headers.get(protocol.CODECS_HEADER))
        t0 = time.perf_counter()
        with session.lock:
            session.check_open()
            mask_input = None
            if req.mask_prediction:
                mask_input = session.prediction(req.mask_prediction)[0]
            elif req.mask_id:
                mask_input = session.mask(req.mask_id)
            pred = session.backend.predict(box=req.box, points=req.points, point_labels=req.point_labels,
                                           mask_input=mask_input, multimask_output=req.multimask_output,
                                           slice_index=req.slice_index, axis=req.axis)
            pid = session.remember_prediction(pred.low_res_logits, pred.mask.shape)
        frame = wire.encode_mask(pred.mask, codec)
        return binary(frame, {"score": pred.score, "prediction_id": pid, "shape": list(pred.mask.shape),
                              "server_ms": round(1000 * (time.perf_counter() - t0), 2)})

    @app.get(protocol.PATH_SESSIONS + "/{sid}/predictions/{pid}/logits")
    def logits(sid: str, pid: str, request: Request, full: bool = False):
        session = store.get(sid)
        with session.lock:
            low, hw = session.prediction(pid)
        codec = wire.choose_codec(request.headers.get(protocol.CODECS_HEADER))
        if not full:
            return binary(wire.encode_array(low, codec), {"shape": list(low.shape)})
        import numpy as np

        # The predictor's own conversion (same function, same input) -> identical values to local
        out = model.transform.logits_to_original(np.asarray(low, np.float32)[None, None], *hw)[0, 0]
        return binary(wire.encode_array(out.astype("float32"), codec), {"shape": list(out.shape)})


def _modality(value) -> "str | None":
    if value is None or isinstance(value, str) and len(value) <= 64:
        return value or None
    raise wire.WireError(f"modality must be a short string (e.g. \"CT\") or null; got {type(value).__name__}.")


def _direction(value) -> "list | None":
    """The volume's 3x3 direction matrix as 9 finite numbers (row-major), or None."""
    if value is None:
        return None
    ok = isinstance(value, (list, tuple)) and len(value) == 9 and all(
        isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) for v in value)
    if not ok:
        raise wire.WireError("direction must be 9 finite numbers (a row-major 3x3 matrix) or null.")
    return [float(v) for v in value]


def _normalization(spec) -> "str | Normalization":
    """The meta header's normalization: a user option string or a resolved Normalization as a dict."""
    if spec is None or isinstance(spec, str):
        return spec or "auto"
    if isinstance(spec, dict):
        try:
            norm = Normalization(mode=str(spec["mode"]), low=spec.get("low"), high=spec.get("high"),
                                 keep_zero=bool(spec.get("keep_zero", False)), label=str(spec.get("label", "")))
        except (KeyError, TypeError) as exc:
            raise wire.WireError(f"Bad normalization object {spec!r}: {exc}") from exc
        if norm.mode not in ("range", "percentile", "none", "auto") or (
                norm.mode == "range" and not (all(isinstance(v, (int, float)) and math.isfinite(v)
                                                  for v in (norm.low, norm.high)) and norm.low < norm.high)):
            raise wire.WireError(f"Bad normalization object {spec!r}.")
        return norm
    raise wire.WireError(f"normalization must be a string or an object; got {type(spec).__name__}.")
