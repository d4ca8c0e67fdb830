"""pytest fixtures for the GUI tests: a Slicer "session" per test and Slicer version (slicer_app.Harness).

Imported by the test modules (``from slicer_fixtures import ...``), not a conftest.py: see
Testing/mrml_fixtures.py for why. ``harness`` is Slicer 5.10, the oldest Slicer the extension runs in;
``harness_5_8`` is Slicer 5.8, used only to show that the extension refuses it.
"""
from __future__ import annotations

from pathlib import Path

import pytest

from mrml_fixtures import ctx, model_session, slicer_core  # noqa: F401  (pytest fixtures)

REPO = Path(__file__).resolve().parents[2]
SEGMENT_MODULE = REPO / "MedSAMSegment" / "MedSAMSegment.py"
TRAINING_MODULE = REPO / "MedSAMTraining" / "MedSAMTraining.py"
DATA = REPO / "medsamkit" / "data"


def _session(version, monkeypatch, ctx, tmp_path):
    import slicer_app

    h = slicer_app.Harness(monkeypatch, version, ctx, tmp_path)
    yield h
    assert not h.critical, f"Slicer would log these errors: {h.critical}"


@pytest.fixture
def harness(monkeypatch, ctx, tmp_path):
    yield from _session("5.10.0", monkeypatch, ctx, tmp_path)


@pytest.fixture
def harness_5_8(monkeypatch, ctx, tmp_path):
    yield from _session("5.8.0", monkeypatch, ctx, tmp_path)


def use_model_session(monkeypatch, model_session):
    """Open the effect's model session on the test session's in-process backend instead of starting a model
    process (the model process is covered by Testing/process and the installed-extension test)."""
    from medsamkit.mrml import session

    monkeypatch.setattr(session, "open_model_backend", lambda *args, **options: model_session.backend)
