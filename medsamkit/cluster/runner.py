"""The driver side of a cluster run: connect, one Ray task per item, wait, report, cancel, summarise.

:func:`run_items` submits ``call_item(fn, name, payload)`` once per item with ``max_retries`` (a task
whose worker process or node dies is re-run on another worker; an error raised by the item itself is
not retried: ``fn`` reports it in its result), then collects the results as they end, calling
``on_result`` for each and drawing done / failed / running counts. Ctrl-C cancels every task that has
not ended (``ray.cancel(force=True)``), reports what was done and raises KeyboardInterrupt.
"""
from __future__ import annotations

import sys
import time
import traceback
from contextlib import contextmanager
from dataclasses import dataclass, field

from ..errors import InputError, MedSAMError
from . import require_ray
from .worker import where

WAIT_S = 0.5
CANCEL_GRACE_S = 10.0


class Interrupted(KeyboardInterrupt):
    """Ctrl-C during a run: the tasks left were cancelled; ``results`` holds every item's outcome."""

    def __init__(self, results: list):
        super().__init__("cancelled")
        self.results = results


@dataclass
class ItemResult:
    name: str
    status: str                 # "ok", "failed" (the item's own error, or its workers kept dying), "cancelled"
    seconds: float = 0.0
    message: str = ""
    worker: str = ""            # host:pid of the worker that ran it
    data: dict = field(default_factory=dict)


def call_item(fn, name: str, payload) -> ItemResult:
    """Runs on a worker: ``fn(payload)`` -> ItemResult; the item's errors are its result, never raised."""
    t0 = time.perf_counter()
    try:
        data = fn(payload)
        return ItemResult(name, "ok", time.perf_counter() - t0, worker=where(), data=data or {})
    except MedSAMError as exc:
        message = str(exc)
    except Exception as exc:  # a bug must not cost the other items their results; its traceback is kept
        message = (f"unexpected {type(exc).__name__}: {exc} (a medsamkit bug; please report it with this message)\n"
                   f"{traceback.format_exc().rstrip()}")
    return ItemResult(name, "failed", time.perf_counter() - t0, message, worker=where())


@contextmanager
def connected(address: str):
    """Ray connected to ``address`` (ray://HOST:PORT, auto, local) for the block; a Ray already initialised in
    this process (a test's, a notebook's) is used as it is and left running."""
    ray = require_ray()
    if ray.is_initialized():
        yield ray
        return
    try:
        if address == "local":
            ray.init(include_dashboard=False, log_to_driver=False)
        else:
            ray.init(address=address, log_to_driver=False)
    except (ConnectionError, ValueError, RuntimeError) as exc:
        raise InputError(f"--cluster {address}: no Ray cluster could be reached ({str(exc).splitlines()[0]}). Start "
                         "one with 'ray start --head' (see docs/cluster.md), give its ray://HOST:10001 address, or "
                         "use --cluster local.") from exc
    try:
        yield ray
    finally:
        ray.shutdown()


def gpus_per_task(ray, args) -> float:
    """--cluster-gpus, else 1 when the model may run on CUDA (--device auto/cuda) and the cluster has GPUs."""
    if getattr(args, "cluster_gpus", None) is not None:
        return float(args.cluster_gpus)
    device = str(getattr(args, "device", None) or "auto")
    remote = str(getattr(args, "backend", "local") or "local") != "local"
    if remote or not (device == "auto" or device.startswith("cuda")):
        return 0.0
    return 1.0 if ray.cluster_resources().get("GPU", 0) > 0 else 0.0


class CountsBar:
    """A tqdm bar of ended items with done / failed / running / queued counts (nothing when quiet)."""

    def __init__(self, total: int, desc: str, quiet: bool):
        self.bar = None
        if not quiet:
            try:
                from tqdm import tqdm
            except ImportError:  # pragma: no cover
                return
            self.bar = tqdm(total=total, desc=desc, file=sys.stderr, leave=False, dynamic_ncols=True)

    def update(self, ended: int, failed: int, running: int, queued: int) -> None:
        if self.bar is not None:
            self.bar.n = ended
            self.bar.set_postfix_str(f"done {ended - failed}, failed {failed}, running {running}, queued {queued}",
                                     refresh=False)
            self.bar.refresh()

    @contextmanager
    def above(self):
        """Print above the bar in the block (the bar redraws under it)."""
        if self.bar is not None:
            self.bar.clear()
        try:
            yield
        finally:
            if self.bar is not None:
                self.bar.refresh()

    def write(self, text: str, err: bool = False) -> None:
        with self.above():
            print(text, file=sys.stderr if err else sys.stdout, flush=True)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


def run_items(ray, fn, items: list, *, desc: str, gpus: float = 0.0, retries: int = 3, quiet: bool = False,
              on_result=None) -> list:
    """[(name, payload)] -> [ItemResult] in item order (see the module docstring)."""
    task = ray.remote(call_item).options(num_cpus=1, num_gpus=gpus, max_retries=retries, retry_exceptions=False,
                                         name=f"medsamkit-{desc}")
    fn_ref = ray.put(fn)
    refs = {task.remote(fn_ref, name, payload): n for n, (name, payload) in enumerate(items)}
    out: list = [None] * len(items)
    resources = ray.cluster_resources()
    slots = max(1, int(resources.get("GPU", 0) // gpus) if gpus else int(resources.get("CPU", 1)))
    bar = CountsBar(len(items), desc, quiet)
    pending, failed = dict(refs), 0
    try:
        while pending:
            ended, _ = ray.wait(list(pending), num_returns=1, timeout=WAIT_S)
            for ref in ended:
                n = pending.pop(ref)
                try:
                    res = ray.get(ref)
                except ray.exceptions.RayError as exc:  # every attempt's worker died, or the task could not run
                    first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
                    res = ItemResult(items[n][0], "failed", message=f"{type(exc).__name__} after {retries + 1} "
                                     f"attempt(s): {first}")
                out[n] = res
                failed += res.status != "ok"
                if on_result is not None:
                    on_result(res, bar)
            running = min(len(pending), slots)
            bar.update(len(items) - len(pending), failed, running, len(pending) - running)
    except KeyboardInterrupt:
        _cancel(ray, list(pending))
        for ref, n in pending.items():  # a task that ended before its cancel keeps its result
            out[n] = _ended(ray, ref) or ItemResult(items[n][0], "cancelled", message="cancelled (Ctrl-C)")
        bar.close()
        raise Interrupted(out) from None
    finally:
        bar.close()
    return out


def _ended(ray, ref) -> "ItemResult | None":
    ready, _ = ray.wait([ref], timeout=0)
    if not ready:
        return None
    try:
        return ray.get(ref)
    except ray.exceptions.RayError:  # cancelled, or its worker was killed
        return None


def _cancel(ray, refs: list, grace_s: float = CANCEL_GRACE_S) -> None:
    """Cancel ``refs``: queued tasks never start; a running one gets KeyboardInterrupt (its study's temporary
    folder is removed on the way out, and the worker keeps its model), and is killed if it has not ended
    within ``grace_s``."""
    for ref in refs:
        ray.cancel(ref, recursive=False)
    _, left = ray.wait(refs, num_returns=len(refs), timeout=grace_s)
    for ref in left:
        ray.cancel(ref, force=True)
    if left:
        ray.wait(left, num_returns=len(left), timeout=grace_s)
