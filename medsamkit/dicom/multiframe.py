"""Enhanced (multi-frame) CT/MR images -> a volume, with the same geometry rules as classic series.

A multi-frame image (Enhanced CT/MR, Legacy Converted Enhanced) holds every slice as a frame of one
file; where each frame lies is in its functional groups: Plane Position (Image Position Patient),
Plane Orientation (Image Orientation Patient) and Pixel Measures (Pixel Spacing), per frame or
shared, and the stored values become Hounsfield units / MR values by the Pixel Value Transformation
(Rescale Slope/Intercept) group. :func:`read_multiframe` sorts the frames along the slice normal
(never by frame number) and checks them as :mod:`medsamkit.dicom.series` checks files: one
orientation, one spacing, and through the same :func:`.stack.stack_slices` even gaps and no two
frames at one place.

:class:`MultiFrameSeries` is used where a :class:`medsamkit.dicom.series.DicomSeries` is: ``headers``
holds one plain header per frame (position, orientation, spacing, the file's UIDs) so that SR lines
on a frame are placed as on a classic slice, :meth:`MultiFrameSeries.slice_of` takes the frame
number, and ``source_images`` / :meth:`MultiFrameSeries.to_source_order` give a DICOM SEG writer the
file and its frame order.
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

_COPIED = ("SOPClassUID", "SOPInstanceUID", "SeriesInstanceUID", "StudyInstanceUID", "Modality",
           "FrameOfReferenceUID", "Rows", "Columns", "SeriesDescription", "SeriesNumber", "PatientID")


def _group(ds, frame: int, name: str):
    """Item 0 of functional group ``name`` for frame ``frame`` (0-based): per-frame, else shared, else None."""
    for seq in ("PerFrameFunctionalGroupsSequence", "SharedFunctionalGroupsSequence"):
        groups = ds.get(seq)
        if not groups:
            continue
        item = groups[frame] if seq.startswith("PerFrame") else groups[0]
        inner = item.get(name)
        if inner:
            return inner[0]
    return None


def frame_planes(ds, path) -> tuple:
    """(positions (F, 3), orientation (6,), pixel spacing (2,), rescale [(slope, intercept)] per frame)."""
    frames = int(ds.get("NumberOfFrames", 1) or 1)
    positions, orientations, spacings, rescale = [], [], [], []
    for f in range(frames):
        pos = _group(ds, f, "PlanePositionSequence")
        ori = _group(ds, f, "PlaneOrientationSequence")
        pix = _group(ds, f, "PixelMeasuresSequence")
        if pos is None or ori is None or pix is None or "PixelSpacing" not in pix:
            raise InputError(f"{path}: frame {f + 1} has no Plane Position, Plane Orientation or Pixel Measures "
                             "functional group; it is not a volume that can be placed in patient space.")
        positions.append(np.asarray(pos.ImagePositionPatient, dtype=float))
        orientations.append(np.asarray(ori.ImageOrientationPatient, dtype=float))
        spacings.append(np.asarray(pix.PixelSpacing, dtype=float))
        tr = _group(ds, f, "PixelValueTransformationSequence")
        src = tr if tr is not None and "RescaleSlope" in tr else ds
        rescale.append((float(src.get("RescaleSlope", 1) or 1), float(src.get("RescaleIntercept", 0) or 0)))
    if any(not np.allclose(o, orientations[0], atol=1e-4) for o in orientations):
        raise InputError(f"{path}: its frames have different orientations; it cannot be read as one volume.")
    if any(not np.allclose(s, spacings[0], rtol=1e-4) for s in spacings):
        raise InputError(f"{path}: its frames have different pixel spacings; it cannot be read as one volume.")
    return np.array(positions), orientations[0], spacings[0], rescale


@dataclass
class MultiFrameSeries(SeriesHeaders):
    """A multi-frame image as a series (module docstring); slice k of the volume is frame ``frames[k]`` (1-based)."""

    uid: str
    path: Path
    frames: list                                      # frame number (1-based) of each slice k, sorted
    headers: list = field(default_factory=list)       # one plain pydicom Dataset per slice k (no pixels)
    geometry: VolumeGeometry | None = None
    rescale: list = field(default_factory=list)       # (slope, intercept) per slice k

    @property
    def files(self) -> list:
        return [self.path] * len(self.frames)

    @property
    def description(self) -> str:
        h = self.headers[0]
        return f"series {getattr(h, 'SeriesNumber', '?')} '{getattr(h, 'SeriesDescription', '')}' ({self.modality}, " \
               f"multi-frame, {len(self.frames)} frames)"

    @property
    def source_images(self) -> list:
        """The image as written (with its pixels), for a DICOM SEG that references its frames."""
        pydicom, _ = require_dicom()
        return [pydicom.dcmread(self.path)]

    def slice_of(self, sop_uid: str) -> "int | None":
        """0 when ``sop_uid`` is this image (any of its frames: which series an SR refers to), else None."""
        return 0 if str(sop_uid) == self.sop_uids[0] else None

    def frame_slice(self, sop_uid: str, frame: "int | None") -> "int | None":
        """Slice k of frame ``frame`` (1-based) of this image; None when the frame is not given (for an image of
        more than one frame) or not in it."""
        if str(sop_uid) != self.sop_uids[0]:
            return None
        if frame is None:
            return 0 if len(self.frames) == 1 else None
        return self.frames.index(int(frame)) if int(frame) in self.frames else None

    def to_source_order(self, stack: np.ndarray) -> np.ndarray:
        """An array [k, ...] in slice order -> in the file's frame order."""
        out = np.empty_like(stack)
        out[np.asarray(self.frames) - 1] = stack
        return out

    def read(self) -> ImageData:
        """The volume (array [k, j, i], rescaled values; int16 when they are whole numbers that fit)."""
        pydicom, _ = require_dicom()
        try:
            pixels = pydicom.dcmread(self.path).pixel_array
        except Exception as exc:  # pydicom raises many types for damaged or undecodable pixel data
            raise InputError(f"Cannot read the pixels of {self.description} in {self.path} ({type(exc).__name__}: "
                             f"{str(exc)[:160]}). Export the series again.") from exc
        pixels = np.asarray(pixels).reshape((-1,) + pixels.shape[-2:])[np.asarray(self.frames) - 1]
        slopes = np.array([s for s, _ in self.rescale])[:, None, None]
        intercepts = np.array([i for _, i in self.rescale])[:, None, None]
        values = pixels.astype(np.float64) * slopes + intercepts
        if np.all(slopes == 1) and np.all(intercepts == np.round(intercepts)) and \
                values.min() >= np.iinfo(np.int16).min and values.max() <= np.iinfo(np.int16).max:
            arr = values.astype(np.int16)
        else:
            arr = values.astype(np.float32)
        g = self.geometry
        return ImageData(arr, g.spacing, g.origin, g.direction, modality=self.modality or None, path=str(self.path))


def read_multiframe(path: "str | os.PathLike", header=None) -> MultiFrameSeries:
    """A multi-frame image file -> :class:`MultiFrameSeries` (frames sorted along the normal, geometry checked)."""
    pydicom, _ = require_dicom()
    path = Path(path)
    ds = header if header is not None else pydicom.dcmread(path, stop_before_pixels=True)
    positions, orientation, spacing_rc, rescale = frame_planes(ds, path)
    row, col = orientation[:3], orientation[3:6]
    normal = np.cross(row, col)
    order, axis = stack_slices(str(path), [f"frame {f + 1}" for f in range(len(positions))], positions, normal)
    positions = positions[order]
    kdir, dk = axis or (normal, float(getattr(_group(ds, 0, "PixelMeasuresSequence"), "SliceThickness", 1.0) or 1.0))
    direction = np.stack([row, col, kdir], axis=1)
    shape = (len(order), int(ds.Rows), int(ds.Columns))
    geometry = VolumeGeometry(shape, (float(spacing_rc[1]), float(spacing_rc[0]), dk),
                              tuple(float(v) for v in positions[0]), tuple(float(v) for v in direction.reshape(-1)))
    headers = []
    for k, f in enumerate(order):
        h = pydicom.Dataset()
        for key in _COPIED:
            if key in ds:
                setattr(h, key, ds.get(key))
        h.ImagePositionPatient = [float(v) for v in positions[k]]
        h.ImageOrientationPatient = [float(v) for v in orientation]
        h.PixelSpacing = [float(v) for v in spacing_rc]
        headers.append(h)
    return MultiFrameSeries(str(ds.SeriesInstanceUID), path, [int(f) + 1 for f in order], headers, geometry,
                            [rescale[f] for f in order])


def add_multiframe_series(index) -> None:
    """Read the multi-frame images an index found (medsamkit.dicom.series.index_folder) into its ``series``;
    one that cannot be read as a volume is kept in ``corrupt`` with the reason."""
    for path in list(index.multiframe):
        try:
            series = read_multiframe(path)
        except InputError as exc:
            index.corrupt[path] = str(exc)
            continue
        if series.uid in index.series:
            index.corrupt[path] = f"{path}: series {series.uid} also has other images; keep one multi-frame image " \
                                  "or the single-frame slices per series."
            continue
        index.series[series.uid] = series
