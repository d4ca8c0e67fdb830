"""Markups line nodes <-> the engine's markers (:mod:`medsamkit.markers`), and marker lines from clicks.

The sparse-marker workflow of the MedSAM reader study: a reader draws a lesion's long and short axes
as line markups every few slices; :func:`plan_from_line_nodes` turns them into one box per slice
(interpolated in between, :func:`medsamkit.markers.boxes_from_markers`) and the engine segments each
slice with its box.

Positions: line nodes store control points in their own frame; everything here uses **world RAS**
(``GetNthControlPointPositionWorld``), the frame of slice views and of :func:`volume_geometry`.
On disk ``.mrk.json`` is LPS; Slicer's markups logic converts (see :func:`load_marker_file`).

Marker lines made by this module carry the node attribute ``MedSAM.Marker`` = "1", so the panel finds
"its" lines without taking every ruler in the scene.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from ..errors import InputError

MARKER_ATTRIBUTE = "MedSAM.Marker"
LINE_CLASS = "vtkMRMLMarkupsLineNode"
MARKER_COLOR = (1.0, 0.85, 0.1)


def markers_from_line_nodes(nodes) -> list:
    """Line nodes -> list of :class:`medsamkit.markers.Marker` (world RAS mm). Incomplete lines are errors."""
    from ..markers import Marker

    markers = []
    for node in nodes:
        if node.GetNumberOfControlPoints() != 2:
            raise InputError(f"Line '{node.GetName()}' has {node.GetNumberOfControlPoints()} points; a marker "
                             "needs both ends. Finish or delete it.")
        ends = []
        for n in range(2):
            p = [0.0, 0.0, 0.0]
            node.GetNthControlPointPositionWorld(n, p)
            ends.append(np.array(p, dtype=float))
        markers.append(Marker(ends[0], ends[1], node.GetName()))
    return markers


def add_marker_line(scene, start_ras, end_ras, name: str | None = None):
    """A new marker line node from two world RAS points (mm); tagged with :data:`MARKER_ATTRIBUTE`."""
    node = scene.AddNewNodeByClass(LINE_CLASS, name or scene.GenerateUniqueName("MedSAM axis"))
    node.CreateDefaultDisplayNodes()
    node.SetAttribute(MARKER_ATTRIBUTE, "1")
    display = node.GetDisplayNode()
    if display is not None:
        display.SetSelectedColor(*MARKER_COLOR)
    for p in (start_ras, end_ras):
        if node.AddControlPointWorld(np.asarray(p, dtype=float).tolist()) < 0:
            scene.RemoveNode(node)
            raise InputError("Could not add a point to the marker line.")
    return node


def line_nodes_from_markers(scene, markers) -> list:
    """Create one marker line node per :class:`Marker` (e.g. read from a file by the engine)."""
    return [add_marker_line(scene, m.start_ras, m.end_ras, m.name or None) for m in markers]


def marker_line_nodes(scene) -> list:
    """The scene's marker lines (tagged by this module), in scene order."""
    nodes = []
    for n in range(scene.GetNumberOfNodesByClass(LINE_CLASS)):
        node = scene.GetNthNodeByClass(n, LINE_CLASS)
        if node.GetAttribute(MARKER_ATTRIBUTE) == "1":
            nodes.append(node)
    return nodes


class MarkerClicks:
    """Turns a reader's clicks into marker lines: the first click starts a line, the second ends it.

    ``click(ras)`` returns the finished line node on every second click, else None. ``cancel()`` drops
    a started line. The start point is kept in Python (not a half-built node), so an abandoned line
    leaves nothing in the scene.
    """

    def __init__(self, scene, name_prefix: str = "MedSAM axis"):
        self.scene = scene
        self.name_prefix = name_prefix
        self.start: np.ndarray | None = None

    def click(self, ras):
        p = np.asarray(ras, dtype=float).reshape(3)
        if self.start is None:
            self.start = p
            return None
        if np.linalg.norm(p - self.start) < 1e-6:
            return None  # a double click on the same spot is not a line; wait for the real end point
        start, self.start = self.start, None
        return add_marker_line(self.scene, start, p, self.scene.GenerateUniqueName(self.name_prefix))

    def cancel(self) -> None:
        self.start = None


def load_marker_file(ctx, path: "str | Path") -> list:
    """Load a markers file into the scene -> the line nodes it created.

    ``.mrk.json`` goes through Slicer's markups logic (``LoadMarkups``; a file holding several line
    markups gives several nodes). A plain JSON list (see :mod:`medsamkit.markers`) is read by the
    engine and turned into nodes. Raises InputError when the file is missing or holds no line.
    """
    path = Path(path)
    if not path.is_file():
        raise InputError(f"Markers file not found: {path}")
    if path.name.lower().endswith(".mrk.json"):
        before = {ctx.scene.GetNthNodeByClass(n, LINE_CLASS).GetID()
                  for n in range(ctx.scene.GetNumberOfNodesByClass(LINE_CLASS))}
        node_id = ctx.markups.LoadMarkups(str(path), path.name[: -len(".mrk.json")])
        nodes = [ctx.scene.GetNthNodeByClass(n, LINE_CLASS) for n in range(ctx.scene.GetNumberOfNodesByClass(LINE_CLASS))]
        nodes = [node for node in nodes if node.GetID() not in before]
        if not node_id and not nodes:
            raise InputError(f"Slicer could not read markers from {path}; is it a markups .mrk.json file?")
    else:
        from ..markers import read_markers

        nodes = line_nodes_from_markers(ctx.scene, read_markers(path))
    if not nodes:
        raise InputError(f"{path} holds no line markups; draw the lesion axes with the Line tool and save them.")
    for node in nodes:
        node.SetAttribute(MARKER_ATTRIBUTE, "1")
    return nodes


def plan_from_line_nodes(nodes, geometry, axis: int | None = None, margin_mm: float | None = None):
    """Marker line nodes -> :class:`medsamkit.markers.BoxPlan` on a volume's geometry (world RAS)."""
    from ..markers import DEFAULT_MARGIN_MM, boxes_from_markers

    return boxes_from_markers(markers_from_line_nodes(nodes), geometry, axis=axis,
                              margin_mm=DEFAULT_MARGIN_MM if margin_mm is None else margin_mm)


def plan_boxes_polydata(plan, geometry):
    """The plan's boxes as thin slabs (one voxel thick) in world RAS, as a vtkPolyData.

    Shown as a model node, each slab's intersection with a slice view is that slice's box outline, so
    the reader sees the interpolated boxes on every slice without one node per slice.
    """
    from vtkmodules.vtkCommonCore import vtkPoints
    from vtkmodules.vtkCommonDataModel import vtkCellArray, vtkPolyData

    from ..geometry import SLICE_INDEX_IJK, SLICE_XY_IJK

    points, polys = vtkPoints(), vtkCellArray()
    ax_x, ax_y = SLICE_XY_IJK[plan.axis]
    comp = SLICE_INDEX_IJK[plan.axis]
    faces = ((0, 1, 3, 2), (4, 6, 7, 5), (0, 4, 5, 1), (2, 3, 7, 6), (0, 2, 6, 4), (1, 5, 7, 3))
    for k, box in sorted(plan.boxes.items()):
        corners = []
        for dz in (-0.5, 0.5):
            for y in (box[1], box[3]):
                for x in (box[0], box[2]):
                    ijk = [0.0, 0.0, 0.0]
                    ijk[ax_x], ijk[ax_y], ijk[comp] = x, y, k + dz
                    corners.append(ijk)
        # corner order: index = 4*dz + 2*y + x  (x fastest)
        ras = geometry.ijk_to_ras_points(np.array(corners))
        base = points.GetNumberOfPoints()
        for p in ras:
            points.InsertNextPoint(*p)
        for f in faces:
            polys.InsertNextCell(4, [base + i for i in f])
    poly = vtkPolyData()
    poly.SetPoints(points)
    poly.SetPolys(polys)
    return poly


def show_plan_boxes(scene, plan, geometry, node=None):
    """Create or update a model node showing the plan's boxes (see :func:`plan_boxes_polydata`)."""
    if node is None:
        node = scene.AddNewNodeByClass("vtkMRMLModelNode", scene.GenerateUniqueName("MedSAM boxes"))
        node.CreateDefaultDisplayNodes()
        display = node.GetDisplayNode()
        display.SetColor(*MARKER_COLOR)
        display.SetOpacity(0.15)
        display.SetVisibility2D(True)
        display.SetSliceIntersectionThickness(2)
    node.SetAndObservePolyData(plan_boxes_polydata(plan, geometry))
    return node
