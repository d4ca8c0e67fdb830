"""Progress reporting that knows nothing of Qt or terminals.

Long engine functions take ``progress(done, total, text)`` and ``cancel() -> bool`` callables
(STYLE rule 4). The CLI passes :func:`tqdm_progress`; the Slicer effect passes its own; tests pass
nothing. :class:`Cancelled` is raised when ``cancel()`` turns true.
"""
from __future__ import annotations

import sys
from typing import Callable, Optional

from .errors import MedSAMError

ProgressFn = Optional[Callable[[int, int, str], None]]
CancelFn = Optional[Callable[[], bool]]


class Cancelled(MedSAMError):
    """The caller asked to stop; nothing was written."""


def report(progress: ProgressFn, done: int, total: int, text: str = "") -> None:
    if progress is not None:
        progress(done, total, text)


def check_cancel(cancel: CancelFn) -> None:
    if cancel is not None and cancel():
        raise Cancelled("Cancelled by the user; nothing was written.")


class tqdm_progress:
    """A ``progress`` callable drawing one tqdm bar on stderr (silent when tqdm is missing)."""

    def __init__(self, desc: str = "", disable: bool | None = None):
        self.desc = desc
        self.disable = disable
        self._bar = None

    def __call__(self, done: int, total: int, text: str = "") -> None:
        try:
            from tqdm import tqdm
        except ImportError:  # pragma: no cover
            return
        if self._bar is None or self._bar.total != total:
            if self._bar is not None:
                self._bar.close()
            self._bar = tqdm(total=total, desc=self.desc, file=sys.stderr, leave=False, disable=self.disable,
                             bar_format="{desc}: {percentage:3.0f}%|{bar}| {n_fmt}/{total_fmt} [{elapsed}<{remaining}] {postfix}")
        self._bar.n = done
        if text:
            self._bar.set_postfix_str(text, refresh=False)
        self._bar.refresh()
        if done >= total:
            self.close()

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()
            self._bar = None
