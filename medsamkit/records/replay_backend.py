"""The backend a prompt record replays on (``medsamkit replay``): the recorded model, or the one asked for.

Above the engine core (it opens a Backend), so it lives here and not in :mod:`medsamkit.records.replay`, which
re-runs the record's prompts on whatever Backend it is given.
"""
from __future__ import annotations

from ..errors import InputError
from .record import model_block
from .replay import _recorded_model
from ..backend import is_remote_spec, open_backend


def open_replay_backend(record: dict, backend: str = "local", model: str | None = None, checkpoint=None,
                        adapter=None, device: str | None = "cpu", engine: str | None = None, **remote_options):
    """The backend to replay on: the recorded model unless ``model``/``checkpoint``/``adapter``/``engine`` say
    otherwise (a server's own model with ``backend`` a URL). Returns (Backend, its model block).

    Raises InputError when the recorded weights or adapter are not at hand and none were given.
    """

    if is_remote_spec(backend):
        b = open_backend(backend, **remote_options)
        return b, model_block(b, backend)
    from ..models.loader import load_model
    from ..models.registry import get_spec

    rec = _recorded_model(record)
    kind = model or rec["kind"]
    if checkpoint is None and model is None and rec.get("weights_sha256"):
        spec = get_spec(kind)
        base_sha = rec["weights_sha256"] if not rec.get("adapter") else None
        if base_sha and not any(s.startswith(base_sha) for s in spec.known_sha256) and spec.known_sha256:
            raise InputError(f"The record was made with {kind} weights {base_sha[:16]}..., not the bundled ones; pass "
                             "them with --checkpoint FILE (or choose another model with --model to compare).")
    if adapter is None and model is None and checkpoint is None and rec.get("adapter"):
        raise InputError(f"The record was made with the adapter {rec['adapter']['name']} (sha256 "
                         f"{rec['adapter']['sha256'][:16]}...); pass it with --adapter FILE, or --model "
                         f"{rec['kind']} to replay without it.")
    eng = engine or (rec.get("engine") if model is None and checkpoint is None else None) or "torch"
    net = load_model(kind, checkpoint, device, engine=eng, adapter=adapter)
    b = open_backend("local", model=net)
    return b, model_block(net, "local")
