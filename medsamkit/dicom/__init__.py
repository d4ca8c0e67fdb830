"""DICOM in and out for the RECIST workflow: image series, TID 1500 measurement reports, SEG.

- :mod:`.series`: index a folder (any nesting, several series, any file order) and read one
  series as a volume with its geometry and the SOP Instance UID of every slice.
- :mod:`.sr`: read DICOM SR TID 1500 measurement reports: the linear measurements (2-point
  SCOORD / SCOORD3D polylines) of each measurement group (one lesion per tracking identifier);
  write such reports (linear measurements, and volumes linked to a SEG).
- :mod:`.multiframe`: enhanced (multi-frame) CT/MR images read as a series, frames placed by their
  functional groups.
- :mod:`.seg`: write a DICOM Segmentation (one segment per lesion) that references the source
  series.

pydicom decodes every file and highdicom builds every object we write; both come with the
``dicom`` extra (``pip install "medsamkit[dicom]"``). :func:`require_dicom` says so when missing.
"""
from __future__ import annotations

from ..errors import require

#: Slice gaps may differ by this fraction of the mean gap (rounding in Image Position Patient).
GAP_TOLERANCE = 0.02


def require_dicom():
    """Import pydicom and highdicom, or raise DependencyError naming the extra to install."""
    pydicom = require("pydicom", "Reading DICOM measurement reports and series", "dicom")
    highdicom = require("highdicom", "Writing DICOM SEG and SR", "dicom")
    return pydicom, highdicom
