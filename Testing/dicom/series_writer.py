"""Write a volume (:class:`medsamkit.io.ImageData`) as a single-frame DICOM image series.

For tests, benchmarks and demos: the RECIST workflow starts from DICOM, and the project's dev
volumes are NIfTI. Each slice k of the ``[k, j, i]`` array becomes one CT/MR Image Storage file
with Image Position Patient = origin + k * spacing_k * direction_k (LPS) and the volume's
orientation, so :mod:`.series` reads back the same array and geometry. Intensities are stored as
int16 with Rescale Slope/Intercept (exact for integer volumes; floats are quantised to 1/32767 of
their range).
"""
from __future__ import annotations

import datetime
import os
from pathlib import Path

import numpy as np

from medsamkit.errors import InputError
from medsamkit.io import ImageData
from medsamkit.dicom import require_dicom

_STORAGE = {"CT": "1.2.840.10008.5.1.4.1.1.2", "MR": "1.2.840.10008.5.1.4.1.1.4"}


def write_image_series(image: ImageData, folder: "str | os.PathLike", modality: str = "CT",
                       patient_id: str = "ANON", study_uid: str | None = None, series_uid: str | None = None,
                       frame_of_reference: str | None = None, series_number: int = 1,
                       description: str = "medsamkit export", file_order=None,
                       uid_seed: str | None = None) -> list[Path]:
    """Write one file per slice into ``folder`` -> the paths, in slice order.

    file_order: optional permutation of the slice indices used to *name* the files (tests use it to
    check that nothing depends on file order). uid_seed: derive every UID from this text (the same
    series gets the same UIDs on every run, so a stored SR can refer to it). Raises InputError for a non-3D image or a modality
    other than CT/MR.
    """
    pydicom, _ = require_dicom()
    from pydicom.dataset import FileDataset, FileMetaDataset
    from pydicom.uid import ExplicitVRLittleEndian, PYDICOM_IMPLEMENTATION_UID, generate_uid

    if not image.is_3d:
        raise InputError("Only 3D volumes can be written as a DICOM series.")
    if modality not in _STORAGE:
        raise InputError(f"Modality must be CT or MR; got {modality}.")
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    arr = np.asarray(image.array)
    if np.issubdtype(arr.dtype, np.integer) and arr.min() >= -32768 and arr.max() <= 32767:
        slope, intercept, stored = 1.0, 0.0, arr.astype(np.int16)
    else:
        lo, hi = float(arr.min()), float(arr.max())
        slope = (hi - lo) / 65534.0 if hi > lo else 1.0
        intercept = lo + 32767.0 * slope
        stored = np.round((arr - intercept) / slope).astype(np.int16)
    direction = np.asarray(image.direction, dtype=float).reshape(3, 3)
    spacing = np.asarray(image.spacing, dtype=float)
    origin = np.asarray(image.origin, dtype=float)
    def uid(*parts):
        return generate_uid(entropy_srcs=[uid_seed, *map(str, parts)]) if uid_seed else generate_uid()

    study_uid = study_uid or uid("study")
    series_uid = series_uid or uid("series", series_number)
    frame_of_reference = frame_of_reference or uid("for")
    now = datetime.datetime(2024, 1, 1, 12, 0, 0)
    order = list(range(arr.shape[0])) if file_order is None else [int(n) for n in file_order]
    paths = []
    for k in range(arr.shape[0]):
        meta = FileMetaDataset()
        meta.MediaStorageSOPClassUID = _STORAGE[modality]
        meta.MediaStorageSOPInstanceUID = uid("sop", series_number, k)
        meta.TransferSyntaxUID = ExplicitVRLittleEndian
        meta.ImplementationClassUID = PYDICOM_IMPLEMENTATION_UID
        path = folder / f"IM{order[k]:05d}.dcm"
        ds = FileDataset(str(path), {}, file_meta=meta, preamble=b"\0" * 128)
        ds.SOPClassUID, ds.SOPInstanceUID = meta.MediaStorageSOPClassUID, meta.MediaStorageSOPInstanceUID
        ds.Modality = modality
        ds.PatientName, ds.PatientID, ds.PatientBirthDate, ds.PatientSex = "Anonymous^Patient", patient_id, "", "O"
        ds.StudyInstanceUID, ds.SeriesInstanceUID = study_uid, series_uid
        ds.StudyDate = ds.SeriesDate = ds.ContentDate = now.strftime("%Y%m%d")
        ds.StudyTime = ds.SeriesTime = ds.ContentTime = now.strftime("%H%M%S")
        ds.StudyID, ds.AccessionNumber, ds.ReferringPhysicianName = "1", "", ""
        ds.SeriesNumber, ds.InstanceNumber, ds.SeriesDescription = series_number, k + 1, description
        ds.Manufacturer, ds.PatientPosition, ds.Laterality = "medsamkit", "HFS", ""
        ds.FrameOfReferenceUID, ds.PositionReferenceIndicator = frame_of_reference, ""
        ds.ImageType = ["DERIVED", "SECONDARY", "AXIAL"]
        ds.ImagePositionPatient = [f"{v:.6f}" for v in origin + k * spacing[2] * direction[:, 2]]
        ds.ImageOrientationPatient = [f"{v:.8f}" for v in np.concatenate([direction[:, 0], direction[:, 1]])]
        ds.PixelSpacing = [f"{spacing[1]:.8g}", f"{spacing[0]:.8g}"]
        ds.SliceThickness = f"{spacing[2]:.8g}"
        ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
        ds.Rows, ds.Columns = int(arr.shape[1]), int(arr.shape[2])
        ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 16, 15, 1
        ds.RescaleSlope, ds.RescaleIntercept = f"{slope:.10g}", f"{intercept:.10g}"
        if modality == "CT":
            ds.RescaleType, ds.KVP = "HU", ""
            ds.AcquisitionNumber = 1
        else:
            ds.ScanningSequence, ds.SequenceVariant, ds.ScanOptions, ds.MRAcquisitionType = "SE", "NONE", "", "3D"
            ds.RepetitionTime, ds.EchoTime, ds.EchoTrainLength, ds.MagneticFieldStrength = "", "", "", ""
        ds.PixelData = np.ascontiguousarray(stored[k]).tobytes()
        ds.save_as(path, enforce_file_format=True)
        paths.append(path)
    return paths
