"""Review marks outlive the session: slices marked reviewed are saved with the segmentation (.seg.nrrd
through Slicer's storage node) and a new review of the reopened segmentation starts where the reader
stopped. Real LiteMedSAM propagation on the bundled lung CT through the effect's calls."""
from __future__ import annotations

from pathlib import Path

from mrml_fixtures import ctx, model_session, slicer_core  # noqa: F401  (pytest fixtures)

DATA = Path(__file__).resolve().parents[2] / "medsamkit" / "data"
K = 11


def _propagated(ctx, model_session):
    from medsamkit.mrml.interactive import PromptState, apply_result, prepare_volume_request, run_request
    from medsamkit.mrml.segments import EditorLogicTarget, new_segmentation
    from medsamkit.mrml.volumes import load_volume, volume_geometry, volume_plane_slice_to_ras

    node = load_volume(ctx, DATA / "sample_lung_ct.nii.gz")
    seg, sid = new_segmentation(ctx, node, segment_name="tumour")
    g = volume_geometry(node)
    ras = [g.ijk_to_ras_points(g.slice_to_ijk([xy], K, 0))[0] for xy in ((92, 93), (123, 122))]
    prompt = PromptState().set_box(node, volume_plane_slice_to_ras(g, 0, K), *ras)
    res = run_request(model_session, prepare_volume_request(node, seg, "propagate", window="lung", prompt=prompt))
    apply_result(EditorLogicTarget(ctx, seg, node, sid), res)
    return node, seg, sid


def test_review_marks_are_saved_with_the_segmentation_and_reloaded(ctx, model_session, tmp_path):
    from medsamkit.mrml.review import REVIEW_TAG, SegmentReview

    node, seg, sid = _propagated(ctx, model_session)
    first = SegmentReview(node, seg, sid)
    order = [item.index for item in first.queue]
    assert len(order) >= 3
    done = [first.next()[0].index, first.next()[0].index]
    assert done == order[:2]

    path = tmp_path / "tumour.seg.nrrd"
    storage = ctx.scene.AddNewNodeByClass("vtkMRMLSegmentationStorageNode")
    storage.SetFileName(str(path))
    assert storage.WriteData(seg) == 1
    assert REVIEW_TAG in path.read_bytes().decode("latin-1").split("\n\n")[0]  # in the file's header
    reopened = ctx.scene.AddNewNodeByClass("vtkMRMLSegmentationNode")
    assert storage.ReadData(reopened) == 1

    again = SegmentReview(node, reopened, sid)
    assert again.remaining == len(order) - 2
    assert [q.index for q in again.queue if q.reviewed] == sorted(done, key=order.index)
    assert again.next()[0].index == order[2]  # continues where the reader stopped
    while again.next() is not None:
        pass
    assert again.next() is None and SegmentReview(node, reopened, sid).remaining == len(order)  # done: starts over

    # marks of another run (a newer result replaced the reviewed one) are not applied
    from medsamkit.mrml.review import set_review_marks

    set_review_marks(reopened, sid, "another-run", order)
    assert SegmentReview(node, reopened, sid).remaining == len(order)


def test_damaged_review_tag_starts_the_queue_afresh(ctx, model_session):
    from medsamkit.mrml.review import REVIEW_TAG, SegmentReview

    node, seg, sid = _propagated(ctx, model_session)
    seg.GetSegmentation().GetSegment(sid).SetTag(REVIEW_TAG, "%7Bnot json")
    review = SegmentReview(node, seg, sid)
    assert review.remaining == len(review.queue) and review.next() is not None
