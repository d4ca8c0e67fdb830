"""Effect side: an SR becomes marker line nodes on the volume in a real slicer-core scene, both ways
(the study folder; or the volume's DICOM.instanceUIDs), and the lines' box plan equals the engine's."""
from __future__ import annotations

import numpy as np
import pytest
from dicom_fixtures import sample_case, write_study

pytest.importorskip("highdicom")
from mrml_fixtures import ctx, slicer_core  # noqa: E402,F401  (pytest fixtures)

from medsamkit.errors import InputError  # noqa: E402
from medsamkit.markers import boxes_from_markers  # noqa: E402


def _points(node):
    out = []
    for n in range(node.GetNumberOfControlPoints()):
        p = [0.0, 0.0, 0.0]
        node.GetNthControlPointPositionWorld(n, p)
        out.append(p)
    return np.array(out)


@pytest.fixture()
def dicom_volume(ctx, tmp_path):
    """The study, and its series as a volume node in the series' own slice order (what Slicer's DICOM
    plugin loads: it sorts by position too; the plain archetype reader is not used, it sorts by name)."""
    from mrml_fixtures import add_volume_from_array

    image, label = sample_case()
    series, markers = write_study(tmp_path / "study", image, label, every=2)
    node = add_volume_from_array(ctx.scene, series.read().array, series.geometry.ijk_to_ras, "CT")
    return tmp_path / "study", series, markers, node


@pytest.mark.parametrize("by", ["study_dir", "instance_uids"])
def test_sr_lines_become_marker_nodes(ctx, dicom_volume, by):
    from medsamkit.mrml.markups import marker_line_nodes, plan_from_line_nodes
    from medsamkit.mrml.recist import LESION_ATTRIBUTE, load_sr_lines
    from medsamkit.mrml.volumes import volume_geometry

    folder, series, markers, node = dicom_volume
    if by == "instance_uids":  # what Slicer's DICOM plugin sets on a volume it loads
        node.SetAttribute("DICOM.instanceUIDs", " ".join(series.sop_uids))
    lines = load_sr_lines(ctx.scene, folder / "sr.dcm", node, study_dir=folder if by == "study_dir" else None)
    assert list(lines) == ["T1"] and len(lines["T1"]) == len(markers)
    for line, m in zip(lines["T1"], markers):
        np.testing.assert_allclose(_points(line), [m.start_ras, m.end_ras], atol=1e-3)
        assert line.GetAttribute(LESION_ATTRIBUTE) == "T1"
    assert marker_line_nodes(ctx.scene) == lines["T1"]
    plan = plan_from_line_nodes(lines["T1"], volume_geometry(node))
    ref = boxes_from_markers(markers, series.geometry)
    assert plan.marked == ref.marked == [10, 12]
    for k in ref.slices:
        np.testing.assert_allclose(plan.boxes[k], ref.boxes[k], atol=1e-3)


def test_errors_leave_the_scene_unchanged(ctx, dicom_volume):
    from medsamkit.mrml.recist import load_sr_lines

    folder, series, _, node = dicom_volume
    n_before = ctx.scene.GetNumberOfNodes()
    with pytest.raises(InputError, match="not loaded from DICOM"):
        load_sr_lines(ctx.scene, folder / "sr.dcm", node)  # no instance UIDs, no study folder
    node.SetAttribute("DICOM.instanceUIDs", " ".join(series.sop_uids[:5]))  # another volume's slices
    with pytest.raises(InputError, match="not a slice of volume") as err:
        load_sr_lines(ctx.scene, folder / "sr.dcm", node)
    assert "lesion 'T1'" in str(err.value) and str(folder / "sr.dcm") in str(err.value)
    assert ctx.scene.GetNumberOfNodes() == n_before


def test_headless_batch_runs_recist(tmp_path):
    """`batch.py -- recist ...` (as Slicer --python-script runs it) is the CLI command: a study whose SR refers
    to images that are not in its folder fails with the message naming the SR, before any model loads."""
    import subprocess
    import sys
    from pathlib import Path

    image, label = sample_case()
    write_study(tmp_path / "elsewhere", image, label, every=2, extra_series=False)
    (tmp_path / "study").mkdir()
    (tmp_path / "study" / "sr.dcm").write_bytes((tmp_path / "elsewhere" / "sr.dcm").read_bytes())
    batch = Path(__file__).resolve().parents[2] / "medsamkit" / "cli" / "batch.py"
    res = subprocess.run([sys.executable, str(batch), "--", "recist", str(tmp_path / "study"), "--out",
                          str(tmp_path / "out"), "--quiet"], capture_output=True, text=True, timeout=300)
    assert res.returncode == 2, res.stdout + res.stderr
    assert "medsamkit recist: error:" in res.stderr and str(tmp_path / "study" / "sr.dcm") in res.stderr
    assert not (tmp_path / "out").exists()
