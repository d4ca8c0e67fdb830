"""Markups line nodes <-> the engine's markers, marker lines from clicks, and the marker run in the scene.

Files go both ways between Slicer's markups storage/logic and medsamkit.markers; the 3D run uses the
real LiteMedSAM on the dev CT (tumour on slices 10-12) through prepare -> run -> apply.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from mrml_phantoms import ellipsoid_phantom, ijk_to_ras, rotation

from medsamkit.errors import InputError
from mrml_fixtures import ctx, model_session, slicer_core  # noqa: F401  (pytest fixtures)

DATA = Path(__file__).resolve().parents[2] / "medsamkit" / "data"


def _points(node):
    out = []
    for n in range(node.GetNumberOfControlPoints()):
        p = [0.0, 0.0, 0.0]
        node.GetNthControlPointPositionWorld(n, p)
        out.append(p)
    return np.array(out)


def test_clicks_make_marker_lines(ctx):
    from medsamkit.mrml.markups import MarkerClicks, marker_line_nodes

    clicks = MarkerClicks(ctx.scene)
    assert clicks.click([1.0, 2.0, 3.0]) is None
    assert clicks.click([1.0, 2.0, 3.0]) is None  # a double click is not a line
    line = clicks.click([11.0, -2.0, 3.0])
    np.testing.assert_allclose(_points(line), [[1, 2, 3], [11, -2, 3]])
    assert clicks.click([0.0, 0.0, 0.0]) is None
    clicks.cancel()  # an abandoned start leaves nothing in the scene
    assert marker_line_nodes(ctx.scene) == [line]
    ruler = ctx.scene.AddNewNodeByClass("vtkMRMLMarkupsLineNode", "a ruler")  # not ours: not a marker
    ruler.AddControlPoint([0.0, 0.0, 0.0])
    assert marker_line_nodes(ctx.scene) == [line]


def test_line_nodes_to_markers_in_world_coordinates(ctx):
    from medsamkit.mrml.markups import add_marker_line, markers_from_line_nodes
    from medsamkit.mrml.volumes import numpy_to_matrix

    line = add_marker_line(ctx.scene, [0.0, 0.0, 0.0], [10.0, 0.0, 0.0], "long_3")
    t = np.eye(4)
    t[:3, 3] = (5.0, 6.0, 7.0)
    transform = ctx.scene.AddNewNodeByClass("vtkMRMLLinearTransformNode")
    transform.SetMatrixTransformToParent(numpy_to_matrix(t))
    line.SetAndObserveTransformNodeID(transform.GetID())
    (m,) = markers_from_line_nodes([line])
    np.testing.assert_allclose([m.start_ras, m.end_ras], [[5, 6, 7], [15, 6, 7]])
    assert m.name == "long_3"
    half = ctx.scene.AddNewNodeByClass("vtkMRMLMarkupsLineNode", "half")
    half.AddControlPoint([0.0, 0.0, 0.0])
    with pytest.raises(InputError, match="'half' has 1 points"):
        markers_from_line_nodes([half])


def test_files_round_trip_between_slicer_and_the_engine(ctx, tmp_path):
    from medsamkit.markers import Marker, read_markers, write_markers
    from medsamkit.mrml.markups import MARKER_ATTRIBUTE, add_marker_line, load_marker_file, markers_from_line_nodes

    # Slicer writes (storage node, LPS on disk) -> the engine reads RAS.
    line = add_marker_line(ctx.scene, [1.5, -2.0, 30.0], [9.0, 4.0, 30.0], "axis")
    storage = line.CreateDefaultStorageNode()
    ctx.scene.AddNode(storage)
    storage.SetFileName(str(tmp_path / "one.mrk.json"))
    assert storage.WriteData(line) == 1
    (m,) = read_markers(tmp_path / "one.mrk.json")
    np.testing.assert_allclose([m.start_ras, m.end_ras], _points(line), atol=1e-9)
    # The engine writes several lines in one file -> Slicer's markups logic loads one node each.
    markers = [Marker([0, 0, 5], [4, 3, 5], "long_1"), Marker([1, 3, 5], [3, 0, 5], "short_1"),
               Marker([0, 0, 10], [6, 1, 10], "long_2")]
    write_markers(markers, tmp_path / "three.mrk.json")
    nodes = load_marker_file(ctx, tmp_path / "three.mrk.json")
    assert len(nodes) == 3  # (node names: Slicer takes the file name; the engine's file has no "name" key)
    assert all(n.GetAttribute(MARKER_ATTRIBUTE) == "1" for n in nodes)
    for a, b in zip(markers_from_line_nodes(nodes), markers):
        np.testing.assert_allclose([a.start_ras, a.end_ras], [b.start_ras, b.end_ras], atol=1e-9)
    # A plain JSON list goes through the engine's reader.
    write_markers(markers[:1], tmp_path / "plain.json")
    (node,) = load_marker_file(ctx, tmp_path / "plain.json")
    np.testing.assert_allclose(_points(node), [[0, 0, 5], [4, 3, 5]])
    with pytest.raises(InputError, match="not found"):
        load_marker_file(ctx, tmp_path / "missing.mrk.json")


def test_plan_from_scene_lines_and_box_display(ctx):
    """Simulated reader lines on an oblique phantom, as scene nodes -> boxes covering the true section."""
    from medsamkit.mrml.markups import line_nodes_from_markers, plan_from_line_nodes, show_plan_boxes
    from mrml_fixtures import add_volume_from_array
    from medsamkit.mrml.volumes import volume_geometry
    from medsamkit.simulated_reader import simulate_markers

    vol, label = ellipsoid_phantom()
    node = add_volume_from_array(ctx.scene, vol, ijk_to_ras(rotation(30, 15), (0.9, 0.7, 2.0), (3, -8, 12)), "obl")
    g = volume_geometry(node)
    lines = line_nodes_from_markers(ctx.scene, simulate_markers(label, g, axis=0, every=4))
    plan = plan_from_line_nodes(lines, g, axis=0)
    assert plan.marked[0] == 11 and plan.marked[-1] == 29 and sorted(plan.boxes) == list(range(11, 30))
    for k in plan.marked:  # (in between, boxes are interpolated linearly and may clip a convex section)
        box = plan.boxes[k]
        ys, xs = np.nonzero(label[k])
        assert box[0] <= xs.min() and box[1] <= ys.min() and box[2] >= xs.max() and box[3] >= ys.max(), k
    model = show_plan_boxes(ctx.scene, plan, g)
    poly = model.GetPolyData()
    assert poly.GetNumberOfPoints() == 8 * len(plan.boxes) and poly.GetNumberOfPolys() == 6 * len(plan.boxes)
    pts = np.array([poly.GetPoint(n) for n in range(8)])  # the first slab: slice 11 +/- half a voxel
    ijk = g.ras_to_ijk_points(pts)
    np.testing.assert_allclose(np.sort(ijk[:, 2]), [10.5] * 4 + [11.5] * 4, atol=1e-4)  # vtkPoints: float32
    np.testing.assert_allclose([ijk[:, 0].min(), ijk[:, 1].min()], plan.boxes[11][:2], atol=1e-4)


def test_markers_run_in_the_scene_on_the_dev_ct(ctx, model_session, tmp_path):
    """Reader lines on slices 10 and 12 -> interpolated boxes -> 3D segment, as the marker panel runs it."""
    from medsamkit.io import read_image
    from medsamkit.geometry import VolumeGeometry
    from medsamkit.mrml.interactive import apply_result, prepare_volume_request, run_request
    from medsamkit.mrml.markups import line_nodes_from_markers, plan_from_line_nodes
    from medsamkit.mrml.segments import EditorLogicTarget, new_segmentation, segment_array
    from medsamkit.mrml.volumes import load_volume, volume_geometry
    from medsamkit.simulated_reader import simulate_markers

    ref = read_image(DATA / "sample_lung_ct.label.nii.gz")
    label = ref.array > 0
    node = load_volume(ctx, DATA / "sample_lung_ct.nii.gz")
    lines = line_nodes_from_markers(ctx.scene, simulate_markers(label, VolumeGeometry.from_image(ref), 0, slices=[10, 12]))
    plan = plan_from_line_nodes(lines, volume_geometry(node))
    assert sorted(plan.boxes) == [10, 11, 12] and plan.marked == [10, 12]
    seg, sid = new_segmentation(ctx, node)
    outside = np.zeros(label.shape, np.uint8)
    outside[2, 50:60, 50:60] = 1  # something the user drew elsewhere: a 3D run must not erase it
    from medsamkit.mrml.segments import set_segment_from_array

    set_segment_from_array(seg, sid, outside, node)
    request = prepare_volume_request(node, seg, "markers", window="lung", plan=plan)
    result = run_request(model_session, request)
    apply_result(EditorLogicTarget(ctx, seg, node, sid), result, "replace")
    written = segment_array(ctx, seg, sid, node)
    assert np.array_equal(written[2], outside[2])
    tumour = written.astype(bool)
    tumour[2] = False
    d = 2 * (tumour & label).sum() / (tumour.sum() + label.sum())
    assert d > 0.75, d  # measured 0.820 (3D, slices 10-12, lung window)
