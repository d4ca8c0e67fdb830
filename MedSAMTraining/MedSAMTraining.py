"""MedSAM Training: fine-tune the MedSAM family on your own segmentations, from inside 3D Slicer.

Widget (thin: builds the GUI, turns it into plain calls) / Logic (MedSAMTrainingLib.TrainingLogic
with the application's scene; everything it does is tested headless with slicer-core) / Test.
Training runs in a separate process (``medsamkit train``), never in Slicer's; the widget polls its
metrics file once a second.
"""
import logging
import os
import time

import ctk
import qt
import slicer
from slicer.ScriptedLoadableModule import (ScriptedLoadableModule, ScriptedLoadableModuleLogic,
                                           ScriptedLoadableModuleTest, ScriptedLoadableModuleWidget)

from MedSAMTrainingLib import TrainingLogic

MODALITIES = ("", "CT", "MR", "US", "XRay", "PET", "other")


class MedSAMTraining(ScriptedLoadableModule):
    def __init__(self, parent):
        ScriptedLoadableModule.__init__(self, parent)
        self.parent.title = "MedSAM Training"
        self.parent.categories = ["Segmentation"]
        self.parent.dependencies = ["MedSAMSegment"]  # its installer (MedSAMSegmentLib.Install)
        self.parent.contributors = ["medsamkit developers"]
        self.parent.helpText = (
            "Fine-tune a promptable segmentation model (LiteMedSAM, MedSAM, SAM, SAM-Med2D) on volumes and "
            "segmentations you already have. Training runs in a separate process; the result is an adapter file "
            "that the MedSAM Segment Editor effect can select. See docs/training.md of the extension.")
        self.parent.acknowledgementText = "Built on medsamkit (Apache-2.0)."


def ensureDependencies() -> bool:
    """The training packages ([project] dependencies + the train extra of pyproject.toml), installed after
    one confirmation by the same installer as the MedSAM effect (PyTorch Utils for torch, Slicer's numpy kept)."""
    from MedSAMSegmentLib.Install import ensureDependencies as ensure

    return ensure(purpose="train")


class MedSAMTrainingWidget(ScriptedLoadableModuleWidget):
    def setup(self):
        ScriptedLoadableModuleWidget.setup(self)
        from medsamkit.mrml import choices  # model kinds, windows and parts from the registry, preprocess, config

        self.logic = MedSAMTrainingLogic()
        self.items = []  # [(volume node, segmentation node)]
        self._setupDataSection(choices)
        self._setupModelSection(choices)
        self._setupRunSection()
        self.layout.addStretch(1)

        self.timer = qt.QTimer()
        self.timer.setInterval(1000)
        self.timer.connect("timeout()", self.onTimer)

    def _section(self, title):
        """A collapsible section of the module panel -> the form layout its rows go into."""
        section = ctk.ctkCollapsibleButton()
        section.text = title
        self.layout.addWidget(section)
        return qt.QFormLayout(section)

    def _setupDataSection(self, choices):
        """Training data: volume + segmentation pairs from the scene, or a data folder; modality and window."""
        form = self._section("Training data")
        self.volumeSelector = self._nodeSelector("vtkMRMLScalarVolumeNode")
        self.segmentationSelector = self._nodeSelector("vtkMRMLSegmentationNode")
        addButton = qt.QPushButton("Add volume + segmentation")
        addButton.connect("clicked()", self.onAddPair)
        self.pairList = qt.QListWidget()
        clearButton = qt.QPushButton("Clear list")
        clearButton.connect("clicked()", self.onClearPairs)
        self.folderEdit = ctk.ctkPathLineEdit()
        self.folderEdit.filters = ctk.ctkPathLineEdit.Dirs
        self.folderEdit.toolTip = "Or train from a folder (images + labels, or a manifest.json); leave empty to use the list"
        self.modalityCombo = qt.QComboBox()
        self.modalityCombo.addItems(MODALITIES)
        self.windowCombo = qt.QComboBox()
        self.windowCombo.addItems(list(choices.window_choices(display=False)))
        form.addRow("Volume:", self.volumeSelector)
        form.addRow("Segmentation:", self.segmentationSelector)
        form.addRow(addButton)
        form.addRow(self.pairList)
        form.addRow(clearButton)
        form.addRow("Or data folder:", self.folderEdit)
        form.addRow("Modality:", self.modalityCombo)
        form.addRow("Intensity window:", self.windowCombo)

    def _setupModelSection(self, choices):
        """Model: the kind, its base weights, which parts train, and the optimisation settings."""
        form = self._section("Model")
        self.modelCombo = qt.QComboBox()
        self.modelCombo.addItems(list(choices.model_kinds()))
        self.checkpointEdit = ctk.ctkPathLineEdit()
        self.checkpointEdit.toolTip = "Base weights (empty: the model's bundled weights, LiteMedSAM only)"
        self.partsCombo = qt.QComboBox()
        self.partsCombo.addItems(list(choices.training_part_choices()))
        self.epochsSpin = qt.QSpinBox()
        self.epochsSpin.setRange(1, 1000)
        self.epochsSpin.value = 10
        self.batchSpin = qt.QSpinBox()
        self.batchSpin.setRange(1, 256)
        self.batchSpin.value = 4
        self.lrEdit = qt.QLineEdit("1e-4")
        self.deviceCombo = qt.QComboBox()
        self.deviceCombo.addItems(["auto", "cuda", "cpu", "mps"])
        for label, widget in (("Model:", self.modelCombo), ("Base weights:", self.checkpointEdit),
                              ("Train:", self.partsCombo), ("Epochs:", self.epochsSpin),
                              ("Batch size:", self.batchSpin), ("Learning rate:", self.lrEdit),
                              ("Device:", self.deviceCombo)):
            form.addRow(label, widget)

    def _setupRunSection(self):
        """Run: the run folder, Start / Stop / Resume, progress, and registering the adapter for the effect."""
        form = self._section("Run")
        self.runDirEdit = ctk.ctkPathLineEdit()
        self.runDirEdit.filters = ctk.ctkPathLineEdit.Dirs
        self.runDirEdit.currentPath = os.path.join(slicer.app.temporaryPath, "MedSAMTraining", "run")
        buttons = qt.QHBoxLayout()
        self.startButton = qt.QPushButton("Start")
        self.stopButton = qt.QPushButton("Stop")
        self.resumeButton = qt.QPushButton("Resume")
        for b, slot in ((self.startButton, self.onStart), (self.stopButton, self.onStop),
                        (self.resumeButton, self.onResume)):
            b.connect("clicked()", slot)
            buttons.addWidget(b)
        self.progressBar = qt.QProgressBar()
        self.statusLabel = qt.QLabel("Idle")
        self.diceLabel = qt.QLabel("-")
        self.nameEdit = qt.QLineEdit()
        self.nameEdit.placeholderText = "adapter name shown in the MedSAM effect"
        self.registerButton = qt.QPushButton("Register adapter for the MedSAM effect")
        self.registerButton.connect("clicked()", self.onRegister)
        form.addRow("Run folder:", self.runDirEdit)
        form.addRow(buttons)
        form.addRow(self.progressBar)
        form.addRow("Status:", self.statusLabel)
        form.addRow("Validation Dice:", self.diceLabel)
        form.addRow("Name:", self.nameEdit)
        form.addRow(self.registerButton)

    def cleanup(self):
        self.timer.stop()

    def _nodeSelector(self, nodeClass):
        selector = slicer.qMRMLNodeComboBox()
        selector.nodeTypes = [nodeClass]
        selector.noneEnabled = True
        selector.addEnabled = False
        selector.removeEnabled = False
        selector.setMRMLScene(slicer.mrmlScene)
        return selector

    def onAddPair(self):
        volume, segmentation = self.volumeSelector.currentNode(), self.segmentationSelector.currentNode()
        if volume is None or segmentation is None:
            slicer.util.errorDisplay("Choose a volume and its segmentation.")
            return
        self.items.append((volume, segmentation))
        self.pairList.addItem(f"{volume.GetName()}  +  {segmentation.GetName()}")

    def onClearPairs(self):
        self.items = []
        self.pairList.clear()

    def onStart(self):
        if not ensureDependencies():
            return
        runDir = self.runDirEdit.currentPath
        with slicer.util.tryWithErrorDisplay("Could not start training.", waitCursor=True):
            data = self.folderEdit.currentPath
            if not data:
                items = [(v, s, None) for v, s in self.items]
                # beside the run folder, not in it: a run's outputs never share a folder with its inputs
                manifest = self.logic.export_scene_dataset(items, os.path.normpath(runDir) + "-data",
                                                           self.modalityCombo.currentText,
                                                           self.windowCombo.currentText)
                data = os.path.dirname(manifest)
            cfg = self.logic.make_config(data, runDir, model=self.modelCombo.currentText,
                                         checkpoint=self.checkpointEdit.currentPath or None,
                                         parts=self.partsCombo.currentText, epochs=self.epochsSpin.value,
                                         batch_size=self.batchSpin.value, lr=float(self.lrEdit.text),
                                         window=self.windowCombo.currentText, device=self.deviceCombo.currentText,
                                         modality=self.modalityCombo.currentText or None)
            self.logic.start(cfg)
            self.timer.start()

    def onStop(self):
        with slicer.util.tryWithErrorDisplay("Could not stop training."):
            self.logic.stop()  # returns at once; the timer follows the exit and escalates if it does not come
            if self.logic.process is not None and self.logic.process.running:
                self.timer.start()
        self.onTimer()

    def onResume(self):
        with slicer.util.tryWithErrorDisplay("Could not resume training."):
            if self.logic.process is None:
                self.logic.attach(self.runDirEdit.currentPath)
            self.logic.resume()
            self.timer.start()

    def onRegister(self):
        with slicer.util.tryWithErrorDisplay("Could not register the adapter."):
            entry = self.logic.register_adapter(self.nameEdit.text or os.path.basename(self.runDirEdit.currentPath))
            slicer.util.infoDisplay(f"Adapter '{entry['name']}' is now available in the MedSAM effect.")

    def onTimer(self):
        state = self.logic.poll()
        if state.get("total_steps"):
            self.progressBar.maximum = state["total_steps"]
            self.progressBar.value = state.get("step") or 0
        loss = state.get("loss")
        self.statusLabel.text = f"{state.get('status')}" + (f" — loss {loss:.4f}" if loss is not None else "") + (
            f" — {state['message']}" if state.get("message") else "")
        dice = state.get("val_dice") or {}
        if dice:
            self.diceLabel.text = "  ".join(f"e{e}: {d:.3f}" for e, d in sorted(dice.items()) if d is not None)
        if state.get("status") not in ("running", "starting", "stopping"):
            self.timer.stop()


class MedSAMTrainingLogic(ScriptedLoadableModuleLogic, TrainingLogic):
    """The module logic: TrainingLogic (MedSAMTrainingLib/logic.py) on the application's scene."""

    def __init__(self):
        ScriptedLoadableModuleLogic.__init__(self)
        TrainingLogic.__init__(self, slicer.mrmlScene, slicer.modules.segmentations.logic())


class MedSAMTrainingTest(ScriptedLoadableModuleTest):
    """In-application test: export the bundled sample CT + its tumour label, train 2 steps, register."""

    def setUp(self):
        slicer.mrmlScene.Clear()

    def runTest(self):
        self.setUp()
        self.test_ExportTrainRegister()

    def test_ExportTrainRegister(self):
        import medsamkit

        self.delayDisplay("Loading the sample CT")
        data = os.path.join(os.path.dirname(medsamkit.__file__), "data")
        volume = slicer.util.loadVolume(os.path.join(data, "sample_lung_ct.nii.gz"))
        labelmap = slicer.util.loadLabelVolume(os.path.join(data, "sample_lung_ct.label.nii.gz"))
        segmentation = slicer.mrmlScene.AddNewNodeByClass("vtkMRMLSegmentationNode")
        slicer.modules.segmentations.logic().ImportLabelmapToSegmentationNode(labelmap, segmentation)
        logic = MedSAMTrainingLogic()
        runDir = os.path.join(slicer.app.temporaryPath, "MedSAMTrainingTest")
        import shutil

        shutil.rmtree(runDir, ignore_errors=True)
        manifest = logic.export_scene_dataset([(volume, segmentation, None)], os.path.join(runDir, "data"), "CT", "lung")
        cfg = logic.make_config(os.path.dirname(manifest), os.path.join(runDir, "run"), epochs=1, batch_size=2,
                                device="cpu", max_steps=2, slices_per_volume=4, val_fraction=0, augment="none")
        self.delayDisplay("Training 2 steps in a separate process")
        logic.start(cfg)
        while logic.process.running:
            slicer.app.processEvents()
            time.sleep(0.2)
        state = logic.poll()
        self.assertEqual(state["status"], "finished", state.get("message"))
        self.assertEqual(state["step"], 2)
        entry = logic.register_adapter("MedSAMTrainingTest")
        self.assertEqual(entry["base_kind"], "litemedsam")
        self.delayDisplay("Test passed")
        logging.info("MedSAMTraining test passed")
