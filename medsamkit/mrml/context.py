"""A MRML scene with the module logics wired as the Slicer application wires them.

Inside Slicer the application owns one scene (``slicer.mrmlScene``) and one logic per module
(``slicer.modules.volumes.logic()`` ...); the GUI shell builds an :class:`MRMLContext` from those.
Headless (tests, batch) :func:`make_context` creates the same objects from slicer-core.

Why every call below is needed (each was reproduced, see the project's slicer-core notes):

- ``vtkSlicerApplicationLogic.SetMRMLScene`` creates the selection/interaction singletons; without
  them the markups logic logs an error for every markups node added.
- The colors logic must be registered as module logic "Colors", else every volume load logs
  "invalid Colors module logic".
- ``vtkSlicerSegmentationsModuleLogic.SetMRMLScene`` registers the segmentation converter rules
  (process-wide). Before it, ``vtkSegmentation.AddEmptySegment`` silently returns "" and adds nothing.
- VTK/MRML report failures through vtkLogger and return values, never exceptions: callers in this
  package check every return value and raise :class:`medsamkit.errors.MedSAMError` subclasses.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass
class MRMLContext:
    """A scene and the module logics that act on it (all slicer-core objects)."""

    scene: Any            # vtkMRMLScene
    app: Any              # vtkSlicerApplicationLogic (None is tolerated inside the Slicer application)
    volumes: Any          # vtkSlicerVolumesLogic
    segmentations: Any    # vtkSlicerSegmentationsModuleLogic
    markups: Any          # vtkSlicerMarkupsLogic


def quiet_vtk(verbosity: str = "ERROR") -> None:
    """Let only VTK/MRML messages at ``verbosity`` or worse reach stderr (ERROR keeps errors visible)."""
    from vtkmodules.vtkCommonCore import vtkLogger

    vtkLogger.SetStderrVerbosity(getattr(vtkLogger, f"VERBOSITY_{verbosity}"))


def make_context() -> MRMLContext:
    """A fresh scene with application, colors, volumes, segmentations and markups logic (about 35 ms)."""
    import slicer

    scene = slicer.vtkMRMLScene()
    app = slicer.vtkSlicerApplicationLogic()
    app.SetMRMLScene(scene)
    colors = app.GetColorLogic()
    colors.SetMRMLScene(scene)
    colors.AddDefaultColorNodes()
    app.SetModuleLogic("Colors", colors)

    volumes = slicer.vtkSlicerVolumesLogic()
    volumes.SetMRMLScene(scene)
    volumes.SetMRMLApplicationLogic(app)
    app.SetModuleLogic("Volumes", volumes)

    segmentations = slicer.vtkSlicerSegmentationsModuleLogic()
    segmentations.SetMRMLScene(scene)
    segmentations.SetMRMLApplicationLogic(app)
    app.SetModuleLogic("Segmentations", segmentations)

    markups = slicer.vtkSlicerMarkupsLogic()
    markups.SetMRMLScene(scene)
    markups.SetMRMLApplicationLogic(app)
    app.SetModuleLogic("Markups", markups)
    return MRMLContext(scene, app, volumes, segmentations, markups)
