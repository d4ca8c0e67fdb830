"""pytest fixtures for the GUI tests: a Slicer "session" per test and Slicer version (slicer_app.Harness).

Imported by the test modules (``from slicer_fixtures import ...``), not a conftest.py: see
Testing/mrml_fixtures.py for why. ``harness`` is Slicer 5.10, the oldest Slicer the extension runs in;
``harness_5_8`` is Slicer 5.8, used only to show that the extension refuses it.
"""
from __future__ import annotations

from pathlib import Path

import pytest

from mrml_fixtures import ctx, engine, slicer_core  # noqa: F401  (pytest fixtures)

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


def use_engine(monkeypatch, engine):
    """Point the effect's EngineHolder at the session's engine instead of loading a second model."""
    import sys

    monkeypatch.setattr(sys.modules["MedSAMSegmentLib.EffectTarget"].EngineHolder, "get",
                        lambda self, **options: engine)
