"""The protocol between ``medsamkit serve`` and RemoteBackend: paths, headers, API version, limits;
the byte layout of arrays and masks is in :mod:`medsamkit.protocol.wire`.

The single source of truth for both ends (server/ and backend/remote.py import this package, never
each other); no other module spells a path or header name.

API_VERSION is an integer bumped on any incompatible change. Every request carries it in
``X-MedSAMKit-API``; the server answers 409 when it differs, and the client checks
``GET /version`` before anything else, so a version mismatch is one clear error, never a
confusing failure later.

Endpoints (``{sid}`` is the session id returned on creation; all but /version need the bearer
token when the server has one)::

    GET    /version                              {"api": 1, "package": "0.1.0", "models": [...], "device": "cpu", ...}
    GET    /stats                                sessions open, bytes held (for operators and tests)
    POST   /sessions                             body: array frame (2D image or 3D volume); meta header JSON
                                                 {"normalization": str|{...}, "modality": str|null}
                                                 -> {"session": sid, "shape": [...], "is_volume": bool, ...}
    DELETE /sessions/{sid}                       close; frees its memory at once
    POST   /sessions/{sid}/heartbeat             keeps an idle session alive -> {"expires_in": s}
    POST   /sessions/{sid}/masks                 body: array frame (L, L) float32 low-res logits -> {"mask_id": id}
    POST   /sessions/{sid}/predict               JSON PredictRequest -> mask frame (2D), meta header
                                                 {"score", "prediction_id", "shape", "timing_ms"}
    GET    /sessions/{sid}/predictions/{pid}/logits?full=0|1
                                                 -> array frame float32: low-res (L, L) or full (H, W)
    POST   /sessions/{sid}/propagate             JSON PropagateRequest -> mask frame (3D), meta header
    POST   /sessions/{sid}/segment_plan          JSON PlanRequest (a BoxPlan) -> mask frame (3D), meta header
    GET    /sessions/{sid}/progress              {"done", "total", "text"} of the running long job
    POST   /sessions/{sid}/cancel                asks the running long job to stop

Status codes (client exception in medsamkit.backend.errors): 400 bad prompt/option (InputError,
message from the engine) · 401 missing/wrong token (AuthenticationError) · 404 unknown or expired
session / prediction (SessionLostError, handled by re-creating the session) · 409 API version
mismatch (VersionMismatchError) · 413 upload over the limit (RequestTooLargeError) · 422 malformed
request or frame (ProtocolError) · 499 job cancelled (Cancelled) · 503 session/memory limit
reached (ServerBusyError) · 500 server bug (RemoteError).
"""
from __future__ import annotations

API_VERSION = 1

# Headers
API_HEADER = "X-MedSAMKit-API"
META_HEADER = "X-MedSAMKit-Meta"        # JSON metadata next to a binary body (requests and replies)
CODECS_HEADER = "X-MedSAMKit-Codecs"    # comma list of codecs the client can read (wire.py)
AUTH_HEADER = "Authorization"           # "Bearer <token>"
OCTET = "application/octet-stream"

# Paths
PATH_VERSION = "/version"
PATH_STATS = "/stats"
PATH_SESSIONS = "/sessions"


def session_path(sid: str, action: str = "") -> str:
    return f"{PATH_SESSIONS}/{sid}" + (f"/{action}" if action else "")


def logits_path(sid: str, pid: str) -> str:
    return f"{PATH_SESSIONS}/{sid}/predictions/{pid}/logits"


# Paths that answer without a token: the client needs them to tell "wrong token" from "not a
# medsamkit server" or "wrong version". They reveal versions, model kinds and the device only.
PUBLIC_PATHS = frozenset({PATH_VERSION})

# Defaults shared by the CLI and make_app
DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 8765
DEFAULT_MAX_SESSIONS = 8
DEFAULT_SESSION_TTL_S = 600.0          # a session unused (no request, no heartbeat) this long is closed
DEFAULT_MAX_UPLOAD_BYTES = 512 << 20   # compressed request body
DEFAULT_MAX_SESSION_BYTES = 1 << 30    # decoded image/volume of one session
DEFAULT_MAX_TOTAL_BYTES = 4 << 30      # everything all sessions hold (arrays + embeddings + logits)
DEFAULT_SESSION_CACHE_BYTES = 64 << 20  # per-session embedding cache: 16 LiteMedSAM slices (4 MiB each)
MAX_JSON_BYTES = 1 << 20               # any non-upload request body
HEADER_TIMEOUT_S = 10.0                # a connection must finish its request line + headers this fast
KEEP_ALIVE_TIMEOUT_S = 30              # an idle keep-alive connection is closed after this long
MAX_CONNECTIONS = 64                   # open connections at once; requests beyond it are answered 503
MAX_HEADER_BYTES = 64 << 10            # request line + headers (h11 refuses larger with 400)
STATUS_CANCELLED = 499
MAX_META_BYTES = 16 << 10              # the X-MedSAMKit-Meta header (a few hundred bytes in practice)
MAX_JSON_DEPTH = 32                    # nesting of any JSON this side parses from the other (header, record)
from ..limits import MAX_PLAN_SLICES, MAX_POINTS  # noqa: E402,F401  (clicks per prompt, boxes per plan)
