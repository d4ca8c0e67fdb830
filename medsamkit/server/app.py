"""``make_app(model, ...)``: the FastAPI application behind ``medsamkit serve``.

Every model feature is the engine's own code: a session is a LocalBackend (backend/local.py),
volume operations call medsamkit.volume_segmentation (volume_routes.py). This module only
translates HTTP <-> engine calls and errors <-> status codes (table in medsamkit/protocol); the
routes live by group in session_routes.py, volume_routes.py and prefetch.py.

Concurrency: routes are plain ``def`` functions, so FastAPI runs them in its worker threads; all
model calls queue on one ModelThread (GPU work serialised, in arrival order), per-session locks keep
one request at a time per session, and nothing but the read-only weights is shared between sessions. Any exception
becomes a JSON error reply; none stops the server.
"""
from __future__ import annotations

import asyncio
import contextlib
import json
import logging

from .. import __version__
from ..records.record import weights_block
from ..errors import MedSAMError, require
from ..progress import Cancelled
from .. import protocol
from ..protocol import wire
from .guard import BodyTooLarge, Guard
from ..backend.local import ModelThread
from .sessions import PredictionUnknown, SessionStore, SessionUnknown, StoreFull

require("fastapi", "medsamkit serve", "server")  # a clear message naming the extra when it is missing
from fastapi import FastAPI  # noqa: E402
from fastapi.exceptions import RequestValidationError  # noqa: E402
from fastapi.concurrency import run_in_threadpool  # noqa: E402
from fastapi.responses import JSONResponse, Response  # noqa: E402
from starlette.exceptions import HTTPException as StarletteHTTPException  # noqa: E402

from .prefetch import add_prefetch_routes  # noqa: E402  (pydantic comes with fastapi)
from .session_routes import add_prompt_routes, add_session_routes  # noqa: E402
from .volume_routes import add_volume_routes  # noqa: E402


log = logging.getLogger("medsamkit.server")


def make_app(model, token: "str | None" = None, max_sessions: int = protocol.DEFAULT_MAX_SESSIONS,
             session_ttl_s: float = protocol.DEFAULT_SESSION_TTL_S,
             max_upload_bytes: int = protocol.DEFAULT_MAX_UPLOAD_BYTES,
             max_session_bytes: int = protocol.DEFAULT_MAX_SESSION_BYTES,
             max_total_bytes: int = protocol.DEFAULT_MAX_TOTAL_BYTES,
             session_cache_bytes: int = protocol.DEFAULT_SESSION_CACHE_BYTES,
             sweep_interval_s: float | None = None, clock=None):
    """Build the app for one loaded model (a PromptableModel from medsamkit.load_model).

    token: bearer token required on every path except /version (None = no auth; the CLI only
    allows that on loopback). Limits: sessions open at once, idle seconds before a session is
    closed, compressed upload bytes, decoded bytes per session, bytes held by all sessions,
    embedding-cache bytes per session. clock: seconds for session expiry (time.monotonic; tests pass their own).
    """
    model_thread = ModelThread()
    store = SessionStore(model, model_thread, max_sessions, session_ttl_s, max_session_bytes, max_total_bytes,
                         session_cache_bytes, **({} if clock is None else {"clock": clock}))
    sweep_every = sweep_interval_s if sweep_interval_s is not None else max(1.0, min(30.0, session_ttl_s / 4))

    app = FastAPI(title="medsamkit segmentation server", version=__version__,
                  lifespan=_lifespan(store, model_thread, sweep_every),
                  docs_url=None, redoc_url=None, openapi_url=None)
    app.state.store = store
    app.add_middleware(Guard, token=token.encode() if token else None, max_upload_bytes=max_upload_bytes)
    _add_error_handlers(app)

    @app.get(protocol.PATH_VERSION)
    def version() -> dict:
        return {"api": protocol.API_VERSION, "wire": wire.WIRE_VERSION, "package": __version__,
                "models": [model.kind], "model_id": model.model_id, "device": str(model.device),
                "engine": getattr(model, "engine", "torch"), **weights_block(model),
                "low_res_size": model.low_res_size, "codecs": wire.available_codecs(), "auth": token is not None,
                "limits": {"max_upload_bytes": max_upload_bytes, "max_session_bytes": max_session_bytes,
                           "max_sessions": max_sessions, "session_ttl_s": session_ttl_s}}

    @app.get(protocol.PATH_STATS)
    def stats() -> dict:
        return dict(store.stats(), prefetch=prefetcher.stats())

    add_session_routes(app, store, max_session_bytes)
    add_prompt_routes(app, store, model, _binary)
    add_volume_routes(app, store, _binary)
    prefetcher = add_prefetch_routes(app, store)  # the instant first box (prefetch.py)
    return app


def _lifespan(store: SessionStore, model_thread: ModelThread, sweep_every: float):
    """The app's lifespan: a task expires idle sessions every ``sweep_every`` seconds (a client that vanished
    never closes its own); on shutdown every session is closed, then the model thread."""

    @contextlib.asynccontextmanager
    async def lifespan(_app):
        async def sweeper():
            while True:
                await asyncio.sleep(sweep_every)
                try:
                    await run_in_threadpool(store.sweep)
                except Exception:  # keep sweeping; a bad session must not stop expiry of the others
                    log.exception("session sweep failed")

        task = asyncio.create_task(sweeper())
        try:
            yield
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
            store.close_all()
            model_thread.shutdown()

    return lifespan


def _binary(body: bytes, meta: dict) -> Response:
    """A framed reply: the frame as the body, its meta as compact JSON in the meta header."""
    return Response(content=body, media_type=protocol.OCTET,
                    headers={protocol.META_HEADER: json.dumps(meta, separators=(",", ":"))})


def _error(status: int, detail: str, code: str, headers: dict | None = None) -> JSONResponse:
    return JSONResponse({"detail": detail, "code": code}, status_code=status, headers=headers)


def _add_error_handlers(app) -> None:
    """Every exception becomes a JSON ``{"detail", "code"}`` reply with its status code (table in medsamkit/protocol)."""

    @app.exception_handler(SessionUnknown)
    async def _unknown_session(_req, exc):
        return _error(404, str(exc), "session_unknown")

    @app.exception_handler(PredictionUnknown)
    async def _unknown_prediction(_req, exc):
        return _error(404, str(exc), "prediction_unknown")

    @app.exception_handler(StoreFull)
    async def _full(_req, exc):
        return _error(503, str(exc), "busy", {"Retry-After": "10"})

    @app.exception_handler(BodyTooLarge)
    async def _too_large(_req, exc):
        return _error(413, str(exc), "too_large")

    @app.exception_handler(wire.WireTooLarge)
    async def _frame_too_large(_req, exc):
        return _error(413, str(exc), "too_large")

    @app.exception_handler(wire.WireError)
    async def _bad_frame(_req, exc):
        return _error(422, str(exc), "malformed")

    @app.exception_handler(Cancelled)
    async def _cancelled(_req, exc):
        return _error(protocol.STATUS_CANCELLED, str(exc), "cancelled")

    @app.exception_handler(MedSAMError)
    async def _engine_error(_req, exc):
        return _error(400, str(exc), "input")

    @app.exception_handler(RequestValidationError)
    async def _invalid(_req, exc):
        # FastAPI's own handler echoes the offending input, and a NaN in it made that reply itself
        # fail (JSON has no NaN) -> HTTP 500. Name the fields and what is wrong, never the values.
        parts = []
        for err in exc.errors()[:5]:
            where = ".".join(str(p) for p in err.get("loc", ()) if p != "body") or "body"
            parts.append(f"{where}: {err.get('msg', 'invalid')}")
        return _error(422, "Malformed request: " + "; ".join(parts) + ".", "malformed")

    @app.exception_handler(StarletteHTTPException)
    async def _http(_req, exc):
        # This app raises none itself: a 400 comes from FastAPI failing to parse a body (bytes that are
        # not UTF-8 JSON), i.e. a malformed request like any other -> 422. 404/405: unknown path/method.
        if exc.status_code == 400:
            return _error(422, f"Malformed request body: {exc.detail}", "malformed")
        return _error(exc.status_code, str(exc.detail), "http")

    @app.exception_handler(Exception)
    async def _bug(_req, exc):
        log.exception("unhandled error")
        return _error(500, f"Server error ({type(exc).__name__}: {exc}); the server log has the details.", "server")
