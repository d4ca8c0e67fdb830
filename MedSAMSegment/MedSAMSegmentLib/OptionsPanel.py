"""The MedSAM effect's options panel: its widgets, their two-way sync with the effect's parameters,
what the chosen model needs before it runs (a download, a note for clicks) and the review buttons.

The effect class takes these methods as a base class (Slicer calls setupOptionsFrame, setMRMLDefaults,
updateGUIFromMRML and updateMRMLFromGUI on the effect); the lists it offers come from
medsamkit.mrml.choices, never typed here.
"""
import logging

import ctk
import qt

import slicer

from MedSAMSegmentLib.Parameters import (ADAPTER, BACKEND, CHECKPOINT_PATH, DEVICE, MARKER_MARGIN_MM, MARKER_REFINE,
                                          MODEL, PROMPT_MODE, PROMPT_MODES, SERVER_TOKEN_FILE, WINDOW, WRITE_MODE)


class EffectOptions:
    """The options panel of :class:`MedSAMSegmentLib.SegmentEditorEffect.SegmentEditorEffect`."""

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
        """Slicer builds the panel once: the model, the prompt, then the review and status rows."""
        from medsamkit.mrml import choices  # the lists the registry and preprocess define, not typed again

        self.addModelOptions(choices)
        self.addPromptOptions(choices)
        self.addReviewAndStatus()

        for widget, signal in ((self.modelSelector, "currentIndexChanged(int)"),
                               (self.checkpointEdit, "currentPathChanged(QString)"),
                               (self.backendEdit, "editingFinished()"),
                               (self.tokenFileEdit, "currentPathChanged(QString)"),
                               (self.windowSelector, "activated(int)"),
                               (self.adapterSelector, "activated(int)"),
                               (self.writeModeSelector, "currentIndexChanged(int)")):
            widget.connect(signal, self.updateMRMLFromGUI)

    def addModelOptions(self, choices):
        """Model, checkpoint, backend, adapter, server token: what chooses the model session."""
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

    def addPromptOptions(self, choices):
        """The window the model sees, the prompt mode and how a result is written."""
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

    def addReviewAndStatus(self):
        """Review buttons, the marker panel, the status line with progress and Cancel."""
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


def adapterRegistryStamp():
    """(path, mtime, size) of the adapter registry file: it changes whenever an adapter is (un)registered."""
    try:
        from medsamkit.mrml.choices import adapter_registry_path

        path = adapter_registry_path()
        stat = path.stat()
    except Exception:  # no registry yet (or no medsamkit): nothing to list, fillAdapters says why if it matters
        return None
    return str(path), stat.st_mtime_ns, stat.st_size
