"""MedSAMTraining module logic on a real slicer-core scene: export volumes + segmentations to a dataset
(voxel for voxel, consistent label numbers by segment name), then train through the logic and register.
"""
from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk

slicer = pytest.importorskip("slicer", reason="slicer-core is not installed (pip install medsamkit[slicer])")

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "MedSAMTraining"))

from MedSAMTrainingLib import TrainingLogic  # noqa: E402


@pytest.fixture()
def ctx():
    from vtkmodules.vtkCommonCore import vtkLogger

    from medsamkit.mrml.context import make_context

    vtkLogger.SetStderrVerbosity(vtkLogger.VERBOSITY_ERROR)
    context = make_context()  # the same scene wiring the MRML layer uses
    yield context
    context.scene.Clear(1)


def _load_pair(ctx, image, label, name, segment_name):
    vol = ctx.volumes.AddArchetypeVolume(str(image), name)
    lab = ctx.volumes.AddArchetypeVolume(str(label), name + "-label", 1)
    assert vol is not None and lab is not None
    seg = ctx.scene.AddNewNodeByClass("vtkMRMLSegmentationNode")
    seg.CreateDefaultDisplayNodes()
    seg.SetReferenceImageGeometryParameterFromVolumeNode(vol)
    assert ctx.segmentations.ImportLabelmapToSegmentationNode(lab, seg, "")
    segmentation = seg.GetSegmentation()
    assert segmentation.GetNumberOfSegments() == 1
    segmentation.GetNthSegment(0).SetName(segment_name)
    return vol, seg


def test_scene_export_is_voxel_exact_with_labels_by_name(ctx, tmp_path, test_data):
    from medsamkit.training.config import TrainConfig
    from medsamkit.training.dataset import TrainingData
    from medsamkit.models.litemedsam import TRANSFORM
    from medsamkit.preprocess import ModelTransform

    sample = REPO / "medsamkit" / "data"
    brain = _load_pair(ctx, test_data / "brain1.img.nii.gz", test_data / "brain1.seg.nii.gz", "brain one", "Lesion")
    lung = _load_pair(ctx, sample / "sample_lung_ct.nii.gz", sample / "sample_lung_ct.label.nii.gz", "lung", "tumour")
    lung[1].GetSegmentation().AddEmptySegment("empty", "empty", [0.5, 0.5, 0.5])  # exported as nothing
    logic = TrainingLogic(ctx.scene, ctx.segmentations)
    manifest_path = logic.export_scene_dataset([(*brain, None), (*lung, None)], tmp_path / "data", "MR", "auto")
    manifest = json.loads(manifest_path.read_text(encoding="utf-8"))
    assert manifest["labels"] == {"1": "Lesion", "2": "tumour", "3": "empty"}
    assert [c["case_id"] for c in manifest["cases"]] == ["brain_one", "lung"]
    assert manifest["cases"][1]["labels_present"] == [2] and manifest["cases"][1]["labels"] == {"2": "tumour"}

    data = TrainingData(TrainConfig(data=[str(tmp_path / "data")], val_fraction=0).validate(),
                        ModelTransform(TRANSFORM), 256)
    for i, (src_img, src_lab, value) in enumerate([(test_data / "brain1.img.nii.gz", test_data / "brain1.seg.nii.gz", 1),
                                                   (sample / "sample_lung_ct.nii.gz", sample / "sample_lung_ct.label.nii.gz", 2)]):
        case = data.case(i)
        ref = sitk.ReadImage(str(src_img))
        # Slicer may store the voxels in another order (it flips the k axis of left-handed volumes such as
        # brain1), so compare in physical space: put the export back on the source grid (voxel centres
        # coincide, so nearest neighbour is exact) and require every voxel to match.
        def on_source_grid(array):
            img = sitk.GetImageFromArray(array)
            img.SetSpacing(case.image.spacing)
            img.SetOrigin(case.image.origin)
            img.SetDirection(case.image.direction)
            return sitk.GetArrayFromImage(sitk.Resample(img, ref, sitk.Transform(), sitk.sitkNearestNeighbor, -1))

        assert np.array_equal(on_source_grid(case.image.array), sitk.GetArrayFromImage(ref))
        assert np.allclose(case.image.spacing, ref.GetSpacing(), atol=1e-5)
        src = sitk.GetArrayFromImage(sitk.ReadImage(str(src_lab))) > 0
        assert np.array_equal(on_source_grid(case.layers[0].astype(np.int16)) == value, src)
        assert [s.value for s in data.structures[i]] == [value]
    assert logic.check_folder(tmp_path / "data")["cases"] == 2

    empty = ctx.scene.AddNewNodeByClass("vtkMRMLSegmentationNode")
    empty.GetSegmentation().AddEmptySegment("nothing", "nothing", [1, 0, 0])
    with pytest.raises(ValueError, match="empty inside this volume"):
        logic.export_scene_dataset([(brain[0], empty, None)], tmp_path / "bad")
    assert not (tmp_path / "bad" / "manifest.json").exists()


def test_logic_trains_in_a_separate_process_and_registers(ctx, tmp_path, test_data, monkeypatch):
    monkeypatch.setenv("MEDSAMKIT_CONFIG_DIR", str(tmp_path / "config"))
    env = dict(os.environ)
    env["PYTHONPATH"] = str(REPO) + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    brain = _load_pair(ctx, test_data / "brain1.img.nii.gz", test_data / "brain1.seg.nii.gz", "brain1", "lesion")
    logic = TrainingLogic(ctx.scene, ctx.segmentations, python=sys.executable, env=env)
    manifest = logic.export_scene_dataset([(*brain, None)], tmp_path / "data", "MR")
    cfg = logic.make_config(manifest.parent, tmp_path / "run", epochs=1, batch_size=2, device="cpu", max_steps=1,
                            slices_per_volume=2, foreground_fraction=1.0, val_fraction=0, augment="none",
                            validate_before=False)
    logic.start(cfg)
    assert logic.process.wait(timeout=600) == 0, logic.process.log_tail()
    state = logic.poll()
    assert state["status"] == "finished" and state["step"] == 1 and state["total_steps"] == 1
    entry = logic.register_adapter("brain lesion")
    assert [e["name"] for e in logic.registered_adapters("litemedsam")] == ["brain lesion"]
    assert Path(entry["path"]) == (tmp_path / "run" / "adapter.safetensors").resolve()
