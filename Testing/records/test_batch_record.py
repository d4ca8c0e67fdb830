"""The headless batch records each case: segment tag in the .seg.nrrd + sidecar; the record replays identical."""
from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import numpy as np
from mrml_fixtures import ctx, model_session, slicer_core  # noqa: F401  (pytest fixtures)

DATA = Path(__file__).resolve().parents[2] / "medsamkit" / "data"


def test_batch_case_record_replays_identical(tmp_path, ctx, model_session, lite_model):
    from medsamkit.cli.records import _segments_of
    from medsamkit.geometry import VolumeGeometry
    from medsamkit.io import read_image
    from medsamkit.markers import write_markers
    from medsamkit.cli.batch import Case, run_case
    from medsamkit.simulated_reader import simulate_markers
    from medsamkit.records.record import read_record, seg_nrrd_records, sidecar_path
    from medsamkit.records.replay_backend import open_replay_backend
    from medsamkit.records.replay import replay

    label = read_image(DATA / "sample_lung_ct.label.nii.gz")
    markers = simulate_markers(label.array > 0, VolumeGeometry.from_image(label), axis=0, every=2)
    lines = write_markers(markers, tmp_path / "lines.mrk.json")
    out = tmp_path / "case.seg.nrrd"
    args = SimpleNamespace(axis=None, margin_mm=None, window="lung", refine=False, segment_name="tumour",
                           backend="local")
    report = run_case(model_session.backend, ctx, Case(str(DATA / "sample_lung_ct.nii.gz"), str(out), markers=str(lines)), args)
    assert report.ok, report.message
    (seg_id, rec), = seg_nrrd_records(out).items()
    assert rec == read_record(sidecar_path(out))
    (e,) = rec["entries"]
    assert e["kind"] == "batch" and e["segment"]["name"] == "tumour" and e["prompt"]["plan"]["axis"] == 0
    assert e["prompt"]["markers"] is None  # the plan carries the boxes (the lines stay in the .mrk.json)
    backend, model = open_replay_backend(rec, "local", device="cpu", engine="torch")
    with backend:
        result = replay(backend, rec, read_image(DATA / "sample_lung_ct.nii.gz"), model)
    assert result.all_identical
    assert np.array_equal(result.segments[seg_id], _segments_of(out)[seg_id])
    del lite_model
