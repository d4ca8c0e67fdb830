"""Stand-ins for the parts of the Slicer application that slicer-core lacks, to import and drive the GUI files.

What is stubbed, and nothing else:
- ``qt`` and ``ctk``: permissive objects (any attribute, any call); ``qt.QTimer`` records its timeout
  slot so that ``slicer.app.processEvents()`` can fire it, as Qt's event loop would.
- ``slicer.app`` (connect / processEvents), ``slicer.util`` GUI helpers the effect calls
  (``mainWindow``, ``showStatusMessage``), ``slicer.qSlicerSegmentEditorAbstractEffect`` (its
  ModificationMode enum, mapped to vtkSlicerSegmentEditorLogic's, which has the same values).
- ``slicer.ScriptedLoadableModule`` base classes, ``SegmentEditorEffects.AbstractScriptedSegmentEditorEffect``
  (with ``xyToRas``) and ``qSlicerSegmentationsEditorEffectsPythonQt``.

Everything else is real: the ``slicer`` module is slicer-core (MRML, segment editor logic), the engine is
LiteMedSAM. A stub accepts any Qt call, so these tests catch Python-level errors in the GUI files (names,
imports, our own objects, the calls into medsamkit.mrml), not Qt signal names or widget behaviour.
"""
from __future__ import annotations

import sys
import types


class Permissive:
    """Any attribute is another Permissive; calling one returns a Permissive; attributes can be set."""

    def __init__(self, *args, **kwargs):
        pass

    def __getattr__(self, name):
        if name.startswith("__"):
            raise AttributeError(name)
        value = Permissive()
        object.__setattr__(self, name, value)
        return value

    def __call__(self, *args, **kwargs):
        return Permissive()

    def __bool__(self):
        return True

    def __iter__(self):
        return iter(())

    # Values read back from a stub widget behave as 0 / "" (e.g. QComboBox.findData()).
    def __index__(self):
        return 0

    __int__ = __index__

    def __float__(self):
        return 0.0

    def __str__(self):
        return ""

    def __lt__(self, other):
        return False

    __gt__ = __le__ = __ge__ = __lt__


class _PermissiveClass(type):
    """Class attributes too (e.g. ``ctk.ctkPathLineEdit.Files``, ``qt.Qt.WaitCursor``)."""

    def __getattr__(cls, name):
        if name.startswith("__"):
            raise AttributeError(name)
        return Permissive()


class PermissiveModule(types.ModuleType):
    def __getattr__(self, name):
        if name.startswith("__"):
            raise AttributeError(name)
        return _PermissiveClass(name, (Permissive,), {})


class FakeTimer(Permissive):
    timers: list = []

    def __init__(self, *args):
        self.slot = None
        self.active = False
        FakeTimer.timers.append(self)

    def connect(self, signal, slot):
        self.slot = slot

    def setInterval(self, ms):
        pass

    def start(self, *args):
        self.active = True

    def stop(self):
        self.active = False


class FakeApp(Permissive):
    def __init__(self):
        self.connections = []

    def connect(self, signal, slot):
        self.connections.append((signal, slot))

    def processEvents(self, *args):
        for timer in list(FakeTimer.timers):
            if timer.active and timer.slot is not None:
                timer.slot()


def install(monkeypatch):
    """Install the stubs for one test (monkeypatch undoes them). Returns the fake ``slicer.app``."""
    import slicer
    import slicer.util

    qt = PermissiveModule("qt")
    qt.QTimer = FakeTimer
    qt.QApplication = Permissive()
    qt.Qt = Permissive()
    monkeypatch.setitem(sys.modules, "qt", qt)
    monkeypatch.setitem(sys.modules, "ctk", PermissiveModule("ctk"))
    monkeypatch.setitem(sys.modules, "qSlicerSegmentationsEditorEffectsPythonQt",
                        PermissiveModule("qSlicerSegmentationsEditorEffectsPythonQt"))

    effects = types.ModuleType("SegmentEditorEffects")

    class AbstractScriptedSegmentEditorEffect:
        def __init__(self, scriptedEffect):
            self.scriptedEffect = scriptedEffect

        @staticmethod
        def xyToRas(xy, viewWidget):
            return viewWidget.xyToRas(xy)

    effects.AbstractScriptedSegmentEditorEffect = AbstractScriptedSegmentEditorEffect
    monkeypatch.setitem(sys.modules, "SegmentEditorEffects", effects)

    slm = types.ModuleType("slicer.ScriptedLoadableModule")

    class ScriptedLoadableModule:
        def __init__(self, parent):
            self.parent = parent

        def getDefaultModuleDocumentationLink(self):
            return ""

    class ScriptedLoadableModuleTest:
        def delayDisplay(self, message, msec=0):
            pass

    slm.ScriptedLoadableModule = ScriptedLoadableModule
    slm.ScriptedLoadableModuleTest = ScriptedLoadableModuleTest
    monkeypatch.setitem(sys.modules, "slicer.ScriptedLoadableModule", slm)
    monkeypatch.setattr(slicer, "ScriptedLoadableModule", slm, raising=False)

    app = FakeApp()
    FakeTimer.timers = []
    monkeypatch.setattr(slicer, "app", app, raising=False)
    E = slicer.vtkSlicerSegmentEditorLogic
    monkeypatch.setattr(slicer, "qSlicerSegmentEditorAbstractEffect", types.SimpleNamespace(
        ModificationModeSet=E.ModificationModeSet, ModificationModeAdd=E.ModificationModeAdd,
        ModificationModeRemove=E.ModificationModeRemove), raising=False)
    monkeypatch.setattr(slicer.util, "mainWindow", lambda: Permissive(), raising=False)
    monkeypatch.setattr(slicer.util, "showStatusMessage", lambda *a, **k: None, raising=False)
    return app
