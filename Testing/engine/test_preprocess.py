"""Intensity presets, percentile clipping and the model-input transform."""
import numpy as np
import pytest

from medsamkit.errors import InputError
from medsamkit.preprocess import (ModelTransform, Normalization, TransformSpec, normalize_to_uint8,
                                  parse_normalization, resolve_normalization)


@pytest.mark.parametrize("name,width,level", [("soft-tissue", 400, 40), ("lung", 1500, -160),
                                              ("brain", 80, 40), ("bone", 1800, 400)])
def test_window_presets_have_documented_values(name, width, level):
    norm = parse_normalization(name)
    assert (norm.low, norm.high) == (level - width / 2, level + width / 2)
    hu = np.array([[level - width / 2 - 100, level - width / 2, level, level + width / 2, level + width / 2 + 500]],
                  dtype=np.int16).repeat(2, axis=0)
    out = normalize_to_uint8(hu, norm)
    assert out.shape == (2, 5, 3) and out.dtype == np.uint8
    assert out[0, :, 0].tolist() == [0, 0, 128, 255, 255]


def test_custom_window_and_aliases():
    assert parse_normalization("400,40") == parse_normalization("soft-tissue").__class__.window(400, 40)
    assert parse_normalization("Soft Tissue").low == -160
    with pytest.raises(InputError, match="Unknown window"):
        parse_normalization("liver-ish")
    with pytest.raises(InputError, match="positive"):
        parse_normalization("-5,40")


def test_callers_array_is_never_modified():
    rng = np.random.default_rng(0)
    ct = rng.integers(-1000, 1000, size=(40, 50)).astype(np.int16)
    mr = rng.random((40, 50)).astype(np.float32) * 900
    mr[:5] = 0
    before_ct, before_mr = ct.copy(), mr.copy()
    normalize_to_uint8(ct, "lung")
    normalize_to_uint8(mr, "percentile")
    normalize_to_uint8(mr, "auto")
    assert np.array_equal(ct, before_ct) and np.array_equal(mr, before_mr)


def test_percentile_clip_keeps_zero_background_and_clips_outliers():
    rng = np.random.default_rng(1)
    mr = rng.normal(500, 50, size=(100, 100)).astype(np.float32)
    mr[:20] = 0.0            # background
    mr[50, 50] = 1e6         # a hot pixel must not compress the contrast
    norm = resolve_normalization("percentile", mr)
    fg = mr[20:].ravel()
    assert norm.mode == "range" and norm.keep_zero
    assert norm.low == pytest.approx(np.percentile(fg, 0.5), rel=1e-4)
    assert norm.high == pytest.approx(np.percentile(fg, 99.5), rel=1e-4)
    out = normalize_to_uint8(mr, norm)[..., 0]
    assert (out[:20] == 0).all()
    assert out[50, 50] == 255 and 100 < np.median(out[20:]) < 160


def test_auto_choices():
    ct = np.full((10, 10), -1000, np.int16)
    ct[3:7, 3:7] = 60
    assert resolve_normalization("auto", ct).label == "soft-tissue"
    assert resolve_normalization("auto", np.zeros((4, 4), np.uint8)).mode == "none"
    assert resolve_normalization("auto", np.arange(16, dtype=np.uint16).reshape(4, 4)).label == "percentile"
    assert resolve_normalization("auto", np.arange(16.0).reshape(4, 4), modality="CT").label == "soft-tissue"


@pytest.mark.parametrize("bad,match", [
    (np.full((8, 8), np.nan, np.float32), "NaN"),
    (np.zeros((2, 3, 8, 8), np.float32), "4D|shape"),
    (np.zeros((0, 5), np.float32), "empty"),
    (np.full((8, 8), 7.0, np.float32), "constant"),
])
def test_bad_images_raise_clear_errors(bad, match):
    with pytest.raises(InputError, match=match):
        normalize_to_uint8(bad, "percentile")


def test_rgb_and_rgba_inputs():
    rgba = np.zeros((6, 8, 4), np.uint8)
    rgba[..., 0] = np.arange(8)
    out = normalize_to_uint8(rgba, "none")
    assert out.shape == (6, 8, 3) and np.array_equal(out[..., 0], rgba[..., 0])


def test_longest_side_transform_maps_box_and_crops_padding():
    tf = ModelTransform(TransformSpec(size=256, resize="longest", interpolation="area"))
    h, w = 300, 600
    assert tf.resized_hw(h, w) == (128, 256)
    rgb = np.zeros((h, w, 3), np.uint8)
    rgb[100:200, 300:400] = 200
    x = tf.image_to_input(rgb)
    assert x.shape == (3, 256, 256) and x.dtype == np.float32
    assert x.max() == pytest.approx(1.0) and (x[:, 128:, :] == 0).all()  # min-max then zero padding below
    box = tf.box_to_input([300, 100, 400, 200], h, w)
    assert np.allclose(box, [128, 42.6667, 170.6667, 85.3333], atol=1e-3)
    # the region the box covers in the model frame holds the bright square
    assert x[0, 45:83, 131:168].min() > 0.9
    import torch
    low = torch.zeros(1, 1, 256, 256)
    low[..., 128:, :] = 10.0  # logits in the padding must never reach the original frame
    assert (tf.logits_to_original(low, h, w) <= 0).all()


def test_squash_transform_scales_axes_separately():
    tf = ModelTransform(TransformSpec(size=1024, resize="squash", interpolation="cubic"))
    assert np.allclose(tf.coords_to_input([[50, 10]], 20, 100), [[512, 512]])


def test_normalization_key_distinguishes_windows():
    assert parse_normalization("lung").key != parse_normalization("soft-tissue").key
    assert Normalization("none").key == "none"


def _uint8_images(paths_and_modalities):
    """Display-value images as LiteMedSAM gets them: 2D images, and every slice of a volume along each axis."""
    from medsamkit.errors import ConstantImageError
    from medsamkit.io import read_image

    for path, modality in paths_and_modalities:
        arr = read_image(path).array
        norm = resolve_normalization("auto", arr, modality)
        if arr.ndim == 3 and arr.shape[-1] not in (3, 4):
            planes = [np.take(arr, i, axis=ax) for ax in range(3) for i in range(arr.shape[ax])]
        else:
            planes = [arr]
        for plane in planes:
            try:
                yield f"{path.name} {plane.shape}", normalize_to_uint8(plane, norm)
            except ConstantImageError:
                continue


def _assert_area_resize_is_opencv(images) -> dict:
    cv2 = pytest.importorskip("cv2")
    from medsamkit.fast.resize import resize_area
    from medsamkit.models.litemedsam import TRANSFORM

    t = ModelTransform(TRANSFORM)
    seen = {"shrink": 0, "enlarge": 0}
    for name, rgb in images:
        nh, nw = t.resized_hw(*rgb.shape[:2])
        want = cv2.resize(rgb, (nw, nh), interpolation=cv2.INTER_AREA)
        assert np.array_equal(resize_area(rgb, nw, nh), want), name
        seen["enlarge" if nh > rgb.shape[0] or nw > rgb.shape[1] else "shrink"] += 1
    return seen


def test_area_resize_is_opencv_bit_for_bit_on_test_images(test_data):
    paths = [(p, None) for p in sorted(test_data.glob("*.img.*"))]
    seen = _assert_area_resize_is_opencv(_uint8_images(paths))
    assert seen["shrink"] > 50, seen  # enlarging: the dev set (BraTS slices) and the noise test


def test_area_resize_is_opencv_bit_for_bit_on_every_dev_image(dev_data, dev_manifest):
    paths = [(dev_data / c["image"], c.get("modality")) for c in dev_manifest["cases"]]
    seen = _assert_area_resize_is_opencv(_uint8_images(paths))
    assert seen["shrink"] > 1000 and seen["enlarge"] > 100, seen


@pytest.mark.parametrize("hw", [(512, 512), (1024, 768), (540, 800), (300, 301), (999, 257), (255, 3),
                                (31, 17), (180, 181), (2, 300), (4096, 40)])
def test_area_resize_is_opencv_bit_for_bit_on_noise(hw):
    """Every branch: factor 2 and other integer factors, fractional shrinking, enlarging, mixed."""
    rng = np.random.default_rng(sum(hw))
    images = [(f"{hw} {c}", rng.integers(0, 256, size=(*hw, c), dtype=np.uint8)) for c in (1, 3)]
    _assert_area_resize_is_opencv([(n, im[..., 0] if im.shape[-1] == 1 else im) for n, im in images])


def test_litemedsam_input_needs_no_opencv(monkeypatch):
    import sys

    from medsamkit.models.litemedsam import TRANSFORM

    monkeypatch.setitem(sys.modules, "cv2", None)  # import cv2 fails
    rgb = np.random.default_rng(0).integers(0, 256, size=(300, 200, 3), dtype=np.uint8)
    x = ModelTransform(TRANSFORM).image_to_input(rgb)
    assert x.shape == (3, 256, 256) and x.dtype == np.float32 and x.max() == 1.0 and x[:, :, 171:].max() == 0
