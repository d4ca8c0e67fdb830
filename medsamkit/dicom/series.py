"""A folder of DICOM files -> its image series, each as a volume with geometry and slice UIDs.

PACS exports put several series (and SR / SEG documents) into one folder, nest sub-folders and
name files arbitrarily; nothing here depends on names or order. :func:`index_folder` reads every
file's header once (pydicom, no pixel data) and groups single-frame images by Series Instance UID;
:class:`DicomSeries` sorts its slices by their position along the slice normal (never by file
name or Instance Number) and computes the volume geometry from the headers.

Geometry (LPS mm, the frames of medsamkit.geometry): ``i`` runs along a row (Image Orientation
Patient's first cosine, spacing = Pixel Spacing[1]), ``j`` down the columns (second cosine,
spacing = Pixel Spacing[0]), ``k`` along the normal ``row x column`` in the order the slices were
sorted; numpy arrays are ``[k, j, i]`` and slice ``k`` is :attr:`DicomSeries.sop_uids` ``[k]``.
The pixels are read by SimpleITK (GDCM decodes compressed transfer syntaxes) from the sorted
file list, and the geometry is taken from the headers.

Errors (:class:`~medsamkit.errors.InputError`) name the file: a DICOM file that cannot be parsed
(truncated, corrupt), slices with differing orientation or pixel spacing, uneven slice gaps,
two slices at one position, multi-frame images.
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..errors import InputError
from ..geometry import VolumeGeometry
from ..io import ImageData
from . import require_dicom
from .headers import SeriesHeaders
from .stack import stack_slices
#: Storage classes of structured reports (Basic Text, Enhanced, Comprehensive, Comprehensive 3D).
SR_SOP_CLASSES = ("1.2.840.10008.5.1.4.1.1.88.11", "1.2.840.10008.5.1.4.1.1.88.22",
                  "1.2.840.10008.5.1.4.1.1.88.33", "1.2.840.10008.5.1.4.1.1.88.34")
_HEADER_TAGS = ("SOPClassUID", "SOPInstanceUID", "SeriesInstanceUID", "StudyInstanceUID", "Modality",
                "FrameOfReferenceUID", "ImagePositionPatient", "ImageOrientationPatient", "PixelSpacing",
                "Rows", "Columns", "NumberOfFrames", "SeriesDescription", "SeriesNumber", "PatientID")


@dataclass
class DicomSeries(SeriesHeaders):
    """One image series: files and headers sorted along the slice normal (see module docstring)."""

    uid: str
    files: list = field(default_factory=list)       # Path per slice, sorted
    headers: list = field(default_factory=list)     # pydicom Dataset per slice (no pixel data), sorted
    geometry: VolumeGeometry | None = None

    @property
    def description(self) -> str:
        h = self.headers[0]
        return f"series {getattr(h, 'SeriesNumber', '?')} '{getattr(h, 'SeriesDescription', '')}' ({self.modality}, " \
               f"{len(self.files)} slices)"

    def slice_of(self, sop_uid: str) -> int | None:
        """Slice index k of the image with this SOP Instance UID, or None when not in this series."""
        try:
            return self.sop_uids.index(str(sop_uid))
        except ValueError:
            return None

    def _damaged_file(self) -> "Path | None":
        """The first file whose pixels cannot be decoded (to name it in the error)."""
        import SimpleITK as sitk

        n_pixels = self.geometry.shape[1] * self.geometry.shape[2]
        for f in self.files:
            try:
                if sitk.GetArrayFromImage(sitk.ReadImage(str(f))).size != n_pixels:
                    return f
            except RuntimeError:
                return f
        return None

    def _short_pixel_data(self) -> "tuple[Path, int, int] | None":
        """(file, bytes held, bytes declared) of the first uncompressed slice whose Pixel Data is shorter than
        Rows x Columns x samples x bits allocated say (GDCM zero-fills the rest silently); None when all hold it."""
        pydicom, _ = require_dicom()
        for f in self.files:
            try:
                ds = pydicom.dcmread(f)
                if ds.file_meta.TransferSyntaxUID.is_compressed:
                    continue
                need = int(ds.Rows) * int(ds.Columns) * int(ds.get("SamplesPerPixel", 1) or 1) \
                    * int(ds.BitsAllocated) // 8
                have = len(ds.PixelData) if "PixelData" in ds else 0
            except Exception:  # pydicom raises many types for damaged files; SimpleITK's read names those
                continue
            if have < need:
                return f, have, need
        return None

    def read(self) -> ImageData:
        """The volume as :class:`medsamkit.io.ImageData` (array [k, j, i], LPS geometry from the headers)."""
        import SimpleITK as sitk

        reader = sitk.ImageSeriesReader()
        reader.SetFileNames([str(f) for f in self.files])
        try:
            img = reader.Execute()
        except RuntimeError as exc:
            raise InputError(f"Cannot read the pixels of {self.description}: {self._damaged_file() or self.files[0]} "
                             f"is damaged ({str(exc).strip().splitlines()[-1][:160]}). Export the series again.") from exc
        short = self._short_pixel_data()
        if short:
            f, have, need = short
            raise InputError(f"Cannot read the pixels of {self.description}: {f} is truncated (its pixel data holds "
                             f"{have} of the {need} bytes its header declares; a reader would fill the rest with "
                             "zeros). Export the series again.")
        arr = sitk.GetArrayFromImage(img)
        if arr.shape != tuple(self.geometry.shape):
            raise InputError(f"{self.description}: pixel data of shape {arr.shape} does not match the headers "
                             f"({tuple(self.geometry.shape)}); are some files damaged?")
        g = self.geometry
        return ImageData(arr, g.spacing, g.origin, g.direction, modality=self.modality or None,
                         path=str(self.files[0].parent))


@dataclass
class FolderIndex:
    """What a folder holds: image series by UID, SR files, files that are DICOM but unreadable."""

    folder: Path
    series: dict = field(default_factory=dict)       # Series Instance UID -> DicomSeries
    sr_files: list = field(default_factory=list)     # Paths of structured reports
    corrupt: dict = field(default_factory=dict)      # Path -> reason
    rejected: dict = field(default_factory=dict)     # Series Instance UID -> (SOP Instance UIDs, reason)
    multiframe: list = field(default_factory=list)   # Paths of multi-frame images (not supported)

    def series_of_instance(self, sop_uid: str) -> "DicomSeries | None":
        for s in self.series.values():
            if s.slice_of(sop_uid) is not None:
                return s
        return None

    def summary(self) -> str:
        if not self.series:
            return "no image series"
        return "; ".join(s.description for s in self.series.values())


def _is_dicom_file(path: Path) -> bool:
    """DICOM Part 10 files carry 'DICM' after a 128-byte preamble; other files are ignored silently."""
    try:
        with open(path, "rb") as f:
            head = f.read(132)
    except OSError:
        return False
    return len(head) == 132 and head[128:132] == b"DICM"


def index_folder(folder: "str | os.PathLike") -> FolderIndex:
    """Read every DICOM header below ``folder`` and group the images into series (sorted, with geometry).

    A file with the DICOM preamble that pydicom cannot parse (or whose Number of Frames is not a number)
    is listed in ``corrupt`` (it matters only if the measurements refer to it). Series whose slices are
    inconsistent (two at one position, uneven gaps, ...) are kept out of ``series``; ``rejected`` keeps
    their instance UIDs and the reason, which names the files concerned.
    Raises InputError for a missing folder.
    """
    pydicom, _ = require_dicom()
    folder = Path(folder)
    if not folder.is_dir():
        raise InputError(f"Study folder not found: {folder}")
    index = FolderIndex(folder)
    groups: dict[str, list] = {}
    unplaced: dict[str, list] = {}
    for path in sorted(p for p in folder.rglob("*") if p.is_file()):
        if not _is_dicom_file(path):
            continue
        try:
            ds = pydicom.dcmread(path, stop_before_pixels=True, specific_tags=None)
            sop_class = str(ds.get("SOPClassUID", ""))
            if not sop_class or "SOPInstanceUID" not in ds:  # pydicom stops quietly at a truncated file's end
                raise EOFError("the header ends before the SOP Class/Instance UID (truncated file?)")
        except Exception as exc:  # pydicom raises many types for damaged files
            index.corrupt[path] = f"{type(exc).__name__}: {str(exc)[:160]}"
            continue
        if sop_class in SR_SOP_CLASSES or str(ds.get("Modality", "")) == "SR":
            index.sr_files.append(path)
            continue
        frames = _number_of_frames(ds)
        if frames is None:
            index.corrupt[path] = f"Number of Frames '{ds.get('NumberOfFrames')}' is not a whole number"
            continue
        if "ImagePositionPatient" not in ds or "ImageOrientationPatient" not in ds or "PixelSpacing" not in ds:
            if frames > 1 and "PerFrameFunctionalGroupsSequence" in ds \
                    and str(ds.get("Modality", "")) not in ("SEG", "RTSTRUCT"):
                index.multiframe.append(path)
            elif frames == 1 and "Rows" in ds and "SeriesInstanceUID" in ds:  # an image slice that cannot be placed
                unplaced.setdefault(str(ds.SeriesInstanceUID), []).append(path)
            continue  # SEG, RTSTRUCT, presentation states, ...: not an image slice
        if frames > 1:
            index.multiframe.append(path)
            continue
        groups.setdefault(str(ds.SeriesInstanceUID), []).append((path, ds))
    for uid, items in groups.items():
        try:
            index.series[uid] = _build_series(uid, items)
        except InputError as exc:  # an inconsistent series, not a damaged file: the reason names its files
            why = str(exc)
            if unplaced.get(uid):
                names = ", ".join(p.name for p in unplaced[uid][:3])
                why += (f" {len(unplaced[uid])} slice(s) of this series have no Image Position/Orientation or Pixel "
                        f"Spacing and cannot be placed: {names}.")
            index.rejected[uid] = ({str(ds.get("SOPInstanceUID", "")) for _, ds in items}, why)
    from .multiframe import add_multiframe_series

    add_multiframe_series(index)
    return index


def _number_of_frames(ds) -> "int | None":
    """Number of Frames (1 when absent); None when the header holds no whole number there."""
    try:
        return int(str(ds.get("NumberOfFrames", 1) or 1).strip())
    except (TypeError, ValueError):
        return None


def _build_series(uid: str, items: list) -> DicomSeries:
    first_path, first = items[0]
    row = np.asarray(first.ImageOrientationPatient[:3], dtype=float)
    col = np.asarray(first.ImageOrientationPatient[3:6], dtype=float)
    normal = np.cross(row, col)
    spacing_rc = np.asarray(first.PixelSpacing, dtype=float)   # (row spacing = between rows, column spacing)
    shape_rc = (int(first.Rows), int(first.Columns))
    for path, ds in items[1:]:
        if not np.allclose(np.asarray(ds.ImageOrientationPatient, dtype=float), first.ImageOrientationPatient, atol=1e-4):
            raise InputError(f"Series {uid}: {path.name} has another Image Orientation than {first_path.name}; a "
                             "series with mixed orientations (e.g. a scout) cannot be one volume.")
        if not np.allclose(np.asarray(ds.PixelSpacing, dtype=float), spacing_rc, rtol=1e-4) \
                or (int(ds.Rows), int(ds.Columns)) != shape_rc:
            raise InputError(f"Series {uid}: {path.name} has another pixel spacing or size than {first_path.name}.")
    pos = np.array([np.asarray(ds.ImagePositionPatient, dtype=float) for _, ds in items])
    order, axis = stack_slices(f"Series {uid}", [p.name for p, _ in items], pos, normal)
    items = [items[n] for n in order]
    pos = pos[order]
    kdir, dk = axis or (normal, float(getattr(first, "SliceThickness", 1.0) or 1.0))
    direction = np.stack([row, col, kdir], axis=1)  # columns = unit vectors of i, j, k
    geometry = VolumeGeometry((len(items), shape_rc[0], shape_rc[1]), (float(spacing_rc[1]), float(spacing_rc[0]), dk),
                              tuple(float(v) for v in pos[0]), tuple(float(v) for v in direction.reshape(-1)))
    return DicomSeries(uid, [p for p, _ in items], [ds for _, ds in items], geometry)


def image_point_to_lps(header, xy) -> np.ndarray:
    """SCOORD (column, row) image coordinates on one image -> (N, 3) LPS mm.

    DICOM SR image coordinates put (0, 0) at the top-left corner of the top-left pixel, so the
    centre of pixel (row r, column c) is (c + 0.5, r + 0.5) (PS3.3 C.18.6.1.1).
    """
    xy = np.asarray(xy, dtype=float).reshape(-1, 2)
    row = np.asarray(header.ImageOrientationPatient[:3], dtype=float)
    col = np.asarray(header.ImageOrientationPatient[3:6], dtype=float)
    dr, dc = (float(v) for v in header.PixelSpacing)  # between rows, between columns
    origin = np.asarray(header.ImagePositionPatient, dtype=float)
    return origin + np.outer(xy[:, 0] - 0.5, row * dc) + np.outer(xy[:, 1] - 0.5, col * dr)
