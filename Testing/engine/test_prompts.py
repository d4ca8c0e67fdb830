"""Boxes, points, mask prompts and simulated correction clicks with the real LiteMedSAM on ≥ 20 dev objects.

Prompts come from the ground truth as in SAM-Med2D's evaluation (medsamkit.refinement): the tight
box, a first click at the centre of the object, then each correction click at the centre of the
largest error region with the previous low-res logits fed back as mask prompt. Figures measured
when these tests were written (23 objects, CPU) are quoted next to each threshold. LiteMedSAM was
trained with box prompts only, which the figures show: boxes are excellent, a single click is not
(its point embeddings were never trained), and corrections help point sessions but not a good box.
The ``litemedsam-clicks`` kind (LiteMedSAM + the shipped click-trained decoder delta) is measured on
the same objects: its delta loads strictly, a single click works, and the box result is kept.
"""
from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest

from conftest import dice, load_2d_case
from medsamkit.errors import InputError
from medsamkit.refinement import next_click, refine

pytestmark = pytest.mark.slow  # among the slowest modules: `pytest -m "not slow"` skips them

PER_DATASET = {"kvasir": 7, "ph2": 5, "hc18": 5, "jsrt": 3}  # 20 images
JSRT_LABELS = (1, 3)  # right lung, heart (complete structure masks): 23 objects in all
CLICKS = 5


def _objects(dev_data, dev_manifest):
    taken: dict = {}
    for case in dev_manifest["cases"]:
        ds = case["dataset"]
        if case["kind"] != "2d" or taken.get(ds, 0) >= PER_DATASET.get(ds, 0):
            continue
        taken[ds] = taken.get(ds, 0) + 1
        image, masks = load_2d_case(dev_data, case)
        if ds == "jsrt":
            from PIL import Image

            for label in JSRT_LABELS:
                yield ds, image, np.array(Image.open(dev_data / case["structure_masks"][str(label)])) > 0
        else:
            yield ds, image, masks[1]


@pytest.fixture(scope="module")
def prompt_data():
    """(folder, manifest): the shared dev set when present, else its 20 images bundled in Testing/Data/prompts20
    (the same first cases of each dataset, so the figures quoted below hold for both)."""
    import json
    from pathlib import Path

    from conftest import DEV_DATA

    folder = DEV_DATA or Path(__file__).resolve().parents[1] / "Data" / "prompts20"
    return folder, json.loads((folder / "manifest.json").read_text(encoding="utf-8"))


@pytest.fixture(scope="module")
def sessions(shared_predictor, prompt_data):
    """Per object: dataset, box Dice, box + own-logits Dice, Dice after box + k corrections, after k clicks.

    Runs on a worker thread, as the Slicer effect does: on the loaded CI machine torch calls on the
    interpreter's main thread were measured 2-4x slower (decode 0.3-0.6 s vs 0.13 s with 2 threads).
    """
    with ThreadPoolExecutor(1) as worker:
        rows = worker.submit(_measure, shared_predictor, *prompt_data).result()
    assert len(rows) >= 20
    return rows


def _measure(shared_predictor, dev_data, dev_manifest) -> list:
    rows = []
    for ds, image, gt in _objects(dev_data, dev_manifest):
        shared_predictor.set_image(image)
        ys, xs = np.nonzero(gt)
        box = [xs.min(), ys.min(), xs.max(), ys.max()]
        boxed = refine(shared_predictor, gt, box=box, n_clicks=CLICKS - 1)
        clicked = refine(shared_predictor, gt, box=None, n_clicks=CLICKS)
        merged = refine(shared_predictor, gt, box=box, n_clicks=CLICKS - 1, merge="progressive")
        own = shared_predictor.predict(box=box, mask_input=boxed.predictions[0].low_res_logits)
        pad = lambda masks: [dice(m, gt) for m in masks] + [dice(masks[-1], gt)] * (CLICKS - len(masks))  # noqa: E731
        rows.append({"dataset": ds, "box": dice(boxed.masks[0], gt), "box_own_logits": dice(own.mask, gt),
                     "box_clicks": pad(boxed.masks), "clicks": pad(clicked.masks),
                     "box_clicks_merged": pad(merged.masks)})
    return rows


def test_box_prompt_dice(sessions):
    box = np.array([r["box"] for r in sessions])
    print(f"box Dice: mean {box.mean():.3f} over {len(box)} objects")  # measured 0.905
    assert box.mean() > 0.87
    easy = [r["box"] for r in sessions if r["dataset"] in ("kvasir", "ph2")]
    assert np.mean(easy) > 0.92 and min(easy) > 0.85  # measured 0.957, min 0.93


def test_point_prompt_dice_and_correction_clicks_raise_it(sessions):
    """1 / 3 / 5 clicks (SAM-Med2D's protocol): every correction click keeps or raises the mean Dice."""
    curve = np.mean([r["clicks"] for r in sessions], axis=0)
    print("mean Dice after 1..5 clicks:", np.round(curve, 3))  # measured 0.001, 0.076, 0.231, 0.362, 0.453
    assert all(curve[k + 1] >= curve[k] - 0.01 for k in range(CLICKS - 1))
    assert curve[2] >= curve[0] + 0.10 and curve[4] >= curve[2] + 0.10


def test_box_then_correction_clicks_on_a_box_only_model(sessions):
    """LiteMedSAM (box-trained): clicks after a good box cost a little on average; this bounds that loss.

    Measured: mean Dice 0.905 (box) -> 0.895, 0.868, 0.851, 0.849 after 1-4 corrections. Models trained with
    clicks (SAM, MedicoSAM, SAM-Med2D) are expected to improve instead; their weights are not available here.
    """
    curve = np.mean([[r["box"]] + r["box_clicks"][1:] for r in sessions], axis=0)
    print("mean Dice: box, then 1..4 corrections:", np.round(curve, 3))
    assert curve[1] >= curve[0] - 0.03
    assert curve[-1] >= curve[0] - 0.09


def test_correction_clicks_with_progressive_merge_never_lower_the_mean_dice(sessions):
    """The issue's requirement, met on the box-only model by merging each correction locally (FocalClick's
    progressive merge, the effect's refine mode): every added click keeps or raises the mean Dice."""
    curve = np.mean([[r["box"]] + r["box_clicks_merged"][1:] for r in sessions], axis=0)
    # measured: 0.9055 (box) -> 0.9136, 0.9160, 0.9161, 0.9160 after 1-4 corrections
    print("mean Dice: box, then 1..4 merged corrections:", np.round(curve, 4))
    assert all(c >= curve[0] for c in curve[1:]), curve                        # never below the box result
    assert all(curve[k + 1] >= curve[k] - 0.001 for k in range(len(curve) - 1)), curve  # no step loses more than noise
    assert curve[-1] >= curve[0] + 0.005  # and they do help
    per_object = np.array([[r["box"]] + r["box_clicks_merged"][1:] for r in sessions])
    assert (per_object[:, -1] >= per_object[:, 0] - 0.02).mean() >= 0.9  # rarely worse for any one object


def test_progressive_merge_changes_only_the_clicked_region():
    from medsamkit.refinement import progressive_merge

    prev = np.zeros((40, 60), bool)
    prev[5:20, 5:20] = True                       # correct part, far from the click
    new = np.zeros_like(prev)
    new[25:35, 30:50] = True                      # the model moved everything: lost the first part
    out = progressive_merge(prev, new, [40, 30], positive=True)
    assert out[5:20, 5:20].all() and out[25:35, 30:50].all() and out.sum() == 15 * 15 + 10 * 20
    assert not prev[25:35, 30:50].any()           # inputs untouched
    out = progressive_merge(prev, new, [10, 10], positive=False)   # removes the clicked false region only
    assert not out.any()
    assert np.array_equal(progressive_merge(prev, new, [2, 2], positive=True), prev)  # click not changed: no-op
    with pytest.raises(InputError, match="outside"):
        progressive_merge(prev, new, [60, 0], positive=True)


def test_mask_prompt_with_own_logits_keeps_the_box_result(sessions):
    box = np.mean([r["box"] for r in sessions])
    own = np.mean([r["box_own_logits"] for r in sessions])
    print(f"box {box:.3f}, box + own low-res logits {own:.3f}")  # measured 0.905 -> 0.916
    assert own >= box - 0.02


def test_next_click_is_the_centre_of_the_largest_error_region():
    gt = np.zeros((60, 120), bool)
    gt[10:50, 10:70] = True
    pred = np.zeros_like(gt)
    pred[10:50, 10:40] = True                    # missed 40 x 30 on the right
    pred[52:58, 0:20] = True                     # a small false region
    xy, label = next_click(pred, gt)
    assert label == 1 and np.allclose(xy, [54.5, 29.5], atol=0.5)
    pred[:, 75:120] = True                       # a false region larger than the miss, touching the border
    xy, label = next_click(pred, gt)
    assert label == 0 and 95 <= xy[0] <= 99 and 27 <= xy[1] <= 32  # its centre, not on the image border
    assert next_click(gt, gt) == (None, None)
    tie_pred = np.zeros((10, 10), bool)
    tie_pred[0:2, 0:2] = True
    tie_gt = np.zeros((10, 10), bool)
    tie_gt[8:10, 8:10] = True
    assert next_click(tie_pred, tie_gt)[1] == 1  # equal areas: add what is missing first
    with pytest.raises(InputError, match="one shape"):
        next_click(np.zeros((4, 4)), np.zeros((4, 5)))


def test_refine_validates_its_inputs(shared_predictor, test_data, test_manifest):
    case = test_manifest["cases"][0]
    image, masks = load_2d_case(test_data, case)
    shared_predictor.set_image(image)
    gt = masks[1]
    with pytest.raises(InputError, match="box or at least one click"):
        refine(shared_predictor, gt, box=None, n_clicks=0)
    with pytest.raises(InputError, match="differs from the image shape"):
        refine(shared_predictor, gt[:-1], n_clicks=1)
    with pytest.raises(InputError, match="empty"):
        refine(shared_predictor, np.zeros_like(gt), n_clicks=1)


# ----------------------------------------------------------------------------------- litemedsam-clicks
# Thresholds: the shipped delta's figures on 16 dev objects at selection (box 0.898 vs LiteMedSAM 0.810,
# 1 click 0.868 vs 0.014, 5 clicks 0.888, box + 2 corrections 0.915), with margin for these 23 objects.
# Measured on these 23 objects (under parallel load): box 0.951 vs 0.905, 1 click 0.890 vs 0.001, clicks 1..5
# 0.890, 0.912, 0.937, 0.943, 0.933; box then 1..4 corrections 0.952, 0.954, 0.955, 0.957.
CLICK_GAIN_MIN = 0.40        # 1-click Dice over LiteMedSAM's
BOX_LOSS_MAX = 0.02          # box Dice may be at most this much below LiteMedSAM's
BOX_CORRECTION_SLACK = 0.01  # box + corrections: never below box alone on average (up to this noise)
@pytest.fixture(scope="module")
def clicks_model():
    from medsamkit.models import load_model

    return load_model("litemedsam-clicks", device="cpu", engine="torch")  # its network is compared below


class _SharedEncoderCache:
    """The click model's image encoder is LiteMedSAM's, unchanged (test_click_delta_loads_strictly_onto_the_bundled_
    weights checks every tensor): its embeddings are read from and written to the session's LiteMedSAM cache
    under LiteMedSAM's key, so the 20 images are not encoded a second time."""

    def __init__(self, cache, own_id, base_id):
        self.cache, self.own_id, self.base_id = cache, own_id, base_id

    def _key(self, key):
        return (self.base_id,) + tuple(key[1:]) if key[0] == self.own_id else key

    def get(self, key):
        return self.cache.get(self._key(key))

    def put(self, key, value):
        self.cache.put(self._key(key), value)


@pytest.fixture(scope="module")
def clicks_sessions(clicks_model, prompt_data, shared_predictor):
    import torch

    from medsamkit.predictor import Predictor

    for name, tensor in shared_predictor.model.net.image_encoder.state_dict().items():  # the premise of the sharing
        assert torch.equal(tensor, clicks_model.net.image_encoder.state_dict()[name]), name
    cache = _SharedEncoderCache(shared_predictor.cache, clicks_model.model_id, shared_predictor.model.model_id)
    with ThreadPoolExecutor(1) as worker:
        rows = worker.submit(_measure, Predictor(clicks_model, cache), *prompt_data).result()
    assert len(rows) >= 20
    return rows


def test_click_delta_loads_strictly_onto_the_bundled_weights(clicks_model, lite_model, tmp_path):
    """The delta changes only prompt encoder / decoder tensors, by exactly the stored float16 differences;
    a damaged file, a foreign file and other base weights are refused with a clear error."""
    import torch

    from medsamkit.errors import CheckpointError
    from medsamkit.models import litemedsam_clicks as lc
    from medsamkit.models.registry import accepts_point_prompts

    tensors, meta = lc.read_delta()
    assert lc.DELTA_FILE.stat().st_size < 5_000_000 and meta["base_checkpoint_sha256"] == lite_model.checkpoint_sha256
    base, clicked = lite_model.net.state_dict(), clicks_model.net.state_dict()
    assert set(base) == set(clicked)
    for k in base:
        if k in tensors:
            assert k.startswith(("prompt_encoder.", "mask_decoder.")) and tensors[k].dtype == torch.float16
            assert torch.equal(clicked[k], base[k] + tensors[k].float())
        else:
            assert torch.equal(clicked[k], base[k]), k   # the image encoder (embeddings) is LiteMedSAM's
    assert clicks_model.base_checkpoint_sha256 == lite_model.checkpoint_sha256 != clicks_model.checkpoint_sha256
    assert accepts_point_prompts("litemedsam-clicks") and not accepts_point_prompts("litemedsam")

    damaged = tmp_path / "d.safetensors"
    damaged.write_bytes(lc.DELTA_FILE.read_bytes()[:1000])
    with pytest.raises(CheckpointError, match="not a readable"):
        lc.read_delta(damaged)
    from safetensors.torch import save_file

    foreign = tmp_path / "f.safetensors"
    save_file({"mask_decoder.iou_token.weight": torch.zeros(1, 256, dtype=torch.float16)}, str(foreign),
              metadata={"format": lc.FORMAT, "base_checkpoint_sha256": meta["base_checkpoint_sha256"]})
    wrong_key = tmp_path / "k.safetensors"
    save_file({"mask_decoder.no_such.weight": torch.zeros(2, dtype=torch.float16)}, str(wrong_key),
              metadata={"format": lc.FORMAT, "base_checkpoint_sha256": meta["base_checkpoint_sha256"]})
    with pytest.raises(CheckpointError, match="unknown keys"):
        lc.apply_delta(_fresh_lite(lite_model), wrong_key)
    other = _fresh_lite(lite_model)
    other.checkpoint_sha256 = "0" * 64
    with pytest.raises(CheckpointError, match="bundled LiteMedSAM weights"):
        lc.apply_delta(other, foreign)


def _fresh_lite(lite_model):
    import copy

    from medsamkit.models.base import PromptableModel

    return PromptableModel(lite_model.spec, copy.deepcopy(lite_model.net), "cpu",
                           checkpoint_sha256=lite_model.checkpoint_sha256)


def test_click_model_one_click_works_and_box_is_kept(sessions, clicks_sessions):
    """LiteMedSAM's single click is ~0 Dice; the click-trained delta's is high, with the box result held."""
    lite_1 = np.mean([r["clicks"][0] for r in sessions])
    clk = np.mean([r["clicks"] for r in clicks_sessions], axis=0)
    lite_box, clk_box = (np.mean([r["box"] for r in rows]) for rows in (sessions, clicks_sessions))
    print(f"1 click: litemedsam {lite_1:.3f}, litemedsam-clicks {clk[0]:.3f}; clicks 1..5 {np.round(clk, 3)}; "
          f"box {lite_box:.3f} vs {clk_box:.3f}")
    assert clk[0] >= lite_1 + CLICK_GAIN_MIN          # a large margin over the box-only model
    assert clk[4] >= clk[0]                           # correction clicks help on average
    assert clk_box >= lite_box - BOX_LOSS_MAX         # the box result is held


def test_click_model_box_then_corrections_never_below_box(clicks_sessions):
    curve = np.mean([[r["box"]] + r["box_clicks"][1:] for r in clicks_sessions], axis=0)
    print("litemedsam-clicks: box, then 1..4 corrections:", np.round(curve, 4))
    assert all(c >= curve[0] - BOX_CORRECTION_SLACK for c in curve[1:]), curve
