"""Hidden module that registers the MedSAM effect with the Segment Editor, and its self-test.

The effect itself is MedSAMSegmentLib/SegmentEditorEffect.py; the logic it drives is medsamkit.mrml
(tested headless with slicer-core). The headless batch is medsamkit/cli/batch.py:

    Slicer --no-main-window --python-script <extension>/lib/Slicer-X.Y/qt-scripted-modules/medsamkit/cli/batch.py \\
        -- --volume CT.nrrd --markers lesion.mrk.json --out lesion.seg.nrrd
"""
import os

import slicer
from slicer.ScriptedLoadableModule import ScriptedLoadableModule, ScriptedLoadableModuleTest


class MedSAMSegment(ScriptedLoadableModule):
    def __init__(self, parent):
        ScriptedLoadableModule.__init__(self, parent)
        self.parent.title = "MedSAMSegment"
        self.parent.categories = ["Segmentation"]
        self.parent.dependencies = ["Segmentations"]
        self.parent.contributors = ["medsamkit developers"]
        self.parent.hidden = True
        self.parent.helpText = ("Registers the MedSAM Segment Editor effect: promptable segmentation with "
                                "LiteMedSAM / MedSAM / SAM-family models from boxes, points and lesion-axis markers.")
        self.parent.helpText += self.getDefaultModuleDocumentationLink()
        self.parent.acknowledgementText = ("MedSAM and LiteMedSAM: Ma J. et al., Segment anything in medical images, "
                                           "Nature Communications 15, 654 (2024). Sample CT: pyradiomics (BSD 3-Clause).")
        slicer.app.connect("startupCompleted()", self.registerEditorEffect)

    def registerEditorEffect(self):
        import sys

        if sys.version_info[:2] < (3, 10):  # Dependencies.MINIMUM_PYTHON; that file needs no Qt but 3.10 syntax
            import logging

            # Slicer 5.8 and older ship Python 3.9: the model packages cannot install there. Say so once,
            # and register nothing, instead of an effect that fails on first use.
            message = ("MedSAM needs 3D Slicer 5.10 or later (this Slicer runs Python "
                       f"{sys.version_info[0]}.{sys.version_info[1]}; MedSAM's model packages need Python 3.10 "
                       "or later). Install Slicer 5.10 or later and MedSAM from its Extensions Manager.")
            logging.error(message)
            slicer.util.warningDisplay(message, "MedSAM: Slicer too old")
            return
        import qSlicerSegmentationsEditorEffectsPythonQt as qSlicerSegmentationsEditorEffects

        # The package first: it holds the effect class, so setPythonSource uses it instead of executing the
        # effect file as a module named "MedSAMSegmentLib" (see MedSAMSegmentLib/__init__.py).
        import MedSAMSegmentLib  # noqa: F401

        instance = qSlicerSegmentationsEditorEffects.qSlicerSegmentEditorScriptedEffect(None)
        effectFilename = os.path.join(os.path.dirname(__file__), self.__class__.__name__ + "Lib/SegmentEditorEffect.py")
        instance.setPythonSource(effectFilename.replace("\\", "/"))
        instance.self().register()


class MedSAMSegmentTest(ScriptedLoadableModuleTest):
    """Runs inside Slicer (Self Tests module, or ctest): a box on the bundled sample CT through the effect."""

    def setUp(self):
        slicer.mrmlScene.Clear(0)

    def runTest(self):
        self.setUp()
        self.test_BoxOnSampleCT()

    def test_BoxOnSampleCT(self):
        import numpy as np

        self.delayDisplay("Installing MedSAM's Python packages if needed")
        from MedSAMSegmentLib.Install import ensureDependencies

        self.assertTrue(ensureDependencies(askConfirmation=False), "MedSAM's Python dependencies are missing")
        import medsamkit
        from medsamkit.mrml.volumes import volume_geometry, volume_plane_slice_to_ras

        self.delayDisplay("Loading the bundled sample CT (pyradiomics lung1 crop)")
        dataDir = os.path.join(os.path.dirname(medsamkit.__file__), "data")
        volume = slicer.util.loadVolume(os.path.join(dataDir, "sample_lung_ct.nii.gz"))
        label = slicer.util.loadLabelVolume(os.path.join(dataDir, "sample_lung_ct.label.nii.gz"))
        segmentation = slicer.mrmlScene.AddNewNodeByClass("vtkMRMLSegmentationNode")
        segmentation.CreateDefaultDisplayNodes()
        segmentation.SetReferenceImageGeometryParameterFromVolumeNode(volume)
        segmentId = segmentation.GetSegmentation().AddEmptySegment("tumour")

        self.delayDisplay("Activating the MedSAM effect")
        editorWidget = slicer.qMRMLSegmentEditorWidget()
        editorWidget.setMRMLScene(slicer.mrmlScene)
        editorNode = slicer.mrmlScene.AddNewNodeByClass("vtkMRMLSegmentEditorNode")
        editorWidget.setMRMLSegmentEditorNode(editorNode)
        editorWidget.setSegmentationNode(segmentation)
        if hasattr(editorWidget, "setSourceVolumeNode"):
            editorWidget.setSourceVolumeNode(volume)
        else:
            editorWidget.setMasterVolumeNode(volume)
        editorNode.SetSelectedSegmentID(segmentId)
        editorWidget.setActiveEffectByName("MedSAM")
        effect = editorWidget.activeEffect()
        self.assertIsNotNone(effect, "The MedSAM effect is not registered")
        effect.setParameter("Window", "lung")
        effect.setParameter("WriteMode", "replace")

        self.delayDisplay("Dragging a box around the tumour on slice 11")
        k = 11
        reference = slicer.util.arrayFromVolume(label) > 0
        ys, xs = np.nonzero(reference[k])
        geometry = volume_geometry(volume)
        corners = geometry.ijk_to_ras_points([[xs.min() - 3, ys.min() - 3, k], [xs.max() + 3, ys.max() + 3, k]])
        effect.self().submitBoxRas(volume_plane_slice_to_ras(geometry, 0, k), corners[0], corners[1])
        self.assertTrue(effect.self().waitForResult(600), "Segmentation did not finish in 10 minutes")

        written = slicer.util.arrayFromSegmentBinaryLabelmap(segmentation, segmentId, volume) > 0
        from medsamkit.mrml.choices import dice as diceOf

        dice = diceOf(written[k], reference[k])  # the one Dice of every face (CLI, bench, training)
        self.delayDisplay(f"Dice against the reference on slice {k}: {dice:.3f}")
        self.assertGreater(dice, 0.75)  # 0.814 with LiteMedSAM on CPU (the same box in plain Python)
        self.assertEqual(int(written.sum()), int(written[k].sum()))  # only the prompted slice

        editorWidget.undo()  # one result = one undo step
        self.assertEqual(int((slicer.util.arrayFromSegmentBinaryLabelmap(segmentation, segmentId, volume) > 0).sum()), 0)
        editorWidget.setActiveEffect(None)
        self.delayDisplay("test_BoxOnSampleCT passed")
