"""``medsamkit serve``: run the segmentation server (FastAPI + uvicorn) for remote clients.

Binds 127.0.0.1 by default. Any other address needs ``--token-file``: the server then answers
only requests carrying ``Authorization: Bearer <token>`` (except GET /version). The socket is
bound before uvicorn starts, so ``--port 0`` picks a free port and the ready line names it:

    medsamkit serve: listening on http://127.0.0.1:8765 (litemedsam on cuda, token required)

For a program that starts the server itself (the Slicer effect's model process,
medsamkit.backend.process): ``--ready-file`` receives a small JSON object (url, pid, model) once
the model is loaded and the socket listens, written atomically so a reader never sees half of it;
``--parent-pid`` makes the server exit within about a second once that process is gone, so a
crashed or killed parent leaves no orphan holding the model's memory.
"""
from __future__ import annotations

import ipaddress
import json
import os
import socket
import sys
import threading
import time

from . import arg_types
from ..errors import InputError
from .. import protocol


def add_parser(subparsers) -> None:
    from .options import add_model_options

    p = subparsers.add_parser("serve", help="serve a model over HTTP to remote clients (Slicer, --backend URL)",
                              description="Run the segmentation server. Clients: RemoteBackend / "
                                          "open_backend('http://HOST:PORT') in Python (docs/remote.md).")
    p.add_argument("--host", default=protocol.DEFAULT_HOST,
                   help="address to listen on (default 127.0.0.1: this machine only; others need --token-file)")
    p.add_argument("--port", type=arg_types.port, default=protocol.DEFAULT_PORT, help="TCP port (0 = any free port)")
    add_model_options(p)
    p.add_argument("--token-file", default=None, metavar="FILE",
                   help="file holding the bearer token clients must send (required unless --host is loopback)")
    p.add_argument("--max-sessions", type=arg_types.positive_int, default=protocol.DEFAULT_MAX_SESSIONS,
                   help="sessions (uploaded images/volumes) held at once")
    p.add_argument("--session-ttl", type=arg_types.positive_float, default=protocol.DEFAULT_SESSION_TTL_S, metavar="SECONDS",
                   help="close a session after this many seconds without requests or heartbeats")
    p.add_argument("--max-upload-mb", type=arg_types.positive_float, default=protocol.DEFAULT_MAX_UPLOAD_BYTES / 2**20,
                   help="largest compressed upload accepted (HTTP 413 above)")
    p.add_argument("--max-session-mb", type=arg_types.positive_float, default=protocol.DEFAULT_MAX_SESSION_BYTES / 2**20,
                   help="largest decoded image/volume of one session")
    p.add_argument("--max-memory-mb", type=arg_types.positive_float, default=protocol.DEFAULT_MAX_TOTAL_BYTES / 2**20,
                   help="memory all sessions may hold together (HTTP 503 above)")
    p.add_argument("--log-level", default="warning", choices=("debug", "info", "warning", "error"))
    p.add_argument("--ready-file", default=None, metavar="FILE",
                   help="write {\"url\", \"pid\", \"model\"} as JSON to FILE once listening (for programs that "
                        "start the server with --port 0)")
    p.add_argument("--parent-pid", type=int, default=None, metavar="PID",
                   help="exit when the process PID is gone (a model process started by another program)")
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
    from ..backend.transport import read_token_file
    from ..errors import require

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
    if args.parent_pid:
        watch_parent(args.parent_pid)  # before the model load: a parent gone during it leaves no orphan
    sock = bind_socket(args.host, args.port)  # before loading the model: a busy port fails in a second
    try:
        from ..backend import load_local_model
        from ..server.app import make_app

        model = load_local_model(args.model, args.checkpoint, args.adapter, args.engine, args.device)
        app = make_app(model, token=token, max_sessions=args.max_sessions, session_ttl_s=args.session_ttl,
                       max_upload_bytes=int(args.max_upload_mb * 2**20),
                       max_session_bytes=int(args.max_session_mb * 2**20),
                       max_total_bytes=int(args.max_memory_mb * 2**20))
        host, port = sock.getsockname()[:2]
        shown = f"[{host}]" if ":" in host else host
        url = f"http://{shown}:{port}"
        print(f"medsamkit serve: listening on {url} ({model.kind} on {model.device}, "
              f"{'token required' if token else 'no token: this machine only'})", flush=True)
        if args.ready_file:
            write_ready_file(args.ready_file, {"url": url, "pid": os.getpid(), "model": model.kind,
                                               "device": str(model.device),
                                               "engine": getattr(model, "engine", "torch")})
        from ..server.guard import uvicorn_options

        config = uvicorn.Config(app, log_level=args.log_level, access_log=args.log_level in ("debug", "info"),
                                **uvicorn_options())
        uvicorn.Server(config).run(sockets=[sock])
    finally:
        sock.close()
    print("medsamkit serve: stopped", file=sys.stderr)
    return 0


def write_ready_file(path, info: dict) -> None:
    """Write ``info`` as JSON to ``path`` atomically (medsamkit.io.atomic_output)."""
    from ..io import atomic_output

    with atomic_output(path) as tmp, open(tmp, "w", encoding="utf-8") as f:
        json.dump(info, f)


def parent_alive(pid: int) -> bool:
    """True while process ``pid`` runs. Not "is it our parent": inside Slicer the server is started
    through the PythonSlicer launcher, so the process to watch (Slicer) is its grandparent."""
    if os.name == "nt":
        import ctypes

        kernel32 = ctypes.windll.kernel32
        handle = kernel32.OpenProcess(0x00100000, False, int(pid))  # SYNCHRONIZE
        if not handle:
            return False
        try:
            return kernel32.WaitForSingleObject(handle, 0) == 0x00000102  # WAIT_TIMEOUT: still running
        finally:
            kernel32.CloseHandle(handle)
    try:
        os.kill(int(pid), 0)  # signal 0: only checks that the process exists
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # exists, owned by another user
    try:  # Linux: a killed parent not yet reaped by its own parent is a zombie, i.e. gone
        with open(f"/proc/{int(pid)}/stat", encoding="ascii", errors="replace") as f:
            return f.read().rsplit(")", 1)[-1].split()[0] != "Z"
    except OSError:
        return True


def watch_parent(pid: int, interval_s: float = 0.5) -> threading.Thread:
    """Exit this process (status 0, no clean-up: a model process holds nothing to save) once ``pid``
    is gone. A daemon thread polls every ``interval_s``; a kill -9 of the parent is seen in < 1 s."""
    if not parent_alive(pid):
        raise InputError(f"--parent-pid {pid}: no such process; give the pid of the program that started the server.")

    def watch():
        while parent_alive(pid):
            time.sleep(interval_s)
        print(f"medsamkit serve: parent process {pid} is gone; exiting", file=sys.stderr, flush=True)
        os._exit(0)

    thread = threading.Thread(target=watch, name="medsamkit-parent-watch", daemon=True)
    thread.start()
    return thread
