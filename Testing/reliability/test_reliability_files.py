"""Reliability: bad inputs, full disks and broken files give one clear error, exit 2, and lose nothing.

No test here loads a model: every failure is caught before it (the ``no_model`` fixture makes any
model or server use fail the test), so the module costs a few seconds of CPU. Cases and expected
outcomes are listed in docs/reliability.md under the same item numbers.
"""
from __future__ import annotations

import gzip
import json
import os
import struct
import subprocess
import sys
import time
import zlib
from pathlib import Path

import numpy as np
import pytest

from medsamkit.cli.commands import main
from medsamkit.errors import CheckpointError, InputError, MedSAMError
from medsamkit.io import ImageData, read_image, write_mask, write_overlay_png
from medsamkit.segmentation_file import write_segmentation

from reliability_fixtures import files_in, full_disk, readonly_dir, sphere_volume, write_volume  # noqa: F401

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture()
def no_model(monkeypatch):
    """Fail the test if a command gets as far as building its backend (loading a model / a server)."""
    import medsamkit.cli.options as options

    def refuse(_args):
        raise AssertionError("the command went on to load a model; the error had to come first")

    monkeypatch.setattr(options, "backend_from_options", refuse)


@pytest.fixture()
def volume_file(tmp_path):
    return write_volume(sphere_volume(), tmp_path / "ct.nii.gz")


def ref_of(array):
    return ImageData(array, (1.0, 1.0, 3.0), (0.0, 0.0, 0.0), (1, 0, 0, 0, 1, 0, 0, 0, 1))


def run_cli(capsys, *argv) -> tuple[int, str]:
    try:
        rc = main([str(a) for a in argv])
    except SystemExit as exc:  # argparse errors
        rc = exc.code
    err = capsys.readouterr().err
    return rc, err


def noise_mask(shape=(40, 200, 200)):
    return (np.random.default_rng(1).random(shape) > 0.5).astype(np.uint8)  # does not compress into 64 KiB


# ---- 1. a full disk: exit 2 / OutputError, and nothing left behind ---------------------------------
@pytest.mark.parametrize("name", ["m.nii.gz", "m.nrrd", "m.png"])
def test_full_disk_write_is_an_error_and_leaves_nothing(full_disk, name):
    mask = noise_mask()
    with pytest.raises(MedSAMError, match="Cannot write .*Nothing was written"):
        if name.endswith(".png"):
            write_mask(mask[0] * 255, full_disk / name)
        else:
            write_mask(mask, full_disk / name, reference=ref_of(mask))
    assert files_in(full_disk) == ["filler"]


def test_full_disk_seg_nrrd_and_overlay(full_disk):
    mask = noise_mask()
    with pytest.raises(MedSAMError):
        write_segmentation(mask, full_disk / "m.seg.nrrd", ref_of(mask))
    rgb = (np.random.default_rng(2).random((300, 300, 3)) * 255).astype(np.uint8)
    with pytest.raises(MedSAMError):
        write_overlay_png(rgb, rgb[..., 0] > 128, full_disk / "o.png")
    assert files_in(full_disk) == ["filler"]


def test_silently_truncated_write_is_caught(tmp_path, monkeypatch):
    """Injected: the writer 'succeeds' but the file is cut short, as SimpleITK's NIfTI writer on a full disk."""
    import SimpleITK as sitk

    real = sitk.WriteImage

    def cut_short(img, path, *args):
        real(img, path, *args)
        data = Path(path).read_bytes()
        Path(path).write_bytes(data[: len(data) // 2])

    monkeypatch.setattr(sitk, "WriteImage", cut_short)
    mask = noise_mask((8, 64, 64))
    target = tmp_path / "m.nii.gz"
    target.write_bytes(b"the previous result")
    with pytest.raises(MedSAMError, match="cut short|reads back"):
        write_mask(mask, target, reference=ref_of(mask))
    assert target.read_bytes() == b"the previous result" and files_in(tmp_path) == ["m.nii.gz"]


def test_empty_write_is_caught(tmp_path, monkeypatch):
    import SimpleITK as sitk

    monkeypatch.setattr(sitk, "WriteImage", lambda img, path, *a: Path(path).write_bytes(b""))
    with pytest.raises(MedSAMError, match="empty"):
        write_mask(np.ones((2, 4, 4), np.uint8), tmp_path / "m.nrrd")
    assert files_in(tmp_path) == []


# ---- 2. an output equal to an input (or to another output) is refused -------------------------------
def test_out_equal_to_input_is_refused(tmp_path, volume_file, capsys, no_model):
    before = volume_file.read_bytes()
    (tmp_path / "link.nii.gz").symlink_to(volume_file)
    os.link(volume_file, tmp_path / "hard.nii.gz")
    for out in (volume_file, tmp_path / "link.nii.gz", tmp_path / "hard.nii.gz", tmp_path / "." / volume_file.name):
        rc, err = run_cli(capsys, "segment", volume_file, "--slice", 5, "--box", 20, 20, 40, 40, "--out", out)
        assert rc == 2 and "would overwrite the input image" in err, err
        rc, err = run_cli(capsys, "propagate", volume_file, "--slice", 5, "--box", 20, 20, 40, 40, "--out", out)
        assert rc == 2 and "would overwrite the input volume" in err, err
    markers = tmp_path / "l.json"
    markers.write_text(json.dumps([[[0, 0, 0], [5, 5, 0]]]))
    rc, err = run_cli(capsys, "markers", volume_file, markers, "--out", volume_file)
    assert rc == 2 and "would overwrite the input volume" in err
    assert volume_file.read_bytes() == before


def test_overlay_equal_to_input_or_out_is_refused(tmp_path, capsys, no_model):
    png = tmp_path / "img.png"
    from PIL import Image

    Image.fromarray((np.random.default_rng(0).random((32, 32)) * 255).astype(np.uint8)).save(png)
    before = png.read_bytes()
    rc, err = run_cli(capsys, "segment", png, "--box", 2, 2, 20, 20, "--out", tmp_path / "m.png", "--overlay", png)
    assert rc == 2 and "--overlay" in err and "would overwrite the input image" in err
    rc, err = run_cli(capsys, "segment", png, "--box", 2, 2, 20, 20, "--out", tmp_path / "m.png",
                      "--overlay", tmp_path / "m.png")
    assert rc == 2 and "is the same file as --out" in err
    assert png.read_bytes() == before and files_in(tmp_path) == ["img.png"]


def test_check_outputs_refuses_a_folder(tmp_path):
    from medsamkit.io import check_outputs

    with pytest.raises(InputError, match="is a folder"):
        check_outputs([("--out", tmp_path)])


# ---- 3. a truncated .nii.gz is refused, not zero-filled -------------------------------------------
def _truncations(tmp_path, volume_file):
    raw = gzip.decompress(volume_file.read_bytes())
    short = tmp_path / "short.nii.gz"  # a complete gzip stream of a file cut in the middle of its voxels
    short.write_bytes(gzip.compress(raw[: len(raw) // 2]))
    cut = tmp_path / "cut.nii.gz"      # a download that stopped: the gzip stream itself ends early
    data = volume_file.read_bytes()
    cut.write_bytes(data[: len(data) // 2])
    plain = tmp_path / "short.nii"
    plain.write_bytes(raw[: len(raw) - 100])
    return short, cut, plain


def test_truncated_nifti_is_refused(tmp_path, volume_file, capsys, no_model):
    for path in _truncations(tmp_path, volume_file):
        with pytest.raises(InputError, match="truncated"):
            read_image(path)
        rc, err = run_cli(capsys, "segment", path, "--slice", 5, "--box", 20, 20, 40, 40, "--out", tmp_path / "m.nii.gz")
        assert rc == 2 and "truncated" in err, err
    assert read_image(volume_file).array.shape == (12, 64, 64)  # the intact file still reads
    assert not (tmp_path / "m.nii.gz").exists()


def test_truncated_nifti_and_out_equal_to_input_are_refused_by_batch(tmp_path, volume_file):
    pytest.importorskip("slicer", reason="the headless batch runs on slicer-core")
    from medsamkit.cli.batch import Case, build_parser, run_case
    from medsamkit.mrml.context import make_context

    short, _cut, _plain = _truncations(tmp_path, volume_file)
    boxes = tmp_path / "boxes.json"
    boxes.write_text(json.dumps({"axis": 0, "boxes": {"5": [20, 20, 40, 40]}}))
    args = build_parser().parse_args(["--volume", str(short), "--boxes", str(boxes), "--out", "x.seg.nrrd"])
    before = volume_file.read_bytes()
    # backend=None: both cases must be refused before anything is segmented
    ctx = make_context()
    report = run_case(None, ctx, Case(str(short), str(tmp_path / "a.seg.nrrd"), None, str(boxes)), args)
    assert not report.ok and "truncated" in report.message, report.message
    same = tmp_path / "ct.seg.nrrd"
    os.link(volume_file, same)  # the output path is another name of the input file
    report = run_case(None, ctx, Case(str(volume_file), str(same), None, str(boxes)), args)
    assert not report.ok and "would overwrite the input volume" in report.message, report.message
    assert volume_file.read_bytes() == before and not (tmp_path / "a.seg.nrrd").exists()


# ---- 4. NaN / Inf: one rule (refused, naming count and first voxel), never a blank slice ----------
def test_nan_voxel_refuses_the_3d_job_instead_of_blanking_a_slice():
    from medsamkit.markers import BoxPlan
    from medsamkit.volume_segmentation import propagate, segment_volume

    vol = sphere_volume().astype(np.float32)
    vol[6, 30, 31] = np.nan
    vol[7, 1, 2] = np.inf
    for norm in ("soft-tissue", "auto", "percentile", "800,200"):
        with pytest.raises(InputError, match=r"2 NaN or infinite voxels \(the first, nan, at voxel IJK \(31, 30, 6\)\)"):
            propagate(None, vol, 5, 0, box=[20, 20, 40, 40], normalization=norm)  # refused before any model call
        with pytest.raises(InputError):
            segment_volume(None, vol, BoxPlan(axis=0, boxes={6: np.array([20, 20, 40, 40.0])}, marked=[6]),
                           normalization=norm)


def test_nan_rule_is_the_same_for_set_volume_set_image_and_the_cli(tmp_path, capsys, no_model):
    from medsamkit.backend.local import LocalBackend
    from medsamkit.predictor import Predictor

    backend = LocalBackend(predictor=Predictor.__new__(Predictor))  # no model: the check comes first
    vol = sphere_volume().astype(np.float32)
    vol[3, 4, 5] = np.nan
    with pytest.raises(InputError, match=r"voxel IJK \(5, 4, 3\)"):
        backend.set_volume(vol, "soft-tissue")
    with pytest.raises(InputError, match=r"pixel x=5, y=4"):
        backend.set_image(vol[3], "soft-tissue")
    path = write_volume(vol, tmp_path / "nan.nrrd")  # (SimpleITK reads NaN in NIfTI back as 0)
    rc, err = run_cli(capsys, "segment", path, "--slice", 8, "--box", 20, 20, 40, 40, "--window", "soft-tissue",
                      "--out", tmp_path / "m.nii.gz")
    assert rc == 2 and "NaN or infinite voxel" in err and "IJK (5, 4, 3)" in err
    rc, err = run_cli(capsys, "propagate", path, "--slice", 8, "--box", 20, 20, 40, 40, "--out", tmp_path / "m.nii.gz")
    assert rc == 2 and "NaN or infinite voxel" in err
    assert files_in(tmp_path) == ["nan.nrrd"]


# ---- 6. tracebacks -> one line and exit 2 ----------------------------------------------------------
def test_read_only_folder_and_folder_as_output(tmp_path, readonly_dir):
    mask = np.ones((2, 8, 8), np.uint8)
    for out in (readonly_dir / "m.nii.gz", readonly_dir / "sub" / "m.nii.gz"):
        with pytest.raises(MedSAMError, match="Cannot (write|create)"):
            write_mask(mask, out)
    (tmp_path / "dir.nii.gz").mkdir()
    with pytest.raises(MedSAMError, match="it is a folder"):
        write_mask(mask, tmp_path / "dir.nii.gz")
    blocker = tmp_path / "afile"
    blocker.write_text("x")
    with pytest.raises(MedSAMError):
        write_mask(mask, blocker / "m.nii.gz")


def _png_header(width: int, height: int) -> bytes:
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    chunk = b"IHDR" + ihdr
    body = struct.pack(">I", len(ihdr)) + chunk + struct.pack(">I", zlib.crc32(chunk))
    idat = zlib.compress(b"\0" * 64)
    body += struct.pack(">I", len(idat)) + b"IDAT" + idat + struct.pack(">I", zlib.crc32(b"IDAT" + idat))
    return b"\x89PNG\r\n\x1a\n" + body + struct.pack(">I", 0) + b"IEND" + struct.pack(">I", zlib.crc32(b"IEND"))


@pytest.mark.parametrize("size", [(100000, 100000), (20000, 20000)])
def test_png_header_declaring_a_huge_image_is_refused(tmp_path, size, capsys, no_model):
    bomb = tmp_path / "bomb.png"
    bomb.write_bytes(_png_header(*size))
    with pytest.raises(InputError):
        read_image(bomb)
    rc, err = run_cli(capsys, "segment", bomb, "--box", 1, 1, 9, 9, "--out", tmp_path / "m.png")
    assert rc == 2 and "megapixels" in err or "decompression bomb" in err.lower(), err


@pytest.mark.parametrize("doc,match", [
    ({"markups": {"type": "Line"}}, "'markups' must be a list"),
    ({"markups": ["Line"]}, "not a JSON object"),
    ({"markups": [{"type": "Line", "controlPoints": {"position": [1, 2, 3]}}]}, "malformed 'controlPoints'"),
    ({"markups": [{"type": "Line", "controlPoints": [1, 2]}]}, "malformed 'controlPoints'"),
    ({"markups": [{"type": "Line", "controlPoints": [{"position": "abc"}, {"position": [1, 2, 3]}]}]}, "position"),
    ({"markups": [{"type": "Line", "controlPoints": [{"position": [1, 2]}, {"position": [1, 2, 3]}]}]}, "position"),
    ({"markups": [{"type": "Line", "controlPoints": [{"position": [1, "x", 3]}, {"position": [1, 2, 3]}]}]}, "position"),
    ([{"start": ["a", 0, 0], "end": [1, 1, 1]}], "not a line|3 finite numbers"),
])
def test_malformed_mrk_json_is_one_line(tmp_path, volume_file, doc, match, capsys, no_model):
    path = tmp_path / "L.mrk.json"
    path.write_text(json.dumps(doc))
    rc, err = run_cli(capsys, "markers", volume_file, path, "--out", tmp_path / "o.seg.nrrd")
    assert rc == 2 and err.count("\n") == 1 and "Traceback" not in err, err
    assert __import__("re").search(match, err), err


@pytest.mark.parametrize("manifest", ["{not json", "[]", '{"datasets": []}', '{"cases": {"a": 1}}', '{"cases": [{"id": 1}]}'])
def test_bench_with_a_malformed_manifest(tmp_path, manifest, capsys, no_model):
    (tmp_path / "manifest.json").write_text(manifest)
    rc, err = run_cli(capsys, "bench", tmp_path, "--json", tmp_path / "out.json")
    assert rc == 2 and "manifest.json" in err and err.count("\n") == 1, err
    assert not (tmp_path / "out.json").exists()


# ---- 9. numeric options are checked at parse time ----------------------------------------------------
@pytest.mark.parametrize("argv,match", [
    (["propagate", "V", "--slice", "0", "--box", "1", "1", "5", "5", "--out", "o.nii.gz", "--threshold", "5"], "outside 0..1"),
    (["propagate", "V", "--slice", "0", "--box", "1", "1", "5", "5", "--out", "o.nii.gz", "--threshold", "nan"], "finite"),
    (["propagate", "V", "--slice", "0", "--box", "1", "1", "5", "5", "--out", "o.nii.gz", "--margin", "-5"], "negative"),
    (["propagate", "V", "--slice", "-1", "--box", "1", "1", "5", "5", "--out", "o.nii.gz"], "negative"),
    (["markers", "V", "m.json", "--out", "o.nii.gz", "--margin", "-5"], "negative"),
    (["bench", "D", "--json", "o.json", "--every", "0"], "1 or more"),
    (["serve", "--max-sessions", "0"], "1 or more"),
    (["serve", "--max-upload-mb", "-1"], "greater than 0"),
    (["serve", "--session-ttl", "-5"], "greater than 0"),
    (["serve", "--max-memory-mb", "0"], "greater than 0"),
    (["serve", "--port", "-1"], "not a TCP port"),
    (["serve", "--port", "70000"], "not a TCP port"),
    (["serve", "--port", "http"], "not an integer"),
])
def test_numeric_options_are_checked_at_parse_time(argv, match, capsys, monkeypatch):
    import medsamkit.cli.serve as cli_serve
    import medsamkit.cli.volume as cli_volume

    def ran(_args):
        raise AssertionError("the option was accepted and the command ran")

    for mod, name in ((cli_serve, "run"), (cli_volume, "cmd_propagate"), (cli_volume, "cmd_markers"),
                      (cli_volume, "cmd_bench")):
        monkeypatch.setattr(mod, name, ran)
    rc, err = run_cli(capsys, *argv)
    assert rc == 2 and match in err and "Traceback" not in err, err


def test_cli_types_accept_the_valid_range():
    from medsamkit.cli import arg_types as cli_types
    assert cli_types.probability("0") == 0 and cli_types.probability("1") == 1
    assert cli_types.port("0") == 0 and cli_types.port("65535") == 65535
    assert cli_types.positive_int("1") == 1 and cli_types.non_negative_float("0") == 0


# ---- 10. outputs of one command are one unit -----------------------------------------------------
def test_output_group_is_all_or_nothing(tmp_path, readonly_dir):
    from medsamkit.io import output_group

    (tmp_path / "m.nii.gz").write_bytes(b"old mask")
    with pytest.raises(MedSAMError):
        with output_group() as g:
            write_mask(np.ones((2, 8, 8), np.uint8), tmp_path / "m.nii.gz", group=g)
            write_overlay_png(np.zeros((8, 8, 3), np.uint8), np.ones((8, 8)), readonly_dir / "o.png", group=g)
    assert (tmp_path / "m.nii.gz").read_bytes() == b"old mask" and files_in(tmp_path) == ["m.nii.gz", "readonly"]
    with output_group() as g:  # and both land when both can be written
        write_mask(np.ones((2, 8, 8), np.uint8), tmp_path / "m.nii.gz", group=g)
        write_overlay_png(np.zeros((8, 8, 3), np.uint8), np.ones((8, 8)), tmp_path / "o.png", group=g)
    assert read_image(tmp_path / "m.nii.gz").array.sum() == 128 and (tmp_path / "o.png").stat().st_size > 0
    assert files_in(tmp_path) == ["m.nii.gz", "o.png", "readonly"]


# ---- 11. file modes follow the umask / the replaced file -------------------------------------------
def test_output_modes_follow_umask_and_keep_an_existing_mode(tmp_path):
    old = os.umask(0o022)
    try:
        write_mask(np.ones((2, 8, 8), np.uint8), tmp_path / "a.nii.gz")
        assert (tmp_path / "a.nii.gz").stat().st_mode & 0o777 == 0o644
        os.umask(0o077)
        write_mask(np.ones((8, 8), np.uint8), tmp_path / "b.png")
        assert (tmp_path / "b.png").stat().st_mode & 0o777 == 0o600
        (tmp_path / "a.nii.gz").chmod(0o640)
        os.umask(0o022)
        write_mask(np.zeros((2, 8, 8), np.uint8), tmp_path / "a.nii.gz")  # overwrite keeps 0640
        assert (tmp_path / "a.nii.gz").stat().st_mode & 0o777 == 0o640
    finally:
        os.umask(old)


# ---- 12. partial files of a killed write are cleaned by the next write of the same target ------------
def test_kill_9_during_a_write_leaves_nothing_after_the_next_run(tmp_path):
    target = tmp_path / "m.nii.gz"
    code = ("import sys, time; from medsamkit.io import atomic_output\n"
            f"with atomic_output({str(target)!r}) as tmp:\n"
            "    open(tmp, 'wb').write(b'half a mask'); print('writing', flush=True); time.sleep(120)\n")
    proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE)  # inherits PYTHONPATH
    try:
        assert proc.stdout.readline().strip() == b"writing"
    finally:
        proc.kill()  # SIGKILL: no cleanup runs
        proc.wait(30)
    partials = [n for n in files_in(tmp_path) if n.endswith(".partial.nii.gz")]
    assert len(partials) == 1 and not target.exists()
    old_style = tmp_path / ".m.nii.gz.abcd1234.partial.nii.gz"  # left by an older version: no pid
    old_style.write_bytes(b"x")
    os.utime(old_style, (time.time() - 3600, time.time() - 3600))
    live = tmp_path / f".m.nii.gz.{os.getppid()}-live.partial.nii.gz"  # a writer still running: kept
    live.write_bytes(b"x")
    other = tmp_path / f".other.nii.gz.{proc.pid}-zzzz.partial.nii.gz"  # another target's: kept
    other.write_bytes(b"x")
    write_mask(np.ones((2, 8, 8), np.uint8), target)
    assert files_in(tmp_path) == sorted([live.name, other.name, "m.nii.gz"])
    from medsamkit.io import remove_stale_partials

    assert remove_stale_partials(tmp_path / "other.nii.gz") == [other]


# ---- 13. legacy-pickle checkpoints: the project's own refusal, never "weights_only=False" -------------
class _Payload:
    def __reduce__(self):
        return (os.system, ("echo PAYLOAD-RAN > payload-ran.txt",))


@pytest.mark.parametrize("legacy", [True, False])
def test_pickled_payload_refusal_never_suggests_weights_only_false(tmp_path, legacy, monkeypatch):
    import torch

    from medsamkit.models.checkpoints import read_checkpoint

    monkeypatch.chdir(tmp_path)
    path = tmp_path / "evil.pth"
    torch.save({"model": {"w": torch.zeros(2)}, "extra": _Payload()}, path, _use_new_zipfile_serialization=not legacy)
    with pytest.raises(CheckpointError) as info:
        read_checkpoint(path)
    msg = str(info.value)
    assert "Refusing to load" in msg and "system" in msg and "never unpickles" in msg, msg
    assert "weights_only=False" not in msg and "weights_only" not in msg
    assert not (tmp_path / "payload-ran.txt").exists()


# ---- also: slice / box / plane checked before the model; numbers printed as numbers ----------------
@pytest.mark.parametrize("extra,match", [
    (["--slice", "99", "--box", "20", "20", "40", "40"], "Slice 99 is outside the volume"),
    (["--box", "20", "20", "40", "40"], "choose a slice"),
    (["--slice", "5", "--box", "200", "200", "300", "300"], "lies outside the image"),
    (["--slice", "5", "--box", "20", "20", "40", "40", "--axis", "oblique"], "axial"),
    (["--slice", "5", "--point", "10", "10", "2"], "Point label"),
    (["--slice", "5", "--box", "nan", "20", "40", "40"], "[nan, 20, 40, 40]"),
])
def test_slice_and_prompt_are_checked_before_the_model(tmp_path, volume_file, extra, match, capsys, no_model):
    t0 = time.perf_counter()
    rc, err = run_cli(capsys, "segment", volume_file, *extra, "--out", tmp_path / "m.nii.gz")
    assert rc == 2 and match in err and "np.float64" not in err, err
    assert time.perf_counter() - t0 < 5.0  # no model load (7-9 s before)
    rc, err = run_cli(capsys, "propagate", volume_file, *(extra if "--slice" in extra else ["--slice", "99", *extra]),
                      "--out", tmp_path / "m.nii.gz")
    assert rc == 2 and "np.float64" not in err, err


def test_prompt_messages_show_numbers_not_numpy_reprs():
    from medsamkit.prompts import make_prompt

    with pytest.raises(InputError) as info:
        make_prompt((10, 10), box=np.array([np.nan, 1.0, 5.0, np.float64(7)]))
    assert "[nan, 1, 5, 7]" in str(info.value) and "np.float64" not in str(info.value)


def test_every_user_error_is_a_medsamerror():
    from medsamkit.errors import NonFiniteError, OutputError

    assert issubclass(OutputError, MedSAMError) and issubclass(NonFiniteError, InputError)
