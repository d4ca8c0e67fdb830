"""Sparse tumour-axis markers -> one box per slice: the MedSAM reader-study workflow.

A *marker* is a line segment between two 3D points in RAS millimetres, as a Slicer markups line
node stores it (the long or the short axis of a lesion, drawn on one slice). Readers draw the axes
every few slices; :func:`boxes_from_markers` groups the lines per slice, turns each marked
slice's lines into a box and interpolates the boxes linearly over the slices in between.

Files (:func:`read_markers` / :func:`write_markers`):

- ``.mrk.json``: Slicer's markups JSON (schema markups-schema-v1.0.x), as Slicer saves line nodes:
  ``{"markups": [{"type": "Line", "coordinateSystem": "LPS", "controlPoints": [{"position": [...]},
  ...]}, ...]}``. Positions are LPS on disk (``"RAS"`` files are accepted too) and RAS in memory.
  One file may hold several line markups; Slicer's markups logic loads each as its own node.
- ``.json`` holding a plain list, for scripting: ``[{"name": "L1", "start": [r, a, s], "end":
  [r, a, s]}, ...]`` or ``[[[r, a, s], [r, a, s]], ...]``, always RAS mm.

Box rule (per marked slice, in that slice's XY pixels, see geometry.py): the extent of all line
endpoints, united - when the slice holds two or more lines - with the bounding box of the ellipse
whose conjugate semi-axes are the longest line and the longest other line, centred at the
midpoint of the longest line. The endpoints alone under-cover an oblique lesion (a 2:1 ellipse at
45 degrees: its axis endpoints span 0.71 of its bounding box side, the ellipse box spans all of
it); then ``margin_mm`` is added on every side and the box clipped to the slice.

Design note: errors are never silent. A line not lying within one slice, a line with an endpoint
outside the volume, or a file without lines raises :class:`~medsamkit.errors.InputError` naming the
line and what to do; a single marked slice gives a plan for that slice only, with a warning.
"""
from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .errors import InputError
from .geometry import LPS_TO_RAS, SLICE_INDEX_IJK, VolumeGeometry
from .io import atomic_output

#: Default margin added around each marked slice's box (mm). Measured with LiteMedSAM (simulated
#: reader; phantom every 5, lung1 every 5, brain1 every 2/3/5 slices), mean Dice for margins
#: 1/2/3/4/6 mm: 0.756/0.767/0.769/0.767/0.747 (benchmarks/bench_3d.py; benchmarks/RESULTS.md, 3D markers section).
DEFAULT_MARGIN_MM = 3.0
#: A line counts as "within one slice" when its endpoints differ by at most this many slices
#: along the slice axis (points placed on a slice view sit exactly on the slice centre).
IN_SLICE_TOLERANCE = 0.5
SLICER_SCHEMA = ("https://raw.githubusercontent.com/slicer/slicer/master/Modules/Loadable/Markups/"
                 "Resources/Schema/markups-schema-v1.0.3.json#")


@dataclass
class Marker:
    """One line segment: ``start_ras``/``end_ras`` are (3,) float64 RAS millimetres."""

    start_ras: np.ndarray
    end_ras: np.ndarray
    name: str = ""

    def __post_init__(self):
        for attr in ("start_ras", "end_ras"):
            try:
                value = np.asarray(getattr(self, attr), dtype=np.float64).reshape(-1)
            except (TypeError, ValueError):
                value = np.zeros(0)  # not numbers: the message below
            if value.size != 3 or not np.isfinite(value).all():
                raise InputError(f"Marker '{self.name}': {attr} must be 3 finite numbers (R, A, S mm); "
                                 f"got {str(getattr(self, attr))[:80]}.")
            setattr(self, attr, value)

    @property
    def length_mm(self) -> float:
        return float(np.linalg.norm(self.end_ras - self.start_ras))


@dataclass
class BoxPlan:
    """Boxes to segment, one per slice along numpy ``axis`` of a (K, J, I) volume.

    boxes: slice index -> (4,) float64 XYXY pixels of that slice (x = slice column, y = row; see
    geometry.SLICE_XY_IJK), sorted by slice; marked: the slices that carried reader lines (the
    others are interpolated); warnings: things the caller should show the user.
    """

    axis: int
    boxes: dict = field(default_factory=dict)
    marked: list = field(default_factory=list)
    warnings: list = field(default_factory=list)

    @property
    def slices(self) -> list[int]:
        return sorted(self.boxes)


# ----------------------------------------------------------------------------------------------
# Files
# ----------------------------------------------------------------------------------------------
def read_markers(path: "str | os.PathLike") -> list[Marker]:
    """Read line markers from a Slicer ``.mrk.json`` or a plain JSON list (see module docstring).

    Returns the markers in RAS mm, in file order. Raises InputError for a missing/unparsable file,
    markups that are not lines, lines without two defined points, or a file with no line at all.
    """
    path = Path(path)
    if not path.is_file():
        raise InputError(f"Markers file not found: {path}")
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise InputError(f"Cannot read markers from {path}: {exc}. Give a Slicer .mrk.json or a JSON list "
                         "of lines.") from exc
    if isinstance(data, dict) and "markups" in data:
        markers = _from_slicer(data, path)
    elif isinstance(data, list):
        markers = _from_plain_list(data, path)
    else:
        raise InputError(f"{path} is neither a Slicer markups file (no 'markups' key) nor a JSON list of lines.")
    if not markers:
        raise InputError(f"{path} holds no line markers. Draw the lesion's long and short axes with the "
                         "markups Line tool on the slices you want to mark, then save them.")
    return markers


def _from_slicer(data: dict, path: Path) -> list[Marker]:
    markers = []
    markups = data.get("markups") or []
    if not isinstance(markups, list):
        raise InputError(f"{path}: 'markups' must be a list of markups; got {type(markups).__name__}. Save the "
                         "lines from Slicer again (File > Save).")
    for n, markup in enumerate(markups):
        if not isinstance(markup, dict):
            raise InputError(f"{path}: markup {n} is not a JSON object (got {str(markup)[:60]}).")
        kind = str(markup.get("type", ""))
        name = str(markup.get("name") or f"{path.name.split('.')[0]}[{n}]")
        if kind != "Line":
            raise InputError(f"{path}: markup {n} ('{name}') is a {kind or 'markup of unknown type'}, not a Line. "
                             "Use the markups Line tool for tumour axes, or remove that markup from the file.")
        system = str(markup.get("coordinateSystem", "LPS")).upper()
        if system not in ("LPS", "RAS"):
            raise InputError(f"{path}: markup '{name}' uses coordinate system '{system}'; expected LPS or RAS.")
        control = markup.get("controlPoints") or []
        if not isinstance(control, list) or not all(isinstance(p, dict) for p in control):
            raise InputError(f"{path}: line '{name}' has malformed 'controlPoints' (expected a list of objects "
                             "with a 'position'). Save the lines from Slicer again.")
        points = [p for p in control if p.get("positionStatus", "defined") == "defined" and "position" in p]
        if len(points) != 2:
            raise InputError(f"{path}: line '{name}' has {len(points)} placed points; a line needs exactly 2. "
                             "Finish or delete it in Slicer and save again.")
        if not markup.get("name") and points[0].get("label"):
            name = str(points[0]["label"]).rsplit("-", 1)[0] or name
        pos = [_position(p["position"], path, name) for p in points]
        if system == "LPS":
            pos = [LPS_TO_RAS @ p for p in pos]
        markers.append(Marker(pos[0], pos[1], name))
    return markers


def _position(value, path: Path, name: str) -> np.ndarray:
    try:
        pos = np.asarray(value, dtype=np.float64).reshape(-1)
    except (TypeError, ValueError):
        pos = np.zeros(0)
    if pos.size != 3 or not np.isfinite(pos).all():
        raise InputError(f"{path}: a point of line '{name}' has position {str(value)[:60]}; a position is 3 finite "
                         "numbers (mm). Save the lines from Slicer again.")
    return pos


def _from_plain_list(data: list, path: Path) -> list[Marker]:
    markers = []
    for n, item in enumerate(data):
        try:
            if isinstance(item, dict):
                markers.append(Marker(item["start"], item["end"], str(item.get("name", f"line{n + 1}"))))
            else:
                start, end = item
                markers.append(Marker(start, end, f"line{n + 1}"))
        except (KeyError, TypeError, ValueError) as exc:
            if isinstance(exc, InputError):
                raise
            raise InputError(f"{path}: entry {n} is not a line: give {{\"start\": [R, A, S], \"end\": [R, A, S]}} "
                             f"or [[R, A, S], [R, A, S]] (RAS mm); got {str(item)[:80]}.") from exc
    return markers


def write_markers(markers: "list[Marker]", path: "str | os.PathLike") -> Path:
    """Write markers atomically: ``.mrk.json`` -> Slicer markups JSON (LPS, one Line markup per
    marker, loadable by Slicer's markups logic); any other ``.json`` -> the plain RAS list."""
    path = Path(path)
    if not markers:
        raise InputError("No markers to write.")
    if path.name.lower().endswith(".mrk.json"):
        doc = {"@schema": SLICER_SCHEMA, "markups": [_slicer_line(m) for m in markers]}
    elif path.suffix.lower() == ".json":
        doc = [{"name": m.name, "start": m.start_ras.tolist(), "end": m.end_ras.tolist()} for m in markers]
    else:
        raise InputError(f"Markers are written as .mrk.json (Slicer) or .json (plain list); got '{path.name}'.")
    with atomic_output(path) as tmp:
        Path(tmp).write_text(json.dumps(doc, indent=2), encoding="utf-8")
    return path


def _slicer_line(marker: Marker) -> dict:
    name = marker.name or "L"
    points = []
    for n, ras in enumerate((marker.start_ras, marker.end_ras), start=1):
        points.append({"id": str(n), "label": f"{name}-{n}", "description": "", "associatedNodeID": "",
                       "position": (LPS_TO_RAS @ ras).tolist(),
                       "orientation": [-1.0, -0.0, -0.0, -0.0, -1.0, -0.0, 0.0, 0.0, 1.0],
                       "selected": True, "locked": False, "visibility": True, "positionStatus": "defined"})
    return {"type": "Line", "coordinateSystem": "LPS", "coordinateUnits": "mm", "locked": False,
            "fixedNumberOfControlPoints": False, "labelFormat": "%N-%d", "lastUsedControlPointNumber": 2,
            "controlPoints": points,
            "measurements": [{"name": "length", "enabled": True, "value": marker.length_mm, "units": "mm",
                              "printFormat": "%-#4.4g%s"}]}


# ----------------------------------------------------------------------------------------------
# Lines -> boxes
# ----------------------------------------------------------------------------------------------
def choose_axis(markers: "list[Marker]", geometry: VolumeGeometry) -> int:
    """The numpy axis (0 = k, 1 = j, 2 = i) most perpendicular to the plane of the lines.

    The plane normal is the direction least represented among the lines (smallest singular vector
    of their directions, in the voxel frame scaled to mm). With a single line or parallel lines the
    normal is undetermined; then the axis with the thickest slices among those along which every
    line stays within one slice wins (a reader draws on the acquisition plane).
    """
    ijk = [geometry.ras_to_ijk_points([m.start_ras, m.end_ras]) for m in markers]
    spacing = np.asarray(geometry.spacing, dtype=float)
    dirs = np.array([(p[1] - p[0]) * spacing for p in ijk])
    dirs = dirs[np.linalg.norm(dirs, axis=1) > 1e-9]
    if len(dirs) >= 2:
        unit = dirs / np.linalg.norm(dirs, axis=1, keepdims=True)
        _, sv, vt = np.linalg.svd(unit, full_matrices=True)
        if len(sv) >= 2 and sv[1] > 0.1 * sv[0]:  # lines span a plane (not all parallel)
            return 2 - int(np.argmax(np.abs(vt[2])))  # voxel axis i/j/k -> numpy axis
    flat = [a for a in (0, 1, 2)
            if all(abs(p[1, SLICE_INDEX_IJK[a]] - p[0, SLICE_INDEX_IJK[a]]) <= IN_SLICE_TOLERANCE for p in ijk)]
    candidates = flat or [0, 1, 2]
    return max(candidates, key=lambda a: (spacing[SLICE_INDEX_IJK[a]], -a))


def boxes_from_markers(markers: "list[Marker]", geometry: VolumeGeometry, axis: int | None = None,
                       margin_mm: float = DEFAULT_MARGIN_MM) -> BoxPlan:
    """Group lines per slice along ``axis`` (None: :func:`choose_axis`), box them, interpolate.

    Returns a :class:`BoxPlan` with a box for every slice from the first to the last marked slice.
    Raises InputError: no markers; a line with an endpoint outside the volume (typically markers
    drawn on another volume); a line that is not within one slice along ``axis``; a bad axis.
    """
    if not markers:
        raise InputError("No line markers given: draw the lesion's long and short axes on a few slices.")
    if axis is not None and axis not in (0, 1, 2):
        raise InputError(f"Slice axis must be 0, 1 or 2 (numpy order k, j, i); got {axis}.")
    if margin_mm < 0 or not np.isfinite(margin_mm):
        raise InputError(f"The box margin must be a non-negative number of mm; got {margin_mm}.")
    ijk = [geometry.ras_to_ijk_points([m.start_ras, m.end_ras]) for m in markers]
    outside = [f"'{m.name or n + 1}'" for n, (m, p) in enumerate(zip(markers, ijk)) if not geometry.contains_ijk(p).all()]
    if outside:
        size = " x ".join(str(s) for s in geometry.shape[::-1])
        raise InputError(f"Line(s) {', '.join(outside)} of {len(markers)} lie (partly) outside the volume "
                         f"({size} voxels, i x j x k). Were the markers drawn on another volume? Load the volume "
                         "they were drawn on, or move the line endpoints inside the image.")
    ax = choose_axis(markers, geometry) if axis is None else int(axis)
    idx = SLICE_INDEX_IJK[ax]
    per_slice: dict[int, list[np.ndarray]] = {}
    for n, (m, p) in enumerate(zip(markers, ijk)):
        s0, s1 = p[0, idx], p[1, idx]
        if abs(s1 - s0) > IN_SLICE_TOLERANCE:
            raise InputError(f"Line '{m.name or n + 1}' crosses slices {s0:.1f} to {s1:.1f} along numpy axis {ax}; "
                             "each line must be drawn within one slice. Redraw it on a single slice, choose the slice "
                             "axis the lines were drawn on, or check that the markers belong to this volume.")
        k = int(np.floor((s0 + s1) / 2 + 0.5))
        per_slice.setdefault(k, []).append(geometry.ijk_to_slice(p, ax)[1])  # (2, 2) XY pixels
    sx, sy = geometry.slice_spacing_xy(ax)
    height = geometry.shape[[a for a in (0, 1, 2) if a != ax][0]]
    width = geometry.shape[[a for a in (0, 1, 2) if a != ax][1]]
    margin = np.array([margin_mm / sx, margin_mm / sy])
    marked = sorted(per_slice)
    keyed = {}
    for k in marked:
        lo, hi = _slice_extent(per_slice[k])
        lo, hi = lo - margin, hi + margin
        keyed[k] = np.array([max(lo[0], 0.0), max(lo[1], 0.0), min(hi[0], width - 1.0), min(hi[1], height - 1.0)])
    plan = BoxPlan(axis=ax, marked=marked)
    for a, b in zip(marked[:-1], marked[1:]):
        for k in range(a, b):
            t = (k - a) / (b - a)
            plan.boxes[k] = (1 - t) * keyed[a] + t * keyed[b]
    plan.boxes[marked[-1]] = keyed[marked[-1]]
    if len(marked) == 1:
        plan.warnings.append(f"Only slice {marked[0]} carries markers, so only that slice is segmented; draw axes on "
                             "the first and last slices of the lesion (and every few slices between) for 3D.")
    return plan


def _slice_extent(lines: "list[np.ndarray]") -> tuple[np.ndarray, np.ndarray]:
    """(lo, hi) XY of the endpoints, united with the ellipse box of the two longest lines."""
    pts = np.concatenate(lines, axis=0)
    lo, hi = pts.min(axis=0), pts.max(axis=0)
    if len(lines) >= 2:
        by_length = sorted(lines, key=lambda p: -np.linalg.norm(p[1] - p[0]))
        a = (by_length[0][1] - by_length[0][0]) / 2
        b = (by_length[1][1] - by_length[1][0]) / 2
        centre = (by_length[0][0] + by_length[0][1]) / 2
        half = np.sqrt(a ** 2 + b ** 2)  # box of {c + a cos t + b sin t}
        lo, hi = np.minimum(lo, centre - half), np.maximum(hi, centre + half)
    return lo, hi
