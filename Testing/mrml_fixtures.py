"""Fixtures shared by the MRML-layer tests (Testing/mrml) and the extension tests (Testing/extension).

Imported by those test modules (``from mrml_fixtures import ctx, model_session, slicer_core``) rather than
living in per-folder conftest.py files: other test modules do ``from conftest import ...`` and expect
Testing/conftest.py, which a second module named ``conftest`` would shadow.

``import slicer`` (slicer-core) takes 1-2 s, so it happens once per session (``slicer_core``); a scene
with its module logics costs ~35 ms, so each test gets a fresh one (``ctx``). Importing this module
skips the importing test module, visibly, when slicer-core is not installed.
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
def model_session(shared_predictor):
    """The effect's model session on an in-process LocalBackend over the session's shared predictor:
    slices encoded by one test are cache hits in the next (the dev CT's tumour slices recur across
    these tests). The effect itself uses a model process (Testing/process covers that path)."""
    from medsamkit.backend.local import LocalBackend
    from medsamkit.mrml.session import ModelSession

    return ModelSession(LocalBackend(predictor=shared_predictor))


def add_volume_from_array(scene, array: np.ndarray, ijk_to_ras, name: str = "volume", labelmap: bool = False):
    """New scalar (or labelmap) volume node in ``scene`` holding ``array`` (K, J, I) with ``ijk_to_ras``."""
    import slicer.util

    from medsamkit.mrml.volumes import numpy_to_matrix

    cls = "vtkMRMLLabelMapVolumeNode" if labelmap else "vtkMRMLScalarVolumeNode"
    node = scene.AddNewNodeByClass(cls, name)
    node.SetIJKToRASMatrix(numpy_to_matrix(ijk_to_ras))
    slicer.util.updateVolumeFromArray(node, np.ascontiguousarray(array))
    node.CreateDefaultDisplayNodes()
    return node
