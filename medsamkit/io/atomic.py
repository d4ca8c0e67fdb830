"""Writing files atomically: all of a new file or none of it, never a partial file under the target's name.

Writes (:func:`atomic_output`) go to a hidden temporary file beside the target
(``.NAME.<pid>-XXXX.partial.SUF``), which is flushed to disk and checked (image files are read back
and compared, because SimpleITK's NIfTI writer reports no error on a full disk) before it is
renamed over the target. A failure raises :class:`~medsamkit.errors.OutputError` and leaves the
target as it was; partial files of a killed run are removed by the next write of the same target.
The written file gets the mode an ordinary ``open()`` would give it (umask), or keeps the mode of
the file it replaces. Outputs of one command that belong together (mask + overlay) are written
as one unit with :class:`OutputGroup`: all or none. A folder is built the same way, in a hidden
folder beside it (:func:`partial_dir`).
"""
from __future__ import annotations

import contextlib
import os
import stat
import tempfile
import time
from pathlib import Path

from ..errors import OutputError
from .formats import VOLUME_SUFFIXES, suffix_of
from .verify import verify_image_file

#: Partial files of a writer whose process id is unknown (older versions) are removed after this long.
STALE_PARTIAL_S = 600.0


def _umask() -> int:
    """The process umask, read without changing it where /proc allows (os.umask is not thread-safe)."""
    with contextlib.suppress(OSError, ValueError):
        with open("/proc/self/status", encoding="ascii") as f:
            for line in f:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def _why(exc: BaseException) -> str:
    if isinstance(exc, OSError) and exc.strerror:
        return exc.strerror
    return str(exc).strip().splitlines()[-1][:200] if str(exc).strip() else type(exc).__name__


def _pid_alive(pid: int) -> bool:
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OSError):
        return True  # exists, owned by someone else
    return True


def remove_stale_partials(path: "str | os.PathLike") -> list[Path]:
    """Delete temporary files that earlier, killed writes of ``path`` left beside it.

    Our partial files are named ``.NAME.<pid>-XXXX.partial.SUF``: one whose process no longer runs is
    stale. Older versions wrote ``.NAME.XXXX.partial.SUF`` (no process id): removed when older than
    :data:`STALE_PARTIAL_S`. Returns the paths removed.
    """
    path = Path(path)
    prefix, tail = f".{path.name}.", f".partial{suffix_of(path)}"
    removed = []
    try:
        names = os.listdir(path.parent)
    except OSError:
        return removed
    for name in names:
        if not (name.startswith(prefix) and name.endswith(tail)):
            continue
        middle = name[len(prefix):-len(tail)]
        pid_text, dash, _ = middle.partition("-")
        cand = path.parent / name
        try:
            if dash and pid_text.isdigit():
                stale = not _pid_alive(int(pid_text))
            else:
                stale = time.time() - cand.stat().st_mtime > STALE_PARTIAL_S
            if stale:
                cand.unlink()
                removed.append(cand)
        except OSError:
            continue
    return removed


def remove_stale_partial_dirs(target: "str | os.PathLike") -> list[Path]:
    """Delete the temporary folders (``.NAME.<pid>-XXXX.partial`` / ``.old``) that killed writes of the
    folder ``target`` left beside it: a folder whose process no longer runs, or one without a process id
    older than :data:`STALE_PARTIAL_S`. Returns the folders removed."""
    import shutil

    target = Path(target)
    prefix, removed = f".{target.name}.", []
    try:
        names = os.listdir(target.parent)
    except OSError:
        return removed
    for name in names:
        if not name.startswith(prefix) or not name.endswith((".partial", ".old")):
            continue
        middle = name[len(prefix):].rsplit(".", 1)[0]
        pid_text, dash, _ = middle.partition("-")
        cand = target.parent / name
        try:
            if not cand.is_dir() or cand.is_symlink():
                continue
            if dash and pid_text.isdigit():
                stale = not _pid_alive(int(pid_text))
            else:
                stale = time.time() - cand.stat().st_mtime > STALE_PARTIAL_S
        except OSError:
            continue
        if stale:
            shutil.rmtree(cand, ignore_errors=True)
            removed.append(cand)
    return removed


def partial_dir(target: "str | os.PathLike", suffix: str = ".partial") -> Path:
    """A new hidden folder beside the folder ``target`` (``.NAME.<pid>-XXXX<suffix>``) to build it in before
    it is renamed into place; stale ones of killed runs are removed first. OutputError when the parent
    cannot be created or written."""
    target = Path(target)
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise OutputError(f"Cannot create the folder {target.parent}: {_why(exc)}. Choose another output "
                          "location.") from exc
    if not target.parent.is_dir():
        raise OutputError(f"Cannot write {target}: {target.parent} is a file, not a folder.")
    remove_stale_partial_dirs(target)
    try:
        return Path(tempfile.mkdtemp(prefix=f".{target.name}.{os.getpid()}-", suffix=suffix, dir=target.parent))
    except OSError as exc:
        raise OutputError(f"Cannot write {target}: {_why(exc)}. Nothing was written; choose a writable "
                          "folder.") from exc


def _prepare_target(path: Path) -> None:
    if path.is_dir():
        raise OutputError(f"Cannot write {path}: it is a folder. Give a file name (e.g. {path / 'mask.nii.gz'}).")
    parent = path.parent
    if not parent.exists():
        try:
            parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise OutputError(f"Cannot create the folder {parent}: {_why(exc)}. Choose another output location.") from exc
    elif not parent.is_dir():
        raise OutputError(f"Cannot write {path}: {parent} is a file, not a folder.")
    remove_stale_partials(path)


def _target_mode(path: Path) -> int:
    try:
        return stat.S_IMODE(path.stat().st_mode)  # replacing a file keeps its mode
    except OSError:
        return 0o666 & ~_umask()                   # a new file gets what open() would give it


def _fsync(path: str) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class OutputGroup:
    """Outputs of one command written as one unit: every file is written and checked first, then all
    are renamed into place; if anything fails, no target changes (replaced files are restored)."""

    def __init__(self):
        self._pending: list[tuple[str, Path]] = []

    def _add(self, tmp: str, path: Path) -> None:
        self._pending.append((tmp, path))

    def commit(self) -> None:
        done: list[tuple[Path, "str | None"]] = []
        try:
            for tmp, path in self._pending:
                backup = None
                if path.exists():
                    backup = f"{path.parent / ('.' + path.name)}.{os.getpid()}-bak.partial{suffix_of(path)}"
                    try:
                        os.link(path, backup)
                    except OSError:  # no hard links here: the old file cannot be restored after a failure
                        backup = None
                try:
                    os.replace(tmp, path)
                except OSError:
                    if backup:  # this target is unchanged: its backup link goes
                        with contextlib.suppress(OSError):
                            os.unlink(backup)
                    raise
                done.append((path, backup))
        except OSError as exc:
            for path, backup in reversed(done):
                with contextlib.suppress(OSError):
                    if backup:
                        os.replace(backup, path)
                    else:
                        os.unlink(path)
            self.abort()
            raise OutputError(f"Cannot write {path}: {_why(exc)}. Nothing was written.") from exc
        finally:
            for _path, backup in done:
                if backup:
                    with contextlib.suppress(OSError):
                        os.unlink(backup)
        self._pending = []

    def abort(self) -> None:
        for tmp, _path in self._pending:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
        self._pending = []


@contextlib.contextmanager
def output_group():
    """``with output_group() as g: write_mask(..., group=g); write_overlay_png(..., group=g)``: all or none."""
    group = OutputGroup()
    try:
        yield group
    except BaseException:
        group.abort()
        raise
    group.commit()


@contextlib.contextmanager
def atomic_output(path: "str | os.PathLike", verify=None, group: OutputGroup | None = None):
    """Yield a temporary path beside ``path`` (same suffix); rename it over ``path`` on success.

    After the body has written the temporary file it is flushed to disk, must be non-empty, and
    ``verify(tmp)`` (if given; by default an image file of VOLUME_SUFFIXES must read back) must return
    without raising; only then is it renamed (or, with
    ``group``, handed to the group to rename with the others). Any failure raises
    :class:`OutputError` naming the target and the reason (a MedSAMError raised by the body passes
    through); the temporary file is removed and ``path`` is left as it was.
    """
    path = Path(path)
    _prepare_target(path)
    suf = suffix_of(path)
    mode = _target_mode(path)
    try:
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.{os.getpid()}-", suffix=f".partial{suf}", dir=path.parent)
    except OSError as exc:
        raise OutputError(f"Cannot write {path}: {_why(exc)}. Choose a writable folder.") from exc
    os.close(fd)
    try:
        try:
            yield tmp
            _fsync(tmp)
            if os.path.getsize(tmp) == 0:
                raise OutputError("the file came out empty (is the disk full?).")
            if verify is not None:
                verify(tmp)
            elif suf in VOLUME_SUFFIXES:  # written by someone else's writer (Slicer's): must at least read back
                verify_image_file(tmp, None)
            os.chmod(tmp, mode)
        except OutputError as exc:
            raise OutputError(f"Cannot write {path}: {exc} Nothing was written; free some space or choose another "
                              "folder.") from exc
        except OSError as exc:
            raise OutputError(f"Cannot write {path}: {_why(exc)}. Nothing was written; check the free space and "
                              "that the folder is writable.") from exc
        if group is not None:
            group._add(tmp, path)
        else:
            try:
                os.replace(tmp, path)
            except OSError as exc:
                raise OutputError(f"Cannot write {path}: {_why(exc)}. Nothing was written.") from exc
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
