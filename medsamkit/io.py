"""Reading images/volumes with their geometry and writing masks atomically.

3D: SimpleITK (NIfTI, NRRD, MHA/MHD, a DICOM series folder). 2D: PNG/JPEG/TIFF/BMP via Pillow.
Arrays follow SimpleITK's numpy order: a volume is ``[k, j, i]`` = (z, y, x); a 2D image is
``[row, col]`` (plus a trailing channel axis for colour). Geometry is kept as SimpleITK gives it
(LPS physical space): ``spacing``/``origin`` in (x, y, z) order, ``direction`` a row-major d×d
matrix.

Writes (:func:`atomic_output`) go to a hidden temporary file beside the target
(``.NAME.<pid>-XXXX.partial.SUF``), which is flushed to disk and checked (image files are read back
and compared, because SimpleITK's NIfTI writer reports no error on a full disk) before it is
renamed over the target. A failure raises :class:`~medsamkit.errors.OutputError` and leaves the
target as it was; partial files of a killed run are removed by the next write of the same target.
The written file gets the mode an ordinary ``open()`` would give it (umask), or keeps the mode of
the file it replaces. Outputs of one command that belong together (mask + overlay) are written
as one unit with :class:`OutputGroup`: all or none.
"""
from __future__ import annotations

import contextlib
import gzip
import os
import stat
import tempfile
import time
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .file_checks import check_nifti_complete, nifti_layout  # noqa: F401  (io's readers and callers)
from .errors import InputError, OutputError

IMAGE_2D_SUFFIXES = (".png", ".jpg", ".jpeg", ".tif", ".tiff", ".bmp")
MASK_SUFFIXES = (".nii.gz", ".nii", ".nrrd", ".seg.nrrd", ".mha", ".png")
#: Image files a write is checked by reading them back (SimpleITK).
VOLUME_SUFFIXES = (".nii.gz", ".nii", ".nrrd", ".seg.nrrd", ".mha")
#: Largest 2D image read (pixels): 16k x 16k. Pillow's own bomb limit is ~179 M pixels.
MAX_2D_PIXELS = 1 << 28
#: Partial files of a writer whose process id is unknown (older versions) are removed after this long.
STALE_PARTIAL_S = 600.0


@dataclass
class ImageData:
    """An image with geometry. array: (z, y, x) for 3D, (y, x) or (y, x, 3) for 2D."""

    array: np.ndarray
    spacing: tuple = (1.0, 1.0)
    origin: tuple = (0.0, 0.0)
    direction: tuple = (1.0, 0.0, 0.0, 1.0)
    is_rgb: bool = False
    modality: str | None = None
    path: str | None = None

    @property
    def is_3d(self) -> bool:
        return self.array.ndim == 3 and not self.is_rgb


def suffix_of(path: "str | os.PathLike") -> str:
    name = Path(path).name.lower()
    for suf in (".seg.nrrd", ".nii.gz"):
        if name.endswith(suf):
            return suf
    return Path(name).suffix


def read_image(path: "str | os.PathLike") -> ImageData:
    """Read a 2D image or a 3D volume (file, or folder holding one DICOM series).

    Raises InputError for missing/unreadable files, 4D images or vector volumes.
    """
    path = Path(path)
    if not path.exists():
        raise InputError(f"Input not found: {path}")
    suf = suffix_of(path)
    if path.is_file() and suf in IMAGE_2D_SUFFIXES:
        return _read_2d(path)
    import SimpleITK as sitk

    try:
        if path.is_dir():
            reader = sitk.ImageSeriesReader()
            series = reader.GetGDCMSeriesIDs(str(path))
            if not series:
                raise InputError(f"{path} is a folder but holds no DICOM series.")
            reader.SetFileNames(reader.GetGDCMSeriesFileNames(str(path), series[0]))
            reader.MetaDataDictionaryArrayUpdateOn()
            img = reader.Execute()
            if reader.HasMetaDataKey(0, "0008|0060"):  # modality lets 'auto' choose a CT window
                img.SetMetaData("0008|0060", reader.GetMetaData(0, "0008|0060"))
        else:
            if suf in (".nii", ".nii.gz"):
                check_nifti_complete(path)
            img = sitk.ReadImage(str(path))
    except InputError:
        raise
    except RuntimeError as exc:
        raise InputError(f"Cannot read {path}: {str(exc).strip().splitlines()[-1][:200]}. "
                         "Supported: NIfTI, NRRD, MHA/MHD, a DICOM series folder, PNG/JPEG/TIFF.") from exc
    if img.GetDimension() == 4:
        raise InputError(f"{path} is a 4D image (size {img.GetSize()}); extract one 3D volume first.")
    if img.GetNumberOfComponentsPerPixel() > 1:
        if img.GetDimension() == 2 and img.GetNumberOfComponentsPerPixel() in (3, 4):
            arr = sitk.GetArrayFromImage(img)[..., :3]
            return ImageData(arr, tuple(img.GetSpacing()), tuple(img.GetOrigin()), tuple(img.GetDirection()),
                             is_rgb=True, path=str(path))
        raise InputError(f"{path} has {img.GetNumberOfComponentsPerPixel()} components per voxel; "
                         "give a scalar volume.")
    arr = sitk.GetArrayFromImage(img)
    if suf in (".nii", ".nii.gz") and path.is_file() and np.issubdtype(arr.dtype, np.floating):
        _restore_nonfinite(path, arr)
    modality = None
    with contextlib.suppress(Exception):
        modality = img.GetMetaData("0008|0060").strip() or None
    return ImageData(arr, tuple(img.GetSpacing()), tuple(img.GetOrigin()), tuple(img.GetDirection()),
                     modality=modality, path=str(path))


def _restore_nonfinite(path: Path, arr: np.ndarray) -> None:
    """Put back the NaN/Inf voxels that ITK's NIfTI reader turns into 0, so the one NaN rule sees them."""
    from .file_checks import nifti_nonfinite

    try:
        where, values = nifti_nonfinite(path)
    except (OSError, EOFError, zlib.error) as exc:
        raise InputError(f"Cannot read {path}: {_why(exc)}.") from exc
    if where.size and int(where.max()) < arr.size:
        arr.reshape(-1)[where] = values.astype(arr.dtype)


def _read_2d(path: Path) -> ImageData:
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as im:
            w, h = im.size
            if w * h > MAX_2D_PIXELS:  # a header can declare any size; refuse before decoding it
                raise InputError(f"{path} declares {w} x {h} pixels ({w * h / 1e6:.0f} megapixels), more than the "
                                 f"{MAX_2D_PIXELS / 1e6:.0f} megapixels medsamkit reads from a 2D image. Crop or "
                                 "downscale it first.")
            if im.mode in ("RGBA", "P", "CMYK", "LA"):
                im = im.convert("RGB")
            arr = np.array(im)
    except (UnidentifiedImageError, OSError, Image.DecompressionBombError) as exc:
        raise InputError(f"Cannot read image {path}: {exc}") from exc
    is_rgb = arr.ndim == 3
    return ImageData(arr, (1.0, 1.0), (0.0, 0.0), (1.0, 0.0, 0.0, 1.0), is_rgb=is_rgb, path=str(path))


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


def write_mask(mask: np.ndarray, path: "str | os.PathLike", reference: ImageData | None = None,
               group: "OutputGroup | None" = None) -> Path:
    """Write a binary/label mask atomically.

    .nii.gz/.nii/.nrrd/.mha: uint8 labels with ``reference``'s geometry (mask shape must equal the
    reference array's spatial shape). .png: 2D only, 0/255 for a binary mask (visible in any viewer),
    label values as they are otherwise. Raises InputError for unsupported suffixes or shapes,
    OutputError when the file cannot be written. group: write as part of an :class:`OutputGroup`.
    """
    path = Path(path)
    suf = suffix_of(path)
    arr = np.asarray(mask)
    arr = arr.astype(np.uint8) if arr.dtype == np.bool_ else arr
    if suf not in MASK_SUFFIXES:
        raise InputError(f"Cannot write a mask as '{suf or path.name}'. Use one of {', '.join(MASK_SUFFIXES)}.")
    if reference is not None:
        ref_shape = reference.array.shape[:2] if reference.is_rgb else reference.array.shape
        if arr.shape != ref_shape:
            raise InputError(f"Mask shape {arr.shape} does not match the image shape {ref_shape}.")
    if suf == ".png":
        if arr.ndim != 2:
            raise InputError("A PNG mask must be 2D; write 3D masks as .nii.gz or .nrrd.")
        from PIL import Image

        out = (arr > 0).astype(np.uint8) * 255 if arr.max() <= 1 else arr.astype(np.uint8)
        with atomic_output(path, verify=lambda tmp: _verify_png(tmp, out), group=group) as tmp:
            Image.fromarray(out).save(tmp, format="PNG")
        return path
    import SimpleITK as sitk

    img = sitk.GetImageFromArray(arr.astype(np.uint8))
    if reference is not None and not reference.is_rgb and len(reference.spacing) == arr.ndim:
        img.SetSpacing(reference.spacing)
        img.SetOrigin(reference.origin)
        img.SetDirection(reference.direction)
    expected = arr.astype(np.uint8)
    with atomic_output(path, verify=lambda tmp: verify_image_file(tmp, expected), group=group) as tmp:
        sitk_write(img, tmp)
    return path


def sitk_write(img, path: str) -> None:
    """sitk.WriteImage (compressed), its RuntimeError turned into an OutputError with the reason."""
    import SimpleITK as sitk

    try:
        sitk.WriteImage(img, str(path), True)
    except RuntimeError as exc:
        lines = [ln.strip() for ln in str(exc).splitlines() if ln.strip()]
        raise OutputError(f"the image writer failed ({lines[-1][:160] if lines else 'no reason given'}).") from exc


def write_overlay_png(image_rgb: np.ndarray, mask: np.ndarray, path: "str | os.PathLike",
                      box=None, color=(255, 64, 64), alpha: float = 0.45, group: "OutputGroup | None" = None) -> Path:
    """Save a (H, W, 3) uint8 image with the mask blended in colour and the box outlined."""
    from PIL import Image, ImageDraw

    out = image_rgb.astype(np.float32).copy()
    m = np.asarray(mask, dtype=bool)
    out[m] = (1 - alpha) * out[m] + alpha * np.asarray(color, dtype=np.float32)
    pil = Image.fromarray(np.clip(out, 0, 255).astype(np.uint8))
    if box is not None:
        ImageDraw.Draw(pil).rectangle([float(v) for v in box], outline=(64, 255, 64), width=2)
    expected = np.asarray(pil)
    with atomic_output(path, verify=lambda tmp: _verify_png(tmp, expected), group=group) as tmp:
        pil.save(tmp, format="PNG")
    return Path(path)


def verify_image_file(path: "str | os.PathLike", expected: "np.ndarray | None") -> None:
    """Read a just-written image file back and compare it with ``expected`` (OutputError if it differs).

    SimpleITK's NIfTI writer reports no error when the disk fills: the file is cut short and a
    reader silently zero-fills the rest. The NIfTI length check and the voxel comparison catch it.
    """
    import SimpleITK as sitk

    path = Path(path)
    if expected is not None and expected.dtype.itemsize == 1 and suffix_of(path) in (".nii", ".nii.gz"):
        return _verify_nifti_voxels(path, expected)  # one streamed pass: length, gzip CRC and voxels
    try:
        if suffix_of(path) in (".nii", ".nii.gz"):
            check_nifti_complete(path)
        back = sitk.GetArrayFromImage(sitk.ReadImage(str(path)))
    except (InputError, RuntimeError) as exc:
        raise OutputError("the written file is cut short or does not read back (is the disk full?).") from exc
    if expected is not None and (back.shape != expected.shape or not np.array_equal(back, expected)):
        raise OutputError("the written file reads back with other values than were written (is the disk full?).")


def _verify_nifti_voxels(path: Path, expected: np.ndarray) -> None:
    """Compare a just-written single-byte NIfTI's voxel bytes with ``expected`` while decompressing it once."""
    data = memoryview(np.ascontiguousarray(expected)).cast("B")
    gz = path.name.lower().endswith(".gz")
    try:
        with (gzip.open(path, "rb") if gz else open(path, "rb")) as f:
            head = f.read(540)
            layout = nifti_layout(head, path)
            if layout is None or layout[1] != len(data):
                raise OutputError("the written file does not hold the expected voxels.")
            offset = layout[0]
            if offset > len(head) and len(f.read(offset - len(head))) != offset - len(head):
                raise OutputError("the written file is cut short (is the disk full?).")
            pending, pos = head[offset:], 0
            while True:
                chunk, pending = (pending, b"") if pending else (f.read(4 << 20), b"")
                if not chunk:
                    break
                if len(chunk) > len(data) - pos or chunk != data[pos:pos + len(chunk)]:
                    raise OutputError("the written file reads back with other values than were written "
                                      "(is the disk full?).")
                pos += len(chunk)
    except (EOFError, gzip.BadGzipFile, zlib.error, InputError, OSError) as exc:
        raise OutputError("the written file is cut short or does not read back (is the disk full?).") from exc
    if pos != len(data):
        raise OutputError("the written file is cut short (is the disk full?).")


def _verify_png(path: str, expected: np.ndarray) -> None:
    from PIL import Image

    try:
        with Image.open(path) as im:
            back = np.asarray(im)
    except OSError as exc:
        raise OutputError("the written PNG is cut short or does not read back (is the disk full?).") from exc
    if back.shape != expected.shape or not np.array_equal(back, expected):
        raise OutputError("the written PNG reads back with other values than were written (is the disk full?).")


def check_outputs(outputs, inputs=(), companions=()) -> None:
    """Refuse outputs that would overwrite an input or each other, before any work.

    outputs / inputs: ``(label, path)`` pairs, e.g. ``("--out", "mask.nii.gz")``,
    ``("the input image", "ct.nii.gz")``; paths may be None (skipped). Compares resolved paths and,
    for files that exist, file identity (hard links, symlinks, case-insensitive file systems).
    Also refuses an output that names an existing folder. Raises InputError.
    companions: suffixes of files written beside each output as one unit with it (e.g.
    ``(".prompts.json",)``: ``mask.nii.gz.prompts.json``); they are checked like the outputs.
    """
    outs = [(label, Path(p)) for label, p in outputs if p is not None]
    outs += [(f"{label}'s {suf} file", out.with_name(out.name + suf)) for label, out in list(outs) for suf in companions]
    ins = [(label, Path(p)) for label, p in inputs if p is not None]
    for n, (label, out) in enumerate(outs):
        if out.is_dir():
            raise InputError(f"{label} {out} is a folder; give a file name (e.g. {out / 'mask.nii.gz'}).")
        for other_label, other in ins + outs[:n]:
            if _same_file(out, other):
                what = "would overwrite" if (other_label, other) in ins else "is the same file as"
                raise InputError(f"{label} {out} {what} {other_label} ({other}). Choose another file name; "
                                 "nothing was written.")


def check_output_folder(label: str, folder, inputs=()) -> None:
    """Refuse an output folder that is a file, is an input, holds an input or lies inside an input folder
    (its files could be replaced or mixed with the results), before any work. inputs: ``(label, path)`` pairs (None skipped). InputError."""
    if folder is None:
        return
    folder = Path(folder)
    if folder.exists() and not folder.is_dir():
        raise InputError(f"{label} {folder} is a file; give a folder for the results.")
    try:
        where = folder.resolve()
    except OSError:
        return
    for in_label, path in inputs:
        if path is None:
            continue
        path = Path(path)
        try:
            src = path.resolve()
        except OSError:
            continue
        same = _same_file(folder, path)
        if same or where in src.parents or (path.is_dir() and src in where.parents):
            how = "is the same folder as" if same else ("holds" if where in src.parents else "lies inside")
            raise InputError(f"{label} {folder} {how} {in_label} ({path}); results written there could replace or "
                             "mix with the input. Choose another folder; nothing was written.")


def _same_file(a: Path, b: Path) -> bool:
    try:
        if a.resolve() == b.resolve():
            return True
    except OSError:
        pass
    try:
        return a.exists() and b.exists() and os.path.samefile(a, b)
    except OSError:
        return False

