"""What the effect hands to medsamkit.mrml: where results are written, and the engine on the worker.

- ScriptedEffectTarget: medsamkit.mrml.segments.SegmentTarget over the scripted effect, so Slicer's own
  editing rules apply (undo state, editable area, overwrite mode).
- EngineHolder: the model, created on the worker thread on first use (loading takes seconds).
"""
import slicer


class ScriptedEffectTarget:
    """medsamkit.mrml.segments.SegmentTarget over the scripted effect: Slicer's own editing rules apply."""

    def __init__(self, scriptedEffect):
        self.scriptedEffect = scriptedEffect
        self.segmentation_node = scriptedEffect.parameterSetNode().GetSegmentationNode()
        self.segment_id = scriptedEffect.parameterSetNode().GetSelectedSegmentID()

    def default_modifier_labelmap(self):
        return self.scriptedEffect.defaultModifierLabelmap()

    def save_state_for_undo(self):
        self.scriptedEffect.saveStateForUndo()

    def modify_selected_segment(self, modifier, mode):
        E = slicer.qSlicerSegmentEditorAbstractEffect
        enum = {0: E.ModificationModeSet, 1: E.ModificationModeAdd, 2: E.ModificationModeRemove}[int(mode)]
        self.scriptedEffect.modifySelectedSegmentByLabelmap(modifier, enum)


class EngineHolder:
    """Creates the engine on the worker thread on first use (model loading takes seconds) and again when
    the model options change. Only the worker thread calls get()."""

    def __init__(self):
        self.engine = None
        self.key = None

    def get(self, Model="litemedsam", CheckpointPath="", Device="auto", Backend="local", ServerTokenFile=""):
        from medsamkit.mrml.engine import make_engine

        key = (Model, CheckpointPath, Device, Backend, ServerTokenFile)
        if self.engine is None or key != self.key:
            self.engine = make_engine(Model or None, CheckpointPath or None, Device or None, Backend or "local",
                                      token_file=ServerTokenFile or None)
            self.key = key
        return self.engine
