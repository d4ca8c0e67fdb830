"""MedSAM Segment Editor effect package.

The effect class is imported here so that the package itself holds it, as Slicer's own
SegmentEditorEffects package does. qSlicerSegmentEditorScriptedEffect::setPythonSource(path) takes the
*parent folder* name (``MedSAMSegmentLib``) as module name and uses ``sys.modules[moduleName].<class>``
when it exists; otherwise it executes the effect file *as* the module ``MedSAMSegmentLib`` (5.10:
spec_from_file_location, 5.8: imp.load_source), and then ``from MedSAMSegmentLib.X import ...`` fails
with "'MedSAMSegmentLib' is not a package". MedSAMSegment.registerEditorEffect imports this package first.
"""
from .SegmentEditorEffect import SegmentEditorEffect  # noqa: F401
