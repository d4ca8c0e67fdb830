"""The slicer.util GUI helpers and qMRML widgets slicer-core lacks, as strict stand-ins.

Each function has exactly the parameters of the real one in Base/Python/slicer/util.py (checked
against the generated list of both supported versions when installed), so a call the real one would
reject fails here too. Dialogs record (kind, text) on the harness and answer from harness.answers.
"""
from __future__ import annotations

import contextlib
import inspect

import slicer_api
import strict_qt


def functions(harness) -> dict:
    def mainWindow():
        return None  # no main window in these tests, as with Slicer --no-main-window

    def showStatusMessage(message, duration=0):
        harness.dialogs.append(("status", message))

    def errorDisplay(text, windowTitle=None, parent=None, standardButtons=None, **kwargs):
        harness.dialogs.append(("error", text))

    def infoDisplay(text, windowTitle=None, parent=None, standardButtons=None, **kwargs):
        harness.dialogs.append(("info", text))

    def warningDisplay(text, windowTitle=None, parent=None, standardButtons=None, **kwargs):
        harness.dialogs.append(("warning", text))

    def confirmOkCancelDisplay(text, windowTitle=None, parent=None, **kwargs):
        harness.dialogs.append(("confirmOkCancel", text))
        return harness.answers["confirmOkCancelDisplay"]

    def confirmYesNoDisplay(text, windowTitle=None, parent=None, **kwargs):
        harness.dialogs.append(("confirmYesNo", text))
        return harness.answers["confirmYesNoDisplay"]

    def pip_install(requirements):
        harness.pip_calls.append(requirements)

    def restart():
        harness.dialogs.append(("restart", ""))

    @contextlib.contextmanager
    def tryWithErrorDisplay(message=None, show=True, waitCursor=False):
        try:
            yield
        except Exception as exc:
            harness.dialogs.append(("error", f"{message}\n{exc}"))
            if not show:
                raise

    def loadVolume(filename, properties={}, returnNode=False):
        node = harness.ctx.volumes.AddArchetypeVolume(str(filename), properties.get("name", "volume"),
                                                     1 if properties.get("labelmap") else 0)
        if node is None:
            raise RuntimeError(f"Failed to load volume: {filename}")
        return node

    def loadLabelVolume(filename, properties={}, returnNode=False):
        return loadVolume(filename, dict(properties, labelmap=True), returnNode)

    def delayDisplay(message, autoCloseMsec=1000, parent=None, **kwargs):
        harness.dialogs.append(("delay", message))

    fns = {f.__name__: f for f in (mainWindow, showStatusMessage, errorDisplay, infoDisplay, warningDisplay,
                                   confirmOkCancelDisplay, confirmYesNoDisplay, pip_install, restart,
                                   tryWithErrorDisplay, loadVolume, loadLabelVolume, delayDisplay)}
    for version in slicer_api.SLICER_VERSIONS:
        real = slicer_api.util_functions(version)
        for name, fn in fns.items():
            spec = inspect.getfullargspec(getattr(fn, "__wrapped__", fn))
            r = real[name]
            assert spec.args == r["args"] and (spec.varkw is not None) == r["varkw"], \
                f"slicer.util.{name} stand-in {spec.args} differs from Slicer {version}'s {r['args']}"
    return fns


class MRMLWidget(strict_qt.QWidget):
    API = "qMRMLWidget"

    def setMRMLScene(self, scene):
        self._scene = scene


class NodeComboBox(strict_qt.QWidget):
    """qMRMLNodeComboBox over the real scene: lists nodes of nodeTypes; currentNodeChanged on change."""

    API = "qMRMLNodeComboBox"
    DEFAULTS = {"nodeTypes": [], "noneEnabled": False, "addEnabled": True, "removeEnabled": True,
                "renameEnabled": False, "showHidden": False, "selectNodeUponCreation": True, "baseName": ""}

    def __init__(self, parent=None):
        super().__init__(parent)
        self._scene, self._current = None, None

    def setMRMLScene(self, scene):
        self._scene = scene

    def mrmlScene(self):
        return self._scene

    def _nodes(self):
        out = []
        for cls in self.nodeTypes:
            for n in range(self._scene.GetNumberOfNodesByClass(cls)):
                out.append(self._scene.GetNthNodeByClass(n, cls))
        return out

    def nodeCount(self):
        return len(self._nodes())

    def currentNode(self):
        if self._current is None and not self.noneEnabled and self._nodes():
            self._current = self._nodes()[0]
        return self._current

    def setCurrentNode(self, node):
        if node is not None and node not in self._nodes():
            raise ValueError(f"{node.GetID()} is not one of {self.nodeTypes}")
        if node is not self._current:
            self._current = node
            self._emit("currentNodeChanged(vtkMRMLNode*)", node)
            self._emit("currentNodeChanged(bool)", node is not None)
