"""What the effect hands to medsamkit.mrml: where results are written, the model session, the view prefetch.

- ScriptedEffectTarget: medsamkit.mrml.segments.SegmentTarget over the scripted effect, so Slicer's own
  editing rules apply (undo state, editable area, overwrite mode).
- EngineHolder: the model session (medsamkit.mrml.session.SessionHolder): "local" is a model process the
  effect starts with Slicer's Python (Slicer's process never imports torch), a URL a server. Started on
  the worker thread on first use, reused, restarted if it died; close() (the effect's cleanup) stops it.
- ViewPrefetch: the instant first box. When a slice view rests on a slice for a second, the worker asks
  the model process to encode that slice in the background.
"""
import qt
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
    """The effect's model session (see the module docstring). Only the worker thread calls get()."""

    def __init__(self):
        from medsamkit.mrml.session import SessionHolder

        self.holder = SessionHolder()

    def get(self, progress=None, cancel=None, adapter=None, **options):
        """options: the effect's parameters (Model, CheckpointPath, Device, Engine, Backend, ServerTokenFile;
        ``adapter``: a registered adapter file) -> a medsamkit.mrml.session.ModelSession."""
        if adapter:
            options["Adapter"] = adapter
        return self.holder.get(progress=progress, cancel=cancel, **options)

    @property
    def engine(self):
        """The current ModelSession, or None before the first run (main thread: read only)."""
        return self.holder.session

    def holds_volume(self, volume_key, normalization=None):
        return self.holder.holds_volume(volume_key, normalization)

    def close(self):
        """Stop the model process (if this effect started one) and forget the session."""
        self.holder.close()


class ViewPrefetch:
    """Instant first box: after a slice view rests on a slice for VIEW_DWELL_S, encode it ahead.

    The effect calls viewChanged(sliceToRas) from processViewNodeEvents (Slicer calls that on every
    change of a slice node while the effect is active); each call restarts a single-shot timer, so
    scrolling sends nothing and only the slice the user stops on is encoded (the model process keeps
    only the newest request and a bounded embedding cache).
    """

    def __init__(self, effect):
        from medsamkit.mrml.interactive import VIEW_DWELL_S

        self.effect = effect
        self.sliceToRas = None
        self.job = None
        self.timer = qt.QTimer()
        self.timer.setSingleShot(True)
        self.timer.setInterval(int(VIEW_DWELL_S * 1000))
        self.timer.connect("timeout()", self.onDwell)

    def viewChanged(self, sliceToRas):
        self.sliceToRas = sliceToRas
        self.timer.start()

    def onDwell(self):
        effect = self.effect
        if self.sliceToRas is None or effect.worker is None or effect.worker.busy:
            return  # a running prompt already has the model's attention
        try:
            self.job = self.submit(self.sliceToRas)
        except Exception:  # a prefetch is a hint: never an error for the user
            self.job = None

    def submit(self, sliceToRas):
        """Prepare the view request (main thread) and queue it on the worker; None if nothing to encode."""
        from medsamkit.mrml.interactive import prepare_view_request, run_view_request

        effect = self.effect
        volume, _, _ = effect.nodes()
        if volume is None or volume.GetImageData() is None or self.modelNotAtHand():
            return None
        holder = effect.engineHolder
        request = prepare_view_request(volume, sliceToRas, effect.scriptedEffect.parameter("Window"),
                                       effect.normalizationCache, holder)
        if request is None:
            return None
        options = effect.modelOptions()

        def work(progress=None, cancel=None):  # worker thread: no MRML here
            return run_view_request(holder.get(progress=progress, cancel=cancel, **options), request,
                                    progress=progress, cancel=cancel)

        job = effect.worker.submit_background(work, label="view prefetch")
        effect.watchWorker()  # the worker runs only while the main thread lets it (Worker.wait)
        return job

    def modelNotAtHand(self):
        """True while the chosen catalog model is not downloaded: only a prompt asks for the download
        (with its licence), never a view at rest."""
        return self.effect.modelToDownload() is not None

    def stop(self):
        self.timer.stop()
        self.sliceToRas = None
