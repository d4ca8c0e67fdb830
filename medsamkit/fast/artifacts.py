"""Where exported (ONNX) models live, and how a cached file is trusted: the single source of truth.

Exported models are built on first use from the user's checkpoint and kept in a per-user cache
directory, never in the package directory (which may be read-only inside Slicer and is shared by
all users)::

    $MEDSAMKIT_CACHE_DIR                       if set
    $XDG_CACHE_HOME/medsamkit or ~/.cache/medsamkit   (Linux and other Unix)
    ~/Library/Caches/medsamkit                 (macOS)
    %LOCALAPPDATA%\\medsamkit\\Cache             (Windows)

An artifact is named by the checkpoint's SHA-256 (so other weights never reuse it), the component
(``encoder``/``decoder``), its precision and the export recipe version (bumped when the export
code changes what it writes). Beside each ``NAME.onnx`` lies ``NAME.json`` holding the file's own
SHA-256; a file whose hash does not match (truncated download-free copy, disk error, a crashed
writer of an older version) is rebuilt instead of being loaded. Both files are written to a
temporary name in the same folder and renamed into place, so a reader never sees half a file and
two processes exporting at once both end up with a valid file.
"""
from __future__ import annotations

import hashlib
import json
import os
import re
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from ..errors import MedSAMError
from ..io import atomic_output

#: Bump when the export code changes the graphs it writes (old files are then simply not used).
RECIPE_VERSION = 2


class CacheDirError(MedSAMError):
    """The cache directory cannot be created or written."""


def cache_dir() -> Path:
    """The per-user folder for exported models (created on demand by :func:`ensure_artifact`)."""
    env = os.environ.get("MEDSAMKIT_CACHE_DIR")
    if env:
        return Path(env).expanduser()
    home = Path.home()
    if sys.platform == "win32":
        base = os.environ.get("LOCALAPPDATA")
        return (Path(base) if base else home / "AppData" / "Local") / "medsamkit" / "Cache"
    if sys.platform == "darwin":
        return home / "Library" / "Caches" / "medsamkit"
    xdg = os.environ.get("XDG_CACHE_HOME")
    return (Path(xdg) if xdg else home / ".cache") / "medsamkit"


@dataclass(frozen=True)
class ArtifactKey:
    """Identity of one exported file. checkpoint_sha256: hex SHA-256 of the weights file."""

    kind: str
    checkpoint_sha256: str
    component: str      # "encoder" | "decoder-image" | "decoder-prompt"
    precision: str      # "fp32" | "int8"

    @property
    def stem(self) -> str:
        return (f"{self.kind}-{self.checkpoint_sha256[:16]}-{self.component}-{self.precision}"
                f"-r{RECIPE_VERSION}")


def sha256_file(path: "str | os.PathLike") -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


#: Counts of exports actually performed in this process, per stem (tests and benchmarks read it
#: to prove that a second start reuses the cached file).
EXPORT_COUNTS: dict[str, int] = {}


def _verified(onnx_path: Path, meta_path: Path) -> tuple[bool, str]:
    """(ok, reason). ok only if both files exist and the recorded hash matches the file."""
    if not onnx_path.is_file() or not meta_path.is_file():
        return False, "not exported yet"
    try:
        meta = json.loads(meta_path.read_text(encoding="utf-8"))
        expected = str(meta["sha256"])
    except (OSError, ValueError, KeyError, TypeError):
        return False, f"its record {meta_path.name} is unreadable"
    actual = sha256_file(onnx_path)
    if actual != expected:
        return False, f"{onnx_path.name} is damaged (SHA-256 {actual[:12]}..., expected {expected[:12]}...)"
    return True, ""


def ensure_artifact(key: ArtifactKey, build: Callable[[str], None], folder: Path | None = None,
                    log: Callable[[str], None] | None = None) -> Path:
    """Return the path of a verified cached artifact, building it first when missing or damaged.

    build(tmp_path): writes the model file to ``tmp_path`` (a temporary name in the cache folder).
    log: receives one line when an export happens (and why). Raises CacheDirError when the folder
    cannot be written (the message names $MEDSAMKIT_CACHE_DIR as the remedy).
    """
    folder = Path(folder) if folder is not None else cache_dir()
    onnx_path = folder / f"{key.stem}.onnx"
    meta_path = folder / f"{key.stem}.json"
    ok, reason = _verified(onnx_path, meta_path)
    if ok:
        return onnx_path
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise CacheDirError(
            f"Cannot create the model cache folder {folder} ({exc}). Set MEDSAMKIT_CACHE_DIR to a writable "
            "folder, or use --engine torch.") from exc
    if log is not None:
        log(f"building {onnx_path.name} ({reason}); this happens once per checkpoint")
    t0 = time.perf_counter()
    try:
        with atomic_output(onnx_path) as tmp:
            build(tmp)
            digest = sha256_file(tmp)
        meta = {"sha256": digest, "kind": key.kind, "checkpoint_sha256": key.checkpoint_sha256,
                "component": key.component, "precision": key.precision, "recipe": RECIPE_VERSION,
                "seconds": round(time.perf_counter() - t0, 2), "created": time.strftime("%Y-%m-%dT%H:%M:%S")}
        with atomic_output(meta_path) as tmp:
            Path(tmp).write_text(json.dumps(meta, indent=1))
    except PermissionError as exc:
        raise CacheDirError(
            f"Cannot write to the model cache folder {folder} ({exc}). Set MEDSAMKIT_CACHE_DIR to a writable "
            "folder, or use --engine torch.") from exc
    EXPORT_COUNTS[key.stem] = EXPORT_COUNTS.get(key.stem, 0) + 1
    _remove_older_recipes(folder, key)
    return onnx_path


def _remove_older_recipes(folder: Path, key: ArtifactKey) -> None:
    """Delete this checkpoint's files written by older export recipes (any component): they are
    never used again. Best effort: a file another process holds open is left for next time."""
    prefix = f"{key.kind}-{key.checkpoint_sha256[:16]}-"
    for path in folder.glob(prefix + "*-r*.*"):
        m = re.fullmatch(re.escape(prefix) + r".+-r(\d+)\.(onnx|json)", path.name)
        if m and int(m.group(1)) < RECIPE_VERSION:
            try:
                path.unlink()
            except OSError:
                pass
