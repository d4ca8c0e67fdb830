"""``medsamkit serve``: run the segmentation server (FastAPI + uvicorn) for remote clients.

Binds 127.0.0.1 by default. Any other address needs ``--token-file``: the server then answers
only requests carrying ``Authorization: Bearer <token>`` (except GET /version). The socket is
bound before uvicorn starts, so ``--port 0`` picks a free port and the ready line names it:

    medsamkit serve: listening on http://127.0.0.1:8765 (litemedsam on cuda, token required)
"""
from __future__ import annotations

import ipaddress
import socket
import sys

from . import cli_types
from .errors import InputError
from .server import protocol


def add_parser(subparsers) -> None:
    from .cli import _add_model_options

    p = subparsers.add_parser("serve", help="serve a model over HTTP to remote clients (Slicer, --backend URL)",
                              description="Run the segmentation server. Clients: RemoteBackend / "
                                          "open_backend('http://HOST:PORT') in Python (docs/remote.md).")
    p.add_argument("--host", default=protocol.DEFAULT_HOST,
                   help="address to listen on (default 127.0.0.1: this machine only; others need --token-file)")
    p.add_argument("--port", type=cli_types.port, default=protocol.DEFAULT_PORT, help="TCP port (0 = any free port)")
    _add_model_options(p)
    p.add_argument("--token-file", default=None, metavar="FILE",
                   help="file holding the bearer token clients must send (required unless --host is loopback)")
    p.add_argument("--max-sessions", type=cli_types.positive_int, default=protocol.DEFAULT_MAX_SESSIONS,
                   help="sessions (uploaded images/volumes) held at once")
    p.add_argument("--session-ttl", type=cli_types.positive_float, default=protocol.DEFAULT_SESSION_TTL_S, metavar="SECONDS",
                   help="close a session after this many seconds without requests or heartbeats")
    p.add_argument("--max-upload-mb", type=cli_types.positive_float, default=protocol.DEFAULT_MAX_UPLOAD_BYTES / 2**20,
                   help="largest compressed upload accepted (HTTP 413 above)")
    p.add_argument("--max-session-mb", type=cli_types.positive_float, default=protocol.DEFAULT_MAX_SESSION_BYTES / 2**20,
                   help="largest decoded image/volume of one session")
    p.add_argument("--max-memory-mb", type=cli_types.positive_float, default=protocol.DEFAULT_MAX_TOTAL_BYTES / 2**20,
                   help="memory all sessions may hold together (HTTP 503 above)")
    p.add_argument("--log-level", default="warning", choices=("debug", "info", "warning", "error"))
    p.set_defaults(func=run)


def is_loopback(host: str) -> bool:
    if host.strip().lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False  # a host name other than localhost may resolve to anything: treat as exposed


def bind_socket(host: str, port: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in host.strip("[]") else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host.strip("[]"), port))
    except OSError as exc:
        sock.close()
        raise InputError(f"Cannot listen on {host}:{port}: {exc.strerror}. Choose another --port "
                         "(or stop the program using it).") from exc
    sock.listen(128)
    return sock


def run(args) -> int:
    from .backend.transport import read_token_file
    from .errors import require

    token = read_token_file(args.token_file) if args.token_file else None
    if token is None and not is_loopback(args.host):
        raise InputError(
            f"Refusing to listen on {args.host} without a token: anyone who can reach it could use the server. "
            "Create one (python -c \"import secrets; print(secrets.token_urlsafe(32))\" > token.txt) and pass "
            "--token-file token.txt, or keep the default --host 127.0.0.1.")
    if token is not None and len(token) < 16:
        raise InputError("The token is shorter than 16 characters; use a long random one "
                         "(python -c \"import secrets; print(secrets.token_urlsafe(32))\").")
    uvicorn = require("uvicorn", "medsamkit serve", "server")
    require("fastapi", "medsamkit serve", "server")
    sock = bind_socket(args.host, args.port)  # before loading the model: a busy port fails in a second
    try:
        from .cli import load_predictor
        from .server.app import make_app

        model = load_predictor(args).model
        app = make_app(model, token=token, max_sessions=args.max_sessions, session_ttl_s=args.session_ttl,
                       max_upload_bytes=int(args.max_upload_mb * 2**20),
                       max_session_bytes=int(args.max_session_mb * 2**20),
                       max_total_bytes=int(args.max_memory_mb * 2**20))
        host, port = sock.getsockname()[:2]
        shown = f"[{host}]" if ":" in host else host
        print(f"medsamkit serve: listening on http://{shown}:{port} ({model.kind} on {model.device}, "
              f"{'token required' if token else 'no token: this machine only'})", flush=True)
        from .server.guard import uvicorn_options

        config = uvicorn.Config(app, log_level=args.log_level, access_log=args.log_level in ("debug", "info"),
                                **uvicorn_options())
        uvicorn.Server(config).run(sockets=[sock])
    finally:
        sock.close()
    print("medsamkit serve: stopped", file=sys.stderr)
    return 0

