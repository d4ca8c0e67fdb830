"""RECIST measurements (DICOM SR TID 1500) -> 3D lesion masks -> DICOM SEG and a per-lesion table.

One study: a folder holding the measured image series (any nesting, any file order, other series
beside it) and the SR (or an SR given explicitly). :func:`load_study` reads and checks everything
that can fail *before* any model work: the SR, the series it refers to, each lesion's lines (RAS
markers) and its box plan. :func:`segment_study` then segments each lesion through a backend
(:mod:`medsamkit.backend`, the path ``medsamkit markers`` uses: ``set_volume`` once per study,
``segment_plan`` per lesion, see :func:`segment_plan_with_backend`). :func:`write_study` writes all
outputs into a temporary folder renamed into place at the end, so a study folder in the output is
either complete or absent.

Lesions: one per tracking identifier of the SR (:mod:`medsamkit.dicom.sr`). A lesion whose lines
lie on two or more slices becomes the marker plan of :func:`medsamkit.markers.boxes_from_markers`
(boxes interpolated between the measured slices). A lesion measured on one slice only - the usual
RECIST read: long and short axis on the slice of the largest diameter - is by default segmented on
that slice from its lines' box and propagated through the neighbouring slices
(:func:`medsamkit.volume_segmentation.propagate` and its stop rules); ``single_slice="slice"``
keeps it to the measured slice. A lesion that fails (lines off the volume, on another frame of
reference, a one-point line, ...) gets an error row naming the SR file and the lesion; the other
lesions still run.

Per-lesion table (CSV and JSON): volume (mL) of the mask, the longest in-plane diameter of the mask
(maximum Feret diameter over its slices along the plan axis, mm) next to the reader's longest line,
the slices covered, the model (kind, weights, adapter, engine) and seconds.

Lines without an SR (:func:`load_lines_study`): a volume (NIfTI/NRRD/MHA file or a DICOM series
folder) and a lines file - a plain CSV of end points (:func:`read_lines_csv`: ``lesion,x1,y1,z1,
x2,y2,z2`` and the coordinate system, LPS or RAS, in a ``space`` column or given by the caller) or
Slicer line markups (``.mrk.json``; lines named ``"lesion: ..."`` are grouped per lesion). Every
problem of such a file (a missing column, a non-number, a one-point line, a line off the volume or
across slices) is refused before any model work, naming the file, the row and the lesion. The
DICOM SEG is written only when the volume is a DICOM series.

Prompt records (:mod:`medsamkit.records.record`): every segmented lesion is one entry of kind
``"recist"`` (its box plan, its lines in LPS, the window, the model, seconds, its segment), stored
in the ``.seg.nrrd`` segment tags and in ``lesions.seg.nrrd.prompts.json``, so ``medsamkit replay
OUT/lesions.seg.nrrd --volume V`` re-runs them (voxel-identical with the same model).
"""
from __future__ import annotations

from .lines import CSV_OPTIONAL, CSV_REQUIRED, SPACES, LineLesion, read_lines, read_lines_csv, read_lines_markups
from .output import (CSV_FILE, JSON_FILE, NIFTI_FILE, NRRD_FILE, OUTPUTS, PROMPTS_FILE, SEG_FILE, SR_FILE,
                     TABLE_COLUMNS, lesion_record, lesion_rows, mask_long_diameter_mm, study_done, write_study)
from .study import (SINGLE_SLICE_MODES, LesionPlan, LesionResult, RecistOptions, Study, load_lines_study, load_study,
                    plan_lesion, segment_plan_with_backend, segment_study, volume_name)

__all__ = ["CSV_OPTIONAL", "CSV_REQUIRED", "SPACES", "LineLesion", "read_lines", "read_lines_csv", "read_lines_markups",
           "CSV_FILE", "JSON_FILE", "NIFTI_FILE", "NRRD_FILE", "OUTPUTS", "PROMPTS_FILE", "SEG_FILE", "SR_FILE",
           "TABLE_COLUMNS", "lesion_record", "lesion_rows", "mask_long_diameter_mm", "study_done", "write_study",
           "SINGLE_SLICE_MODES", "LesionPlan", "LesionResult", "RecistOptions", "Study", "load_lines_study",
           "load_study", "plan_lesion", "segment_plan_with_backend", "segment_study", "volume_name"]
