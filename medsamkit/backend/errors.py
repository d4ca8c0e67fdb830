"""Errors of the remote backend, one per thing a user can do something about.

Each is a :class:`MedSAMError` whose message says what happened and what to do; the Slicer effect
and the CLI show ``str(err)`` as is. HTTP status -> exception mapping: see medsamkit/protocol.
"""
from __future__ import annotations

from ..errors import MedSAMError


class RemoteError(MedSAMError):
    """A request to the segmentation server failed (base class; also an unexpected server error)."""


class ServerUnreachableError(RemoteError, ConnectionError):
    """No server answers at the URL, the connection broke, or it did not answer within the timeout."""


class AuthenticationError(RemoteError, PermissionError):
    """The server refused the token (missing or wrong)."""


class VersionMismatchError(RemoteError):
    """Client and server speak different protocol versions."""


class SessionLostError(RemoteError):
    """The server no longer knows this session or prediction (expired, closed, server restarted).

    code: "session_unknown" or "prediction_unknown" (the server's reply), None if not given.
    """

    code: str | None = None


class RequestTooLargeError(RemoteError):
    """An upload exceeds the server's size limit."""


class ServerBusyError(RemoteError):
    """The server has reached its session or memory limit."""


class ProtocolError(RemoteError):
    """The server rejected a request as malformed (a client/server bug or incompatible build)."""
