"""Slicer's own loading of scripted modules and segment editor effects, reproduced for the tests.

Read from Slicer's sources (tags v5.8.0 and v5.10.0; see docs/slicer.md for the file list):

- ``load_source_as_module`` is ``qSlicerScriptedUtils::loadSourceAsModule`` (Base/QTCore/qSlicerScriptedUtils.cxx):
  5.10 runs ``spec_from_file_location(name, path)``, puts the new module into ``sys.modules[name]``
  and executes it; 5.8 runs ``imp.load_source(name, path)``, which executes the file *into* an
  existing ``sys.modules[name]`` (5.8's callers first create an empty one with ``PyImport_AddModule``).
- ``ScriptedEffect.setPythonSource`` is ``qSlicerSegmentEditorScriptedEffect::setPythonSource``: module
  name = the file's *parent folder* name, class name = file base name (+ "Effect" if missing); a class
  already held by ``sys.modules[moduleName]`` is used as it is, else the file is loaded as that module;
  the instance is ``class(scriptedEffect)``, also set as ``slicer.<moduleName>``.
- ``ScriptedModuleLoader.load`` is ``ctkFactoryScriptedItem::load`` + ``instanciator`` +
  ``qSlicerScriptedLoadableModule::setPythonSource`` (Base/QTGUI/qSlicerScriptedLoadableModuleFactory.cxx,
  qSlicerScriptedLoadableModule.cxx): the file's folder is appended to ``sys.path``, module name = file
  base name, class = the same name, instantiated with the C++ module as ``parent``, set as
  ``slicer.modules.<name>Instance``; ``startupCompleted()`` is emitted once every module is loaded.
- ``SegmentEditor`` is what qMRMLSegmentEditorWidget does with effects (Widgets/qMRMLSegmentEditorWidget.cxx):
  registered effects are cloned (``copyEffects`` → ``clone()``), each gets the parameter node,
  ``setMRMLDefaults`` and ``setupOptionsFrame``; every effect's ``updateGUIFromMRML`` runs on each
  ``EffectParameterModified`` of the (real, slicer-core) segment editor node; activation calls
  ``deactivate()`` on the previous effect, then ``updateGUIFromMRML()`` and ``activate()`` on the new one
  (qSlicerSegmentEditorAbstractEffect::activate, called first by qSlicerSegmentEditorScriptedEffect::activate); Escape deactivates the active effect
  (installKeyboardShortcuts); destruction calls ``cleanup()`` (5.10 only: 5.8 has no cleanup()).

Qt, CTK and the application are strict stand-ins (strict_qt.py); the scene, nodes, segment editor
logic and undo are slicer-core's.
"""
from __future__ import annotations

import os
import sys
import types
import warnings
from pathlib import Path

import strict_qt
import slicer_api
from strict_qt import StandIn

VERSIONS = slicer_api.SLICER_VERSIONS


# ------------------------------------------------------------------------------------------------ loaders
def _imp_load_source(name: str, pathname: str):
    """CPython 3.9's ``imp.load_source`` (Lib/imp.py), which Slicer 5.8 calls; ``imp`` is gone in 3.12."""
    import importlib._bootstrap as bootstrap
    import importlib.machinery as machinery
    import importlib.util as util

    loader = machinery.SourceFileLoader(name, pathname)
    spec = util.spec_from_file_location(name, pathname, loader=loader)
    if name in sys.modules:
        module = bootstrap._exec(spec, sys.modules[name])
    else:
        module = bootstrap._load(spec)
    module.__loader__ = machinery.SourceFileLoader(name, pathname)
    module.__spec__.loader = module.__loader__
    return module


def load_source_as_module(version: str, module_name: str, file_path: str) -> None:
    """qSlicerScriptedUtils::loadSourceAsModule; raises what the Python code raised (Slicer logs it)."""
    main_globals = sys.modules["__main__"].__dict__
    if version == "5.10.0":
        code = ("import importlib.util;import sys;"
                f"spec = importlib.util.spec_from_file_location({module_name!r}, {file_path!r});"
                "module = importlib.util.module_from_spec(spec);"
                f"sys.modules[{module_name!r}] = module;"
                "spec.loader.exec_module(module)")
        exec(code, main_globals, {})
    elif version == "5.8.0":
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)
            _imp_load_source(module_name, file_path)
    else:
        raise ValueError(version)


def _class_from_source(version: str, module_name: str, class_name: str, path: str):
    """The shared lookup-or-load step of both setPythonSource implementations."""
    if version == "5.8.0":
        module = sys.modules.setdefault(module_name, types.ModuleType(module_name))  # PyImport_AddModule
    else:
        module = sys.modules.get(module_name)
    if module is not None and hasattr(module, class_name):
        return getattr(module, class_name), module
    load_source_as_module(version, module_name, path)
    if version == "5.10.0":
        module = sys.modules[module_name]  # re-fetched
    if not hasattr(module, class_name):
        raise RuntimeError(f"class {class_name} was not found in {path}")
    return getattr(module, class_name), module


# ------------------------------------------------------------------------------------------------ app
class LayoutManager(StandIn):
    API = "qSlicerLayoutManager"
    DEFAULTS = {"layout": 2}

    def _switch(self, layout):
        self._props["layout"] = layout
        self._emit("layoutChanged(int)", layout)


class SlicerApplication(StandIn):
    API = "qSlicerApplication"
    DEFAULTS = {"temporaryPath": "", "majorVersion": 5, "minorVersion": 10, "documentationBaseUrl": ""}

    def __init__(self, version, temporary_path):
        super().__init__()
        major, minor, _ = version.split(".")
        self._props.update(majorVersion=int(major), minorVersion=int(minor), temporaryPath=str(temporary_path))
        self._layout = LayoutManager()

    def processEvents(self, *args):
        strict_qt.QApplication.processEvents()

    def layoutManager(self):
        return self._layout

    def moduleDocumentationUrl(self, name):
        return f"https://example.invalid/{name}"


class ModuleManager(StandIn):
    API = "QObject"


class CoreModule(StandIn):
    """The C++ qSlicerScriptedLoadableModule a scripted module's class gets as ``parent``."""

    API = "qSlicerScriptedLoadableModule"
    DEFAULTS = {"title": "", "categories": [], "contributors": [], "helpText": "", "acknowledgementText": "",
                "hidden": False, "dependencies": [], "associatedNodeTypes": []}

    def __init__(self, path):
        super().__init__()
        self._props["path"] = path
        self._props["name"] = Path(path).stem
        self._python = None


class ScriptedModuleLoader:
    """Loads scripted module files the way Slicer's factory does, then emits startupCompleted()."""

    def __init__(self, harness):
        self.harness = harness
        self.modules = {}

    def load(self, path):
        path = str(Path(path).resolve()).replace("\\", "/")
        folder = os.path.dirname(path)
        if folder not in sys.path:  # ctkFactoryScriptedItem::load (not embedded): append the module folder
            sys.path.append(folder)
            self.harness._sys_path_added.append(folder)
        name = Path(path).stem
        core = CoreModule(path)
        cls, module = _class_from_source(self.harness.version, name, name, path)
        core._python = cls(core)
        setattr(self.harness.slicer.modules, name + "Instance", core._python)
        setattr(self.harness.slicer.modules, name.lower(), core)
        core._widgetClass = getattr(module, name + "Widget", None)
        core._module = module
        self.modules[name] = core
        return core

    def startup_completed(self):
        self.harness.app._emit("startupCompleted()")


# ------------------------------------------------------------------------------------------------ effects
class EffectFactory(StandIn):
    API = "qSlicerSegmentEditorEffectFactory"
    _instance = None

    def __init__(self):
        super().__init__()
        self._effects = []

    @staticmethod
    def instance():
        return EffectFactory._instance

    def registerEffect(self, effect):
        if effect is None or not effect.name:
            raise ValueError("registerEffect: invalid effect or empty name")
        if any(e.name == effect.name for e in self._effects):
            return False
        self._effects.append(effect)
        self._emit("effectRegistered(QString)", effect.name)
        return True

    def registeredEffects(self):
        return list(self._effects)

    def copyEffects(self, effects):
        return [e.self().clone() if e._python is not None else e for e in effects]


class ScriptedEffect(StandIn):
    """qSlicerSegmentEditorScriptedEffect over slicer-core: parameters are attributes of the real
    vtkMRMLSegmentEditorNode, edits go through the real vtkSlicerSegmentEditorLogic."""

    API = "qSlicerSegmentEditorScriptedEffect"
    DEFAULTS = {"name": "", "title": "", "perSegment": True, "requireSegments": True}

    def __init__(self, parent=None):
        super().__init__()
        self._python = None
        self._source = None
        self._node = None
        self._options = []
        self._actors = {}
        self._harness = Harness.current

    # -- scripting
    def setPythonSource(self, path):
        if not path.endswith((".py", ".pyc")):
            return False
        module_name = os.path.basename(os.path.dirname(path))
        class_name = Path(path).stem
        if not class_name.endswith("Effect"):
            class_name += "Effect"
        cls, _ = _class_from_source(self._harness.version, module_name, class_name, path)
        self._python = cls(self)
        self._source = path
        setattr(self._harness.slicer, module_name, self._python)
        return True

    def pythonSource(self):
        return self._source

    def self(self):
        return self._python

    # -- parameters (qSlicerSegmentEditorAbstractEffect.cxx)
    def parameterSetNode(self):
        return self._node

    def setParameterSetNode(self, node):
        self._node = node

    def parameterDefined(self, name):
        return self._node.GetAttribute(f"{self.name}.{name}") is not None

    def parameter(self, name):
        value = self._node.GetAttribute(f"{self.name}.{name}")
        if value is None:
            value = self._node.GetAttribute(name)
        if value is None:
            self._harness.critical.append(f"Parameter named {name} cannot be found for effect {self.name}")
            return ""
        return value

    def integerParameter(self, name):
        text = self.parameter(name)
        try:
            return int(text)
        except ValueError:
            self._harness.critical.append(f"Parameter named {name} cannot be converted to integer ({text!r})")
            return 0

    def doubleParameter(self, name):
        text = self.parameter(name)
        try:
            return float(text)
        except ValueError:
            self._harness.critical.append(f"Parameter named {name} cannot be converted to floating point ({text!r})")
            return 0.0

    @staticmethod
    def _qstring(value):
        # PythonQt picks the QString / int / double overload; QString::number(double) is %g.
        if isinstance(value, bool) or not isinstance(value, (str, int, float)):
            raise TypeError(f"setParameter: no overload takes {type(value).__name__}")
        return value if isinstance(value, str) else (str(value) if isinstance(value, int) else f"{value:g}")

    def setCommonParameter(self, name, value):
        value = self._qstring(value)
        old = self._node.GetAttribute(name)
        if (old is None and value == "") or value == old:
            return
        state = self._node.GetDisableModifiedEvent()
        self._node.SetDisableModifiedEvent(1)
        self._node.SetAttribute(name, value)
        self._node.SetDisableModifiedEvent(state)
        self._harness.parameter_writes.append((name, value))
        self._node.InvokeCustomModifiedEvent(self._harness.slicer.vtkMRMLSegmentEditorNode.EffectParameterModified)

    def setParameter(self, name, value):
        self.setCommonParameter(f"{self.name}.{name}", value)

    def setParameterDefault(self, name, value):
        if not self.parameterDefined(name):
            self.setParameter(name, value)

    # -- editing (real segment editor logic)
    def defaultModifierLabelmap(self):
        logic = self._harness.editor_logic
        assert logic.ResetModifierLabelmapToDefault()
        return logic.GetModifierLabelmap()

    def saveStateForUndo(self):
        self._harness.undo_saves += 1
        self._harness.editor_logic.SaveStateForUndo()

    def modifySelectedSegmentByLabelmap(self, modifier, mode, bypassMasking=False):
        logic, node = self._harness.editor_logic, self._node
        sid = node.GetSelectedSegmentID()
        logic.SetCurrentSegmentID(sid)
        logic.ModifySegmentByLabelmap(node.GetSegmentationNode(), sid, modifier, mode, True, bypassMasking)

    def confirmCurrentSegmentVisible(self):
        return 1  # ConfirmedWithoutDialog

    # -- options frame and views
    def addOptionsWidget(self, widget):
        self._options.append(widget)

    def addLabeledOptionsWidget(self, label, widget):
        self._options.append(widget)
        return widget

    def addActor2D(self, viewWidget, actor):
        self._actors.setdefault(viewWidget, []).append(actor)

    def removeActor2D(self, viewWidget, actor):
        if actor in self._actors.get(viewWidget, []):
            self._actors[viewWidget].remove(actor)

    def xyToRas(self, point, viewWidget):
        return viewWidget._xyToRas(point._x(), point._y())

    def _widgets(self):
        out = []
        for w in self._options:
            out.append(w)
            out.extend(w._children() if hasattr(w, "_children") else [])
        return out


class AbstractScriptedSegmentEditorEffect:
    """SegmentEditorEffects.AbstractScriptedSegmentEditorEffect: the methods the real one has that
    MedSAM's effect inherits (names checked against the real file)."""

    def __init__(self, scriptedEffect):
        self.scriptedEffect = scriptedEffect

    def register(self):
        EffectFactory.instance().registerEffect(self.scriptedEffect)

    def xyToRas(self, xy, viewWidget):
        ras = self.scriptedEffect.xyToRas(strict_qt.QPoint(xy[0], xy[1]), viewWidget)
        return [ras[0], ras[1], ras[2]]


class AbstractScriptedSegmentEditorEffect510(AbstractScriptedSegmentEditorEffect):
    """5.10 added cleanup() (a no-op to override); 5.8's base class has none."""

    def cleanup(self):
        pass


def abstract_effect_class(version):
    cls = AbstractScriptedSegmentEditorEffect510 if version == "5.10.0" else AbstractScriptedSegmentEditorEffect
    real = slicer_api.python_class_methods(version, "AbstractScriptedSegmentEditorEffect",
                                           "AbstractScriptedSegmentEditorEffect")
    mine = {n for klass in cls.__mro__[:-1] for n, v in vars(klass).items() if callable(v)}
    assert mine <= real, f"the AbstractScriptedSegmentEditorEffect stand-in has {mine - real}, Slicer {version}'s not"
    return type("AbstractScriptedSegmentEditorEffect", (cls,), {})


class SliceView(StandIn):
    API = "ctkVTKSliceView"

    def __init__(self):
        super().__init__()
        self._renders = 0

    def scheduleRender(self):
        self._renders += 1


class SliceWidget(StandIn):
    """A slice view showing slice ``k`` of a volume along K; display XY = the slice's pixel XY. Its
    slice node is a real vtkMRMLSliceNode with that plane as SliceToRAS."""

    API = "qMRMLSliceWidget"

    def __init__(self, harness, geometry, k, matrix=None):
        super().__init__()
        from medsamkit.mrml.volumes import numpy_to_matrix, volume_plane_slice_to_ras

        self._g, self._k = geometry, k
        self._sliceNode = harness.slicer.vtkMRMLSliceNode()
        self._sliceNode.GetSliceToRAS().DeepCopy(
            numpy_to_matrix(volume_plane_slice_to_ras(geometry, 0, k) if matrix is None else matrix))
        self._view = SliceView()

    def className(self):  # PythonQt gives every wrapped object className()
        return "qMRMLSliceWidget"

    def mrmlSliceNode(self):
        return self._sliceNode

    def sliceView(self):
        return self._view

    def _xyToRas(self, x, y):
        return self._g.ijk_to_ras_points([[x, y, self._k]])[0]



class SegmentEditor(StandIn):
    """qMRMLSegmentEditorWidget's handling of effects (see the module docstring)."""

    API = "qMRMLSegmentEditorWidget"

    def __init__(self, parent=None):
        super().__init__()
        self._harness = Harness.current
        self._effects = EffectFactory.instance().copyEffects(EffectFactory.instance().registeredEffects())
        self._active = None
        self._node = None
        self._observer = None

    def setMRMLScene(self, scene):
        self._scene = scene

    def setMRMLSegmentEditorNode(self, node):
        self._node = node
        h = self._harness
        h.editor_logic.SetSegmentEditorNode(node)
        for effect in self._effects:
            effect.setParameterSetNode(node)
            effect.self().setMRMLDefaults()
            effect.self().setupOptionsFrame()
        self._observer = node.AddObserver(h.slicer.vtkMRMLSegmentEditorNode.EffectParameterModified,
                                          lambda *a: [e.self().updateGUIFromMRML() for e in self._effects])

    def setSegmentationNode(self, node):
        self._node.SetAndObserveSegmentationNode(node)
        self._harness.editor_logic.SetSegmentationNode(node)

    def setSourceVolumeNode(self, node):
        self._node.SetAndObserveSourceVolumeNode(node)
        self._harness.editor_logic.SetSourceVolumeNode(node)

    def setActiveEffectByName(self, name):
        self.setActiveEffect(next((e for e in self._effects if e.name == name), None))

    def setActiveEffect(self, effect):
        if self._active is not None:
            self._active.self().deactivate()
        self._active = effect
        if effect is not None:
            # qSlicerSegmentEditorScriptedEffect::activate calls the base class first, whose activate()
            # ends with updateGUIFromMRML(); the Python activate() runs after it.
            effect.self().updateGUIFromMRML()
            effect.self().activate()

    def activeEffect(self):
        return self._active

    def effectByName(self, name):
        return next((e for e in self._effects if e.name == name), None)

    def undo(self):
        self._harness.editor_logic.Undo()

    def _pressEscape(self):
        """The editor's Escape QShortcut (installKeyboardShortcuts): deactivates the active effect."""
        self.setActiveEffect(None)

    def _destroy(self):
        """~qMRMLSegmentEditorWidgetPrivate: cleanup() on every effect (Slicer 5.10; 5.8 has none)."""
        if self._harness.version != "5.8.0":
            for effect in self._effects:
                effect.self().cleanup()
        if self._observer is not None:
            self._node.RemoveObserver(self._observer)


# ------------------------------------------------------------------------------------------------ harness
class Harness:
    """One Slicer "session": stand-ins installed into sys.modules / the slicer module, undone by monkeypatch."""

    current = None

    def __init__(self, monkeypatch, version, ctx, tmp_path):
        import slicer
        import slicer.util

        self.version, self.ctx, self.slicer = version, ctx, slicer
        self.critical, self.parameter_writes, self.undo_saves = [], [], 0
        self.dialogs = []  # (kind, text) of every dialog shown; answers come from self.answers
        self.answers = {"confirmOkCancelDisplay": True, "confirmYesNoDisplay": False}
        self.pip_calls = []
        self._sys_path_added = []
        Harness.current = self
        mp = monkeypatch
        self.qt, self.ctk = strict_qt.qt_module(), strict_qt.ctk_module()
        mp.setitem(sys.modules, "qt", self.qt)
        mp.setitem(sys.modules, "ctk", self.ctk)
        for name in [n for n in sys.modules if n.split(".")[0] in ("MedSAMSegment", "MedSAMSegmentLib",
                                                                 "MedSAMTraining", "MedSAMTrainingLib")]:
            mp.delitem(sys.modules, name)
        EffectFactory._instance = EffectFactory()
        effects_pyqt = types.ModuleType("qSlicerSegmentationsEditorEffectsPythonQt")
        effects_pyqt.qSlicerSegmentEditorScriptedEffect = ScriptedEffect
        mp.setitem(sys.modules, "qSlicerSegmentationsEditorEffectsPythonQt", effects_pyqt)
        seffects = types.ModuleType("SegmentEditorEffects")
        seffects.AbstractScriptedSegmentEditorEffect = abstract_effect_class(version)
        mp.setitem(sys.modules, "SegmentEditorEffects", seffects)
        import slicer_scripted  # ScriptedLoadableModule stand-ins (checked against Slicer's file)

        slm = slicer_scripted.module()
        mp.setitem(sys.modules, "slicer.ScriptedLoadableModule", slm)
        mp.setattr(slicer, "ScriptedLoadableModule", slm, raising=False)
        self.app = SlicerApplication(version, tmp_path)
        mp.setattr(slicer, "app", self.app, raising=False)
        mp.setattr(slicer, "mrmlScene", ctx.scene, raising=False)
        self.modules = types.SimpleNamespace(
            segmentations=types.SimpleNamespace(logic=lambda: ctx.segmentations),
            volumes=types.SimpleNamespace(logic=lambda: ctx.volumes))
        mp.setattr(slicer, "modules", self.modules, raising=False)
        # The ModificationMode enum (same values as the editor logic's); only names the real class has.
        modes = ("ModificationModeSet", "ModificationModeAdd", "ModificationModeRemove")
        assert set(modes) <= slicer_api.members("qSlicerSegmentEditorAbstractEffect").enums
        abstract = types.SimpleNamespace(**{n: getattr(slicer.vtkSlicerSegmentEditorLogic, n) for n in modes})
        mp.setattr(slicer, "qSlicerSegmentEditorAbstractEffect", abstract, raising=False)
        mp.setattr(slicer, "qSlicerSegmentEditorEffectFactory", EffectFactory, raising=False)
        mp.setattr(slicer, "qMRMLSegmentEditorWidget", SegmentEditor, raising=False)
        import slicer_util_gui

        for name, fn in slicer_util_gui.functions(self).items():
            mp.setattr(slicer.util, name, fn, raising=False)
        mp.setattr(slicer, "qMRMLNodeComboBox", slicer_util_gui.NodeComboBox, raising=False)
        mp.setattr(slicer, "qMRMLWidget", slicer_util_gui.MRMLWidget, raising=False)
        self.loader = ScriptedModuleLoader(self)
        logic = slicer.vtkSlicerSegmentEditorLogic()
        logic.SetMRMLScene(ctx.scene)
        logic.SetMRMLApplicationLogic(ctx.app)
        self.editor_logic = logic
        mp.setattr(sys, "path", list(sys.path))  # module folders appended by the loader are undone

    def start(self, *module_files):
        """Slicer's startup: load each scripted module file, then emit startupCompleted()."""
        cores = [self.loader.load(f) for f in module_files]
        self.loader.startup_completed()
        return cores

    def editor(self, volume, segmentation, segment_id):
        """A Segment Editor widget on a real editor node, like the Segment Editor module's."""
        node = self.ctx.scene.AddNewNodeByClass("vtkMRMLSegmentEditorNode")
        editor = SegmentEditor()
        editor.setMRMLScene(self.ctx.scene)
        editor.setMRMLSegmentEditorNode(node)
        editor.setSegmentationNode(segmentation)
        editor.setSourceVolumeNode(volume)
        node.SetSelectedSegmentID(segment_id)
        self.editor_logic.SetCurrentSegmentID(segment_id)
        return editor

    def process_events(self, seconds=0.0):
        import time

        end = time.monotonic() + seconds
        while True:
            self.app.processEvents()
            if time.monotonic() >= end:
                return
            time.sleep(0.01)
