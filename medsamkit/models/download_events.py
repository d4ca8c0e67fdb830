"""Where download events go: JSON lines (GUIs), a tqdm bar with size and speed (terminals), or log lines.

An event is a dict with ``event`` = ``start`` (filename, url, total, resumed_from), ``progress`` (done,
total, speed in bytes/s), ``waiting`` (another process holds the download), ``verify`` (path), ``done``
(path, size, sha256, verified_by; ``cached`` when nothing was downloaded). Emitted by
:func:`medsamkit.models.download.ensure_checkpoint`.
"""
from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Callable

EventFn = Callable[[dict], None]


class JsonLines:
    """Events as one JSON object per line on a stream (``--progress json``: what the Slicer dialog reads)."""

    def __init__(self, stream=None):
        self.stream = stream or sys.stdout

    def __call__(self, event: dict) -> None:
        self.stream.write(json.dumps(event) + "\n")
        self.stream.flush()


class TqdmBytes:
    """Events as a tqdm bar with size and speed (the CLI on a terminal); plain lines otherwise."""

    def __init__(self, stream=None):
        self.stream, self.bar = stream or sys.stderr, None

    def __call__(self, event: dict) -> None:
        kind = event["event"]
        if kind == "start":
            from tqdm import tqdm

            self.close()
            self.bar = tqdm(total=event["total"], initial=event["resumed_from"], unit="B", unit_scale=True,
                            unit_divisor=1024, desc=event["filename"], file=self.stream, leave=True)
            if event["resumed_from"]:
                self.bar.write(f"resuming {event['filename']} at {event['resumed_from']:,} bytes", file=self.stream)
        elif kind == "progress" and self.bar is not None:
            self.bar.update(event["done"] - self.bar.n)
        elif kind == "waiting":
            print(f"{event['kind']}: {event['message']}; waiting for it", file=self.stream)
        elif kind == "verify":
            self.close()
            print(f"{event['kind']}: verifying {Path(event['path']).name}", file=self.stream)
        elif kind == "done":
            self.close()

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
            self.bar = None


def default_events() -> EventFn:
    """The sink used when the caller gives none (load_model): a bar on a terminal, else lines on stderr."""
    return TqdmBytes(sys.stderr) if sys.stderr.isatty() else _LogLines()


class _LogLines:
    def __init__(self):
        self.next_pct = 0

    def __call__(self, event: dict) -> None:
        kind = event["event"]
        if kind == "start":
            total = event["total"]
            print(f"downloading {event['filename']} ({'%.0f MB' % (total / 1e6) if total else 'size unknown'}) "
                  f"from {event['url']}", file=sys.stderr, flush=True)
            self.next_pct = 0
        elif kind == "progress" and event["total"]:
            pct = 100 * event["done"] // event["total"]
            if pct >= self.next_pct:
                print(f"  {pct}% ({event['speed'] / 1e6:.1f} MB/s)", file=sys.stderr, flush=True)
                self.next_pct = pct + 10
        elif kind in ("waiting", "verify", "done"):
            text = event.get("message") or event.get("path", "")
            print(f"{event['kind']}: {kind} {text}", file=sys.stderr, flush=True)
