"""The driver side of a cluster run: connect, one Ray task per item, wait, report, cancel, summarise.

:func:`run_items` submits ``call_item(fn, name, payload)`` once per item with ``max_retries`` (a task
whose worker process or node dies is re-run on another worker; an error raised by the item itself is
not retried: ``fn`` reports it in its result), then collects the results as they end, calling
``on_result`` for each and drawing done / failed / running / queued counts. Only as many tasks as the
cluster runs at once are in flight, so that Ctrl-C never has to cancel a task Ray may be starting or
finishing (cancelling such a task can crash the driver: ray-project/ray#54527): the first Ctrl-C starts
no new item and lets the running ones finish, a second one cancels them.
"""
from __future__ import annotations

import sys
import time
import traceback
from collections import deque
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


def _slots(ray, gpus: float) -> int:
    """How many tasks the cluster runs at once now (it may grow or shrink while the run goes)."""
    resources = ray.cluster_resources()
    return max(1, int(resources.get("GPU", 0) // gpus) if gpus else int(resources.get("CPU", 1)))


def run_items(ray, fn, items: list, *, desc: str, gpus: float = 0.0, retries: int = 3, quiet: bool = False,
              on_result=None) -> list:
    """[(name, payload)] -> [ItemResult] in item order (see the module docstring).

    Only as many tasks as the cluster can run at once are submitted; the next item goes out when one
    ends. The first Ctrl-C starts no new item and lets the running ones finish (their outputs complete);
    a second one cancels them (``ray.cancel(force=True)``). Either raises :class:`Interrupted`."""
    task = ray.remote(call_item).options(num_cpus=1, num_gpus=gpus, max_retries=retries, retry_exceptions=False,
                                         name=f"medsamkit-{desc}")
    fn_ref = ray.put(fn)
    out: list = [None] * len(items)
    queue, pending, failed, stopping = deque(range(len(items))), {}, 0, False
    bar = CountsBar(len(items), desc, quiet)
    try:
        while queue or pending:
            try:
                slots = _slots(ray, gpus)
                while queue and len(pending) < slots:
                    n = queue.popleft()
                    pending[task.remote(fn_ref, *items[n])] = n
                ended, _ = ray.wait(list(pending), num_returns=1, timeout=WAIT_S)
                for ref in ended:
                    n = pending.pop(ref)
                    out[n] = _result(ray, ref, items[n][0], retries)
                    failed += out[n].status != "ok"
                    if on_result is not None:
                        on_result(out[n], bar)
                bar.update(len(items) - len(pending) - len(queue), failed, len(pending), len(queue))
            except KeyboardInterrupt:
                if stopping:
                    raise
                stopping = True
                for n in queue:
                    out[n] = ItemResult(items[n][0], "cancelled", message="cancelled (Ctrl-C)")
                queue.clear()
                bar.write(f"{desc}: Ctrl-C: no new item starts; waiting for the {len(pending)} running to finish "
                          "(Ctrl-C again stops them now)", err=True)
    except KeyboardInterrupt:
        for ref in pending:
            ray.cancel(ref, force=True)
        if pending:
            ray.wait(list(pending), num_returns=len(pending), timeout=CANCEL_GRACE_S)
        for ref, n in pending.items():  # a task that ended before its cancel keeps its result
            out[n] = _ended(ray, ref) or ItemResult(items[n][0], "cancelled", message="cancelled (Ctrl-C)")
        raise Interrupted(_filled(out, items)) from None
    finally:
        bar.close()
    if stopping:
        raise Interrupted(_filled(out, items))
    return out


def run_on_cluster(args, fn, items: list, *, desc: str, on_result=None) -> tuple[list, bool]:
    """[(name, payload)] as Ray tasks on the cluster of ``args.cluster``, with the command's --cluster options
    -> ([ItemResult] in item order, whether Ctrl-C interrupted the run: its items not run are "cancelled")."""
    with connected(args.cluster) as ray:
        try:
            return run_items(ray, fn, items, desc=desc, gpus=gpus_per_task(ray, args), retries=args.cluster_retries,
                             quiet=args.quiet, on_result=on_result), False
        except Interrupted as exc:
            return exc.results, True


def _filled(out: list, items: list) -> list:
    """An item whose result a Ctrl-C interrupted on its way in counts as cancelled (its output is complete or
    absent, as for every item)."""
    return [r or ItemResult(items[n][0], "cancelled", message="cancelled (Ctrl-C)") for n, r in enumerate(out)]


def _result(ray, ref, name: str, retries: int) -> ItemResult:
    try:
        return ray.get(ref)
    except ray.exceptions.RayError as exc:  # every attempt's worker died, or the task could not run
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        return ItemResult(name, "failed", message=f"{type(exc).__name__} after {retries + 1} attempt(s): {first}")


def _ended(ray, ref) -> "ItemResult | None":
    ready, _ = ray.wait([ref], timeout=0)
    if not ready:
        return None
    try:
        return ray.get(ref)
    except ray.exceptions.RayError:  # cancelled, or its worker was killed
        return None
