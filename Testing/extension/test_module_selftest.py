"""MedSAMSegment's own in-Slicer self-test (MedSAMSegmentTest), run through the Slicer loader as the
Self Tests module would: slicer.selfTests["MedSAMSegment"] after startup, with the real model session
(LiteMedSAM loaded in this process) on slicer-core.
"""
from __future__ import annotations

from slicer_fixtures import SEGMENT_MODULE, ctx, harness, slicer_core  # noqa: F401


def test_module_self_test_runs_through_the_loader(harness):
    harness.start(SEGMENT_MODULE)
    harness.slicer.selfTests["MedSAMSegment"]()
    assert ("delay", "test_BoxOnSampleCT passed") in harness.dialogs
