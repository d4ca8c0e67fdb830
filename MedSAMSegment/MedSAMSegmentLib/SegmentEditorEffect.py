"""MedSAM Segment Editor effect: the Qt shell over medsamkit.mrml.

Everything that is not Qt lives in medsamkit.mrml and is tested headless with slicer-core: reading the
view's slice and the prompts in RAS (volumes.py, prompts.py, interactive.PromptState), running the
engine (engine.py, interactive.run_request) on one worker thread (jobs.Worker), and writing the result
into the selected segment as one undo step (segments.write_mask). This file turns mouse and keyboard
events into those calls, polls the worker with a QTimer and shows status.

Method order follows Slicer's ScriptedSegmentEditorEffect template: __init__, clone, icon, helpText,
setupOptionsFrame, setMRMLDefaults, updateGUIFromMRML, updateMRMLFromGUI, processInteractionEvents,
then the apply steps.
"""
import logging
import os

import ctk
import qt
import vtk

import slicer
from SegmentEditorEffects import AbstractScriptedSegmentEditorEffect

from MedSAMSegmentLib.EffectTarget import EngineHolder, ScriptedEffectTarget, ViewPrefetch
from MedSAMSegmentLib.Parameters import (ADAPTER, BACKEND, CANCEL_KEY, CHECKPOINT_PATH, DEVICE, MARKER_MARGIN_MM,
                                          MARKER_REFINE, MIN_DRAG_PIXELS, MODEL, POLL_INTERVAL_MS,
                                          POLL_WAIT_MS, PROMPT_MODE, PROMPT_MODES, RUN_MARKERS_KEY, SERVER_TOKEN_FILE,
                                          WINDOW, WRITE_MODE)


class SegmentEditorEffect(AbstractScriptedSegmentEditorEffect):
    """Promptable segmentation with MedSAM-family models: box, +/- points, refine, propagate, markers."""

    def __init__(self, scriptedEffect):
        scriptedEffect.name = "MedSAM"
        scriptedEffect.perSegment = True  # writes into the selected segment
        scriptedEffect.requireSegments = True
        AbstractScriptedSegmentEditorEffect.__init__(self, scriptedEffect)
        self.engineHolder = None     # EngineHolder: the model, created on the worker thread on first use
        self.worker = None           # medsamkit.mrml.jobs.Worker
        self.job = None              # the running Job and what it was submitted for
        self.jobContext = None
        self.promptState = None      # medsamkit.mrml.interactive.PromptState
        self.normalizationCache = None
        self.drag = None             # (viewWidget, xy0, ras0) while a box is being dragged
        self.boxPipelines = {}
        self.markerPanel = None
        self.viewPrefetch = None     # EffectTarget.ViewPrefetch: encodes the viewed slice ahead (instant first box)
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

    def helpText(self):
        return """<html>Segment with MedSAM-family models (LiteMedSAM by default) from prompts on a slice.<p>
<ul style="margin: 0">
<li><b>Box:</b> drag a box around the structure in any slice view.
<li><b>+/- points:</b> click inside (+); Ctrl+Shift+click outside (-), on macOS Cmd+Shift+click.
Slicer's own gestures stay as they are: Ctrl+drag blends the layers, Shift+drag pans, right-drag zooms.
<li><b>Refine:</b> like points, reusing the previous result as a mask prompt.
<li><b>Propagate:</b> drag a box; the result is carried to neighbouring slices until the object ends.
<li><b>Markers:</b> click the two ends of the lesion's long and short axes every few slices, then Run.
<li><b>x</b> (in a slice view) or <b>Cancel</b>: stop the running segmentation, nothing is written, and clear
the prompts. Leaving the effect (Esc, or another effect) does the same. <b>Enter</b> (markers): Run.
<li><b>Review:</b> <i>Next slice to review</i> jumps the views to the most suspicious slice of the last 3D result;
<i>Show recorded prompts</i> brings back the prompts saved with the segment.
</ul><p>Each result is one Undo step; the editable area and overwrite settings below apply.
The slice view must be aligned with the volume (click the orientation warning button if it is not).</html>"""

    def setupOptionsFrame(self):
        from medsamkit.mrml import choices  # the lists the registry and preprocess define, not typed again

        self.modelSelector = qt.QComboBox()
        self.modelSelector.addItems(list(choices.model_kinds()))
        self.modelSelector.setToolTip("Model kind. LiteMedSAM's weights are bundled; a catalog model (medsam, sam-*, "
                                      "sam-med2d, medicosam) is downloaded on first use, with its licence shown "
                                      "first, unless you choose its checkpoint file below.")
        self.scriptedEffect.addLabeledOptionsWidget("Model:", self.modelSelector)

        self.checkpointEdit = ctk.ctkPathLineEdit()
        self.checkpointEdit.filters = ctk.ctkPathLineEdit.Files
        self.checkpointEdit.setToolTip("Weights file (.pth/.safetensors). Empty: the model's bundled weights, or "
                                       "the verified download of the model catalog (medsamkit models list).")
        self.scriptedEffect.addLabeledOptionsWidget("Checkpoint:", self.checkpointEdit)

        self.backendEdit = qt.QLineEdit()
        self.backendEdit.setToolTip("'local' runs the model in its own process on this computer, started by the "
                                    "effect (Slicer never waits on it, and a crash of the model never takes Slicer "
                                    "down); a URL (http://host:8765) uses a MedSAM server.")
        self.scriptedEffect.addLabeledOptionsWidget("Backend:", self.backendEdit)

        self.adapterSelector = qt.QComboBox()
        self.adapterSelector.setToolTip("Adapter fine-tuned with the MedSAM Training module for this model kind "
                                        "(registered there with 'Register adapter for the MedSAM effect').")
        self.scriptedEffect.addLabeledOptionsWidget("Adapter:", self.adapterSelector)

        self.tokenFileEdit = ctk.ctkPathLineEdit()
        self.tokenFileEdit.filters = ctk.ctkPathLineEdit.Files
        self.tokenFileEdit.setToolTip("File holding the server's token (empty: the MEDSAMKIT_TOKEN environment "
                                      "variable). Only the path is saved with the scene, never the token.")
        self.scriptedEffect.addLabeledOptionsWidget("Server token file:", self.tokenFileEdit)

        self.windowSelector = qt.QComboBox()
        self.windowSelector.addItems(list(choices.window_choices()))
        self.windowSelector.setEditable(True)  # also accepts "W,L", e.g. 400,40
        # Typed text is written when editing finishes (Enter or focus out), not per key: each write
        # round-trips through every effect's updateGUIFromMRML (EffectParameterModified).
        self.windowSelector.lineEdit().connect("editingFinished()", self.updateMRMLFromGUI)
        self.windowSelector.setToolTip("Intensity window the model sees. 'display' uses the view's current window/level.")
        self.scriptedEffect.addLabeledOptionsWidget("Window:", self.windowSelector)

        modeLayout = qt.QHBoxLayout()
        self.modeButtons = {}
        for key, title in PROMPT_MODES:
            button = qt.QRadioButton(title)
            button.connect("toggled(bool)", lambda on, k=key: on and self.onPromptMode(k))
            modeLayout.addWidget(button)
            self.modeButtons[key] = button
        self.scriptedEffect.addLabeledOptionsWidget("Prompt:", modeLayout)

        self.writeModeSelector = qt.QComboBox()
        self.writeModeSelector.addItem("Replace the prompted slice(s)", "replace")
        self.writeModeSelector.addItem("Add to the segment", "add")
        self.scriptedEffect.addLabeledOptionsWidget("Result:", self.writeModeSelector)

        reviewLayout = qt.QHBoxLayout()
        self.reviewButton = qt.QPushButton("Next slice to review")
        self.reviewButton.setToolTip("Jump the slice views to the most suspicious slice of the segment's newest 3D "
                                     "result (low predicted IoU, disagreement with neighbours, mask on its box's "
                                     "edge, far from a marked slice) not reviewed yet.")
        self.reviewButton.connect("clicked()", self.onNextReview)
        self.promptsButton = qt.QPushButton("Show recorded prompts")
        self.promptsButton.setToolTip("Re-create the prompts recorded with this segment (boxes, +/- points, marker "
                                      "lines) as markups, to continue where the last session stopped.")
        self.promptsButton.connect("clicked()", self.onShowRecordedPrompts)
        reviewLayout.addWidget(self.reviewButton)
        reviewLayout.addWidget(self.promptsButton)
        self.scriptedEffect.addLabeledOptionsWidget("Review:", reviewLayout)

        from MedSAMSegmentLib.MarkerPanel import MarkerPanel

        self.markerPanel = MarkerPanel(self)
        self.scriptedEffect.addOptionsWidget(self.markerPanel.widget)

        self.statusLabel = qt.QLabel("")
        self.statusLabel.wordWrap = True
        self.progressBar = qt.QProgressBar()
        self.progressBar.visible = False
        self.cancelButton = qt.QPushButton("Cancel")
        self.cancelButton.enabled = False
        self.cancelButton.connect("clicked()", self.cancelJob)
        statusLayout = qt.QHBoxLayout()
        statusLayout.addWidget(self.progressBar)
        statusLayout.addWidget(self.cancelButton)
        self.scriptedEffect.addOptionsWidget(self.statusLabel)
        self.scriptedEffect.addOptionsWidget(statusLayout)

        for widget, signal in ((self.modelSelector, "currentIndexChanged(int)"),
                               (self.checkpointEdit, "currentPathChanged(QString)"),
                               (self.backendEdit, "editingFinished()"),
                               (self.tokenFileEdit, "currentPathChanged(QString)"),
                               (self.windowSelector, "activated(int)"),
                               (self.adapterSelector, "activated(int)"),
                               (self.writeModeSelector, "currentIndexChanged(int)")):
            widget.connect(signal, self.updateMRMLFromGUI)

    def createCursor(self, widget):
        mainWindow = slicer.util.mainWindow()  # None with --no-main-window
        # keep the normal arrow: the rubber band shows the box
        return mainWindow.cursor if mainWindow is not None else qt.QCursor(qt.Qt.ArrowCursor)

    def setMRMLDefaults(self):
        self.scriptedEffect.setParameterDefault(MODEL, "litemedsam")
        self.scriptedEffect.setParameterDefault(CHECKPOINT_PATH, "")
        self.scriptedEffect.setParameterDefault(BACKEND, "local")
        self.scriptedEffect.setParameterDefault(SERVER_TOKEN_FILE, "")
        self.scriptedEffect.setParameterDefault(DEVICE, "auto")
        self.scriptedEffect.setParameterDefault(WINDOW, "auto")
        self.scriptedEffect.setParameterDefault(PROMPT_MODE, "box")
        self.scriptedEffect.setParameterDefault(WRITE_MODE, "replace")
        from medsamkit.mrml.choices import DEFAULT_MARGIN_MM  # one default for the effect, markers CLI and batch

        self.scriptedEffect.setParameterDefault(MARKER_MARGIN_MM, DEFAULT_MARGIN_MM)
        self.scriptedEffect.setParameterDefault(MARKER_REFINE, 0)
        self.scriptedEffect.setParameterDefault(ADAPTER, "")

    def parameterOrEmpty(self, name):
        """An effect parameter whose default is "": Slicer does not store an empty default
        (setCommonParameter skips it), and parameter() of a missing one logs an error."""
        return self.scriptedEffect.parameter(name) if self.scriptedEffect.parameterDefined(name) else ""

    def updateGUIFromMRML(self):
        p = self.parameterOrEmpty
        for widget in (self.modelSelector, self.checkpointEdit, self.backendEdit, self.tokenFileEdit,
                       self.windowSelector, self.writeModeSelector, self.adapterSelector):
            widget.blockSignals(True)
        self.modelSelector.currentText = p(MODEL)
        self.checkpointEdit.currentPath = p(CHECKPOINT_PATH)
        self.backendEdit.text = p(BACKEND)
        self.tokenFileEdit.currentPath = p(SERVER_TOKEN_FILE)
        self.windowSelector.currentText = p(WINDOW)
        self.writeModeSelector.currentIndex = max(0, self.writeModeSelector.findData(p(WRITE_MODE)))
        self.fillAdapters(p(MODEL), p(ADAPTER))
        for widget in (self.modelSelector, self.checkpointEdit, self.backendEdit, self.tokenFileEdit,
                       self.windowSelector, self.writeModeSelector, self.adapterSelector):
            widget.blockSignals(False)
        mode = p(PROMPT_MODE)
        for key, button in self.modeButtons.items():
            wasBlocked = button.blockSignals(True)
            button.checked = key == mode
            button.blockSignals(wasBlocked)
        if self.markerPanel is not None:
            self.markerPanel.updateGUIFromMRML(mode)

    def updateMRMLFromGUI(self, *unused):
        self.scriptedEffect.setParameter(MODEL, self.modelSelector.currentText)
        self.scriptedEffect.setParameter(CHECKPOINT_PATH, self.checkpointEdit.currentPath)
        self.scriptedEffect.setParameter(BACKEND, self.backendEdit.text.strip() or "local")
        self.scriptedEffect.setParameter(SERVER_TOKEN_FILE, self.tokenFileEdit.currentPath)
        self.scriptedEffect.setParameter(WINDOW, self.windowSelector.currentText.strip() or "auto")
        self.scriptedEffect.setParameter(WRITE_MODE, self.writeModeSelector.currentData)
        self.scriptedEffect.setParameter(ADAPTER, self.adapterSelector.currentData or "")

    def fillAdapters(self, modelKind, chosenPath):
        """The adapter choices: none, then the adapters registered (MedSAMTraining) for this model kind.

        Slicer calls updateGUIFromMRML on every parameter change of any effect (each tick of a slider):
        the registry is read and the list rebuilt only when the kind, the choice or the registry file changed."""
        key = (modelKind, chosenPath, adapterRegistryStamp())
        if key == self.adapterListKey:
            return
        self.adapterListKey = key
        self.adapterSelector.clear()
        self.adapterSelector.addItem("(none)", "")
        try:
            from medsamkit.mrml.choices import list_adapters

            entries = list_adapters(modelKind)
        except Exception as exc:  # an unreadable registry must not break the effect's panel
            logging.warning(f"MedSAM: the adapter list cannot be read: {exc}")
            entries = []
        for entry in entries:
            suffix = " (file missing)" if entry.get("missing") else ""
            self.adapterSelector.addItem(entry["name"] + suffix, entry["path"])
        index = self.adapterSelector.findData(chosenPath) if chosenPath else 0
        if index < 0:  # the chosen adapter is no longer registered: keep it visible rather than drop it
            self.adapterSelector.addItem(chosenPath + " (not registered for this model)", chosenPath)
            index = self.adapterSelector.count - 1
        self.adapterSelector.currentIndex = index

    def onPromptMode(self, mode):
        self.scriptedEffect.setParameter(PROMPT_MODE, mode)
        self.clearPrompts()

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
        close = getattr(self.engineHolder, "close", None)  # the engine holder stops the model it started
        if close is not None:
            close()
        self.engineHolder = None

    def onLayoutChanged(self, layout):
        """The views are rebuilt on a layout change: box pipelines on the old views are dropped."""
        self.dropBoxPipelines()

    def dropBoxPipelines(self):
        for viewWidget, pipeline in self.boxPipelines.items():
            self.scriptedEffect.removeActor2D(viewWidget, pipeline.actor)
        self.boxPipelines = {}
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
                self.boxPipeline(viewWidget).show(xy, xy)
            elif mode in ("points", "refine"):
                self.submitPoint(viewWidget, ras, positive=not negative)
            elif mode == "markers":
                self.markerPanel.click(ras)
            return True
        if eventId == vtk.vtkCommand.MouseMoveEvent and self.drag is not None and self.drag[0] is viewWidget:
            self.boxPipeline(viewWidget).show(self.drag[1], xy)
            return True
        if eventId == vtk.vtkCommand.LeftButtonReleaseEvent and self.drag is not None:
            dragWidget, xy0, ras0 = self.drag
            self.drag = None
            self.boxPipeline(dragWidget).hide()
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
        """Dependencies installed (first use), worker and engine holder ready. False if not usable."""
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
        from medsamkit.mrml.jobs import Worker

        self.worker = Worker()
        self.engineHolder = EngineHolder()
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

    def localModelKind(self):
        """The model kind the local model process runs, or None for a server (the server chooses its model)."""
        backend = self.parameterOrEmpty(BACKEND)
        return (self.parameterOrEmpty(MODEL) or "litemedsam") if backend in ("", "local") else None

    def boxOnlyNote(self):
        """A note for clicks on a model trained with boxes only (LiteMedSAM, MedSAM): "" when clicks suit it.

        The clicks still run (with a previous result in Refine mode they can help), but the user learns why
        clicks alone give poor masks and what to do instead."""
        kind = self.localModelKind()
        if kind is None:
            return ""
        from medsamkit.mrml.choices import accepts_point_prompts

        try:
            if accepts_point_prompts(kind):
                return ""
        except Exception:  # an unknown kind is reported when the model starts
            return ""
        return (f"Note: {kind} was trained with boxes only, so clicks alone give poor masks. Draw a box first "
                "(Box mode, then Refine to correct it), or choose the litemedsam-clicks model for clicks.")

    def modelToDownload(self):
        """The catalog model kind the local model process would need downloaded first (no checkpoint chosen and
        not in the cache yet), else None (bundled or cached weights, a chosen file, or a server's own model)."""
        kind = self.localModelKind()
        if kind is None or self.parameterOrEmpty(CHECKPOINT_PATH):
            return None
        from MedSAMSegmentLib import ModelDownload

        return kind if ModelDownload.needsDownload(kind) else None

    def ensureModelFile(self):
        """Main thread, before the model process starts: download a catalog model without a checkpoint (progress
        dialog with Cancel, licence first). False if the user cancelled or the download failed (it said why)."""
        try:
            kind = self.modelToDownload()
        except Exception as exc:  # an unreadable catalog: the model process reports the real problem
            logging.warning(f"MedSAM: cannot check the model cache: {exc}")
            return True
        if kind is None:
            return True
        from MedSAMSegmentLib import ModelDownload

        if ModelDownload.fetchModel(kind, parent=slicer.util.mainWindow()) is None:
            self.setStatus(f"The {kind} model is not downloaded; nothing was segmented. Choose it again to retry, "
                           "choose a checkpoint file, or choose litemedsam (bundled).")
            return False
        return True

    def submitPrompt(self, prompt, propagate=False, note=""):
        from medsamkit.mrml.interactive import engine_wants_volume, prepare_slice_request, prepare_volume_request, \
            volume_key

        volume, segmentation, segmentId = self.nodes()
        window = self.scriptedEffect.parameter(WINDOW)
        if propagate:
            request = prepare_volume_request(volume, segmentation, "propagate", window, prompt=prompt,
                                             cache=self.normalizationCache)
        else:
            refine = self.scriptedEffect.parameter(PROMPT_MODE) == "refine"
            # a remote server gets the whole volume once; later clicks on any of its slices send coordinates
            wholeVolume = engine_wants_volume(self.engineHolder.engine, self.scriptedEffect.parameter(BACKEND),
                                              volume_key(volume))
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
        holder = self.engineHolder
        options = self.modelOptions()

        def work(progress=None, cancel=None):  # worker thread: no MRML here
            session = holder.get(progress=progress, cancel=cancel, **options)  # starts the model process once
            return run_request(session, request, progress=progress, cancel=cancel)

        self.job = self.worker.submit(work, label=label)
        qt.QApplication.setOverrideCursor(qt.Qt.BusyCursor)  # busy, but the UI stays usable
        self.cancelButton.enabled = True
        self.progressBar.visible = True
        self.progressBar.setRange(0, 0)
        self.setStatus(f"Segmenting {label}...")
        self.watchWorker()

    def modelOptions(self):
        """The parameters that choose the model session (EffectTarget.EngineHolder.get)."""
        options = {k: self.parameterOrEmpty(k) for k in (MODEL, CHECKPOINT_PATH, DEVICE, BACKEND, SERVER_TOKEN_FILE)}
        adapter = self.parameterOrEmpty(ADAPTER)
        if adapter:
            options["adapter"] = adapter  # a registered adapter file (MedSAMTraining) for the model
        return options

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

    def onNextReview(self):
        self.guarded(self.nextReviewSlice)

    def nextReviewSlice(self):
        """Jump the slice views to the next slice of the selected segment's review queue (marks it reviewed)."""
        from medsamkit.mrml.records import get_record
        from medsamkit.mrml.review import SegmentReview, jump_slice_views, newest_3d_entry

        volume, segmentation, segmentId = self.nodes()
        if volume is None or segmentation is None or not segmentId:
            self.setStatus("Select a source volume and a segment to review.")
            return
        entry = newest_3d_entry(get_record(segmentation, segmentId), segmentId)
        key = (volume.GetID(), segmentation.GetID(), segmentId, entry["id"] if entry else None)
        if self.review is None or self.review[0] != key:  # another segment, or a newer result: a new queue
            self.review = (key, SegmentReview(volume, segmentation, segmentId))
        review = self.review[1]
        step = review.next()
        total = len(review.queue)
        if step is None:
            self.review = None  # the next press starts the walk again
            self.setStatus(f"All {total} slices of this result were reviewed; press again to start over.")
            return
        item, ras = step
        jump_slice_views(slicer.mrmlScene, ras)
        self.setStatus(f"Review: slice {item.index} ({total - review.remaining} of {total}, most suspicious first; "
                       f"score {item.score:.2f}).")

    def onShowRecordedPrompts(self):
        self.guarded(self.showRecordedPrompts)

    def showRecordedPrompts(self):
        """Re-create the selected segment's recorded prompts as markups (resume a session)."""
        from medsamkit.mrml.records import get_record, prompt_markups_from_record

        _, segmentation, segmentId = self.nodes()
        record = get_record(segmentation, segmentId) if segmentation is not None and segmentId else None
        if record is None:
            self.setStatus("This segment has no recorded MedSAM prompts.")
            return
        nodes = prompt_markups_from_record(slicer.mrmlScene, record, segmentId)
        self.setStatus(f"Recorded prompts shown as {len(nodes)} markup node(s): "
                       + ", ".join(n.GetName() for n in nodes) + ".")

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

    def boxPipeline(self, viewWidget):
        if viewWidget not in self.boxPipelines:
            from MedSAMSegmentLib.RubberBand import BoxPipeline

            pipeline = BoxPipeline()
            self.scriptedEffect.addActor2D(viewWidget, pipeline.actor)
            self.boxPipelines[viewWidget] = pipeline
        pipeline = self.boxPipelines[viewWidget]
        pipeline.view = viewWidget
        return pipeline


def adapterRegistryStamp():
    """(path, mtime, size) of the adapter registry file: it changes whenever an adapter is (un)registered."""
    try:
        from medsamkit.mrml.choices import adapter_registry_path

        path = adapter_registry_path()
        stat = path.stat()
    except Exception:  # no registry yet (or no medsamkit): nothing to list, fillAdapters says why if it matters
        return None
    return str(path), stat.st_mtime_ns, stat.st_size
