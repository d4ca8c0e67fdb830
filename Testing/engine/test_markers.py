"""Markers -> boxes (no model): simulated reader on an oblique ellipsoid, axis choice,
interpolation, clear errors, and the Slicer .mrk.json format (our writer, a hand-written file,
and slicer-core's own markups logic reading and writing)."""
from __future__ import annotations

import json

import numpy as np
import pytest
from ellipsoid_phantom import make_phantom

from medsamkit.errors import InputError
from medsamkit.geometry import VolumeGeometry
from medsamkit.markers import (DEFAULT_MARGIN_MM, BoxPlan, Marker, boxes_from_markers, choose_axis, read_markers,
                               write_markers)
from medsamkit.simulated_reader import axis_lines_2d, marked_slices, simulate_markers


@pytest.fixture(scope="module")
def phantom():
    return make_phantom()


def test_reader_every_5_boxes_contain_every_cross_section(phantom):
    _, label, geometry = phantom
    markers = simulate_markers(label, geometry, axis=0, every=5)
    present = [int(k) for k in np.nonzero(label.any(axis=(1, 2)))[0]]
    assert len(present) >= 12  # a lesion over many slices, so most boxes are interpolated
    plan = boxes_from_markers(markers, geometry)  # axis chosen from the lines
    assert isinstance(plan, BoxPlan) and plan.axis == 0 and not plan.warnings
    assert plan.marked == [present[0], present[0] + 5, present[0] + 10, present[-1]]
    assert plan.slices == list(range(present[0], present[-1] + 1))
    for k in present:
        ys, xs = np.nonzero(label[k])
        x0, y0, x1, y1 = plan.boxes[k]
        # Every lesion pixel (a unit square around its centre) overlaps the box. Linear interpolation
        # under-covers a convex lesion next to its tip: measured worst case 0.4 px (slice 7) at 3 mm.
        assert x0 <= xs.min() + 0.5 and y0 <= ys.min() + 0.5 and x1 >= xs.max() - 0.5 and y1 >= ys.max() - 0.5, k
        # ...and not absurdly loose: within the tight box grown by the margin plus 3 pixels a side
        grow = DEFAULT_MARGIN_MM / min(geometry.spacing[:2]) + 3
        assert x0 >= xs.min() - grow and x1 <= xs.max() + grow and y0 >= ys.min() - grow and y1 <= ys.max() + grow


def test_reader_lines_are_ras_on_their_slice_and_perpendicular(phantom):
    _, label, geometry = phantom
    markers = simulate_markers(label, geometry, axis=0, every=5)
    assert len(markers) == 2 * len(marked_slices(label, 0, 5))
    for long, short in zip(markers[::2], markers[1::2]):
        k = int(long.name.split("_")[1])
        for m in (long, short):
            ijk = geometry.ras_to_ijk_points([m.start_ras, m.end_ras])
            assert np.allclose(ijk[:, 2], k, atol=1e-6)  # drawn on slice k
        u, v = long.end_ras - long.start_ras, short.end_ras - short.start_ras
        assert long.length_mm >= short.length_mm
        if short.length_mm > 3:  # perpendicular up to one pixel's angle
            assert abs(np.dot(u, v)) / (np.linalg.norm(u) * np.linalg.norm(v)) < 0.12


def test_axis_lines_2d_on_an_anisotropic_rectangle():
    mask = np.zeros((40, 60), bool)
    mask[10:20, 5:45] = True  # 40 x 10 pixels, but y pixels are 3x taller: 40 x 30 mm
    long, short = axis_lines_2d(mask, spacing_xy=(1.0, 3.0))
    assert np.linalg.norm((long[1] - long[0]) * [1, 3]) == pytest.approx(np.hypot(39, 27), abs=0.01)
    assert np.linalg.norm((short[1] - short[0]) * [1, 3]) > 20


@pytest.mark.parametrize("axis", [1, 2])
def test_axis_is_chosen_from_the_lines(phantom, axis):
    _, label, geometry = phantom
    markers = simulate_markers(label, geometry, axis=axis, every=4)
    assert choose_axis(markers, geometry) == axis
    assert boxes_from_markers(markers, geometry).axis == axis


def _line_on_slice(geometry, k, xy0, xy1, name, axis=0):
    ras = geometry.ijk_to_ras_points(geometry.slice_to_ijk([xy0, xy1], k, axis))
    return Marker(ras[0], ras[1], name)


def test_boxes_interpolate_linearly_between_marked_slices(phantom):
    _, _, g = phantom
    markers = [_line_on_slice(g, 4, (10, 20), (30, 20), "a"), _line_on_slice(g, 4, (20, 15), (20, 25), "b"),
               _line_on_slice(g, 8, (20, 30), (40, 30), "c")]
    plan = boxes_from_markers(markers, g, axis=0, margin_mm=0.0)
    assert plan.marked == [4, 8] and plan.slices == [4, 5, 6, 7, 8]
    assert np.allclose(plan.boxes[4], [10, 15, 30, 25])
    assert np.allclose(plan.boxes[8], [20, 30, 40, 30])
    assert np.allclose(plan.boxes[6], (plan.boxes[4] + plan.boxes[8]) / 2)
    with_margin = boxes_from_markers(markers, g, axis=0, margin_mm=1.8)
    assert np.allclose(with_margin.boxes[4], [10 - 2, 15 - 2.25, 30 + 2, 25 + 2.25])  # 0.9 x 0.8 mm pixels


def test_single_marked_slice_gives_that_slice_with_a_warning(phantom):
    _, _, g = phantom
    plan = boxes_from_markers([_line_on_slice(g, 9, (10, 20), (30, 24), "only")], g, axis=0)
    assert plan.slices == [9] and plan.marked == [9]
    assert len(plan.warnings) == 1 and "Only slice 9" in plan.warnings[0]


def test_bad_markers_raise_clear_errors(phantom):
    _, _, g = phantom
    inside = _line_on_slice(g, 9, (10, 20), (30, 24), "ok")
    with pytest.raises(InputError, match="No line markers"):
        boxes_from_markers([], g)
    shifted = Marker(inside.start_ras + [0, 0, 300.0], inside.end_ras + [0, 0, 300.0], "far")
    with pytest.raises(InputError, match=r"'far'.*outside the volume.*another volume"):
        boxes_from_markers([inside, shifted], g)
    crossing = Marker(inside.start_ras, g.ijk_to_ras_points([[30, 24, 14]])[0], "slanted")
    with pytest.raises(InputError, match=r"'slanted' crosses slices 9.0 to 14.0"):
        boxes_from_markers([inside, crossing], g, axis=0)
    with pytest.raises(InputError, match="margin"):
        boxes_from_markers([inside], g, margin_mm=-1)
    with pytest.raises(InputError, match="finite"):
        Marker([0, 0, np.nan], [1, 1, 1])


def test_mrk_json_and_plain_json_round_trip(tmp_path):
    markers = [Marker([1.5, -2.0, 30.0], [11.5, 4.0, 30.0], "long_3"), Marker([5.0, -6.0, 30.0], [7.0, 8.0, 30.0], "short_3")]
    for name in ("lines.mrk.json", "lines.json"):
        path = write_markers(markers, tmp_path / name)
        back = read_markers(path)
        assert [m.name for m in back] == ["long_3", "short_3"]
        for a, b in zip(markers, back):
            assert np.allclose(a.start_ras, b.start_ras) and np.allclose(a.end_ras, b.end_ras)
    doc = json.loads((tmp_path / "lines.mrk.json").read_text(encoding="utf-8"))
    assert [m["coordinateSystem"] for m in doc["markups"]] == ["LPS", "LPS"]
    assert doc["markups"][0]["controlPoints"][0]["position"] == [-1.5, 2.0, 30.0]  # RAS -> LPS on disk
    assert sorted(p.name for p in tmp_path.iterdir()) == ["lines.json", "lines.mrk.json"]  # no temporary files left


SLICER_STYLE = """{
"@schema": "https://raw.githubusercontent.com/slicer/slicer/master/Modules/Loadable/Markups/Resources/Schema/markups-schema-v1.0.3.json#",
"markups": [
  {"type": "Line", "coordinateSystem": "LPS", "coordinateUnits": "mm", "locked": false, "labelFormat": "%N-%d",
   "controlPoints": [
     {"id": "1", "label": "L-1", "position": [-12.5, 40.25, -7.0], "orientation": [-1.0, -0.0, -0.0, -0.0, -1.0, -0.0, 0.0, 0.0, 1.0], "positionStatus": "defined"},
     {"id": "2", "label": "L-2", "position": [-30.0, 52.0, -7.0], "positionStatus": "defined"}],
   "measurements": [{"name": "length", "enabled": true, "value": 21.08, "units": "mm"}],
   "display": {"visibility": true, "color": [0.4, 1.0, 1.0]}},
  {"type": "Line", "coordinateSystem": "RAS", "coordinateUnits": "mm",
   "controlPoints": [
     {"id": "1", "label": "S-1", "position": [20.0, -48.0, -7.0], "positionStatus": "defined"},
     {"id": "2", "label": "S-2", "position": [22.0, -44.0, -7.0], "positionStatus": "defined"},
     {"id": "3", "label": "S-3", "position": [0.0, 0.0, 0.0], "positionStatus": "undefined"}]}
]}"""


def test_hand_written_slicer_file_with_two_line_nodes(tmp_path):
    path = tmp_path / "axes.mrk.json"
    path.write_text(SLICER_STYLE)
    long, short = read_markers(path)
    assert long.name == "L" and short.name == "S"
    assert np.allclose(long.start_ras, [12.5, -40.25, -7.0]) and np.allclose(long.end_ras, [30.0, -52.0, -7.0])
    assert np.allclose(short.start_ras, [20.0, -48.0, -7.0]) and np.allclose(short.end_ras, [22.0, -44.0, -7.0])


def test_non_line_markups_and_empty_files_are_errors(tmp_path):
    doc = json.loads(SLICER_STYLE)
    doc["markups"][1]["type"] = "Fiducial"
    (tmp_path / "mixed.mrk.json").write_text(json.dumps(doc))
    with pytest.raises(InputError, match="Fiducial, not a Line"):
        read_markers(tmp_path / "mixed.mrk.json")
    (tmp_path / "empty.mrk.json").write_text('{"markups": []}')
    with pytest.raises(InputError, match="holds no line markers"):
        read_markers(tmp_path / "empty.mrk.json")
    doc["markups"] = doc["markups"][:1]
    doc["markups"][0]["controlPoints"] = doc["markups"][0]["controlPoints"][:1]
    (tmp_path / "half.mrk.json").write_text(json.dumps(doc))
    with pytest.raises(InputError, match="1 placed points"):
        read_markers(tmp_path / "half.mrk.json")
    (tmp_path / "bad.json").write_text("[[1, 2, 3]]")
    with pytest.raises(InputError, match="entry 0 is not a line"):
        read_markers(tmp_path / "bad.json")
    with pytest.raises(InputError, match="not found"):
        read_markers(tmp_path / "missing.mrk.json")


@pytest.fixture(scope="module")
def markups_scene():
    slicer = pytest.importorskip("slicer", reason="slicer-core not installed (pip install slicer-core)")
    from medsamkit.mrml.context import make_context, quiet_vtk

    quiet_vtk("ERROR")
    # The context keeps the application logic alive: the markups logic holds only a raw pointer
    # to it, and a fixture that let it be garbage-collected crashed LoadMarkups (segfault in CI).
    ctx = make_context()
    yield slicer, ctx.scene, ctx.markups, ctx


def test_slicer_core_loads_our_file_and_we_read_slicers(tmp_path, markups_scene):
    slicer, scene, logic, _ctx = markups_scene
    markers = [Marker([1.5, -2.0, 30.0], [11.5, 4.0, 30.0], "long"), Marker([5.0, -6.0, 31.0], [7.0, 8.0, 31.0], "short")]
    ours = write_markers(markers, tmp_path / "ours.mrk.json")
    before = scene.GetNumberOfNodesByClass("vtkMRMLMarkupsLineNode")
    assert logic.LoadMarkups(str(ours), "ours")
    nodes = [scene.GetNthNodeByClass(n, "vtkMRMLMarkupsLineNode")
             for n in range(before, scene.GetNumberOfNodesByClass("vtkMRMLMarkupsLineNode"))]
    assert len(nodes) == 2  # one line node per markup in the file
    for node, m in zip(nodes, markers):
        pts = slicer.util.arrayFromMarkupsControlPoints(node)
        assert np.allclose(pts, [m.start_ras, m.end_ras], atol=1e-6)
    # A file written by Slicer's own storage node reads back as the same RAS points.
    line = scene.AddNewNodeByClass("vtkMRMLMarkupsLineNode", "drawn")
    line.CreateDefaultDisplayNodes()
    line.AddControlPoint([-3.0, 4.5, 12.0])
    line.AddControlPoint([6.0, -1.0, 12.0])
    storage = line.CreateDefaultStorageNode()
    scene.AddNode(storage)
    storage.SetFileName(str(tmp_path / "slicer.mrk.json"))
    assert storage.WriteData(line) == 1
    (m,) = read_markers(tmp_path / "slicer.mrk.json")
    assert np.allclose(m.start_ras, [-3.0, 4.5, 12.0]) and np.allclose(m.end_ras, [6.0, -1.0, 12.0])
    assert m.name == "drawn"


def test_geometry_round_trip_used_by_markers(phantom):
    _, _, g = phantom
    assert isinstance(g, VolumeGeometry)
    pts = np.array([[1.0, 2.0, 3.0], [40.0, 5.0, 20.0]])
    assert np.allclose(g.ras_to_ijk_points(g.ijk_to_ras_points(pts)), pts)
