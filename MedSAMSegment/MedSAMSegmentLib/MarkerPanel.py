"""Sparse-marker panel of the MedSAM effect: place long/short-axis lines, see the boxes, run, refine.

The reader clicks the two ends of each axis on a few slices (Markers prompt mode); the lines are
markups line nodes tagged as MedSAM markers (medsamkit.mrml.markups), so they can also be drawn,
moved or deleted with Slicer's Markups tools and saved as .mrk.json for the headless batch.
"""
import qt

import slicer

from MedSAMSegmentLib.Parameters import MARKER_MARGIN_MM, MARKER_REFINE, PROMPT_MODE


class MarkerPanel:
    def __init__(self, effect):
        self.effect = effect
        self.clicks = None       # medsamkit.mrml.markups.MarkerClicks, made on first use
        self.boxesNode = None    # model node showing the interpolated boxes

        self.widget = qt.QGroupBox("Sparse markers (lesion axes)")
        layout = qt.QFormLayout(self.widget)
        self.countLabel = qt.QLabel("No marker lines yet.")
        layout.addRow(self.countLabel)

        self.placeButton = qt.QPushButton("Place axis lines")
        self.placeButton.checkable = True
        self.placeButton.setToolTip("Click the two ends of the long axis, then of the short axis, on every few slices.")
        self.placeButton.connect("toggled(bool)", self.onPlace)
        self.marginSpinBox = qt.QDoubleSpinBox()
        self.marginSpinBox.setRange(0.0, 50.0)
        self.marginSpinBox.suffix = " mm"
        self.marginSpinBox.setToolTip("Margin added around each marked slice's box.")
        self.marginSpinBox.connect("valueChanged(double)", self.onOptions)
        self.refineCheckBox = qt.QCheckBox("Refine slices that disagree with their neighbours")
        self.refineCheckBox.connect("toggled(bool)", self.onOptions)
        buttons = qt.QHBoxLayout()
        self.showButton = qt.QPushButton("Show boxes")
        self.showButton.connect("clicked()", self.onShowBoxes)
        self.runButton = qt.QPushButton("Run")
        self.runButton.connect("clicked()", self.onRun)
        self.clearButton = qt.QPushButton("Clear lines")
        self.clearButton.connect("clicked()", self.onClear)
        for b in (self.placeButton, self.showButton, self.runButton, self.clearButton):
            buttons.addWidget(b)
        layout.addRow(buttons)
        layout.addRow("Box margin:", self.marginSpinBox)
        layout.addRow(self.refineCheckBox)
        # RECIST measurements from a DICOM SR -> marker lines to edit before Run (medsamkit.mrml.recist)
        self.loadSRButton = qt.QPushButton("Load measurements from DICOM SR...")
        self.loadSRButton.setToolTip("Turn the long/short-axis lines of a TID 1500 measurement report into marker "
                                     "lines on the selected volume; edit them, then Run.")
        self.loadSRButton.connect("clicked()", self.onLoadSR)
        layout.addRow(self.loadSRButton)

    def updateGUIFromMRML(self, mode):
        p = self.effect.scriptedEffect
        for w in (self.placeButton, self.marginSpinBox, self.refineCheckBox):
            w.blockSignals(True)
        self.placeButton.checked = mode == "markers"
        self.marginSpinBox.value = p.doubleParameter(MARKER_MARGIN_MM)
        self.refineCheckBox.checked = p.integerParameter(MARKER_REFINE) != 0
        for w in (self.placeButton, self.marginSpinBox, self.refineCheckBox):
            w.blockSignals(False)
        self.updateCount()

    def onOptions(self, *unused):
        self.effect.scriptedEffect.setParameter(MARKER_MARGIN_MM, self.marginSpinBox.value)
        self.effect.scriptedEffect.setParameter(MARKER_REFINE, 1 if self.refineCheckBox.checked else 0)

    def onPlace(self, on):
        self.effect.scriptedEffect.setParameter(PROMPT_MODE, "markers" if on else "box")

    def click(self, ras):
        from medsamkit.mrml.markups import MarkerClicks

        if self.clicks is None:
            self.clicks = MarkerClicks(slicer.mrmlScene)
        line = self.clicks.click(ras)
        self.effect.setStatus("Now click the other end of the line." if line is None else f"Added {line.GetName()}.")
        self.updateCount()

    def cancelClick(self):
        if self.clicks is not None:
            self.clicks.cancel()

    def lines(self):
        from medsamkit.mrml.markups import marker_line_nodes

        return marker_line_nodes(slicer.mrmlScene)

    def updateCount(self):
        n = len(self.lines())
        self.countLabel.text = f"{n} marker line(s)." if n else "No marker lines yet."

    def plan(self):
        from medsamkit.mrml.markups import plan_from_line_nodes
        from medsamkit.mrml.volumes import volume_geometry

        volume, _, _ = self.effect.nodes()
        return plan_from_line_nodes(self.lines(), volume_geometry(volume),
                                    margin_mm=self.effect.scriptedEffect.doubleParameter(MARKER_MARGIN_MM))

    def onShowBoxes(self):
        def show():
            from medsamkit.mrml.markups import show_plan_boxes
            from medsamkit.mrml.volumes import volume_geometry

            plan = self.plan()
            volume, _, _ = self.effect.nodes()
            if self.boxesNode is not None and slicer.mrmlScene.IsNodePresent(self.boxesNode):
                show_plan_boxes(slicer.mrmlScene, plan, volume_geometry(volume), self.boxesNode)
            else:
                self.boxesNode = show_plan_boxes(slicer.mrmlScene, plan, volume_geometry(volume))
            self.effect.setStatus(f"{len(plan.boxes)} boxes on slices {min(plan.boxes)}-{max(plan.boxes)} "
                                  f"(marked: {plan.marked})." + "".join(f"\n{w}" for w in plan.warnings))

        self.effect.guarded(show)

    def onRun(self):
        if not self.effect.ensureSession():
            return
        refine = self.effect.scriptedEffect.integerParameter(MARKER_REFINE) != 0

        def run():
            from medsamkit.mrml.markups import markers_from_line_nodes

            self.effect.submitPlan(self.plan(), refine, markers=markers_from_line_nodes(self.lines()))

        self.effect.guarded(run)

    def onLoadSR(self):
        path = qt.QFileDialog.getOpenFileName(None, "DICOM SR with RECIST measurements", "", "DICOM (*.dcm *);;All (*)")
        if not path:
            return

        def load():
            import os

            from medsamkit.mrml.recist import INSTANCE_UIDS_ATTRIBUTE, load_sr_lines

            volume, _, _ = self.effect.nodes()
            study = None if volume.GetAttribute(INSTANCE_UIDS_ATTRIBUTE) else os.path.dirname(path)
            lesions = load_sr_lines(slicer.mrmlScene, path, volume, study_dir=study)
            n = sum(len(v) for v in lesions.values())
            more = (" Run segments all marker lines as one lesion: delete the other lesions' lines first, or "
                    "use 'medsamkit recist' for every lesion at once.") if len(lesions) > 1 else ""
            self.effect.setStatus(f"Loaded {n} line(s) of lesion(s) {', '.join(lesions)}; edit them, then Run.{more}")
            self.updateCount()

        self.effect.guarded(load)

    def onClear(self):
        for node in self.lines():
            slicer.mrmlScene.RemoveNode(node)
        if self.boxesNode is not None:
            slicer.mrmlScene.RemoveNode(self.boxesNode)
            self.boxesNode = None
        self.cancelClick()
        self.updateCount()
