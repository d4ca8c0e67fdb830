"""Volume endpoints: propagation and box plans (from markers), with progress and cancel.

Both run the engine's medsamkit.volume_segmentation on the session's LocalBackend, holding the
session lock for the whole job; its model calls queue on the shared ModelThread one slice at a
time, so other sessions' clicks interleave with a long job instead of waiting for it. The job reports progress
into the session (GET .../progress) and stops at the next slice once POST .../cancel (or closing
the session) sets the session's cancel flag; it then answers 499.

Reply: a 3D mask frame (only the bounding box of the result travels) and a meta header with the
VolumeSegmentation's other fields (JSON object keys are slice indices as strings).
"""
from __future__ import annotations

import numpy as np
from fastapi import Request

from ..markers import BoxPlan
from .. import protocol
from ..protocol import wire
from .models import PlanRequest, PropagateRequest


def volume_meta(result) -> dict:
    norm = result.normalization
    return {"axis": int(result.axis), "slices": [int(k) for k in result.slices],
            "scores": {str(k): float(v) for k, v in result.scores.items()},
            "boxes": {str(k): [float(x) for x in np.ravel(b)] for k, b in result.boxes.items()},
            "refined": [int(k) for k in result.refined], "warnings": [str(w) for w in result.warnings],
            "normalization": None if norm is None else {"mode": norm.mode, "low": norm.low, "high": norm.high,
                                                        "keep_zero": norm.keep_zero, "label": norm.label}}


def add_volume_routes(app, store, binary) -> None:
    """Register the volume endpoints on ``app``; ``binary(body, meta)`` builds a framed reply."""

    def run_job(session, work):
        """``work(progress, cancel)`` under the session lock, wired to the session's progress/cancel."""
        with session.lock:
            session.check_open()
            session.cancel_event.clear()
            session.progress = (0, 0, "starting")

            def progress(done, total, text=""):
                session.progress = (int(done), int(total), str(text))

            return work(progress, session.cancel_event.is_set)

    def reply(result, request: Request):
        codec = wire.choose_codec(request.headers.get(protocol.CODECS_HEADER))
        return binary(wire.encode_mask(result.mask.astype(bool), codec), volume_meta(result))

    @app.post(protocol.PATH_SESSIONS + "/{sid}/propagate")
    def propagate(sid: str, req: PropagateRequest, request: Request):
        session = store.get(sid)
        result = run_job(session, lambda progress, cancel: session.backend.propagate(
            req.slice_index, req.axis, box=req.box, points=req.points, point_labels=req.point_labels,
            progress=progress, cancel=cancel, margin_px=req.margin_px, score_threshold=req.score_threshold,
            min_area=req.min_area, max_slices=req.max_slices))
        return reply(result, request)

    @app.post(protocol.PATH_SESSIONS + "/{sid}/segment_plan")
    def segment_plan(sid: str, req: PlanRequest, request: Request):
        session = store.get(sid)
        boxes = {int(k): np.asarray(v, dtype=np.float64) for k, v in sorted(req.boxes.items())}
        plan = BoxPlan(axis=req.axis, boxes=boxes, marked=list(req.marked), warnings=list(req.warnings))
        result = run_job(session, lambda progress, cancel: session.backend.segment_plan(
            plan, refine=req.refine, progress=progress, cancel=cancel))
        return reply(result, request)

    @app.get(protocol.PATH_SESSIONS + "/{sid}/progress")
    def progress(sid: str) -> dict:
        done, total, text = store.get(sid).progress  # no session lock: the job holds it
        return {"done": done, "total": total, "text": text}

    @app.post(protocol.PATH_SESSIONS + "/{sid}/cancel")
    def cancel(sid: str) -> dict:
        store.get(sid).cancel_event.set()
        return {"cancelling": True}

