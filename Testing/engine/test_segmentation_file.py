"""``.seg.nrrd`` written by the engine (no slicer import) is a segmentation for slicer-core."""
from __future__ import annotations

import numpy as np
import pytest

from medsamkit.errors import InputError
from medsamkit.geometry import VolumeGeometry
from medsamkit.io import read_image
from medsamkit.segmentation_file import write_segmentation


def test_two_segments_read_back_by_slicer_core(tmp_path, test_data):
    image = read_image(test_data / "brain1.img.nii.gz")
    lesion = read_image(test_data / "brain1.seg.nii.gz").array > 0
    labels = lesion.astype(np.uint8)
    labels[3:6, 20:40, 30:60] = 2  # a second structure far from the lesion
    path = write_segmentation(labels, tmp_path / "two.seg.nrrd", image, [(1, "lesion"), (2, "box")],
                              colors=[(1, 0, 0), (0, 0, 1)])
    assert sorted(p.name for p in tmp_path.iterdir()) == ["two.seg.nrrd"]
    assert np.array_equal(read_image(path).array, labels)  # a plain NRRD for every other reader

    pytest.importorskip("slicer", reason="slicer-core not installed: Slicer read-back not checked")
    from medsamkit.mrml.context import make_context, quiet_vtk
    from medsamkit.mrml.segments import segment_array
    from medsamkit.mrml.volumes import load_volume, volume_geometry

    quiet_vtk("ERROR")
    ctx = make_context()  # keeps every logic (and the application logic they point to) alive
    node = ctx.segmentations.LoadSegmentationFromFile(str(path), False, "two")
    assert node is not None
    seg = node.GetSegmentation()
    ids = [seg.GetNthSegmentID(n) for n in range(seg.GetNumberOfSegments())]
    assert [seg.GetSegment(i).GetName() for i in ids] == ["lesion", "box"]
    assert np.allclose(seg.GetSegment(ids[1]).GetColor(), (0, 0, 1))
    # Compare voxels in Slicer's own IJK: load the label file as a labelmap with the same reader.
    ours_geometry = VolumeGeometry.from_image(image)
    reference = load_volume(ctx, test_data / "brain1.img.nii.gz", "brain")
    # Slicer's NIfTI reader may order k differently from SimpleITK's (same physical grid), so map every
    # voxel Slicer holds (exported on the reference's grid) through RAS into our grid instead of comparing indices.
    slicer_geometry = volume_geometry(reference)
    for n, seg_id in enumerate(ids, start=1):
        ours = segment_array(ctx, node, seg_id, reference) > 0
        kji = np.argwhere(ours)
        ras = slicer_geometry.ijk_to_ras_points(kji[:, ::-1])
        i, j, k = np.rint(ours_geometry.ras_to_ijk_points(ras)).astype(int).T
        assert ours.sum() == (labels == n).sum()
        assert np.all(labels[k, j, i] == n)


def test_bad_segmentation_outputs(tmp_path, test_data):
    image = read_image(test_data / "brain1.img.nii.gz")
    with pytest.raises(InputError, match=r"\.seg\.nrrd"):
        write_segmentation(np.zeros(image.array.shape, np.uint8), tmp_path / "x.nrrd", image)
    with pytest.raises(InputError, match="does not match"):
        write_segmentation(np.zeros((2, 3, 4), np.uint8), tmp_path / "x.seg.nrrd", image)
    assert list(tmp_path.iterdir()) == []
