"""Fixtures of the Slicer-extension tests (GUI files driven with Qt stubs on a real slicer-core scene).

This folder must not be called ``slicer``: slicer-core's ``slicer`` meta-package extends its
``__path__`` with every ``slicer`` folder on sys.path (pkgutil.extend_path) and imports each module
in it, and pytest puts ``Testing/`` on sys.path (for Testing/conftest.py).

Same fixtures as Testing/mrml: slicer-core once per session, a fresh scene per test, the session's
shared predictor (slices encoded elsewhere in the run are cache hits here).
"""
from __future__ import annotations

import pytest


@pytest.fixture(scope="session")
def slicer_core():
    slicer = pytest.importorskip("slicer", reason="slicer-core is not installed (pip install 'medsamkit[slicer]')")
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
    from medsamkit.mrml.engine import PredictorEngine

    return PredictorEngine(shared_predictor)
