"""Fixtures of the MRML-layer tests: a real slicer-core scene per test, synthetic oblique volumes.

``import slicer`` (slicer-core) takes 1-2 s, so it happens once per session (``slicer_core``); a scene
with its module logics costs ~35 ms, so each test gets a fresh one (``ctx``). The whole directory
skips, visibly, when slicer-core is not installed.
"""
from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("slicer", reason="slicer-core is not installed (pip install 'medsamkit[slicer]')")


@pytest.fixture(scope="session")
def slicer_core():
    import slicer

    from medsamkit.mrml.context import quiet_vtk

    quiet_vtk("ERROR")
    return slicer


@pytest.fixture()
def ctx(slicer_core):
    from medsamkit.mrml.context import make_context

    context = make_context()
    yield context
    context.scene.Clear(1)


@pytest.fixture(scope="session")
def engine(shared_predictor):
    """The in-process engine on the session's shared predictor: slices encoded by one test are cache
    hits in the next (the dev CT's tumour slices recur across the MRML tests)."""
    from medsamkit.mrml.engine import PredictorEngine

    return PredictorEngine(shared_predictor)
