"""HTTP transport of the remote backend: time limits, retries, and status -> exception mapping.

Every request the client makes goes through :meth:`Transport.request`, so every one is bounded:

- ``timeout`` seconds for the server's answer (httpx read/write timeouts; connect uses
  ``connect_timeout``); a stopped or overloaded server raises ServerUnreachableError then;
- a refused or broken connection (server down, killed mid-request, restarting) is retried
  ``retries`` times after 0.2 s, 0.4 s, ... as long as the whole stays within ``timeout``; a read
  timeout is not retried (the server may still be computing; a retry would double its load);
- replies >= 300 become the typed errors listed in medsamkit/protocol.

A server on this computer (127.0.0.0/8, ::1, localhost: the model process the Slicer effect starts) is
reached directly: HTTP_PROXY/ALL_PROXY and the system proxy settings are not used for it, since a
hospital proxy cannot reach this computer's loopback. Other servers honour the user's proxy settings.

Needs ``httpx`` (the ``server`` extra), except the health check.

The health check (:func:`responds`, :class:`Watchdog`): a model process can stop answering without
exiting (stopped, deadlocked, swapped out for good). Its socket still accepts connections, so a prompt
would wait its whole timeout (minutes) and the next prompt would wait again on the same process.
:func:`responds` asks ``GET /version`` (no token, no model work: the server answers it from a worker
thread while the model computes) with a timeout of seconds, through plain http.client (no proxy
applies); :class:`Watchdog` asks it every ``interval`` seconds while a call is in flight and, when a
check goes unanswered and the process has not exited, kills the process, which breaks the waiting call
at once. :class:`medsamkit.backend.process.ProcessBackend` then starts a new process and says so.
"""
from __future__ import annotations

import http.client
import ipaddress
import os
import threading
import time
import urllib.parse

from .. import __version__
from ..errors import InputError, require
from ..progress import Cancelled
from .. import protocol
from ..protocol import wire
from .errors import (AuthenticationError, ProtocolError, RemoteError, RequestTooLargeError, ServerBusyError,
                     ServerUnreachableError, SessionLostError, VersionMismatchError)

TOKEN_ENV = "MEDSAMKIT_TOKEN"


class Transport:
    """One httpx client bound to a server URL, with the bearer token and protocol headers set."""

    def __init__(self, url: str, token: str | None, timeout: float, connect_timeout: float, retries: int):
        self.httpx = require("httpx", "The remote backend", "server")
        url = url if "://" in url else f"http://{url}"
        self.url = url.rstrip("/")
        self.connect_timeout = float(connect_timeout)
        self.retries = int(retries)
        self.timeout = timeout
        headers = {protocol.API_HEADER: str(protocol.API_VERSION),
                   protocol.CODECS_HEADER: ",".join(wire.available_codecs())}
        if token:
            headers[protocol.AUTH_HEADER] = f"Bearer {token}"
        # trust_env=False: no proxy from the environment or the system for a loopback server.
        self.client = self.httpx.Client(base_url=self.url, headers=headers, trust_env=not is_loopback(self.url))
        self.server_alive = True
        self.bytes_sent = self.bytes_received = 0  # HTTP bodies only (headers add ~0.3 KB per request)

    @property
    def timeout(self) -> float:
        return self._timeout

    @timeout.setter
    def timeout(self, seconds: float) -> None:
        self._timeout = float(seconds)
        self._timeouts = self.httpx.Timeout(self._timeout, connect=min(self.connect_timeout, self._timeout))

    def request(self, method: str, path: str, timeout: float | None = None, **kwargs):
        """One exchange -> httpx.Response with status < 300, or a RemoteError subclass / InputError."""
        httpx = self.httpx
        limit = self.timeout if timeout is None else float(timeout)
        deadline = time.monotonic() + limit
        t = self._timeouts if timeout is None else httpx.Timeout(limit, connect=min(self.connect_timeout, limit))
        attempt = 0
        while True:
            try:
                resp = self.client.request(method, path, timeout=t, **kwargs)
                break
            except httpx.TimeoutException as exc:
                if isinstance(exc, httpx.ConnectTimeout) and self._may_retry(attempt, deadline):
                    attempt += 1
                    continue
                self.server_alive = False
                raise ServerUnreachableError(
                    f"The server at {self.url} did not answer within {limit:g} s ({type(exc).__name__}). It may be "
                    "overloaded or stopped; check it, or raise the timeout.") from exc
            except (httpx.ConnectError, httpx.RemoteProtocolError, httpx.ReadError, httpx.WriteError) as exc:
                if self._may_retry(attempt, deadline):
                    attempt += 1
                    continue
                self.server_alive = False
                what = ("Lost the connection during the request (the server stopped or restarted)"
                        if not isinstance(exc, httpx.ConnectError) else "Could not connect")
                raise ServerUnreachableError(
                    f"{what}: no medsamkit server answers at {self.url} ({exc}). Start it with "
                    "'medsamkit serve' on that machine, or check the address and the network.") from exc
        self.server_alive = True
        self.bytes_sent += len(resp.request.content) if resp.request is not None else 0
        self.bytes_received += len(resp.content)
        if resp.status_code < 300:
            return resp
        raise error_for(resp, self.url)

    def handshake(self) -> dict:
        """The server's /version, checked: a medsamkit server of this API version that takes our token.
        Adds ``ttl_s`` (its session time-to-live). Raises VersionMismatchError or AuthenticationError."""
        resp = self.request("GET", protocol.PATH_VERSION)
        try:
            v = resp.json()
            api = int(v["api"])
        except (ValueError, KeyError, TypeError) as exc:
            raise VersionMismatchError(f"{self.url} answers, but not as a medsamkit server ({exc}); check the URL.")
        if api != protocol.API_VERSION:
            raise VersionMismatchError(
                f"The server at {self.url} runs medsamkit {v.get('package', '?')} (API {api}); this client is "
                f"medsamkit {__version__} (API {protocol.API_VERSION}). "
                "Install the same medsamkit version on both sides.")
        v["ttl_s"] = float(v.get("limits", {}).get("session_ttl_s", protocol.DEFAULT_SESSION_TTL_S))
        self.request("GET", protocol.PATH_STATS)  # a wrong token fails here, not at the first click
        return v

    def long_request(self, path: str, body: dict, timeout: float, progress_path: str, cancel_path: str,
                     progress=None, cancel=None, poll_s: float = 0.25):
        """POST a long job and, while it runs, poll ``progress_path`` (which also proves the server is alive:
        a hung server raises within ``self.timeout``) and forward a cancel to ``cancel_path`` once."""
        outcome: dict = {}

        def send():
            try:
                outcome["resp"] = self.request("POST", path, json=body, timeout=timeout)
            except BaseException as exc:  # handed to the calling thread below
                outcome["error"] = exc

        sender = threading.Thread(target=send, name="medsamkit-job", daemon=True)
        sender.start()
        cancel_sent = False
        while True:
            sender.join(poll_s)
            if not sender.is_alive():
                break
            if cancel is not None and not cancel_sent and cancel():
                self.quiet("POST", cancel_path)
                cancel_sent = True
            try:
                state = self.request("GET", progress_path).json()
            except SessionLostError:
                continue  # the job's own reply says what happened
            if progress is not None and state["total"]:
                progress(state["done"], state["total"], state["text"])
        if "error" in outcome:
            raise outcome["error"]
        return outcome["resp"]

    def _may_retry(self, attempt: int, deadline: float) -> bool:
        if attempt >= self.retries:
            return False
        pause = 0.2 * (2 ** attempt)  # 0.2 s, 0.4 s, ...: covers a server being restarted by a supervisor
        if time.monotonic() + pause >= deadline:
            return False
        time.sleep(pause)
        return True

    def quiet(self, method: str, path: str, timeout: float = 5.0) -> int | None:
        """Fire-and-check request that never raises (heartbeats, closing): status, or None if unreachable."""
        try:
            status = self.client.request(method, path, timeout=min(timeout, self.timeout)).status_code
        except self.httpx.HTTPError:
            self.server_alive = False
            return None
        self.server_alive = True
        return status

    def close(self) -> None:
        self.client.close()


class Heartbeat:
    """A daemon thread that keeps a server session alive: every ``interval`` seconds it POSTs the heartbeat
    of the session ``current()`` names (None: nothing to keep); a 404 calls ``lost(session id)``."""

    def __init__(self, transport: Transport, interval: float, current, lost):
        self.transport, self.interval, self.current, self.lost = transport, float(interval), current, lost
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        if self._thread is None or not self._thread.is_alive():
            self._thread = threading.Thread(target=self._beat, name="medsamkit-heartbeat", daemon=True)
            self._thread.start()

    def stop(self) -> None:
        self._stop.set()

    def _beat(self) -> None:
        while not self._stop.wait(self.interval):
            sid = self.current()
            if sid is not None and self.transport.quiet("POST", protocol.session_path(sid, "heartbeat")) == 404:
                self.lost(sid)


def refused(exc: BaseException) -> bool:
    """The request never reached a server (connection refused), as opposed to one lost mid-answer."""
    while exc is not None:
        if type(exc).__name__ in ("ConnectError", "ConnectionRefusedError"):
            return True
        exc = exc.__cause__ or exc.__context__
    return False

def is_loopback(url: str) -> bool:
    """True when ``url``'s host is this computer: localhost or a loopback address (127.0.0.0/8, ::1)."""
    host = (urllib.parse.urlsplit(url).hostname or "").lower()
    if host == "localhost" or host.endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def error_for(resp, url: str) -> Exception:
    """The typed error for a reply with status >= 300 (table in medsamkit/protocol)."""
    try:
        body = resp.json()
        detail, code = str(body.get("detail", "")), body.get("code")
    except (ValueError, AttributeError):
        detail, code = resp.text[:300], None
    status = resp.status_code
    if status == 401:
        return AuthenticationError(f"The server at {url} refused the token: {detail}")
    if status == 409:
        return VersionMismatchError(detail)
    if status == 404:
        err = SessionLostError(f"{detail} (server {url})")
        err.code = code
        return err
    if status == 413:
        return RequestTooLargeError(detail)
    if status == 422:
        return ProtocolError(f"The server rejected the request as malformed: {detail}")
    if status == 400:
        return InputError(detail)
    if status == protocol.STATUS_CANCELLED:
        return Cancelled(detail or "Cancelled.")
    if status == 503:
        return ServerBusyError(detail)
    return RemoteError(f"The server at {url} failed (HTTP {status}): {detail}")


def resolve_token(token: str | None, token_file=None) -> str | None:
    """The token given, else the content of ``token_file``, else $MEDSAMKIT_TOKEN, else None."""
    if token is None and token_file is not None:
        token = read_token_file(token_file)
    if token is None:
        token = os.environ.get(TOKEN_ENV) or None
    return token


def read_token_file(path) -> str:
    try:
        with open(path, encoding="utf-8") as f:
            token = f.read().strip()
    except OSError as exc:
        raise InputError(f"Cannot read the token file {path}: {exc.strerror}.") from exc
    if not token:
        raise InputError(f"The token file {path} is empty; put the server's token in it.")
    return token


HEALTH_TIMEOUT_S = 5.0   # /version answers in milliseconds, also while the model computes
HEALTH_INTERVAL_S = 2.0  # a call in flight this long gets its first check
EXIT_GRACE_S = 2.0  # a killed multi-threaded process takes a moment before its exit status can be read


def responds(url: str, timeout: float = HEALTH_TIMEOUT_S) -> bool:
    """True when the server at ``url`` answers ``GET /version`` with 200 within ``timeout`` seconds
    (plain http.client: no proxy settings apply to the loopback check)."""
    parts = urllib.parse.urlsplit(url)
    conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=timeout)
    try:
        conn.request("GET", protocol.PATH_VERSION)
        resp = conn.getresponse()
        resp.read()
        return resp.status == 200
    except (OSError, http.client.HTTPException):
        return False
    finally:
        conn.close()


class Watchdog:
    """``with Watchdog(url, on_stall):`` runs :func:`responds` every ``interval`` s in a thread while the block
    runs; the first unanswered check calls ``on_stall()`` (which kills the process) and sets ``stalled``.
    ``exited(seconds)``, when given, says whether the process has exited (waiting up to ``seconds``): a
    check unanswered because the process died (killed, crashed) is not a stall, and the waiting call
    reports the exit itself."""

    def __init__(self, url: str, on_stall, interval: float = HEALTH_INTERVAL_S, timeout: float = HEALTH_TIMEOUT_S,
                 exited=None):
        self.url, self.on_stall, self.exited = url, on_stall, exited
        self.interval, self.timeout = float(interval), float(timeout)
        self.stalled = False
        self._done = threading.Event()
        self._thread = threading.Thread(target=self._watch, name="medsamkit-model-watchdog", daemon=True)

    def __enter__(self) -> "Watchdog":
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._done.set()
        self._thread.join()

    def _watch(self) -> None:
        while not self._done.wait(self.interval):
            if not responds(self.url, self.timeout) and not self._done.is_set():
                if self.exited is not None and self.exited(EXIT_GRACE_S):
                    return  # it died rather than hung: the waiting call fails on its own and says how
                self.stalled = True
                self.on_stall()
                return
