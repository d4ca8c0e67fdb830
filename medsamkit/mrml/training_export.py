"""Scene volumes + segmentations -> a training dataset folder (shared data format). No Qt: slicer-core only.

For each (volume node, segmentation node, segment IDs) item, writes ``<case>.img.nii.gz`` (the
volume through Slicer's own storage node: LPS on disk, voxels unchanged) and ``<case>.seg.nii.gz``
(the chosen segments rasterised on exactly the volume's grid), plus one ``manifest.json``::

    {"name": ..., "format_version": 1, "source": "3D Slicer scene",
     "cases": [{"case_id", "kind": "3d", "image", "mask", "modality", "window",
                "labels": {"1": "liver", ...}, "labels_present": [1, ...]}]}

Label values are assigned by segment *name* across all items (first seen -> 1, next -> 2, ...),
so "liver" is the same label in every case. Where segments overlap, the later one in that order
wins the voxel (as in the JSRT masks); train overlapping structures from separate exports if
that matters. Every file is written through :func:`medsamkit.io.atomic_output` (a temporary file renamed
into place) and manifest.json last, so a failed export never looks like a usable dataset.
"""
from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np

from ..io import atomic_output

FORMAT_NOTE = "exported from a 3D Slicer scene by the MedSAMTraining module"


def _safe_name(text: str, taken: set) -> str:
    base = re.sub(r"[^A-Za-z0-9_.-]+", "_", text).strip("._") or "case"
    name, n = base, 1
    while name.lower() in taken:
        n += 1
        name = f"{base}_{n}"
    taken.add(name.lower())
    return name


def segment_names(segmentation_node, segment_ids=None) -> list[tuple[str, str]]:
    """[(segment ID, name)] of a segmentation node (all segments when ``segment_ids`` is None)."""
    seg = segmentation_node.GetSegmentation()
    ids = list(segment_ids) if segment_ids else [seg.GetNthSegmentID(i) for i in range(seg.GetNumberOfSegments())]
    out = []
    for sid in ids:
        segment = seg.GetSegment(sid)
        if segment is None:
            raise ValueError(f"Segment '{sid}' is not in segmentation '{segmentation_node.GetName()}'.")
        out.append((sid, segment.GetName()))
    return out


def export_dataset(items, out_dir, segmentations_logic, modality: str | None = None, window: str | None = None,
                   name: str = "MedSAM training data") -> Path:
    """Write the items as a dataset folder; returns the path of its manifest.json.

    items: iterable of (vtkMRMLScalarVolumeNode, vtkMRMLSegmentationNode, segment IDs or None).
    segmentations_logic: vtkSlicerSegmentationsModuleLogic of the scene (slicer.modules.segmentations.logic()).
    Raises ValueError with a message for the user when an item has no voxels in its segments.
    """
    import slicer

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    labels: dict[str, int] = {}          # segment name (lower case) -> label value
    display: dict[int, str] = {}
    cases, taken = [], set()
    for volume, segmentation, segment_ids in items:
        scene = volume.GetScene()
        case_id = _safe_name(volume.GetName(), taken)
        image_path = out / f"{case_id}.img.nii.gz"
        mask_path = out / f"{case_id}.seg.nii.gz"
        _write_volume(scene, volume, image_path)
        label = np.zeros(slicer.util.arrayFromVolume(volume).shape, dtype=np.uint8)
        present = []
        for sid, seg_name in segment_names(segmentation, segment_ids):
            key = seg_name.strip().lower()
            if key not in labels:
                labels[key] = len(labels) + 1
                display[labels[key]] = seg_name
            mask = _segment_array(scene, segmentation, sid, volume, segmentations_logic)
            if mask.any():
                label[mask] = labels[key]
                present.append(labels[key])
        if not present:
            image_path.unlink(missing_ok=True)
            raise ValueError(f"The segments chosen for '{volume.GetName()}' are empty inside this volume; paint them "
                             "first or choose other segments.")
        _write_label(label, image_path, mask_path)
        cases.append({"case_id": case_id, "kind": "3d", "image": image_path.name, "mask": mask_path.name,
                      "modality": modality, "window": window,
                      "labels": {str(v): display[v] for v in sorted(set(present))},
                      "labels_present": sorted(set(int(v) for v in np.unique(label) if v))})
    manifest = {"name": name, "format_version": 1, "source": FORMAT_NOTE,
                "labels": {str(v): n for v, n in sorted(display.items())}, "cases": cases}
    with atomic_output(out / "manifest.json") as tmp:
        Path(tmp).write_text(json.dumps(manifest, indent=1), encoding="utf-8")
    return out / "manifest.json"


def _write_volume(scene, volume, path: Path) -> None:
    import slicer

    storage = slicer.vtkMRMLVolumeArchetypeStorageNode()
    scene.AddNode(storage)
    try:
        with atomic_output(path) as tmp:
            storage.SetFileName(str(tmp))
            storage.SetUseCompression(True)
            if not storage.WriteData(volume):
                raise ValueError(f"Could not write volume '{volume.GetName()}' to {path}.")
    finally:
        scene.RemoveNode(storage)


def _segment_array(scene, segmentation, segment_id, volume, segmentations_logic) -> np.ndarray:
    """One segment rasterised on the volume's grid -> (K, J, I) bool."""
    import slicer

    labelmap = scene.AddNewNodeByClass("vtkMRMLLabelMapVolumeNode")
    try:
        if not segmentations_logic.ExportSegmentsToLabelmapNode(segmentation, [segment_id], labelmap, volume):
            raise ValueError(f"Segment '{segment_id}' of '{segmentation.GetName()}' could not be exported.")
        return slicer.util.arrayFromVolume(labelmap) > 0
    finally:
        scene.RemoveNode(labelmap)


def _write_label(label: np.ndarray, image_path: Path, mask_path: Path) -> None:
    """Write ``label`` with exactly the geometry of the image file just written."""
    import SimpleITK as sitk

    reader = sitk.ImageFileReader()
    reader.SetFileName(str(image_path))
    reader.ReadImageInformation()
    img = sitk.GetImageFromArray(label)
    img.SetSpacing(reader.GetSpacing())
    img.SetOrigin(reader.GetOrigin())
    img.SetDirection(reader.GetDirection())
    with atomic_output(mask_path) as tmp:
        sitk.WriteImage(img, str(tmp), True)
