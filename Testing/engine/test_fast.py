"""ONNX Runtime engine vs the PyTorch reference: same masks on every modality, cache reuse.

The real LiteMedSAM is exported once for this module into a tmp cache folder (~15 s on 2 cores);
the torch embeddings come from the session's ``shared_predictor`` (so slices other tests encode
are not encoded again). Masks must agree with Dice >= 0.99 (they agree to ~1e-4 in logits).
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from conftest import SAMPLE_DIR, TEST_DATA, dice, load_2d_case

pytest.importorskip("onnxruntime", reason="the ONNX engine needs onnxruntime (pip install 'medsamkit[fast]')")


@pytest.fixture(scope="module")
def cache_dir(tmp_path_factory):
    return tmp_path_factory.mktemp("medsamkit-cache")


@pytest.fixture(scope="module")
def onnx_model(lite_model, cache_dir):
    """The shipped graphs bound to the torch model's weights: nothing is exported."""
    from medsamkit.fast.artifacts import EXPORT_COUNTS
    from medsamkit.fast.engine import with_engine

    before = sum(EXPORT_COUNTS.values())
    model = with_engine(lite_model, "onnx", cache_dir=cache_dir)
    assert getattr(model, "engine", None) == "onnx", getattr(model, "fallback_reason", None)
    assert sum(EXPORT_COUNTS.values()) == before and "shipped graph" in model.encoder_path
    return model


@pytest.fixture(scope="module")
def exported_model(lite_model, cache_dir):
    """The graphs exported from the torch network into the cache (the route of int8 and adapters)."""
    from medsamkit.fast.artifacts import EXPORT_COUNTS
    from medsamkit.fast.engine import build_onnx_model

    before = sum(EXPORT_COUNTS.values())
    model = build_onnx_model(lite_model, "fp32", cache_dir=cache_dir, shipped=False)
    assert sum(EXPORT_COUNTS.values()) - before == 3  # encoder + the decoder's image and prompt parts, once
    return model


def _cases():
    """(name, image, normalization, [(box XYXY, gt mask)]) for one slice of every modality."""
    from medsamkit.io import read_image

    manifest = json.loads((TEST_DATA / "manifest.json").read_text(encoding="utf-8"))
    out = []
    seen = set()
    for case in manifest["cases"]:
        if case["kind"] != "2d" or case["modality"] in seen:
            continue
        seen.add(case["modality"])
        img, masks = load_2d_case(TEST_DATA, case)
        boxes = [(case["label_bboxes_xyxy"][str(k)], masks[k]) for k in sorted(masks)][:3]
        out.append((case["modality"], img, "auto", boxes))
    for name, img_path, lab_path, norm in (
            ("MR brain1", TEST_DATA / "brain1.img.nii.gz", TEST_DATA / "brain1.seg.nii.gz", "auto"),
            ("CT lung", SAMPLE_DIR / "sample_lung_ct.nii.gz", SAMPLE_DIR / "sample_lung_ct.label.nii.gz", "lung")):
        vol, lab = read_image(img_path).array, read_image(lab_path).array > 0
        k = int(np.argmax(lab.sum(axis=(1, 2))))
        ys, xs = np.nonzero(lab[k])
        out.append((name, vol[k], norm, [([xs.min() - 3, ys.min() - 3, xs.max() + 3, ys.max() + 3], lab[k])]))
    return out


CASES = _cases()


@pytest.mark.parametrize("case", CASES, ids=[c[0] for c in CASES])
def test_onnx_masks_match_torch_on_every_modality(case, onnx_model, shared_predictor):
    from medsamkit.predictor import Predictor

    name, image, norm, boxes = case
    fast = Predictor(onnx_model)
    shared_predictor.set_image(image, normalization=norm)
    fast.set_image(image, normalization=norm)
    emb_t = shared_predictor._embedding.numpy()
    emb_f = fast._embedding
    assert emb_f.shape == emb_t.shape == (1, 256, 64, 64)
    assert np.abs(emb_f - emb_t).max() < 1e-3 * np.abs(emb_t).max()
    for box, gt in boxes:
        ref, got = shared_predictor.predict(box=box), fast.predict(box=box)
        assert dice(ref.mask, got.mask) >= 0.99, name
        assert abs(ref.score - got.score) < 1e-3
        assert dice(got.mask, gt) > 0.5, name  # and the mask is the structure, not an empty match
        # a click inside the box, then a refinement with the previous logits
        cx, cy = (box[0] + box[2]) / 2, (box[1] + box[3]) / 2
        ref_p = shared_predictor.predict(points=[[cx, cy]], point_labels=[1], mask_input=ref.low_res_logits)
        got_p = fast.predict(points=[[cx, cy]], point_labels=[1], mask_input=ref.low_res_logits)
        assert dice(ref_p.mask, got_p.mask) >= 0.99, name


def test_decoder_matches_torch_for_every_prompt_combination(onnx_model, exported_model, lite_model):
    """Logits of the ONNX decoder equal torch's for points/box/mask/multimask, on one embedding."""
    import torch

    rng = np.random.default_rng(0)
    emb = torch.from_numpy(rng.standard_normal((1, 256, 64, 64)).astype(np.float32) * 0.3)
    mask = rng.standard_normal((256, 256)).astype(np.float32)
    combos = [
        dict(box=np.array([30.0, 40.0, 200.0, 180.0])),
        dict(coords=np.array([[100.0, 90.0]]), labels=np.array([1])),
        dict(coords=np.array([[100.0, 90.0], [20.0, 30.0]]), labels=np.array([1, 0]), multimask=True),
        dict(coords=np.array([[100.0, 90.0]]), labels=np.array([0]), box=np.array([30.0, 40.0, 200.0, 180.0])),
        dict(coords=np.array([[120.0, 60.0]]), labels=np.array([1]), mask_input=mask),
    ]
    for kw in combos:
        ref_logits, ref_iou = lite_model.decode(emb, **kw)
        for model in (onnx_model, exported_model):
            got_logits, got_iou = model.decode(emb, **kw)
            assert got_logits.shape == ref_logits.shape and got_iou.shape == ref_iou.shape
            assert np.allclose(got_logits, ref_logits.numpy(), atol=2e-3, rtol=1e-3), kw.keys()
            assert np.allclose(got_iou, ref_iou.numpy(), atol=1e-4), kw.keys()


def test_decoder_image_part_runs_once_per_embedding(onnx_model, lite_model):
    """encode() prepares the decoder's image part; clicks on that embedding only run the prompt part,
    a mask prompt computes its own (and leaves the remembered one alone), and another embedding
    object with the same values gets its own image part and the same logits."""
    import torch

    from medsamkit.io import read_image
    from medsamkit.preprocess import normalize_to_uint8

    vol = read_image(SAMPLE_DIR / "sample_lung_ct.nii.gz").array
    x = onnx_model.transform.image_to_input(normalize_to_uint8(vol[vol.shape[0] // 2], "lung"))
    calls = onnx_model.image_part_calls
    emb = onnx_model.encode(x)
    assert onnx_model.image_part_calls == calls + 1
    box = np.array([40.0, 60.0, 200.0, 190.0])
    first, _ = onnx_model.decode(emb, box=box)
    for kw in (dict(box=box + 5), dict(coords=np.array([[120.0, 120.0]]), labels=np.array([1])), dict(box=box)):
        logits, _ = onnx_model.decode(emb, **kw)
        ref, _ = lite_model.decode(torch.from_numpy(emb), **kw)
        assert np.allclose(logits, ref.numpy(), atol=2e-3, rtol=1e-3)
    assert np.array_equal(logits, first)  # the same click again: the same bits
    masked, _ = onnx_model.decode(emb, box=box, mask_input=first[0])
    ref, _ = lite_model.decode(torch.from_numpy(emb), box=box, mask_input=first[0])
    assert np.allclose(masked, ref.numpy(), atol=2e-3, rtol=1e-3) and not np.array_equal(masked, first)
    assert onnx_model.image_part_calls == calls + 1  # no recomputation for any of those clicks
    assert np.array_equal(onnx_model.decode(emb, box=box)[0], first)  # the mask click did not replace it
    copy = emb.copy()
    assert np.array_equal(onnx_model.decode(copy, box=box)[0], first)
    assert onnx_model.image_part_calls == calls + 2
    copy *= 0.5  # overwritten in place: its remembered image part must not be used
    halved, _ = onnx_model.decode(copy, box=box)
    assert onnx_model.image_part_calls == calls + 3
    assert np.allclose(halved, lite_model.decode(torch.from_numpy(copy), box=box)[0].numpy(), atol=2e-3, rtol=1e-3)


def test_model_interface_and_distinct_cache_identity(onnx_model, lite_model):
    assert onnx_model.model_id != lite_model.model_id  # embeddings of the two engines never mix in a cache
    assert onnx_model.model_id.startswith(lite_model.model_id)
    assert (onnx_model.kind, onnx_model.spec, onnx_model.transform) == (lite_model.kind, lite_model.spec,
                                                                          lite_model.transform)
    assert onnx_model.low_res_size == 256 and onnx_model.device == "cpu"
    calls = onnx_model.encoder_calls
    onnx_model.encode(np.zeros((3, 256, 256), np.float32))
    assert onnx_model.encoder_calls == calls + 1


def test_second_start_reuses_export_and_corrupt_file_is_rebuilt(exported_model, lite_model, cache_dir):
    from medsamkit.fast.artifacts import EXPORT_COUNTS, sha256_file
    from medsamkit.fast.engine import build_onnx_model

    onnx_model = exported_model

    def with_engine(model, engine, cache_dir):
        return build_onnx_model(model, "fp32", cache_dir=cache_dir, shipped=False)

    before = dict(EXPORT_COUNTS)
    again = with_engine(lite_model, "onnx", cache_dir=cache_dir)
    assert again.engine == "onnx" and EXPORT_COUNTS == before  # nothing exported: files reused

    enc = cache_dir / Path(onnx_model.encoder_path).name
    good = sha256_file(enc)
    data = bytearray(enc.read_bytes())
    data[len(data) // 2: len(data) // 2 + 64] = bytes(64)  # flip weights in the middle: still loadable
    enc.write_bytes(bytes(data))
    rebuilt = with_engine(lite_model, "onnx", cache_dir=cache_dir)
    stem = enc.name[:-len(".onnx")]
    assert EXPORT_COUNTS[stem] == before[stem] + 1  # detected by its hash and exported again
    assert rebuilt.engine == "onnx"
    assert sha256_file(enc) == good  # the export is deterministic: the same bytes as the first time
    assert not [p.name for p in cache_dir.iterdir() if ".partial" in p.name]  # no temp files left


def test_cli_segment_with_onnx_engine(tmp_path, cache_dir, monkeypatch, capsys, onnx_model):
    from medsamkit.cli.commands import main

    monkeypatch.setenv("MEDSAMKIT_CACHE_DIR", str(cache_dir))  # reuse this module's export
    out = tmp_path / "mask.png"
    rc = main(["segment", str(TEST_DATA / "043_HC.img.png"), "--box", "123", "85", "357", "314",
               "--device", "cpu", "--engine", "onnx", "--out", str(out)])
    assert rc == 0 and out.is_file()
    assert "pixels" in capsys.readouterr().out
