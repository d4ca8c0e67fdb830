"""MedSAM Segment Editor effect: the Qt shell over medsamkit.mrml.

Everything that is not Qt lives in medsamkit.mrml, tested headless with slicer-core: the view's slice and
the prompts in RAS (volumes.py, interactive.PromptState), the model (session.ModelSession,
interactive.run_request) on one worker thread (session.Worker), the result written into the selected
segment as one undo step (segments.write_mask through ScriptedEffectTarget, below). This file turns mouse
and keyboard events into those calls, polls the worker with a QTimer and shows status. Slicer's template
methods keep its order here and in the options panel's base class (OptionsPanel.EffectOptions).
"""
import logging
import os

import qt
import vtk

import slicer
from SegmentEditorEffects import AbstractScriptedSegmentEditorEffect

from MedSAMSegmentLib.OptionsPanel import EffectOptions
from MedSAMSegmentLib.Parameters import (ADAPTER, BACKEND, CANCEL_KEY, CHECKPOINT_PATH, DEVICE, MIN_DRAG_PIXELS, MODEL,
                                          POLL_INTERVAL_MS, POLL_WAIT_MS, PROMPT_MODE, RUN_MARKERS_KEY,
                                          SERVER_TOKEN_FILE, WINDOW, WRITE_MODE)
from MedSAMSegmentLib.RubberBand import BoxPipelines


class SegmentEditorEffect(EffectOptions, AbstractScriptedSegmentEditorEffect):
    """Promptable segmentation with MedSAM-family models: box, +/- points, refine, propagate, markers."""

    def __init__(self, scriptedEffect):
        scriptedEffect.name = "MedSAM"
        scriptedEffect.perSegment = True  # writes into the selected segment
        scriptedEffect.requireSegments = True
        AbstractScriptedSegmentEditorEffect.__init__(self, scriptedEffect)
        self.session = None          # medsamkit.mrml.session.ModelSession: its model opens on the worker on first use
        self.worker = None           # medsamkit.mrml.session.Worker
        self.job = None              # the running Job and what it was submitted for
        self.jobContext = None
        self.promptState = None      # medsamkit.mrml.interactive.PromptState
        self.normalizationCache = None
        self.drag = None             # (viewWidget, xy0, ras0) while a box is being dragged
        self.boxPipelines = BoxPipelines(scriptedEffect)  # the rubber band of each slice view
        self.markerPanel = None
        self.viewPrefetch = None     # ViewPrefetch: encodes the viewed slice ahead (instant first box)
        self.pollTimer = qt.QTimer()
        self.pollTimer.setInterval(POLL_INTERVAL_MS)
        self.pollTimer.connect("timeout()", self.pollJob)
        self.layoutObserved = False
        self.dependenciesReady = set()  # purposes ("local", "remote") whose packages are installed
        self.review = None           # (key, medsamkit.mrml.review.SegmentReview) of the segment being reviewed
        self.adapterListKey = None   # what the adapter list was built from (fillAdapters)

    def clone(self):
        import qSlicerSegmentationsEditorEffectsPythonQt as effects

        clonedEffect = effects.qSlicerSegmentEditorScriptedEffect(None)
        clonedEffect.setPythonSource(__file__.replace("\\", "/"))
        return clonedEffect

    def icon(self):
        iconPath = os.path.join(os.path.dirname(__file__), "SegmentEditorEffect.png")
        return qt.QIcon(iconPath) if os.path.exists(iconPath) else qt.QIcon()

    def createCursor(self, widget):
        mainWindow = slicer.util.mainWindow()  # None with --no-main-window
        # keep the normal arrow: the rubber band shows the box
        return mainWindow.cursor if mainWindow is not None else qt.QCursor(qt.Qt.ArrowCursor)

    def activate(self):
        layoutManager = slicer.app.layoutManager()  # None without a main window
        if not self.layoutObserved and layoutManager is not None:
            layoutManager.connect("layoutChanged(int)", self.onLayoutChanged)
            self.layoutObserved = True
        self.ensureSession()

    def deactivate(self):
        """Leaving the effect (Esc, another effect): the running job is dropped, prompts and boxes cleared."""
        self.cancelJob()
        self.finishJob()
        self.clearPrompts()
        self.dropBoxPipelines()
        if self.viewPrefetch is not None:
            self.viewPrefetch.stop()
        self.adapterListKey = None  # entering the effect again re-reads the adapter list (a file may be gone)

    def cleanup(self):
        """Called by Slicer (5.10+) before the effect is deleted: stop the timer, the worker and the model."""
        self.pollTimer.stop()
        if self.viewPrefetch is not None:
            self.viewPrefetch.stop()
        self.cancelJob()
        self.finishJob()
        self.dropBoxPipelines()
        if self.layoutObserved and slicer.app.layoutManager() is not None:
            slicer.app.layoutManager().disconnect("layoutChanged(int)", self.onLayoutChanged)
        self.layoutObserved = False
        if self.worker is not None:
            self.worker.shutdown(cancel=True)
            self.worker = None
        if self.session is not None:  # the session stops the model process it started
            self.session.close()
        self.session = None

    def onLayoutChanged(self, layout):
        """The views are rebuilt on a layout change: box pipelines on the old views are dropped."""
        self.dropBoxPipelines()

    def dropBoxPipelines(self):
        self.boxPipelines.drop()
        self.drag = None

    def processInteractionEvents(self, callerInteractor, eventId, viewWidget):
        if viewWidget.className() != "qMRMLSliceWidget":
            return False
        mode = self.scriptedEffect.parameter(PROMPT_MODE)
        xy = callerInteractor.GetEventPosition()
        if eventId == vtk.vtkCommand.KeyPressEvent:
            key = callerInteractor.GetKeySym()
            if key == CANCEL_KEY:
                self.cancelJob()
                self.finishJob()
                self.clearPrompts()
                return True
            if key == RUN_MARKERS_KEY and mode == "markers":
                self.markerPanel.onRun()
                return True
            return False
        if eventId == vtk.vtkCommand.LeftButtonPressEvent:
            shift, ctrl, alt = (callerInteractor.GetShiftKey(), callerInteractor.GetControlKey(),
                                callerInteractor.GetAltKey())
            negative = mode in ("points", "refine") and shift and ctrl and not alt  # Ctrl+Shift (Cmd+Shift, macOS)
            if (shift or ctrl or alt) and not negative:
                return False  # Slicer's own gestures (Ctrl+drag blend, Shift+drag pan, Ctrl+Alt+drag rotate)
            ras = self.xyToRas(xy, viewWidget)
            if mode in ("box", "propagate"):
                self.drag = (viewWidget, xy, ras)
                self.boxPipelines.of(viewWidget).show(xy, xy)
            elif mode in ("points", "refine"):
                self.submitPoint(viewWidget, ras, positive=not negative)
            elif mode == "markers":
                self.markerPanel.click(ras)
            return True
        if eventId == vtk.vtkCommand.MouseMoveEvent and self.drag is not None and self.drag[0] is viewWidget:
            self.boxPipelines.of(viewWidget).show(self.drag[1], xy)
            return True
        if eventId == vtk.vtkCommand.LeftButtonReleaseEvent and self.drag is not None:
            dragWidget, xy0, ras0 = self.drag
            self.drag = None
            self.boxPipelines.of(dragWidget).hide()
            if dragWidget is viewWidget and max(abs(xy[0] - xy0[0]), abs(xy[1] - xy0[1])) >= MIN_DRAG_PIXELS:
                self.submitBox(viewWidget, ras0, self.xyToRas(xy, viewWidget), propagate=mode == "propagate")
            else:
                self.setStatus("Drag to draw a box (press, move, release).")
            return True
        return False

    def processViewNodeEvents(self, callerViewNode, eventId, viewWidget):
        # Slicer calls this when a view's node changes (slice moved); after a second at rest the model
        # process encodes the viewed slice, so the first box there costs only the decoder.
        if self.viewPrefetch is not None and viewWidget is not None and viewWidget.className() == "qMRMLSliceWidget":
            self.viewPrefetch.viewChanged(self.sliceToRas(viewWidget))

    # ---------------------------------------------------------------- apply steps (main thread)
    def ensureSession(self):
        """Dependencies installed (first use), worker and model session ready. False if not usable."""
        from MedSAMSegmentLib.Install import ensureDependencies

        backend = self.scriptedEffect.parameter(BACKEND) if self.scriptedEffect.parameterDefined(BACKEND) else "local"
        purpose = "local" if backend in ("", "local") else "remote"  # a URL needs only the client packages
        if purpose not in self.dependenciesReady:
            if not ensureDependencies(purpose=purpose):
                self.setStatus("MedSAM needs its Python packages; activate the effect again to install them.")
                return False
            self.dependenciesReady.add(purpose)
        if self.worker is not None:
            return True
        from medsamkit.mrml.interactive import NormalizationCache, PromptState
        from medsamkit.mrml.session import ModelSession, Worker

        from MedSAMSegmentLib.ViewPrefetch import ViewPrefetch

        self.worker = Worker()
        self.session = ModelSession()
        self.viewPrefetch = ViewPrefetch(self)
        self.promptState = PromptState()
        self.normalizationCache = NormalizationCache()
        return True

    def nodes(self):
        parameterSetNode = self.scriptedEffect.parameterSetNode()
        if parameterSetNode is None:  # the scene was closed
            return None, None, None
        volume = (parameterSetNode.GetSourceVolumeNode() if hasattr(parameterSetNode, "GetSourceVolumeNode")
                  else parameterSetNode.GetMasterVolumeNode())
        return volume, parameterSetNode.GetSegmentationNode(), parameterSetNode.GetSelectedSegmentID()

    def sliceToRas(self, viewWidget):
        from medsamkit.mrml.volumes import matrix_to_numpy

        return matrix_to_numpy(viewWidget.mrmlSliceNode().GetSliceToRAS())

    def submitBox(self, viewWidget, ras0, ras1, propagate=False):
        self.submitBoxRas(self.sliceToRas(viewWidget), ras0, ras1, propagate)

    def submitBoxRas(self, sliceToRas, ras0, ras1, propagate=False):
        """A box given by two RAS corners on the slice of a view with ``sliceToRas`` (also for scripting)."""
        if not self.ensureSession():
            return
        volume, _, _ = self.nodes()
        self.guarded(lambda: self.submitPrompt(self.promptState.set_box(volume, sliceToRas, ras0, ras1),
                                               propagate=propagate))

    def submitPoint(self, viewWidget, ras, positive):
        if not self.ensureSession():
            return
        volume, _, _ = self.nodes()
        self.guarded(lambda: self.submitPrompt(self.promptState.add_point(volume, self.sliceToRas(viewWidget), ras, positive),
                                               note=self.boxOnlyNote()))

    def submitPrompt(self, prompt, propagate=False, note=""):
        from medsamkit.mrml.interactive import prepare_slice_request, prepare_volume_request, volume_key

        volume, segmentation, segmentId = self.nodes()
        window = self.scriptedEffect.parameter(WINDOW)
        if propagate:
            request = prepare_volume_request(volume, segmentation, "propagate", window, prompt=prompt,
                                             cache=self.normalizationCache)
        else:
            refine = self.scriptedEffect.parameter(PROMPT_MODE) == "refine"
            # the model gets the whole volume once; later clicks on any of its slices send coordinates
            wholeVolume = not self.session.holds_volume(volume_key(volume))
            request = prepare_slice_request(volume, segmentation, prompt, window,
                                            mask_input=self.promptState.previous if refine else None,
                                            cache=self.normalizationCache, whole_volume=wholeVolume)
        self.submit(request, "propagation" if propagate else f"slice {prompt.view.index}", note=note)

    def submitPlan(self, plan, refine, markers=None):
        """A markers run of ``plan``; ``markers`` (the lines it came from) go into the prompt record."""
        from medsamkit.mrml.interactive import prepare_volume_request

        volume, segmentation, _ = self.nodes()
        request = prepare_volume_request(volume, segmentation, "markers", self.scriptedEffect.parameter(WINDOW),
                                         plan=plan, refine=refine, cache=self.normalizationCache, markers=markers)
        self.submit(request, f"markers ({len(plan.boxes)} slices)")

    def submit(self, request, label, note=""):
        from medsamkit.mrml.interactive import run_request

        if not self.ensureSession():  # the Backend may have become a URL: its client packages first
            return
        if self.job is None and not self.worker.busy and not self.ensureModelFile():
            return
        if self.job is not None or self.worker.busy:
            self.setStatus(f"Still segmenting (or stopping); press Cancel or '{CANCEL_KEY}' first, or wait.")
            return
        if not self.scriptedEffect.confirmCurrentSegmentVisible():
            return
        volume, segmentation, segmentId = self.nodes()
        self.jobContext = (volume.GetID(), segmentation.GetID(), segmentId, label, note)
        session = self.session
        options = self.modelOptions()

        def work(progress=None, cancel=None):  # worker thread: no MRML here
            opened = session.open(progress=progress, cancel=cancel, **options)  # starts the model process once
            return run_request(opened, request, progress=progress, cancel=cancel)

        self.job = self.worker.submit(work, label=label)
        qt.QApplication.setOverrideCursor(qt.Qt.BusyCursor)  # busy, but the UI stays usable
        self.cancelButton.enabled = True
        self.progressBar.visible = True
        self.progressBar.setRange(0, 0)
        self.setStatus(f"Segmenting {label}...")
        self.watchWorker()

    def modelOptions(self):
        """The parameters that choose the model session (ModelSession.open)."""
        return {k: self.parameterOrEmpty(k) for k in (MODEL, CHECKPOINT_PATH, DEVICE, BACKEND, SERVER_TOKEN_FILE,
                                                      ADAPTER)}  # ADAPTER: a file registered by MedSAMTraining

    def watchWorker(self):
        """Start the poll timer (a job was queued: a prompt or the view prefetch)."""
        if not self.pollTimer.active:
            self.pollTimer.start()

    def pollJob(self):
        """Timer slot while a job is pending: let the worker run (the GIL released), then apply a finished prompt."""
        worker = self.worker
        if worker is not None and worker.pending:
            worker.wait(POLL_WAIT_MS / 1000)
        job = self.job
        if job is None:
            if worker is None or not worker.pending:
                self.pollTimer.stop()
            return
        done, total, text = job.progress()
        if total:
            self.progressBar.setRange(0, total)
            self.progressBar.value = done
        if not job.done():
            return
        self.finishJob()
        if job.cancelled:  # cancelled while it ran: whatever it computed is dropped, nothing is written
            self.setStatus(f"Cancelled {job.label}; nothing was written.")
            return
        try:
            result = job.result()
            self.applyResult(result)
        except Exception as exc:
            self.reportError(exc)

    def finishJob(self):
        """Forget the current job (its result, if it ever comes, is never applied) and reset the busy UI."""
        if self.job is None:
            return
        self.job = None
        if self.worker is None or not self.worker.pending:
            self.pollTimer.stop()
        qt.QApplication.restoreOverrideCursor()
        self.cancelButton.enabled = False
        self.progressBar.visible = False

    def applyResult(self, result):
        from medsamkit.mrml.interactive import apply_result

        volume, segmentation, segmentId = self.nodes()
        volumeId, segmentationId, submittedSegmentId, label, note = self.jobContext
        if (volume is None or segmentation is None or not segmentId
                or segmentation.GetSegmentation().GetSegment(segmentId) is None):
            self.setStatus(f"The volume, segmentation or segment was closed while segmenting {label}; nothing was "
                           "written. Load them again and prompt again.")
            return
        if (volume.GetID(), segmentation.GetID(), segmentId) != (volumeId, segmentationId, submittedSegmentId):
            self.setStatus(f"The selection changed while segmenting {label}; the result was not written. Prompt again.")
            return
        apply_result(ScriptedEffectTarget(self.scriptedEffect), result, self.scriptedEffect.parameter(WRITE_MODE))
        self.promptState.remember(result)
        warnings = "".join(f"\n{w}" for w in list(result.warnings) + ([note] if note else []))
        self.setStatus(f"{result.summary} ({result.seconds:.1f} s).{warnings}")

    def waitForResult(self, timeoutSeconds=600.0):
        """Process events until the running job has been applied (scripting and the module self-test)."""
        import time

        deadline = time.monotonic() + timeoutSeconds
        while self.job is not None and time.monotonic() < deadline:
            slicer.app.processEvents()
            time.sleep(0.02)
        slicer.app.processEvents()
        return self.job is None

    def cancelJob(self):
        """Ask the running job to stop; pollJob then drops it without writing (see finishJob)."""
        if self.job is not None and not self.job.cancelled:
            self.job.cancel()
            self.setStatus(f"Cancelling {self.job.label}...")

    def clearPrompts(self):
        if self.promptState is not None:
            self.promptState.reset()
        if self.markerPanel is not None:
            self.markerPanel.cancelClick()

    def guarded(self, call):
        """Run a main-thread step; user errors (MedSAMError) become a status message, not a traceback."""
        try:
            call()
        except Exception as exc:
            self.reportError(exc)

    def reportError(self, exc):
        from medsamkit.errors import MedSAMError

        if isinstance(exc, MedSAMError):
            self.setStatus(str(exc))
        else:
            logging.exception("MedSAM effect failed")
            self.setStatus(f"Unexpected error ({type(exc).__name__}: {exc}); see the Python console.")

    def setStatus(self, text):
        self.statusLabel.text = text
        slicer.util.showStatusMessage(text.split("\n")[0], 5000)


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
