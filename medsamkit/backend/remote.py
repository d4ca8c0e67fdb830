"""RemoteBackend: the Backend interface on a ``medsamkit serve`` server (typically a CUDA machine).

The image or volume is compressed and uploaded once per session (:mod:`medsamkit.protocol.wire`);
each prompt then sends a few dozen bytes of JSON and gets back the mask's bounding-box region,
bit-packed and compressed. Low-res logits (the mask prompt for refinement) stay on the server: a
:class:`RemotePrediction` passed as ``mask_input`` travels as its id, and its logits are downloaded
only if read.

The caller never hangs and always gets a MedSAMError saying what to do: every request has a time
limit, refused or broken connections are retried inside it (:mod:`~medsamkit.backend.transport`);
a session the server no longer knows (restart, expiry) is re-created from the kept upload and the
request repeated once, and predictions it lost are recomputed from their prompts (the model is
deterministic); a heartbeat keeps an idle session from expiring.

Thread safety: one worker thread issues requests (mrml.session.Worker); the heartbeat thread only
reads the session id. Needs ``httpx`` (the ``server`` extra); ``zstandard`` is used when present.
"""
from __future__ import annotations

import json
import os
import threading

import numpy as np

from ..embedding_cache import digest
from ..errors import InputError
from ..preprocess import Normalization, validate_image
from ..prompts import make_prompt
from ..progress import check_cancel
from .. import protocol
from ..protocol import wire
from ..volume import numpy_axis
from .base import Backend, BackendInfo, ImageInfo, check_volume, is_prediction, slice_hw
from .errors import RemoteError, SessionLostError
from .transport import Heartbeat, Transport, resolve_token

JOB_POLL_S = 0.25  # progress poll of long jobs: 4 small GETs a second


class RemotePrediction:
    """A prediction of a remote backend: the mask is here, the logits stay on the server until read.

    Its own type (not a :class:`medsamkit.predictor.Prediction`): it reads the same (``mask``,
    ``score``, ``low_res_logits``, ``logits``, :meth:`with_mask`) and passes back as ``mask_input``
    by its server-side id, so a refinement sends no logits.
    """

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
        self.server_ms: float | None = None  # time the server spent on it (round trip minus this = transport)

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

    def with_mask(self, mask: np.ndarray) -> "RemotePrediction":
        """The same prediction (same logits on the server, same id) with another mask (a merged correction)."""
        other = RemotePrediction(self._backend, np.asarray(mask, dtype=bool), self.score, self._pid,
                                 self._generation, self._request)
        other._low_res, other._full, other.server_ms = self._low_res, self._full, self.server_ms
        return other

    def __repr__(self) -> str:
        return f"RemotePrediction(mask={self.mask.shape} {int(self.mask.sum())} px, score={self.score:.3f})"


class RemoteBackend(Backend):
    """Client of a medsamkit server.

    url: ``http://host:port`` (``host:port`` works too). token: the server's bearer token, else
    the file ``token_file``, else the environment variable MEDSAMKIT_TOKEN, else none.
    timeout: seconds to wait for an answer to a prompt; connect_timeout: to reach the server;
    upload_timeout: for an image/volume upload; retries: extra attempts after a refused/broken
    connection; heartbeat_s: seconds between heartbeats (None: a third of the server's session TTL);
    job_timeout: longest propagation/markers job (its progress is polled every JOB_POLL_S, each poll
    bounded by ``timeout``, so a dead or hung server is still reported within ``timeout``).

    Raises ServerUnreachableError, VersionMismatchError or AuthenticationError at construction.
    """

    def __init__(self, url: str, token: str | None = None, token_file: "str | os.PathLike | None" = None,
                 timeout: float = 30.0, connect_timeout: float = 5.0, upload_timeout: float = 300.0,
                 retries: int = 2, heartbeat_s: float | None = None, job_timeout: float = 3600.0):
        self.job_timeout = float(job_timeout)
        self._t = Transport(url, resolve_token(token, token_file), timeout, connect_timeout, retries)
        self.url = self._t.url
        self.upload_timeout = float(upload_timeout)
        self._lock = threading.RLock()
        self._sid: str | None = None
        self._generation = 0             # bumped whenever a (re)created session replaces the last one
        self._upload: tuple[bytes, dict] | None = None
        self._upload_key: tuple | None = None   # identity of the pixels + options last uploaded
        self._info: ImageInfo | None = None
        self._direction = None
        self.sessions_created = 0
        try:
            self.version = self._t.handshake()
        except BaseException:
            self._t.close()
            raise
        self.heartbeat_s = float(heartbeat_s) if heartbeat_s else max(1.0, min(60.0, self.version["ttl_s"] / 3))
        self._heartbeat = Heartbeat(self._t, self.heartbeat_s, lambda: self._sid, self._expired)
        self._codec = wire.choose_codec(self.version.get("codecs"))

    @property
    def timeout(self) -> float:
        """Seconds to wait for the server's answer to one request (may be changed at any time)."""
        return self._t.timeout

    @timeout.setter
    def timeout(self, seconds: float) -> None:
        self._t.timeout = seconds

    @property
    def server_alive(self) -> bool:
        """False after a request or heartbeat found no server (for a status light in the GUI)."""
        return self._t.server_alive

    @property
    def bytes_sent(self) -> int:
        return self._t.bytes_sent

    @property
    def bytes_received(self) -> int:
        return self._t.bytes_received

    # -- interface ---------------------------------------------------------------------------------
    def info(self) -> BackendInfo:
        v = self.version
        return BackendInfo(kind=v["models"][0], device=v["device"], package_version=v["package"], remote=True,
                           url=self.url, api_version=v["api"],
                           extra={"model_id": v.get("model_id"), "engine": v.get("engine"),
                                  "weights_sha256": v.get("weights_sha256"), "adapter": v.get("adapter")})

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
        if mask_input is not None and not is_prediction(mask_input):
            make_prompt(hw, box, points, point_labels, mask_input, int(self.version["low_res_size"]))
        request = {"box": _floats(box), "points": _points(points),
                   "point_labels": None if prompt.labels is None else prompt.labels.tolist(),
                   "multimask_output": multimask_output,
                   "slice_index": None if slice_index is None else int(slice_index),
                   "axis": ax, "parent": mask_input}
        with self._lock:
            return self._predict(request)

    def propagate(self, slice_index, axis=0, box=None, points=None, point_labels=None, progress=None, cancel=None,
                  margin_px=None, score_threshold=None, min_area=None, max_slices=None):
        ax = numpy_axis(axis, self._direction)
        prompt = make_prompt(slice_hw(self._info, slice_index, ax), box, points, point_labels)
        body = {"slice_index": int(slice_index), "axis": ax, "box": _floats(box), "points": _points(points),
                "point_labels": None if prompt.labels is None else prompt.labels.tolist(), "margin_px": margin_px,
                "score_threshold": score_threshold, "min_area": min_area, "max_slices": max_slices}
        return self._volume_job("propagate", {k: v for k, v in body.items() if v is not None}, progress, cancel)

    def segment_plan(self, plan, refine=False, progress=None, cancel=None):
        if not plan.boxes:
            raise InputError("The box plan is empty: no slice to segment. Draw markers on at least one slice.")
        body = {"axis": int(plan.axis), "boxes": {str(int(k)): _floats(b) for k, b in plan.boxes.items()},
                "marked": [int(k) for k in plan.marked], "warnings": [str(w) for w in plan.warnings],
                "refine": bool(refine)}
        return self._volume_job("segment_plan", body, progress, cancel)

    def prefetch(self, slice_index: int, axis: "int | str" = 0) -> bool:
        """Ask the server to encode slice ``slice_index`` along ``axis`` of the session's volume in the
        background (server/prefetch.py), so the first prompt there costs only the decoder.

        Returns at once: True if the server queued it, False if there is no volume session or the
        server did not take it (a prefetch is a hint; it never raises for that). A newer prefetch
        supersedes one not yet started. Extra (not in base.Backend): callers check with hasattr.
        """
        if self._info is None or not self._info.is_volume or self._sid is None:
            return False
        ax = numpy_axis(axis, self._direction)
        if not 0 <= int(slice_index) < self._info.shape[ax]:
            return False
        try:
            self._request("POST", protocol.session_path(self._sid, "prefetch"),
                          json={"slice_index": int(slice_index), "axis": ax}, timeout=min(self._t.timeout, 10.0))
        except (RemoteError, InputError):
            return False
        return True

    def stats(self) -> dict:
        """The server's /stats: sessions, bytes, ``encoder_calls`` (every encoding of the model) and
        ``prefetch`` counts (requested, encoded, cached, superseded, skipped, failed)."""
        return self._request("GET", protocol.PATH_STATS).json()

    def close(self) -> None:
        self._heartbeat.stop()
        with self._lock:
            self._close_session()
            self._upload = None
        self._t.close()

    # -- sessions ----------------------------------------------------------------------------------
    def _open(self, arr, kind, normalization, modality, direction) -> ImageInfo:
        norm = normalization
        if isinstance(norm, Normalization):
            norm = {"mode": norm.mode, "low": norm.low, "high": norm.high, "keep_zero": norm.keep_zero,
                    "label": norm.label}
        meta = {"kind": kind, "normalization": norm, "modality": modality,
                "direction": None if direction is None else [float(v) for v in np.ravel(direction)]}
        # Setting the same pixels and options again keeps the session: no second upload (a caller that
        # sets the volume before every operation pays one hash, ~0.1 s per 100 MB, not an upload).
        key = (digest(arr), json.dumps(meta, sort_keys=True))
        if key == self._upload_key and self._upload is not None and self._info is not None:
            return self._info
        frame = wire.encode_array(arr, self._codec)
        with self._lock:
            self._close_session()
            self._upload, self._direction, self._info, self._upload_key = (frame, meta), direction, None, None
            try:
                self._create_session()
            except BaseException:
                self._upload = None  # refused (too large, busy, ...): nothing is set
                raise
            self._upload_key = key
            self._heartbeat.start()
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
        if sid is not None:  # best effort: an unreachable server forgets the session by itself (TTL)
            self._t.quiet("DELETE", protocol.session_path(sid))

    def _expired(self, sid: str) -> None:
        """The heartbeat found session ``sid`` gone (expired, or the server restarted): the next request
        re-creates it from the kept upload."""
        if self._sid == sid:
            self._sid = None

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
        pred = RemotePrediction(self, mask, float(meta["score"]), meta["prediction_id"], self._generation, request)
        pred.server_ms = meta.get("server_ms")
        return pred

    def _mask_ref(self, parent, sid: str) -> dict:
        """JSON fields naming the mask prompt on the server, uploading or recomputing it if needed."""
        if parent is None:
            return {}
        if isinstance(parent, RemotePrediction) and parent._backend is self:
            if parent._generation == self._generation and parent._pid is not None:
                return {"mask_prediction": parent._pid}
            if parent._low_res is None:  # lost with the old session or evicted: recompute it from its prompts
                self._revive(parent)
                return {"mask_prediction": parent._pid}
        logits = parent.low_res_logits if is_prediction(parent) else np.asarray(parent, np.float32)
        resp = self._request("POST", protocol.session_path(sid, "masks"),
                             content=wire.encode_array(np.ascontiguousarray(logits, np.float32), self._codec),
                             headers={"Content-Type": protocol.OCTET})
        return {"mask_id": resp.json()["mask_id"]}

    def adopt(self, mask_input):
        """A mask prompt predicted by another RemoteBackend (a model process that has since died): the same
        prediction made here, recomputed from its prompts (same model, same prompts -> same logits)."""
        if not isinstance(mask_input, RemotePrediction) or mask_input._backend is self:
            return mask_input
        if mask_input._low_res is not None:
            return mask_input._low_res
        request = dict(mask_input._request, parent=self.adopt(mask_input._request.get("parent")))
        with self._lock:
            return self._predict(request)

    def _revive(self, pred: RemotePrediction) -> None:
        """Recompute a prediction the server no longer holds (same prompts -> same logits)."""
        again = self._predict(pred._request)
        pred._pid, pred._generation = again._pid, again._generation

    def _fetch_logits(self, pred: RemotePrediction, full: bool) -> np.ndarray:
        with self._lock:
            for attempt in range(2):
                if pred._generation != self._generation or pred._pid is None or self._sid is None:
                    self._revive(pred)
                try:
                    resp = self._request("GET", protocol.logits_path(self._sid, pred._pid), params={"full": int(full)})
                    break
                except SessionLostError:
                    if attempt:
                        raise
                    pred._pid = None  # evicted or the session is gone: recompute once, then read again
        return wire.decode_array(resp.content)

    # -- long jobs ---------------------------------------------------------------------------------
    def _volume_job(self, action: str, body: dict, progress, cancel):
        """POST a long job and, while it runs, poll its progress (which also proves the server is
        alive: a hung server raises within ``timeout``) and forward a cancel request."""
        from ..volume_segmentation import VolumeSegmentation

        if self._info is None or not self._info.is_volume:
            raise InputError("Propagation and markers need a volume: call set_volume() first.")
        check_cancel(cancel)
        with self._lock:
            resp = self._with_session(lambda sid: self._t.long_request(
                protocol.session_path(sid, action), body, self.job_timeout, protocol.session_path(sid, "progress"),
                protocol.session_path(sid, "cancel"), progress, cancel, JOB_POLL_S))
        meta = json.loads(resp.headers[protocol.META_HEADER])
        norm = meta.get("normalization")
        return VolumeSegmentation(
            mask=wire.decode_mask(resp.content).astype(np.uint8), axis=int(meta["axis"]),
            scores={int(k): float(v) for k, v in meta["scores"].items()}, slices=[int(k) for k in meta["slices"]],
            warnings=list(meta["warnings"]), boxes={int(k): np.asarray(v) for k, v in meta["boxes"].items()},
            refined=[int(k) for k in meta["refined"]], normalization=None if norm is None else Normalization(**norm))

    # -- transport ---------------------------------------------------------------------------------
    def _request(self, method: str, path: str, timeout: float | None = None, **kwargs):
        return self._t.request(method, path, timeout=timeout, **kwargs)



def _floats(v):
    return None if v is None else [float(x) for x in np.ravel(np.asarray(v, dtype=np.float64))]


def _points(v):
    if v is None or not len(np.atleast_1d(v)):
        return None
    return np.asarray(v, dtype=np.float64).reshape(-1, 2).tolist()


