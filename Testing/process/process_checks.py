"""Whether a process still runs, for the model-process tests (imported by them, not a test module)."""
from __future__ import annotations

import os
import time
from pathlib import Path


def gone(pid: int) -> bool:
    """The process no longer runs (missing, or a zombie nobody reaped yet)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[-1].split()[0] == "Z"
    except OSError:
        return True


def wait_gone(pid: int, seconds: float) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if gone(pid):
            return True
        time.sleep(0.1)
    return False
