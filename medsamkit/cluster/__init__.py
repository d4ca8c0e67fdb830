"""Many studies or cases on a Ray cluster: one Ray task per item, the model loaded once per worker.

``medsamkit recist --studies``, ``medsamkit replay --cases`` and the batch's ``--cases`` take
``--cluster ray://HOST:PORT`` (a running cluster through the Ray Client), ``auto`` (the cluster this
machine belongs to, as ``ray start`` left it) or ``local`` (a Ray instance started on this machine for
the run). Each item runs the same per-item function as the plain run (so the outputs are
voxel-identical), on a worker that builds its backend once through
:func:`medsamkit.backend.open_backend` (:mod:`.worker`) and writes the item's outputs atomically in
the output layout of the plain run. The driver (:mod:`.runner`) submits the tasks, retries those
whose worker died (bounded), reports each item as it ends, draws done / failed / running counts,
cancels what is left on Ctrl-C, removes the temporary files of killed tasks, and writes a summary
(CSV + JSON).

The batch's cases are scheduled by :mod:`medsamkit.cluster.batch`. The faces hand their own per-item
functions (process_study, replay_case, run_case) to these runners, so the cluster never imports the CLI.
Ray is imported here only when a ``--cluster`` run starts: a plain run never imports it.
"""
from __future__ import annotations

from ..errors import InputError


def require_ray():
    """The ``ray`` module, or an InputError saying how to install it."""
    try:
        import ray
    except ImportError as exc:
        raise InputError("--cluster needs Ray: pip install 'medsamkit[cluster]' (on this machine and on every "
                         "worker), or run without --cluster.") from exc
    return ray
