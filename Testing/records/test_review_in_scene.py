"""The review queue in a scene (what the effect's "Next slice to review" button calls): a propagation on the
bundled lung CT through the effect's prepare -> run -> apply calls, then SegmentReview walks the slices in
the report's order, each once, and jump_slice_views brings a real slice node onto each of them."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from mrml_fixtures import ctx, model_session, slicer_core  # noqa: F401  (pytest fixtures)

DATA = Path(__file__).resolve().parents[2] / "medsamkit" / "data"
K = 11


def test_next_slice_to_review_walks_the_report_queue_and_moves_the_views(ctx, model_session):
    import slicer

    from medsamkit.errors import InputError
    from medsamkit.mrml.interactive import PromptState, apply_result, prepare_volume_request, run_request
    from medsamkit.mrml.records import get_record
    from medsamkit.mrml.review import SegmentReview, jump_slice_views
    from medsamkit.mrml.segments import EditorLogicTarget, new_segmentation, segment_array
    from medsamkit.mrml.volumes import load_volume, volume_geometry, volume_plane_slice_to_ras
    from medsamkit.records.review import queue_from_entry

    node = load_volume(ctx, DATA / "sample_lung_ct.nii.gz")
    seg, sid = new_segmentation(ctx, node, segment_name="tumour")
    g = volume_geometry(node)
    with pytest.raises(InputError, match="no MedSAM 3D result"):
        SegmentReview(node, seg, sid)  # nothing to review yet: says what to do
    ras = [g.ijk_to_ras_points(g.slice_to_ijk([xy], K, 0))[0] for xy in ((92, 93), (123, 122))]
    prompt = PromptState().set_box(node, volume_plane_slice_to_ras(g, 0, K), *ras)
    res = run_request(model_session, prepare_volume_request(node, seg, "propagate", window="lung", prompt=prompt))
    apply_result(EditorLogicTarget(ctx, seg, node, sid), res)
    (entry,) = get_record(seg, sid)["entries"]
    expected = [item.index for item in queue_from_entry(segment_array(ctx, seg, sid, node), entry)]
    assert len(expected) >= 2

    slice_node = ctx.scene.AddNewNodeByClass("vtkMRMLSliceNode")
    slice_node.SetOrientationToAxial()
    review = SegmentReview(node, seg, sid)
    walked = []
    while True:
        step = review.next()
        if step is None:
            break
        item, point = step
        walked.append(item.index)
        jump_slice_views(ctx.scene, point)
        # the view now shows that slice: its origin lies on the slice's plane (axial: k = index)
        origin = np.asarray([slice_node.GetSliceToRAS().GetElement(r, 3) for r in range(3)])
        k = g.ras_to_ijk_points([origin])[0][2]
        assert abs(k - item.index) < 1e-3, (k, item.index)
    assert walked == expected and review.remaining == 0  # every slice once, most suspicious first
    assert review.next() is None
