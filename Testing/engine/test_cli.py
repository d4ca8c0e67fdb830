"""The command line as a user runs it: demo, segment on 2D and 3D, and clear failures with no output."""
import subprocess
import sys

import numpy as np
import pytest

from medsamkit.cli.commands import main
from medsamkit.io import read_image

from conftest import REPO, SAMPLE_DIR, dice


def test_demo_writes_mask_and_overlay(tmp_path, capsys):
    assert main(["demo", "--out-dir", str(tmp_path), "--device", "cpu", "--engine", "torch"]) == 0
    out = capsys.readouterr().out
    mask = read_image(tmp_path / "demo_mask.nii.gz")
    ref = read_image(SAMPLE_DIR / "sample_lung_ct.nii.gz")
    label = read_image(SAMPLE_DIR / "sample_lung_ct.label.nii.gz").array > 0
    assert mask.array.shape == ref.array.shape
    np.testing.assert_allclose(mask.origin, ref.origin, atol=1e-4)
    k = int(np.argmax(label.sum(axis=(1, 2))))
    assert mask.array[k].any() and not np.delete(mask.array, k, axis=0).any()
    d = dice(mask.array[k] > 0, label[k])
    assert d >= 0.75, d  # measured 0.81 on this 25-pixel-wide tumour
    assert f"Dice vs. reference label: {d:.3f}" in out
    assert (tmp_path / "demo_overlay.png").stat().st_size > 1000


def test_segment_png_with_box_and_points(tmp_path, test_data, capsys):
    out = tmp_path / "m.png"
    gt = read_image(test_data / "043_HC.mask.png").array > 0
    ys, xs = np.nonzero(gt)
    args = ["segment", str(test_data / "043_HC.img.png"), "--box", *map(str, [xs.min(), ys.min(), xs.max(), ys.max()]),
            "--point", str(xs.mean()), str(ys.mean()), "1", "--out", str(out), "--overlay", str(tmp_path / "o.png")]
    assert main(args) == 0
    mask = read_image(out).array > 0
    assert dice(mask, gt) > 0.85
    assert "predicted IoU" in capsys.readouterr().out


def test_segment_volume_slice_keeps_geometry(tmp_path):
    out = tmp_path / "m.nrrd"
    assert main(["segment", str(SAMPLE_DIR / "sample_lung_ct.nii.gz"), "--slice", "11", "--axis", "axial",
                 "--box", "93", "94", "122", "121", "--window", "lung", "--out", str(out)]) == 0
    m = read_image(out)
    ref = read_image(SAMPLE_DIR / "sample_lung_ct.nii.gz")
    assert m.array.shape == ref.array.shape and m.array[11].sum() > 100
    np.testing.assert_allclose(m.spacing, ref.spacing, atol=1e-5)
    np.testing.assert_allclose(m.direction, ref.direction, atol=1e-6)


@pytest.mark.parametrize("extra,message", [
    ([], "choose a slice"),                                   # 3D without --slice
    (["--slice", "99"], "outside the volume"),
    (["--slice", "11", "--window", "liverish"], "Unknown window"),
    (["--slice", "11", "--axis", "oblique"], "Unknown slice axis"),
])
def test_errors_exit_2_and_write_nothing(tmp_path, capsys, extra, message):
    out = tmp_path / "never.nii.gz"
    code = main(["segment", str(SAMPLE_DIR / "sample_lung_ct.nii.gz"), "--box", "93", "94", "122", "121",
                 "--out", str(out), *extra])
    assert code == 2
    assert message in capsys.readouterr().err
    assert list(tmp_path.iterdir()) == []


def test_degenerate_box_and_missing_file(tmp_path, capsys, test_data):
    assert main(["segment", str(test_data / "043_HC.img.png"), "--box", "10", "10", "10", "10",
                 "--out", str(tmp_path / "m.png")]) == 2
    assert "no area" in capsys.readouterr().err
    assert main(["segment", str(tmp_path / "nope.png"), "--box", "1", "1", "9", "9",
                 "--out", str(tmp_path / "m.png")]) == 2
    assert "not found" in capsys.readouterr().err
    assert list(tmp_path.iterdir()) == []


def test_console_entry_point_help():
    res = subprocess.run([sys.executable, "-m", "medsamkit", "--help"], capture_output=True, text=True, cwd=REPO)
    assert res.returncode == 0 and "segment" in res.stdout and "demo" in res.stdout
