"""A RECIST measurement report (DICOM SR TID 1500) -> marker line nodes the reader edits before Run.

The SR's lines (:mod:`medsamkit.dicom.sr`) are placed on the volume they were measured on:

- with the study folder (``study_dir``): the series is found and sorted from the files
  (:mod:`medsamkit.dicom.series`), exactly as ``medsamkit recist`` does;
- without it: the volume node's ``DICOM.instanceUIDs`` attribute (space-separated SOP Instance UIDs,
  set by Slicer's DICOM scalar volume plugin in the volume's slice order) maps each referenced image
  to slice k, and the volume node's IJK -> RAS matrix does the rest: SCOORD (column, row) ->
  IJK (column - 0.5, row - 0.5, k) -> world RAS. SCOORD3D lines are LPS already.

The SR may be given as a file or as a loaded node whose ``DICOM.instanceUIDs`` names the SR instance;
then ``file_for_instance`` (the GUI passes ``slicer.dicomDatabase.fileForInstance``) finds its file.
Each line becomes a marker line node (:func:`medsamkit.mrml.markups.add_marker_line`) named
"<lesion>: Long axis 1", ..., with the attribute :data:`LESION_ATTRIBUTE` = the lesion's tracking
identifier, so the panel can run one lesion at a time. Errors (InputError) name the SR file and lesion;
on any error no node is left in the scene.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from ..errors import InputError

LESION_ATTRIBUTE = "MedSAM.Lesion"
INSTANCE_UIDS_ATTRIBUTE = "DICOM.instanceUIDs"


def sr_path_of(sr, file_for_instance=None) -> Path:
    """A path given as is, or the file of a loaded SR node (its ``DICOM.instanceUIDs`` via ``file_for_instance``)."""
    if isinstance(sr, (str, Path)):
        return Path(sr)
    uids = (sr.GetAttribute(INSTANCE_UIDS_ATTRIBUTE) or "").split()
    if not uids or file_for_instance is None:
        raise InputError(f"Node '{sr.GetName()}' does not say which DICOM SR it was loaded from; choose the SR file "
                         "instead.")
    path = file_for_instance(uids[0])
    if not path:
        raise InputError(f"The DICOM database has no file for the SR of node '{sr.GetName()}'; choose the SR file.")
    return Path(path)


def lesion_markers_on_volume(sr_path, volume_node, study_dir=None) -> list:
    """[(lesion name, [Marker, ...] in world RAS)] of an SR on ``volume_node`` (module docstring).

    Raises InputError: SR unreadable / without lines; a referenced image that is not a slice of the
    volume; no way to place image coordinates (neither ``study_dir`` nor ``DICOM.instanceUIDs``).
    """
    from ..dicom.sr import check_has_lines, lesion_markers, read_report

    report = read_report(sr_path)
    check_has_lines(report)
    if study_dir is not None:
        from ..dicom.series import index_folder
        from ..dicom.sr import select_series

        series = select_series(report, index_folder(study_dir))
        return [(les.name, lesion_markers(les, series, report.path)) for les in report.lesions if les.lines]
    return [(les.name, _markers_by_instance_uids(les, report.path, volume_node)) for les in report.lesions if les.lines]


def _markers_by_instance_uids(lesion, sr_path, volume_node) -> list:
    from ..geometry import LPS_TO_RAS
    from ..markers import Marker
    from .volumes import volume_geometry

    uids = (volume_node.GetAttribute(INSTANCE_UIDS_ATTRIBUTE) or "").split()
    geometry = volume_geometry(volume_node)
    markers, skipped = [], []
    for line in lesion.lines:
        where = f"{sr_path}, lesion '{lesion.name}', line '{line.name}'"
        if line.n_points < 2:
            skipped.append(InputError(f"{where}: has {line.n_points} point(s); a linear measurement needs 2 end points."))
            continue
        if line.lps is not None:
            ras = (LPS_TO_RAS @ line.lps[:2].T).T
        else:
            if not uids:
                raise InputError(f"{where}: is given on a DICOM image, but volume '{volume_node.GetName()}' was not "
                                 "loaded from DICOM (no instance UIDs). Load the series through the DICOM module, or "
                                 "give the study folder.")
            if line.sop_uid not in uids:
                raise InputError(f"{where}: refers to image {line.sop_uid}, which is not a slice of volume "
                                 f"'{volume_node.GetName()}'. Select the volume the lines were measured on.")
            k = uids.index(line.sop_uid)
            ijk = np.column_stack([line.image_xy[:2] - 0.5, [k, k]])
            ras = geometry.ijk_to_ras_points(ijk)
        if np.linalg.norm(ras[1] - ras[0]) < 1e-6:
            skipped.append(InputError(f"{where}: both end points are the same point; a linear measurement needs two."))
            continue
        markers.append(Marker(ras[0], ras[1], f"{lesion.name}: {line.name}"))
    if not markers:  # a degenerate line beside valid ones is left out (as medsamkit.dicom.sr.lesion_markers)
        raise skipped[0]
    return markers


def load_sr_lines(scene, sr, volume_node, study_dir=None, file_for_instance=None) -> dict:
    """Create marker line nodes for every lesion of an SR -> {lesion name: [line node, ...]}.

    sr: file path or loaded SR node (see :func:`sr_path_of`). All lines are checked before the first
    node is created, so an error leaves the scene unchanged.
    """
    from .markups import MARKER_ATTRIBUTE, add_marker_line

    lesions = lesion_markers_on_volume(sr_path_of(sr, file_for_instance), volume_node, study_dir)
    created: dict = {}
    try:
        for name, markers in lesions:
            nodes = []
            for m in markers:
                node = add_marker_line(scene, m.start_ras, m.end_ras, m.name)
                node.SetAttribute(MARKER_ATTRIBUTE, "1")
                node.SetAttribute(LESION_ATTRIBUTE, name)
                nodes.append(node)
            created[name] = nodes
    except Exception:
        for nodes in created.values():
            for node in nodes:
                scene.RemoveNode(node)
        raise
    return created
