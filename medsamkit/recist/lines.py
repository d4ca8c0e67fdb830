"""Measurement lines without an SR: a CSV of end points (LPS or RAS) or Slicer line markups -> lines per lesion.

Every problem of such a file (a missing column, a non-number, a one-point line, ...) is refused before any
model work, naming the file, the row and the lesion (see :mod:`medsamkit.recist`).
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..errors import InputError

#: Columns of a lines CSV (read_lines_csv): required, and the optional ones.
CSV_REQUIRED = ("lesion", "x1", "y1", "z1", "x2", "y2", "z2")
CSV_OPTIONAL = ("space", "name")
SPACES = ("LPS", "RAS")


@dataclass
class LineLesion:
    """A lesion of a lines file (CSV or markups): what :class:`medsamkit.dicom.sr.SRLesion` says of an SR lesion.

    markers: its lines (RAS mm); where: per line, where it is in the file ("row 4" / "line 'T1: long'").
    """

    name: str
    markers: list = field(default_factory=list)
    where: list = field(default_factory=list)
    tracking_uid: str = ""
    finding: tuple | None = None
    finding_site: tuple | None = None

    @property
    def lines(self) -> list:
        return self.markers


_CSV_HELP = ("A lines CSV has a header row 'lesion,x1,y1,z1,x2,y2,z2,space' and one row per line: the lesion it "
             "belongs to, its two end points in mm, and LPS or RAS (the DICOM/ITK patient frame is LPS, Slicer's "
             "display RAS)")


def read_lines_csv(path: "str | os.PathLike", space: str | None = None) -> list[LineLesion]:
    """A CSV of line end points -> [LineLesion] in order of first appearance (markers in RAS mm).

    Columns (header row, any order, case-insensitive; ``,``, ``;`` or tab separated): ``lesion``,
    ``x1,y1,z1,x2,y2,z2`` (mm), and ``space`` (LPS or RAS per row) unless ``space`` is given; an
    optional ``name`` names the line; other columns are ignored. Rows of one ``lesion`` value are one
    lesion. Blank lines and lines starting with ``#`` are skipped. Raises InputError naming the file
    and every bad row (with its lesion): no statement of the coordinate system, missing columns, an
    empty file, a non-number, a one-point line (second point empty or equal to the first).
    """
    from ..markers import Marker

    path = Path(path)
    if space is not None and str(space).upper() not in SPACES:
        raise InputError(f"--space must be LPS or RAS; got '{space}'.")
    space = None if space is None else str(space).upper()
    numbered, rows = _csv_rows(path)
    col = _csv_columns(path, numbered[0][0], rows, space)
    lesions: dict[str, LineLesion] = {}
    problems: list[str] = []
    for (row_no, _), values in zip(numbered[1:], rows[1:]):
        def get(name):
            i = col.get(name)
            return values[i].strip() if i is not None and i < len(values) else ""

        lesion = get("lesion")
        where = f"row {row_no}" + (f" (lesion '{lesion}')" if lesion else "")
        try:
            p1, p2 = _csv_line(get, space)
        except _BadRow as exc:
            problems.append(f"{where}: {exc}")
            continue
        les = lesions.setdefault(lesion, LineLesion(lesion))
        les.markers.append(Marker(p1, p2, f"{lesion}: {get('name') or f'row {row_no}'}"))
        les.where.append(f"row {row_no}")
    if problems:
        more = f" (and {len(problems) - 12} more)" if len(problems) > 12 else ""
        raise InputError(f"{path}: {len(problems)} bad row(s), nothing was segmented: " + "; ".join(problems[:12])
                         + more + ".")
    return list(lesions.values())


def _csv_rows(path: Path) -> tuple[list, list]:
    """The lines file -> its non-blank, non-comment lines as [(line number, text)] and their cells (split at
    the delimiter its header uses most); InputError for a missing, unreadable or empty file."""
    import csv as csv_mod

    if not path.is_file():
        raise InputError(f"Lines file not found: {path}")
    try:
        text = path.read_text(encoding="utf-8-sig")
    except (OSError, UnicodeDecodeError) as exc:
        raise InputError(f"{path}: cannot read this CSV file ({exc}). Save it as UTF-8 text. {_CSV_HELP}.") from exc
    numbered = [(n, line) for n, line in enumerate(text.splitlines(), 1)
                if line.strip() and not line.lstrip().startswith("#")]
    if not numbered:
        raise InputError(f"{path} is empty: there is no line to segment. {_CSV_HELP}.")
    delimiter = max((",", ";", "\t"), key=numbered[0][1].count)
    return numbered, list(csv_mod.reader([line for _, line in numbered], delimiter=delimiter))


def _csv_columns(path: Path, head_no: int, rows: list, space: str | None) -> dict[str, int]:
    """The header row -> {column name: index} of the known columns; InputError for a header that lacks a
    required column or names one twice, a file that states no coordinate system, or no data row."""
    header = [h.strip().lower() for h in rows[0]]
    missing = [c for c in CSV_REQUIRED if c not in header]
    if missing:
        raise InputError(f"{path}, row {head_no} (header): missing column(s) {', '.join(missing)} (found: "
                         f"{', '.join(h for h in header if h) or 'nothing'}). {_CSV_HELP}.")
    dup = sorted({h for h in header if h and header.count(h) > 1})
    if dup:
        raise InputError(f"{path}, row {head_no} (header): column(s) {', '.join(dup)} appear twice; keep one of each.")
    if "space" not in header and space is None:
        raise InputError(f"{path} does not say which coordinate system its points are in: add a column 'space' with "
                         "LPS or RAS on every row (LPS: DICOM/ITK patient coordinates, RAS: Slicer's), or give "
                         "--space LPS|RAS.")
    if len(rows) == 1:
        raise InputError(f"{path} has a header but no line (no data row). {_CSV_HELP}.")
    return {h: header.index(h) for h in CSV_REQUIRED + CSV_OPTIONAL if h in header}


class _BadRow(Exception):
    """What is wrong with one data row of a lines CSV (collected, so that one error names every bad row)."""


def _csv_line(get, space: str | None) -> tuple[np.ndarray, np.ndarray]:
    """One data row (``get(column)`` -> its stripped cell) -> its two end points in RAS mm; raises _BadRow
    saying what is wrong with the row."""
    if not get("lesion"):
        raise _BadRow("no lesion name; every line needs the lesion it belongs to in column 'lesion'")
    row_space = get("space").upper() or space
    if row_space is None:
        raise _BadRow("no coordinate system in column 'space'; write LPS or RAS (or give --space)")
    if row_space not in SPACES:
        raise _BadRow(f"space '{get('space')}' is neither LPS nor RAS")
    if space is not None and get("space") and row_space != space:
        raise _BadRow(f"space {row_space} contradicts --space {space}; fix the file or the option")
    second = [get(c) for c in ("x2", "y2", "z2")]
    if not any(second) and all(get(c) for c in ("x1", "y1", "z1")):
        raise _BadRow("the line has one point (x2, y2, z2 are empty); a line needs its two end points")
    coords, bad = [], []
    for c in ("x1", "y1", "z1", "x2", "y2", "z2"):
        v = get(c)
        try:
            f = float(v)
        except ValueError:
            bad.append(f"{c} = '{v}' is not a number" if v else f"{c} is empty")
            continue
        if not np.isfinite(f):
            bad.append(f"{c} = '{v}' is not a finite number")
        coords.append(f)
    if bad:
        raise _BadRow("; ".join(bad))
    p1, p2 = np.array(coords[:3]), np.array(coords[3:])
    if np.linalg.norm(p2 - p1) < 1e-6:
        raise _BadRow("both end points are the same point; a line needs two different end points")
    if row_space == "LPS":
        flip = np.array([-1.0, -1.0, 1.0])
        p1, p2 = p1 * flip, p2 * flip
    return p1, p2


def read_lines_markups(path: "str | os.PathLike") -> list[LineLesion]:
    """Slicer line markups (``.mrk.json``) or a plain JSON list of lines -> [LineLesion].

    Lines named ``"<lesion>: <anything>"`` (as the Slicer effect names the lines it loads from an SR)
    are grouped by ``<lesion>``; lines without such a name form one lesion named after the file.
    """
    from ..markers import read_markers

    path = Path(path)
    default = path.name.split(".")[0] or "lesion"
    lesions: dict[str, LineLesion] = {}
    for m in read_markers(path):
        name = m.name.split(": ", 1)[0].strip() if ": " in m.name else default
        les = lesions.setdefault(name or default, LineLesion(name or default))
        les.markers.append(m)
        les.where.append(f"line '{m.name}'")
    return list(lesions.values())


def read_lines(path: "str | os.PathLike", space: str | None = None) -> list[LineLesion]:
    """A lines file by its name: ``.csv`` (:func:`read_lines_csv`), ``.mrk.json``/``.json``
    (:func:`read_lines_markups`)."""
    path = Path(path)
    name = path.name.lower()
    if name.endswith(".csv"):
        return read_lines_csv(path, space)
    if name.endswith(".json"):
        if space is not None:
            raise InputError(f"--space is for CSV files; {path.name} states its coordinate system itself "
                             "(Slicer markups: 'coordinateSystem'; a plain JSON list: RAS).")
        return read_lines_markups(path)
    raise InputError(f"--lines takes a .csv of end points or Slicer line markups (.mrk.json); got '{path.name}'.")
