"""Training data: layouts, inference-identical preprocessing, sampling, split, and clear errors on bad input.

No network runs here (only the transform); every check is against independently computed arrays.
"""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk

from medsamkit.errors import InputError
from medsamkit.models.litemedsam import TRANSFORM
from medsamkit.preprocess import ModelTransform
from medsamkit.training.cases import discover_cases, read_case
from medsamkit.training.config import TrainConfig, load_config
from medsamkit.training.dataset import SampleDataset, TrainingData
from medsamkit.training.prompt_simulation import BoxPrompt

TF = ModelTransform(TRANSFORM)


def _data(cfg):
    return TrainingData(cfg.validate(), TF, 256)


def _write_seg_nrrd(path: Path, labels: np.ndarray, ref: sitk.Image, names: dict, origin_shift_ijk=(0, 0, 0)):
    img = sitk.GetImageFromArray(labels.astype(np.uint8))
    img.SetSpacing(ref.GetSpacing())
    img.SetDirection(ref.GetDirection())
    img.SetOrigin(ref.TransformContinuousIndexToPhysicalPoint([float(v) for v in origin_shift_ijk]))
    for n, (value, name) in enumerate(names.items()):
        img.SetMetaData(f"Segment{n}_ID", f"Segment_{n + 1}")
        img.SetMetaData(f"Segment{n}_Name", name)
        img.SetMetaData(f"Segment{n}_LabelValue", str(value))
        img.SetMetaData(f"Segment{n}_Layer", "0")
    sitk.WriteImage(img, str(path), True)


def test_layouts_are_discovered(tmp_path, test_data):
    pairs = tmp_path / "pairs"
    pairs.mkdir()
    for stem in ("043_HC", "IMD030"):
        shutil.copy(test_data / f"{stem}.img.png", pairs / f"{stem}.img.png")
        shutil.copy(test_data / f"{stem}.mask.png", pairs / f"{stem}.mask.png")
    shutil.copy(test_data / "JPCLN091.img.png", pairs / "lonely.img.png")  # no label: skipped with a warning
    nn = tmp_path / "nnunet"
    (nn / "imagesTr").mkdir(parents=True)
    (nn / "labelsTr").mkdir()
    shutil.copy(test_data / "319_HC.img.png", nn / "imagesTr" / "hc319_0000.png")
    shutil.copy(test_data / "319_HC.mask.png", nn / "labelsTr" / "hc319.png")
    vols = tmp_path / "vols"
    vols.mkdir()
    ref = sitk.ReadImage(str(test_data / "brain1.img.nii.gz"))
    shutil.copy(test_data / "brain1.img.nii.gz", vols / "brain1.nii.gz")
    lab = sitk.GetArrayFromImage(sitk.ReadImage(str(test_data / "brain1.seg.nii.gz")))
    _write_seg_nrrd(vols / "brain1.seg.nrrd", lab, ref, {1: "lesion"})

    sources, warnings = discover_cases([str(pairs), str(nn), str(vols), str(test_data / "manifest.json")], [])
    ids = [s.case_id for s in sources]
    assert {"043_HC", "IMD030", "hc319", "brain1"} <= set(ids)
    assert any("without a label" in w for w in warnings)
    assert sum(i.endswith("JPCLN091") for i in ids) == 1  # from the manifest, with its dataset prefix
    brain = read_case(next(s for s in sources if s.case_id == "brain1"))
    assert brain.is_3d and [s.name for s in brain.structures] == ["lesion"]
    assert np.array_equal(brain.layers[0], lab)
    jsrt = read_case(next(s for s in sources if s.case_id.endswith("JPCLN091")))
    assert [s.name for s in jsrt.structures] == ["right lung", "left lung", "heart", "right clavicle", "left clavicle"]


def test_seg_nrrd_cropped_to_segments_is_put_back_on_the_image_grid(tmp_path, test_data):
    ref = sitk.ReadImage(str(test_data / "brain1.img.nii.gz"))
    lab = sitk.GetArrayFromImage(sitk.ReadImage(str(test_data / "brain1.seg.nii.gz")))
    k, j, i = (np.nonzero(lab)[a] for a in range(3))
    crop = lab[k.min():k.max() + 1, j.min():j.max() + 1, i.min():i.max() + 1]
    shutil.copy(test_data / "brain1.img.nii.gz", tmp_path / "b.nii.gz")
    _write_seg_nrrd(tmp_path / "b.seg.nrrd", crop, ref, {1: "lesion"}, origin_shift_ijk=(i.min(), j.min(), k.min()))
    case = read_case(discover_cases([str(tmp_path)], [])[0][0])
    assert np.array_equal(case.layers[0], lab)


def test_preprocessing_is_the_inference_path(test_data):
    """A training sample's model input is exactly what segment_image feeds the encoder."""
    from medsamkit.io import read_image
    from medsamkit.backend.local import LocalBackend
    from medsamkit.segment import segment_image

    class Capture:  # stands in for the backend's Predictor: records what segment_image would encode
        def reset(self):
            pass

        def set_display_image(self, rgb, norm):
            self.rgb = rgb
            raise StopIteration

    cfg = TrainConfig(pairs=[[str(test_data / "brain1.img.nii.gz"), str(test_data / "brain1.seg.nii.gz")],
                             [str(test_data / "IMD030.img.png"), str(test_data / "IMD030.mask.png")]],
                      val_fraction=0, window="auto", augment="none", modality="MR")
    data = _data(cfg)
    refs = [r for r in data.train_refs(0)]
    for ref in (next(r for r in refs if r.slice >= 0), next(r for r in refs if r.slice < 0)):
        sample = data.sample(ref, np.random.default_rng(0), BoxPrompt(0))
        src = data.sources[ref.case]
        cap = Capture()
        image = read_image(src.image)
        image.modality = "MR"
        with pytest.raises(StopIteration):
            segment_image(LocalBackend(predictor=cap), image, box=[0, 0, 5, 5], slice_index=ref.slice if ref.slice >= 0 else None,
                          normalization="auto")
        assert np.array_equal(sample["image"], TF.image_to_input(cap.rgb))
        gt = data.display_and_masks(ref)[1]
        ys, xs = np.nonzero(gt)
        h, w = gt.shape
        assert np.allclose(sample["box"], TF.box_to_input([xs.min(), ys.min(), xs.max(), ys.max()], h, w))
        # target: the mask resized like the image into the (unpadded part of the) 256 frame
        nh, nw = TF.resized_hw(h, w)
        assert sample["target"].shape == (1, 256, 256) and sample["target"][0, nh:, :].sum() == 0
        frac = sample["target"].sum() / (nh * nw)
        assert abs(frac - gt.mean()) < 0.02


def test_sampling_favours_foreground_and_is_reproducible(test_data):
    cfg = TrainConfig(pairs=[[str(test_data / "brain1.img.nii.gz"), str(test_data / "brain1.seg.nii.gz")]],
                      slices_per_volume=20, foreground_fraction=0.75, background_margin=3, val_fraction=0,
                      modality="MR", seed=7)
    data = _data(cfg)
    lab = sitk.GetArrayFromImage(sitk.ReadImage(str(test_data / "brain1.seg.nii.gz")))
    fg = set(np.flatnonzero(lab.any(axis=(1, 2))).tolist())
    refs = data.train_refs(0)
    assert len(refs) == 20
    on = [r for r in refs if r.slice in fg]
    off = [r for r in refs if r.slice not in fg]
    assert len(on) == 15 and len(off) == 5
    for r in off:  # background slices lie near the lesion and are prompted from the nearest lesion slice
        assert min(abs(r.slice - k) for k in fg) <= 3
        assert r.prompt_slice in fg and abs(r.prompt_slice - r.slice) == min(abs(r.slice - k) for k in fg)
        sample = data.sample(r, np.random.default_rng(0), BoxPrompt(5))
        assert sample["target"].sum() == 0 and sample["box"] is not None
    assert refs == data.train_refs(0) and refs != data.train_refs(1)


def test_validation_split_by_case_and_single_volume_block(test_data):
    stems = ["043_HC", "319_HC", "IMD030", "JPCLN091", "cju1aqqv02qwz0878a5cyhr67"]
    pairs = [[str(test_data / f"{s}.img.png"), str(test_data / f"{s}.mask.png")] for s in stems]
    data = _data(TrainConfig(pairs=pairs, val_fraction=0.4, seed=3))
    assert len(data.val_cases) == 2 and not set(data.val_cases) & set(data.train_cases)
    assert {r.case for r in data.train_refs(0)} == set(data.train_cases)
    assert {r.case for r in data.val_refs()} == set(data.val_cases)
    assert _data(TrainConfig(pairs=pairs, val_cases=["IMD030"])).val_cases == [stems.index("IMD030")]

    vol = _data(TrainConfig(pairs=[[str(test_data / "brain1.img.nii.gz"), str(test_data / "brain1.seg.nii.gz")]],
                            val_fraction=0.3, modality="MR"))
    (key, val_slices), = vol.val_slices.items()
    train_slices = {r.slice for r in vol.train_refs(0) if r.slice == r.prompt_slice}
    assert val_slices.size >= 1 and max(train_slices) < val_slices.min() - 2
    assert {r.slice for r in vol.val_refs()} <= set(val_slices.tolist())


def test_flip_augmentation_moves_image_mask_and_prompt_together(test_data):
    cfg = TrainConfig(pairs=[[str(test_data / "IMD030.img.png"), str(test_data / "IMD030.mask.png")]], val_fraction=0)
    data = _data(cfg)
    ref = data.train_refs(0)[0]
    plain = data.sample(ref, np.random.default_rng(0), BoxPrompt(0), augment=False)
    seen = set()
    for seed in range(12):
        s = data.sample(ref, np.random.default_rng(seed), BoxPrompt(0), augment=True)
        flips = s["id"].split("flip-")[1] if "flip-" in s["id"] else ""
        seen.add(flips)
        display, mask, _ = data.display_and_masks(ref)
        if "h" in flips:
            display, mask = display[:, ::-1], mask[:, ::-1]
        if "v" in flips:
            display, mask = display[::-1], mask[::-1]
        assert np.array_equal(s["image"], TF.image_to_input(np.ascontiguousarray(display)))
        assert np.array_equal(s["target"][0], data.mask_to_low_res(np.ascontiguousarray(mask)))
        ys, xs = np.nonzero(mask)
        h, w = mask.shape
        assert np.allclose(s["box"], TF.box_to_input([xs.min(), ys.min(), xs.max(), ys.max()], h, w))
    assert seen == {"", "h", "v", "hv"}
    assert np.array_equal(plain["image"], data.sample(ref, np.random.default_rng(5), BoxPrompt(0))["image"])


def test_sample_dataset_items_do_not_depend_on_call_order(test_data):
    pairs = [[str(test_data / f"{s}.img.png"), str(test_data / f"{s}.mask.png")] for s in ("043_HC", "IMD030")]
    data = _data(TrainConfig(pairs=pairs, val_fraction=0))
    ds = SampleDataset(data, data.train_refs(2), BoxPrompt(20), epoch=2, train=True)
    a = [ds[i]["box"] for i in range(len(ds))]
    b = [ds[i]["box"] for i in reversed(range(len(ds)))][::-1]
    assert all(np.array_equal(x, y) for x, y in zip(a, b))


# ------------------------------------------------------------------------------------- bad input
def test_empty_label_is_a_clear_error(tmp_path, test_data):
    from PIL import Image

    shutil.copy(test_data / "043_HC.img.png", tmp_path / "a.img.png")
    Image.fromarray(np.zeros_like(np.array(Image.open(test_data / "043_HC.mask.png")))).save(tmp_path / "a.mask.png")
    with pytest.raises(InputError, match="holds no foreground"):
        _data(TrainConfig(data=[str(tmp_path)]))


def test_mismatched_geometry_is_a_clear_error(tmp_path, test_data):
    from PIL import Image

    mask = np.array(Image.open(test_data / "043_HC.mask.png"))
    shutil.copy(test_data / "043_HC.img.png", tmp_path / "a.img.png")
    Image.fromarray(mask[:-10]).save(tmp_path / "a.mask.png")
    with pytest.raises(InputError, match="differs from the mask size"):
        _data(TrainConfig(data=[str(tmp_path)]))

    lab = sitk.ReadImage(str(test_data / "brain1.seg.nii.gz"))
    lab.SetSpacing([s * 1.5 for s in lab.GetSpacing()])
    sitk.WriteImage(lab, str(tmp_path / "v.seg.nii.gz"))
    shutil.copy(test_data / "brain1.img.nii.gz", tmp_path / "v.nii.gz")
    with pytest.raises(InputError, match="does not lie on the image grid"):
        _data(TrainConfig(pairs=[[str(tmp_path / "v.nii.gz"), str(tmp_path / "v.seg.nii.gz")]]))


def test_bad_labels_and_options_are_clear_errors(tmp_path, test_data):
    img = sitk.ReadImage(str(test_data / "brain1.img.nii.gz"))
    sitk.WriteImage(sitk.Cast(img, sitk.sitkFloat32) * 0.5, str(tmp_path / "x.nii.gz"))  # an image, not labels
    with pytest.raises(InputError, match="non-integer"):
        _data(TrainConfig(pairs=[[str(test_data / "brain1.img.nii.gz"), str(tmp_path / "x.nii.gz")]]))
    pairs = [[str(test_data / "IMD030.img.png"), str(test_data / "IMD030.mask.png")]]
    with pytest.raises(InputError, match="requested labels"):
        _data(TrainConfig(pairs=pairs, labels=["liver"]))
    (tmp_path / "c.yaml").write_text("epochs: 3\nbatchsize: 4\n")
    with pytest.raises(InputError, match="Unknown training option.*batchsize"):
        load_config(tmp_path / "c.yaml")
    with pytest.raises(InputError, match="parts"):
        TrainConfig(pairs=pairs, parts="decoder+wings").validate()
    with pytest.raises(InputError, match="No training data"):
        TrainConfig().validate()


def test_yaml_paths_are_relative_to_the_config(tmp_path, test_data):
    shutil.copy(test_data / "IMD030.img.png", tmp_path / "x.img.png")
    shutil.copy(test_data / "IMD030.mask.png", tmp_path / "x.mask.png")
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "c.yaml").write_text(json.dumps({"data": [".."], "out": "run", "epochs": 2}))
    cfg = load_config(tmp_path / "sub" / "c.yaml")
    assert Path(cfg.data[0]) == tmp_path.resolve() and Path(cfg.out) == (tmp_path / "sub" / "run").resolve()
    assert [s.case_id for s in _data(cfg).sources] == ["x"]
