"""slicer.ScriptedLoadableModule stand-ins: the base classes MedSAMSegment.py and MedSAMTraining.py inherit.

Each class defines only methods the real one (Base/Python/slicer/ScriptedLoadableModule.py) has, and
what they do follows it: the module sets the parent's metadata and registers its self-test; the widget
takes the given parent's layout; the test's delayDisplay only logs.
"""
from __future__ import annotations

import logging
import types
import unittest

import slicer_api


class ScriptedLoadableModule:
    def __init__(self, parent):
        import slicer

        self.parent = parent
        self.moduleName = self.__class__.__name__
        parent.title = ""
        parent.categories = []
        parent.dependencies = []
        parent.contributors = []
        parent.helpText = ""
        parent.acknowledgementText = ""
        if not hasattr(slicer, "selfTests"):
            slicer.selfTests = {}
        slicer.selfTests[self.moduleName] = self.runTest

    def getDefaultModuleDocumentationLink(self, docPage=None):
        return f'<p>For more information see the <a href="{self.moduleName}">online documentation</a>.</p>'

    def runTest(self, msec=100, **kwargs):
        import sys

        module = sys.modules[self.__module__]
        test = getattr(module, self.moduleName + "Test")()
        test.runTest(**kwargs)


class ScriptedLoadableModuleWidget:
    def __init__(self, parent=None):
        import qt

        self.moduleName = self.__class__.__name__[:-len("Widget")]
        if not parent:
            parent = qt.QWidget()
            parent.setLayout(qt.QVBoxLayout())
        self.parent = parent
        self.layout = self.parent.layout()

    def setup(self):
        pass

    def cleanup(self):
        pass


class ScriptedLoadableModuleLogic:
    def __init__(self, parent=None):
        self.parent = parent


class ScriptedLoadableModuleTest(unittest.TestCase):  # as the real one
    def delayDisplay(self, message, msec=1000):
        import slicer

        logging.info(message)
        slicer.util.delayDisplay(message, msec)

    def setUp(self):
        pass

    def runTest(self):
        pass


def module() -> types.ModuleType:
    m = types.ModuleType("slicer.ScriptedLoadableModule")
    for cls in (ScriptedLoadableModule, ScriptedLoadableModuleWidget, ScriptedLoadableModuleLogic,
                ScriptedLoadableModuleTest):
        for version in slicer_api.SLICER_VERSIONS:
            real = slicer_api.python_class_methods(version, "ScriptedLoadableModule", cls.__name__)
            extra = {n for n, v in vars(cls).items() if callable(v) and not n.startswith("__")} - real
            assert not extra, f"{cls.__name__} stand-in has {extra}, which Slicer {version}'s has not"
        setattr(m, cls.__name__, cls)
    return m
