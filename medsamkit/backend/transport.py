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

Needs ``httpx`` (the ``server`` extra).
"""
from __future__ import annotations

import ipaddress
import os
import time
import urllib.parse

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
