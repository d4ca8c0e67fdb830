"""Annotation report: what each case cost and where to look, from its prompt records (CSV + one HTML page).

Per case and segment (:func:`segment_rows`):

- interactions by type (box, points, refine, markers, propagate, ...) and their number;
- model seconds: the sum of the entries' ``model_seconds``;
- reader seconds: the time between one result and the next prompt, i.e. for consecutive entries
  ``time[n] - model_seconds[n] - time[n-1]`` (clipped at 0), summed — the reader's part of the work, the
  quantity the MedSAM reader study compared against manual annotation;
- manual edits: voxels that differ between the segment as the model last left it (the newest entry's
  ``snapshot``) and the final segment (paint, erase, scissors after the model);
- final volume in voxels and mL.

Per 3D result, the review queue (:mod:`medsamkit.records.review`) ranks the slices; the top share is flagged.
:func:`write_report` writes ``report.csv`` (one row per case/segment), ``review.csv`` (ranked slices)
and ``report.html``: a self-contained page (images embedded as data URIs) with the tables, one
timeline plot per case (matplotlib) and an overlay thumbnail of each flagged slice.
"""
from __future__ import annotations

import base64
import csv
import html
import io
from collections import Counter
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import numpy as np

from ..errors import require
from .record import normalization_from_block, unpack_mask

THUMB_PX = 160
MAX_FLAGGED = 8   # thumbnails per segment
#: The files :func:`write_report` writes into its folder.
REPORT_FILES = ("report.csv", "review.csv", "report.html")
#: Columns of report.csv and review.csv (a report with no 3D result still has the header row).
REPORT_COLUMNS = ("case", "segment", "name", "interactions", "by_type", "model_s", "reader_s", "manual_edit_voxels",
                  "final_voxels", "final_ml", "models")
REVIEW_COLUMNS = ("case", "segment", "rank", "slice", "axis", "score", "flagged")


@dataclass
class CaseInput:
    name: str
    record: dict
    final: dict             # segment ID -> final (K, J, I) mask (the saved segmentation)
    volume_path: str | None = None
    volume: object = None   # an ImageData, when already read


def _times(entries) -> list[float]:
    return [datetime.fromisoformat(e["time"]).timestamp() for e in entries]


def segment_rows(case: CaseInput) -> list[dict]:
    """One dict per segment of the case (the module docstring's columns)."""
    by_seg: dict = {}
    for e in sorted(case.record["entries"], key=lambda e: e["time"]):
        by_seg.setdefault(e["segment"]["id"], []).append(e)
    rows = []
    for seg_id, entries in by_seg.items():
        t = _times(entries)
        reader = sum(max(0.0, t[n] - entries[n]["model_seconds"] - t[n - 1]) for n in range(1, len(entries)))
        kinds = Counter(e["kind"] for e in entries)
        snap = next((e["result"]["snapshot"] for e in reversed(entries) if "snapshot" in e["result"]), None)
        final = case.final.get(seg_id)
        img = entries[-1]["image"]
        edits = None
        if snap is not None and final is not None:
            model_mask = unpack_mask(snap, img["shape"])
            if model_mask.shape == final.shape:
                edits = int(np.count_nonzero((model_mask != 0) != (final != 0)))
        voxels = None if final is None else int(np.count_nonzero(final))
        voxel_ml = float(np.prod(img["spacing"])) / 1000.0 if img["is_volume"] else None
        rows.append({"case": case.name, "segment": seg_id, "name": entries[-1]["segment"]["name"],
                     "interactions": len(entries), "by_type": "; ".join(f"{k} {n}" for k, n in sorted(kinds.items())),
                     "model_s": round(sum(e["model_seconds"] for e in entries), 3), "reader_s": round(reader, 3),
                     "manual_edit_voxels": edits, "final_voxels": voxels,
                     "final_ml": None if voxels is None or voxel_ml is None else round(voxels * voxel_ml, 4),
                     "models": "; ".join(sorted({e["model"]["kind"] + (" + adapter" if e["model"].get("adapter") else "")
                                                 for e in entries}))})
    return rows


def review_rows(case: CaseInput, top: float = 0.2) -> list[dict]:
    """Ranked slices of each segment's newest 3D run (on the final mask), with the flagged top share."""
    from .review import queue_from_entry

    rows = []
    newest: dict = {}
    for e in case.record["entries"]:
        if e["kind"] in ("markers", "propagate", "batch", "recist") and e["image"]["is_volume"]:
            newest[e["segment"]["id"]] = e
    for seg_id, e in newest.items():
        mask = case.final.get(seg_id)
        if mask is None:
            continue
        queue = queue_from_entry(mask, e)
        n_flag = max(1, int(round(top * len(queue)))) if queue else 0
        for rank, item in enumerate(queue, 1):
            rows.append({"case": case.name, "segment": seg_id, "rank": rank, "slice": item.index,
                         "axis": (e["prompt"]["plan"] or {}).get("axis", e["plane"]["axis"] if e["plane"] else 0)
                         if e["prompt"].get("plan") else e["plane"]["axis"],
                         "score": round(item.score, 4), "flagged": rank <= n_flag,
                         **{k: round(v, 4) for k, v in item.signs.items()}, "_entry": e})
    return rows


def _png(fig_or_array) -> str:
    buf = io.BytesIO()
    if isinstance(fig_or_array, np.ndarray):
        from PIL import Image

        Image.fromarray(fig_or_array).save(buf, format="PNG")
    else:
        fig_or_array.savefig(buf, format="png", dpi=90, bbox_inches="tight")
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode("ascii")


def thumbnail(volume: np.ndarray, mask: np.ndarray, k: int, axis: int, window: dict, model_mask=None) -> np.ndarray:
    """(h, w, 3) uint8: slice ``k`` in the record's window, the final mask red, the model's outline green."""
    from PIL import Image

    from ..preprocess import normalize_to_uint8
    from ..volume import extract_slice

    gray = normalize_to_uint8(extract_slice(volume, k, axis), normalization_from_block(window))[..., 0]
    rgb = np.stack([gray] * 3, -1).astype(np.float32)
    m = extract_slice(mask, k, axis) != 0
    rgb[m] = 0.55 * rgb[m] + 0.45 * np.array([255, 40, 40])
    if model_mask is not None:
        mm = extract_slice(model_mask, k, axis) != 0
        edge = mm & ~(np.roll(mm, 1, 0) & np.roll(mm, -1, 0) & np.roll(mm, 1, 1) & np.roll(mm, -1, 1))
        rgb[edge] = [40, 230, 40]
    ys, xs = np.nonzero(m | (model_mask is not None and extract_slice(model_mask, k, axis) != 0))
    if len(xs):  # crop around the structure (3x its size) so small lesions are visible
        cy, cx = (ys.min() + ys.max()) / 2, (xs.min() + xs.max()) / 2
        half = max(24, 1.5 * max(ys.max() - ys.min(), xs.max() - xs.min()))
        y0, y1 = int(max(0, cy - half)), int(min(rgb.shape[0], cy + half + 1))
        x0, x1 = int(max(0, cx - half)), int(min(rgb.shape[1], cx + half + 1))
        rgb = rgb[y0:y1, x0:x1]
    img = Image.fromarray(rgb.clip(0, 255).astype(np.uint8))
    img.thumbnail((THUMB_PX, THUMB_PX)) if max(img.size) > THUMB_PX else None
    if max(img.size) < THUMB_PX:
        s = THUMB_PX / max(img.size)
        img = img.resize((max(1, int(img.size[0] * s)), max(1, int(img.size[1] * s))), Image.NEAREST)
    return np.asarray(img)


def timeline_figure(case: CaseInput):
    """Matplotlib figure: one bar per interaction (model time) on the session's clock, per segment."""
    matplotlib = require("matplotlib", "The annotation report's timeline plot", "report")
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    entries = sorted(case.record["entries"], key=lambda e: e["time"])
    t = _times(entries)
    t0 = min(ti - e["model_seconds"] for ti, e in zip(t, entries)) if entries else 0.0
    segs = list(dict.fromkeys(e["segment"]["id"] for e in entries))
    colors = {k: c for k, c in zip(("box", "points", "box+points", "refine", "propagate", "markers", "recist", "batch"),
                                     plt.cm.tab10.colors)}
    fig, ax = plt.subplots(figsize=(7.5, 0.6 + 0.45 * max(1, len(segs))))
    for ti, e in zip(t, entries):
        y = segs.index(e["segment"]["id"])
        start = ti - e["model_seconds"] - t0
        ax.barh(y, max(e["model_seconds"], 0.05), left=start, color=colors.get(e["kind"], "gray"), height=0.6)
        ax.text(start, y + 0.38, e["kind"], fontsize=7)
    ax.set_yticks(range(len(segs)))
    ax.set_yticklabels([next(e["segment"]["name"] for e in entries if e["segment"]["id"] == s) for s in segs])
    ax.set_xlabel("seconds since the first prompt (bars: model time; gaps: reader time)")
    ax.set_title(f"{case.name}: {len(entries)} interactions")
    fig.tight_layout()
    return fig


def write_report(cases: list[CaseInput], out_dir, top: float = 0.2) -> list[Path]:
    """Write report.csv, review.csv and report.html into ``out_dir``; returns their paths."""
    import matplotlib.pyplot as plt  # noqa: F401  (timeline_figure checks the dependency with a clear message)

    from ..errors import OutputError
    from ..io import atomic_output, read_image

    out = Path(out_dir)
    seg_rows, rev_rows, sections = [], [], []
    for case in cases:
        volume = case.volume if case.volume is not None else (read_image(case.volume_path) if case.volume_path else None)
        if volume is not None:
            _check_volume(case, volume)
        rows = segment_rows(case)
        rrows = review_rows(case, top)
        seg_rows += rows
        rev_rows += rrows
        fig = timeline_figure(case)
        plot = _png(fig)
        import matplotlib.pyplot as plt

        plt.close(fig)
        thumbs = []
        for seg_id in dict.fromkeys(r["segment"] for r in rrows):
            flagged = [r for r in rrows if r["segment"] == seg_id and r["flagged"]][:MAX_FLAGGED]
            for r in flagged:
                if volume is None:
                    continue
                e = r["_entry"]
                snap = next((x["result"]["snapshot"] for x in reversed(case.record["entries"])
                             if x["segment"]["id"] == seg_id and "snapshot" in x["result"]), None)
                model_mask = unpack_mask(snap, e["image"]["shape"]) if snap else None
                img = thumbnail(volume.array, case.final[seg_id], r["slice"], r["axis"], e["window"], model_mask)
                thumbs.append((f"{e['segment']['name']} slice {r['slice']} (rank {r['rank']}, score {r['score']:.2f})",
                               _png(img)))
        sections.append(_case_html(case, rows, plot, thumbs))
    from ..io import output_group

    try:  # created only once every case has been read and checked
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise OutputError(f"Cannot create the report folder {out}: {exc.strerror or exc}. Choose another "
                          "--out-dir.") from exc
    report_csv, review_csv, page = (out / name for name in REPORT_FILES)
    with output_group() as outputs:  # the three files are one report: all written or none
        _write_csv(report_csv, seg_rows, REPORT_COLUMNS, outputs)
        _write_csv(review_csv, [{k: v for k, v in r.items() if not k.startswith("_")} for r in rev_rows],
                   REVIEW_COLUMNS, outputs)
        with atomic_output(page, group=outputs) as tmp:
            Path(tmp).write_text(_page(sections), encoding="utf-8")
    return [report_csv, review_csv, page]


def _check_volume(case: CaseInput, volume) -> None:
    """The volume must be the grid the record's entries and the final segments were made on (InputError)."""
    from ..errors import InputError

    have = tuple(volume.array.shape if volume.is_3d else volume.array.shape[:2])
    shapes = {tuple(e["image"]["shape"]) for e in case.record["entries"]}
    shapes |= {tuple(m.shape) for m in case.final.values()}
    for want in sorted(shapes):
        if want != have:
            raise InputError(f"case {case.name}: its segmentation/record is on a grid of shape {want} (z, y, x), but "
                             f"the volume {case.volume_path or ''} has shape {have}. Give the volume the "
                             "segmentation was made on.")


def _write_csv(path: Path, rows: list[dict], columns, group) -> None:
    """A CSV with a header row (the fixed ``columns`` first, then any others the rows carry), one unit of ``group``."""
    from ..io import atomic_output

    fields = list(columns) + [k for r in rows for k in r if k not in columns]
    with atomic_output(path, group=group) as tmp:
        with open(tmp, "w", newline="", encoding="utf-8") as f:
            w = csv.DictWriter(f, fieldnames=list(dict.fromkeys(fields)))
            w.writeheader()
            w.writerows(rows)


def _case_html(case, rows, plot, thumbs) -> str:
    e = html.escape
    head = ["segment", "interactions", "by type", "model s", "reader s", "manual edits (voxels)", "final voxels",
            "final mL", "model"]
    body = "".join("<tr>" + "".join(f"<td>{e(str(v))}</td>" for v in (
        r["name"], r["interactions"], r["by_type"], r["model_s"], r["reader_s"],
        "-" if r["manual_edit_voxels"] is None else r["manual_edit_voxels"], r["final_voxels"],
        "-" if r["final_ml"] is None else r["final_ml"], r["models"])) + "</tr>" for r in rows)
    figs = "".join(f'<figure class="thumb"><img src="{src}" alt="{e(cap)}"><figcaption>{e(cap)}</figcaption></figure>'
                   for cap, src in thumbs)
    return (f'<section class="case"><h2>{e(case.name)}</h2><table><tr>' + "".join(f"<th>{h}</th>" for h in head)
            + f'</tr>{body}</table><img class="timeline" src="{plot}" alt="timeline of {e(case.name)}">'
            + f'<h3>Slices to review first</h3><div class="thumbs">{figs or "<p>no 3D result</p>"}</div></section>')


def _page(sections) -> str:
    from .. import __version__

    style = ("body{font-family:sans-serif;margin:1.5em;color:#222}table{border-collapse:collapse;margin:.5em 0}"
             "td,th{border:1px solid #bbb;padding:3px 8px;font-size:13px}th{background:#eee}"
             ".thumbs{display:flex;flex-wrap:wrap;gap:8px}.thumb{margin:0;font-size:11px;width:170px}"
             ".timeline{max-width:100%;display:block;margin:.5em 0}")
    return (f"<!DOCTYPE html><html><head><meta charset='utf-8'><title>medsamkit annotation report</title>"
            f"<style>{style}</style></head><body><h1>Annotation report</h1>"
            f"<p>medsamkit {__version__}. Red: final segment; green outline: the model's last result. Reader "
            "seconds: time between a result and the next prompt.</p>" + "".join(sections) + "</body></html>")
