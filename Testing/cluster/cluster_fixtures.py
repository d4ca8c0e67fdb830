"""A local Ray cluster started by the tests (2 CPUs, a 100 MB object store, no dashboard), once per session,
and the study folders the cluster tests share. Skips with the reason when Ray is not installed.

Imported by the test modules (``from cluster_fixtures import ray_cluster, ...``), not a conftest.py: other
test modules do ``from conftest import ...`` and expect Testing/conftest.py, which a second module named
``conftest`` would shadow. pytest then holds one copy of each fixture per importing module, so the
expensive ones are made once per session here (:func:`_once`), and Ray is started once.)"""
from __future__ import annotations

import os
import sys
from pathlib import Path

import numpy as np
import pytest

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]
sys.path.insert(0, str(REPO / "Testing" / "dicom"))

FLIP = np.array([-1.0, -1.0, 1.0])  # RAS <-> LPS


_MADE: dict = {}


def _once(key, make):
    """``make()`` once per test session, whichever test module's copy of a fixture asks first."""
    if key not in _MADE:
        _MADE[key] = make()
    return _MADE[key]


@pytest.fixture(scope="session")
def ray_cluster():
    ray = pytest.importorskip("ray", reason="Ray is not installed (pip install 'medsamkit[cluster]')")
    started = not ray.is_initialized()  # another module's copy of this fixture may have started it
    if started:
        path = os.pathsep.join([str(REPO)] + [p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p])
        ray.init(num_cpus=2, object_store_memory=100 * 2**20, include_dashboard=False, log_to_driver=False,
                 runtime_env={"env_vars": {"PYTHONPATH": path}})
    yield ray
    if started:
        ray.shutdown()


def write_lines_csv(path: Path, lesion: str, markers) -> Path:
    rows = ["lesion,x1,y1,z1,x2,y2,z2,space"]
    for m in markers:
        a, b = np.asarray(m.start_ras) * FLIP, np.asarray(m.end_ras) * FLIP
        rows.append(",".join([lesion] + [f"{v:.4f}" for v in (*a, *b)] + ["LPS"]))
    path.write_text("\n".join(rows) + "\n", encoding="utf-8")
    return path


@pytest.fixture(scope="session")
def studies(tmp_path_factory) -> Path:
    """Three DICOM studies (series + SR; crops of the bundled lung CT) and one NIfTI volume + lines CSV pair."""
    return _once("studies", lambda: _make_studies(tmp_path_factory))


def _make_studies(tmp_path_factory) -> Path:
    """Three DICOM studies (series + SR; crops of the bundled lung CT) and one NIfTI volume + lines CSV pair."""
    from dicom_fixtures import crop_k, sample_case, write_study

    root = tmp_path_factory.mktemp("studies")
    image, label = sample_case()
    for n, (k0, k1) in enumerate([(4, 16), (7, 15), (9, 20)]):
        im, lb = crop_k(image, label, k0, k1)
        write_study(root / f"study{n}", im, lb, every=2, extra_series=False, seed=n)
    im, lb = crop_k(image, label, 5, 18)
    from medsamkit.geometry import VolumeGeometry
    from medsamkit.simulated_reader import simulate_markers

    import SimpleITK as sitk

    img = sitk.GetImageFromArray(im.array)
    img.SetSpacing(im.spacing)
    img.SetOrigin(im.origin)
    img.SetDirection(im.direction)
    sitk.WriteImage(img, str(root / "pair.nii.gz"))
    write_lines_csv(root / "pair.lines.csv", "T1", simulate_markers(lb, VolumeGeometry.from_image(im), axis=0,
                                                                    every=1))
    return root


@pytest.fixture(scope="session")
def local_recist(studies, tmp_path_factory) -> Path:
    """The plain run (no Ray) of ``medsamkit recist --studies`` over ``studies``: the reference outputs."""
    def run() -> Path:
        from medsamkit.cli.commands import main

        out = tmp_path_factory.mktemp("local") / "out"
        assert main(["recist", "--studies", str(studies), "--out", str(out), "--quiet"]) == 0
        return out

    return _once(("local_recist", str(studies)), run)
