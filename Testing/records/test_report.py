"""Annotation report from records: the figures it computes, the CSVs, and the HTML in headless Chromium.

The records here are built with medsamkit.records.record on the bundled lung CT, with the reference label as
the model's result (the report reads records and masks; no model is needed to test it), at fixed
times so that model and reader seconds are known exactly.
"""
from __future__ import annotations

import csv
import re
import shutil
import subprocess
from datetime import datetime, timedelta, timezone
from pathlib import Path

import numpy as np
import pytest

REPO = Path(__file__).resolve().parents[2]
CT = REPO / "medsamkit" / "data" / "sample_lung_ct.nii.gz"
CT_LABEL = REPO / "medsamkit" / "data" / "sample_lung_ct.label.nii.gz"
T0 = datetime(2026, 1, 5, 9, 0, 0, tzinfo=timezone.utc)


@pytest.fixture(scope="module")
def case():
    from medsamkit.geometry import VolumeGeometry
    from medsamkit.io import read_image
    from medsamkit.markers import boxes_from_markers
    from medsamkit.preprocess import Normalization
    from medsamkit.simulated_reader import simulate_markers
    from medsamkit.records.record import (append_entry, geometry_of, make_entry, markers_block, plan_block, prompt_block,
                                   result_block, window_block)
    from medsamkit.records.report import CaseInput

    image = read_image(CT)
    label = (read_image(CT_LABEL).array > 0).astype(np.uint8)
    geom = VolumeGeometry.from_image(image)
    markers = simulate_markers(label, geom, axis=0, every=2)
    plan = boxes_from_markers(markers, geom, axis=0)
    window = window_block(Normalization.window(1500, -160, "lung"), "lung")
    model = {"kind": "litemedsam", "weights_sha256": "0" * 64, "adapter": None, "engine": "torch", "backend": "local"}
    g = geometry_of(image)
    prompt = prompt_block(g)
    prompt["plan"], prompt["markers"] = plan_block(plan), markers_block(markers)
    first = make_entry("markers", g, prompt, window, model, result_block(label, scores={10: 0.9, 11: 0.95, 12: 0.7},
                       slices=[10, 11, 12], snapshot=label), segment_id="tumour", model_seconds=4.0,
                       when=T0 + timedelta(seconds=4))
    # 30 s later the reader refined slice 12 with a click (model 0.5 s)
    refined = label.copy()
    refined[12, 118:121, 100:104] = 1
    second = make_entry("refine", g, prompt_block(g, 0, 12, None, [[110, 110]], [1]), window, model,
                        result_block(refined[12], snapshot=refined), segment_id="tumour", plane_axis=0, plane_index=12,
                        model_seconds=0.5, mode="replace", region="slice", when=T0 + timedelta(seconds=34.5))
    record = append_entry(append_entry(None, first), second)
    final = refined.copy()
    final[11, 90:94, 90:95] = 1  # 20 voxels painted by hand after the model's last result
    return CaseInput("lung1", record, {"tumour": final}, volume=image)


def test_rows_count_interactions_time_and_manual_edits(case):
    from medsamkit.records.report import segment_rows

    (row,) = segment_rows(case)
    assert row["interactions"] == 2 and row["by_type"] == "markers 1; refine 1"
    assert row["model_s"] == pytest.approx(4.5)
    assert row["reader_s"] == pytest.approx(30.0)  # 34.5 - 0.5 (model) - 4.0 (first result's time)
    assert row["manual_edit_voxels"] == 20
    assert row["final_voxels"] == int(case.final["tumour"].sum())
    assert row["final_ml"] == pytest.approx(row["final_voxels"] * 0.5703125 ** 2 * 5.0 / 1000, abs=1e-4)


def test_report_files_and_html_in_headless_chromium(case, tmp_path):
    from medsamkit.records.report import write_report

    paths = write_report([case], tmp_path / "report")
    report_csv, review_csv, page = paths
    rows = list(csv.DictReader(open(report_csv)))
    assert rows[0]["case"] == "lung1" and rows[0]["manual_edit_voxels"] == "20"
    ranked = list(csv.DictReader(open(review_csv)))
    assert [int(r["rank"]) for r in ranked] == [1, 2, 3] and sorted(int(r["slice"]) for r in ranked) == [10, 11, 12]
    assert sum(r["flagged"] == "True" for r in ranked) == 1
    text = page.read_text()
    assert "<script" not in text and "http" not in text.replace("http-equiv", "")  # self-contained
    images = re.findall(r'<img class="timeline" src="data:image/png;base64,([A-Za-z0-9+/=]+)"', text)
    thumbs = re.findall(r'<figure class="thumb"><img src="data:image/png;base64,([A-Za-z0-9+/=]+)"', text)
    assert len(images) == 1 and len(images[0]) > 2000  # the timeline plot
    assert len(thumbs) == 1 and len(thumbs[0]) > 500   # the flagged slice's overlay
    chromium = shutil.which("chromium") or shutil.which("chromium-browser") or shutil.which("google-chrome")
    if chromium is None:
        pytest.skip("chromium is not installed (apt-get install chromium): HTML checked, not rendered")
    shot = tmp_path / "report.png"
    proc = subprocess.run([chromium, "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars",
                           f"--screenshot={shot}", "--window-size=1100,900", page.as_uri()],
                          capture_output=True, text=True, timeout=120)
    assert shot.is_file(), proc.stderr[-2000:]
    from PIL import Image

    px = np.asarray(Image.open(shot).convert("RGB")).astype(int)
    red = (px[..., 0] > 180) & (px[..., 1] < 120) & (px[..., 2] < 120)   # the mask overlay in the thumbnail
    coloured = (np.abs(px[..., 0] - px[..., 2]) > 60)                    # plot bars and overlay
    assert red.sum() > 50 and coloured.sum() > 500
    keep = REPO / "Testing" / "records" / "_last_report_screenshot.png"
    shutil.copy(shot, keep) if keep.parent.is_dir() else None
