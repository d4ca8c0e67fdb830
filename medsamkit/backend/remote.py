"""RemoteBackend: the Backend interface on a ``medsamkit serve`` server (typically a CUDA machine).

The image or volume is compressed and uploaded once per session (wire.py); each prompt then sends
a few dozen bytes of JSON and gets back the mask's bounding-box region, bit-packed and compressed,
from which the full-size mask is rebuilt here. Low-res logits (the mask prompt for refinement)
stay on the server: a :class:`RemotePrediction` passed as ``mask_input`` travels as its id, and
its ``low_res_logits``/``logits`` are downloaded only if read.

Failure handling, so the caller never hangs and always gets a MedSAMError saying what to do:

- every request has a time limit (``timeout`` seconds for the server's answer, ``upload_timeout``
  for uploads); a server that stops answering raises ServerUnreachableError within it;
- refused or broken connections are retried ``retries`` times with a short back-off inside the
  same limit, then raise ServerUnreachableError (a server killed mid-request: at once);
- 401 -> AuthenticationError, 409 or another API version at /version -> VersionMismatchError;
- a session the server no longer knows (restart, expiry) is re-created from the kept upload and
  the request repeated, once; predictions it lost are recomputed from their prompts (the model is
  deterministic), so a server restart costs one upload and one encoding, not the user's work;
- a daemon thread sends a heartbeat every ``heartbeat_s`` so an idle session does not expire.

Thread safety: one worker thread issues requests (worker.py); the heartbeat thread only reads the
session id. Needs ``httpx`` (the ``server`` extra); ``zstandard`` is used when present.
"""
from __future__ import annotations

import json
import os
import threading
import time

import numpy as np

from .. import __version__
from ..errors import InputError, require
from ..predictor import Prediction
from ..preprocess import Normalization, validate_image
from ..prompts import make_prompt
from ..progress import Cancelled
from ..server import protocol, wire
from ..volume import numpy_axis
from .base import Backend, BackendInfo, ImageInfo, check_volume, slice_hw
from .errors import (AuthenticationError, ProtocolError, RemoteError, RequestTooLargeError, ServerBusyError,
                     ServerUnreachableError, SessionLostError, VersionMismatchError)

TOKEN_ENV = "MEDSAMKIT_TOKEN"


class RemotePrediction(Prediction):
    """A Prediction whose mask is here and whose logits stay on the server until read."""

    def __init__(self, backend: "RemoteBackend", mask: np.ndarray, score: float, pid: str, generation: int,
                 request: dict):
        self.mask = mask
        self.score = score
        self._backend = backend
        self._pid = pid
        self._generation = generation
        self._request = request          # the prompts that produced it (to recompute after a restart)
        self._low_res: np.ndarray | None = None
        self._full: np.ndarray | None = None

    @property
    def low_res_logits(self) -> np.ndarray:
        """(L, L) float32 low-res logits in the model frame (downloaded on first use)."""
        if self._low_res is None:
            self._low_res = self._backend._fetch_logits(self, full=False)
        return self._low_res

    @property
    def logits(self) -> np.ndarray:
        """(H, W) float32 logits on the image grid (downloaded on first use; mask = logits > 0)."""
        if self._full is None:
            self._full = self._backend._fetch_logits(self, full=True)
        return self._full

    __eq__ = object.__eq__
    __hash__ = object.__hash__

    def __repr__(self) -> str:
        return f"RemotePrediction(mask={self.mask.shape} {int(self.mask.sum())} px, score={self.score:.3f})"


class RemoteBackend(Backend):
    """Client of a medsamkit server.

    url: ``http://host:port`` (``host:port`` works too). token: the server's bearer token, else
    the file ``token_file``, else the environment variable MEDSAMKIT_TOKEN, else none.
    timeout: seconds to wait for an answer to a prompt; connect_timeout: to reach the server;
    upload_timeout: for an image/volume upload; retries: extra attempts after a refused/broken
    connection; heartbeat_s: seconds between heartbeats (None: a third of the server's session TTL).

    Raises ServerUnreachableError, VersionMismatchError or AuthenticationError at construction.
    """

    def __init__(self, url: str, token: str | None = None, token_file: "str | os.PathLike | None" = None,
                 timeout: float = 30.0, connect_timeout: float = 5.0, upload_timeout: float = 300.0,
                 retries: int = 2, heartbeat_s: float | None = None):
        self._httpx = require("httpx", "The remote backend", "server")
        self.url = url if "://" in url else f"http://{url}"
        self.url = self.url.rstrip("/")
        if token is None and token_file is not None:
            token = read_token_file(token_file)
        if token is None:
            token = os.environ.get(TOKEN_ENV) or None
        self.connect_timeout, self.upload_timeout = float(connect_timeout), float(upload_timeout)
        self.retries = int(retries)
        self.timeout = timeout
        headers = {protocol.API_HEADER: str(protocol.API_VERSION),
                   protocol.CODECS_HEADER: ",".join(wire.available_codecs())}
        if token:
            headers[protocol.AUTH_HEADER] = f"Bearer {token}"
        self._http = self._httpx.Client(base_url=self.url, headers=headers)
        self._lock = threading.RLock()
        self._sid: str | None = None
        self._generation = 0             # bumped whenever a (re)created session replaces the last one
        self._upload: tuple[bytes, dict] | None = None
        self._info: ImageInfo | None = None
        self._direction = None
        self.sessions_created = 0
        self.server_alive = True
        self.bytes_sent = self.bytes_received = 0  # HTTP bodies only (headers add ~0.3 KB per request)
        self._stop = threading.Event()
        self._heartbeat: threading.Thread | None = None
        try:
            self.version = self._check_server()
        except BaseException:
            self._http.close()
            raise
        self.heartbeat_s = float(heartbeat_s) if heartbeat_s else max(1.0, min(60.0, self.version["ttl_s"] / 3))
        self._codec = wire.choose_codec(self.version.get("codecs"))

    @property
    def timeout(self) -> float:
        """Seconds to wait for the server's answer to one request (may be changed at any time)."""
        return self._timeout

    @timeout.setter
    def timeout(self, seconds: float) -> None:
        self._timeout = float(seconds)
        self._timeouts = self._httpx.Timeout(self._timeout, connect=min(self.connect_timeout, self._timeout))

    # -- interface ---------------------------------------------------------------------------------
    def info(self) -> BackendInfo:
        v = self.version
        return BackendInfo(kind=v["models"][0], device=v["device"], package_version=v["package"], remote=True,
                           url=self.url, api_version=v["api"], extra={"model_id": v.get("model_id")})

    def set_image(self, image, normalization="auto", modality=None) -> ImageInfo:
        arr = validate_image(image)  # fail here, before uploading anything
        return self._open(arr, "image", normalization, modality, None)

    def set_volume(self, volume, normalization="auto", modality=None, direction=None) -> ImageInfo:
        arr = check_volume(volume)
        return self._open(arr, "volume", normalization, modality, direction)

    def predict(self, box=None, points=None, point_labels=None, mask_input=None,
                multimask_output=None, slice_index=None, axis=0) -> RemotePrediction:
        ax = numpy_axis(axis, self._direction)
        hw = slice_hw(self._info, slice_index, ax)
        # The engine's own checks, here: a bad prompt raises the same InputError as locally, with no round trip
        prompt = make_prompt(hw, box, points, point_labels, None)
        if mask_input is not None and not isinstance(mask_input, Prediction):
            make_prompt(hw, box, points, point_labels, mask_input, int(self.version["low_res_size"]))
        request = {"box": _floats(box), "points": _points(points),
                   "point_labels": None if prompt.labels is None else prompt.labels.tolist(),
                   "multimask_output": multimask_output,
                   "slice_index": None if slice_index is None else int(slice_index),
                   "axis": ax, "parent": mask_input}
        with self._lock:
            return self._predict(request)

    def close(self) -> None:
        self._stop.set()
        with self._lock:
            self._close_session()
            self._upload = None
        self._http.close()

    # -- sessions ----------------------------------------------------------------------------------
    def _open(self, arr, kind, normalization, modality, direction) -> ImageInfo:
        norm = normalization
        if isinstance(norm, Normalization):
            norm = {"mode": norm.mode, "low": norm.low, "high": norm.high, "keep_zero": norm.keep_zero,
                    "label": norm.label}
        meta = {"kind": kind, "normalization": norm, "modality": modality,
                "direction": None if direction is None else [float(v) for v in np.ravel(direction)]}
        frame = wire.encode_array(arr, self._codec)
        with self._lock:
            self._close_session()
            self._upload, self._direction = (frame, meta), direction
            self._create_session()
            self._start_heartbeat()
            return self._info

    def _create_session(self) -> None:
        frame, meta = self._upload
        resp = self._request("POST", protocol.PATH_SESSIONS, content=frame, timeout=self.upload_timeout,
                             headers={protocol.META_HEADER: json.dumps(meta), "Content-Type": protocol.OCTET})
        body = resp.json()
        self._sid = body["session"]
        self._generation += 1
        self.sessions_created += 1
        self._info = ImageInfo(tuple(body["shape"]), bool(body["is_volume"]), body["normalization"],
                               body.get("normalization_key", ""))

    def _close_session(self) -> None:
        sid, self._sid = self._sid, None
        if sid is None:
            return
        try:  # best effort: an unreachable server forgets the session by itself (TTL)
            self._http.delete(protocol.session_path(sid), timeout=min(5.0, self.timeout))
        except self._httpx.HTTPError:
            pass

    def _session(self) -> str:
        if self._upload is None:
            raise InputError("No image is set: call set_image() or set_volume() first.")
        if self._sid is None:
            self._create_session()
        return self._sid

    def _with_session(self, call):
        """Run ``call(sid)``; if the server lost the session, re-create it from the upload and run once more."""
        try:
            return call(self._session())
        except SessionLostError as exc:
            if exc.code != "session_unknown":
                raise
            self._sid = None
            return call(self._session())

    # -- predictions -------------------------------------------------------------------------------
    def _predict(self, request: dict) -> RemotePrediction:
        def call(sid):
            body = {k: v for k, v in request.items() if k != "parent" and v is not None}
            body.update(self._mask_ref(request["parent"], sid))
            try:
                resp = self._request("POST", protocol.session_path(sid, "predict"), json=body)
            except SessionLostError as exc:
                if exc.code != "prediction_unknown" or not isinstance(request["parent"], RemotePrediction):
                    raise
                request["parent"]._pid = None  # evicted on the server: recompute it, then retry once
                body.update(self._mask_ref(request["parent"], sid))
                resp = self._request("POST", protocol.session_path(sid, "predict"), json=body)
            return resp

        resp = self._with_session(call)
        meta = json.loads(resp.headers[protocol.META_HEADER])
        mask = wire.decode_mask(resp.content)
        return RemotePrediction(self, mask, float(meta["score"]), meta["prediction_id"], self._generation, request)

    def _mask_ref(self, parent, sid: str) -> dict:
        """JSON fields naming the mask prompt on the server, uploading or recomputing it if needed."""
        if parent is None:
            return {}
        if isinstance(parent, RemotePrediction) and parent._backend is self:
            if parent._generation == self._generation and parent._pid is not None:
                return {"mask_prediction": parent._pid}
            if parent._low_res is None:  # lost with the old session: recompute it from its prompts
                again = self._predict(parent._request)
                parent._pid, parent._generation = again._pid, again._generation
                return {"mask_prediction": parent._pid}
        logits = parent.low_res_logits if isinstance(parent, Prediction) else np.asarray(parent, np.float32)
        resp = self._request("POST", protocol.session_path(sid, "masks"),
                             content=wire.encode_array(np.ascontiguousarray(logits, np.float32), self._codec),
                             headers={"Content-Type": protocol.OCTET})
        return {"mask_id": resp.json()["mask_id"]}

    def _fetch_logits(self, pred: RemotePrediction, full: bool) -> np.ndarray:
        with self._lock:
            if pred._generation != self._generation or pred._pid is None or self._sid is None:
                self._mask_ref(pred, self._session())  # recompute on the current session
            path = protocol.logits_path(self._sid, pred._pid)
            resp = self._request("GET", path, params={"full": int(full)})
        return wire.decode_array(resp.content)

    # -- transport ---------------------------------------------------------------------------------
    def _check_server(self) -> dict:
        resp = self._request("GET", protocol.PATH_VERSION)
        try:
            v = resp.json()
            api = int(v["api"])
        except (ValueError, KeyError, TypeError) as exc:
            raise VersionMismatchError(f"{self.url} answers, but not as a medsamkit server ({exc}); check the URL.")
        if api != protocol.API_VERSION:
            raise VersionMismatchError(
                f"The server at {self.url} runs medsamkit {v.get('package', '?')} (API {api}); this client is "
                f"medsamkit {__version__} (API {protocol.API_VERSION}). Install the same version on both sides.")
        v["ttl_s"] = float(v.get("limits", {}).get("session_ttl_s", protocol.DEFAULT_SESSION_TTL_S))
        self._request("GET", protocol.PATH_STATS)  # a wrong token fails here, not at the first click
        return v

    def _request(self, method: str, path: str, timeout: float | None = None, **kwargs):
        """One HTTP exchange with retries on refused/broken connections, all within the time limit."""
        httpx = self._httpx
        limit = self.timeout if timeout is None else float(timeout)
        deadline = time.monotonic() + limit
        t = self._timeouts if timeout is None else httpx.Timeout(limit, connect=self._timeouts.connect)
        attempt = 0
        while True:
            try:
                resp = self._http.request(method, path, timeout=t, **kwargs)
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
                what = ("lost the connection during the request (the server stopped or restarted)"
                        if not isinstance(exc, httpx.ConnectError) else "could not connect")
                raise ServerUnreachableError(
                    f"{what.capitalize()}: no medsamkit server answers at {self.url} ({exc}). Start it with "
                    "'medsamkit serve' on that machine, or check the address and the network.") from exc
        self.server_alive = True
        self.bytes_sent += len(resp.request.content) if resp.request is not None else 0
        self.bytes_received += len(resp.content)
        if resp.status_code < 300:
            return resp
        raise _error_for(resp, self.url)

    def _may_retry(self, attempt: int, deadline: float) -> bool:
        if attempt >= self.retries:
            return False
        pause = 0.2 * (2 ** attempt)  # 0.2 s, 0.4 s, ...: covers a server being restarted by a supervisor
        if time.monotonic() + pause >= deadline:
            return False
        time.sleep(pause)
        return True

    def _start_heartbeat(self) -> None:
        if self._heartbeat is not None and self._heartbeat.is_alive():
            return
        self._heartbeat = threading.Thread(target=self._beat, name="medsamkit-heartbeat", daemon=True)
        self._heartbeat.start()

    def _beat(self) -> None:
        while not self._stop.wait(self.heartbeat_s):
            sid = self._sid
            if sid is None:
                continue
            try:
                resp = self._http.post(protocol.session_path(sid, "heartbeat"), timeout=min(5.0, self.timeout))
                self.server_alive = True
                if resp.status_code == 404 and self._sid == sid:
                    self._sid = None  # the next request re-creates it
            except self._httpx.HTTPError:
                self.server_alive = False


def _error_for(resp, url: str) -> Exception:
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


def read_token_file(path) -> str:
    try:
        token = open(path, encoding="utf-8").read().strip()
    except OSError as exc:
        raise InputError(f"Cannot read the token file {path}: {exc.strerror}.") from exc
    if not token:
        raise InputError(f"The token file {path} is empty; put the server's token in it.")
    return token


def _floats(v):
    return None if v is None else [float(x) for x in np.ravel(np.asarray(v, dtype=np.float64))]


def _points(v):
    if v is None or not len(np.atleast_1d(v)):
        return None
    return np.asarray(v, dtype=np.float64).reshape(-1, 2).tolist()


