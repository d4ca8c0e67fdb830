"""Prompt simulation, correction clicks, losses and the LR schedule against independent computations."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from medsamkit.training.losses import DiceBCELoss, FocalDiceIoULoss, make_loss
from medsamkit.training.prompt_simulation import BoxPrompt, CorrectionClick, MixedPrompt, PointPrompt
from medsamkit.training.schedule import WarmupCosine


def _disk(h, w, cy, cx, r):
    yy, xx = np.mgrid[:h, :w]
    return (yy - cy) ** 2 + (xx - cx) ** 2 <= r * r


def test_box_jitter_is_outward_bounded_and_seeded():
    mask = _disk(120, 160, 60, 80, 25)
    ys, xs = np.nonzero(mask)
    tight = np.array([xs.min(), ys.min(), xs.max(), ys.max()])
    gen = BoxPrompt(jitter=20)
    shifts = []
    for seed in range(200):
        box = gen(mask, np.random.default_rng(seed)).box
        d = np.array([tight[0] - box[0], tight[1] - box[1], box[2] - tight[2], box[3] - tight[3]])
        assert np.all(d >= 0) and np.all(d <= 20)
        shifts.append(d)
    shifts = np.array(shifts)
    assert shifts.min() == 0 and shifts.max() == 20 and 8 < shifts.mean() < 12  # uniform 0..20 has mean 10
    a = gen(mask, np.random.default_rng(5)).box
    assert np.array_equal(a, gen(mask, np.random.default_rng(5)).box)
    edge = _disk(50, 50, 2, 2, 5)  # touches the image corner: clipped to the image
    box = gen(edge, np.random.default_rng(1)).box
    assert box[0] == 0 and box[1] == 0 and box[2] <= 49 and box[3] <= 49
    assert np.array_equal(BoxPrompt(0)(mask, np.random.default_rng(3)).box, tight)


def test_points_fall_on_the_mask_and_negatives_off_it():
    mask = _disk(100, 100, 50, 40, 15)
    p = PointPrompt(positive=3, negative=2)(mask, np.random.default_rng(0))
    assert p.points.shape == (5, 2) and list(p.labels) == [1, 1, 1, 0, 0]
    for (x, y), lab in zip(p.points.astype(int), p.labels):
        assert mask[y, x] == bool(lab)
    kinds = {("box" if MixedPrompt()(mask, np.random.default_rng(s)).box is not None else "pts") for s in range(20)}
    assert kinds == {"box", "pts"}


def test_correction_click_is_at_the_centre_of_the_largest_error():
    gt = _disk(100, 100, 50, 50, 30)
    pred = gt.copy()
    pred[50:90, 20:80] = False                    # a big missed part (lower half)
    pred |= _disk(100, 100, 10, 90, 4)            # a small false positive elsewhere
    xy, label = CorrectionClick()(pred, gt)
    assert label == 1 and gt[int(xy[1]), int(xy[0])] and not pred[int(xy[1]), int(xy[0])]
    missed = gt & ~pred
    from scipy import ndimage

    dist = ndimage.distance_transform_edt(np.pad(missed, 1))[1:-1, 1:-1]
    assert dist[int(xy[1]), int(xy[0])] == dist.max()  # farthest from the region's border
    over = gt | _disk(100, 100, 50, 85, 12)
    xy, label = CorrectionClick()(over, gt)
    assert label == 0 and over[int(xy[1]), int(xy[0])] and not gt[int(xy[1]), int(xy[0])]
    assert CorrectionClick()(gt, gt) is None


def test_dice_bce_matches_medsam_formula():
    torch.manual_seed(0)
    logits = torch.randn(3, 1, 16, 16) * 3
    target = (torch.rand(3, 1, 16, 16) > 0.6).float()
    p = torch.sigmoid(logits)
    # MONAI DiceLoss(sigmoid=True, squared_pred=True, reduction="mean"): per sample, smooth 1e-5
    inter = (p * target).sum((1, 2, 3))
    dice = 1 - (2 * inter + 1e-5) / ((p ** 2).sum((1, 2, 3)) + (target ** 2).sum((1, 2, 3)) + 1e-5)
    bce = -(target * torch.log(p) + (1 - target) * torch.log(1 - p)).mean()
    assert torch.allclose(DiceBCELoss()(logits, target), dice.mean() + bce, atol=1e-5)
    perfect = (target * 2 - 1) * 30
    assert DiceBCELoss()(perfect, target) < 1e-4 < DiceBCELoss()(-perfect, target) - 1.0


def test_focal_dice_iou_matches_sam_med2d_per_sample():
    torch.manual_seed(1)
    logits = torch.randn(2, 1, 8, 8) * 2
    target = (torch.rand(2, 1, 8, 8) > 0.5).float()
    iou_pred = torch.tensor([[0.3], [0.8]])
    total = 0.0
    for i in range(2):  # SAM-Med2D's utils.py FocalLoss/DiceLoss/MaskIoULoss, applied to one sample
        p, m = torch.sigmoid(logits[i]), target[i]
        focal = (-(0.25 * m * (1 - p) ** 2 * torch.log(p + 1e-12))
                 - 0.75 * (1 - m) * p ** 2 * torch.log(1 - p + 1e-12)).sum() / m.numel()
        dice = 1 - (2 * (p * m).sum() + 1) / (p.sum() + m.sum() + 1)
        inter = (p * m).sum()
        iou = (inter + 1e-7) / (p.sum() + m.sum() - inter + 1e-7)
        total += 20 * focal + dice + (iou - iou_pred[i, 0]) ** 2
    assert torch.allclose(FocalDiceIoULoss()(logits, target, iou_pred), total / 2, atol=1e-5)
    assert isinstance(make_loss("auto", "sam-med2d"), FocalDiceIoULoss)
    assert isinstance(make_loss("auto", "litemedsam"), DiceBCELoss)


def test_losses_give_gradients_that_reduce_them():
    target = torch.from_numpy(_disk(32, 32, 16, 16, 8)).float()[None, None]
    for loss_fn in (DiceBCELoss(), FocalDiceIoULoss()):
        logits = torch.zeros_like(target, requires_grad=True)
        iou = torch.full((1, 1), 0.5, requires_grad=True)
        first = float(loss_fn(logits, target, iou).detach())
        opt = torch.optim.Adam([logits, iou], lr=0.3)
        for _ in range(30):
            opt.zero_grad()
            loss_fn(logits, target, iou).backward()
            opt.step()
        assert float(loss_fn(logits, target, iou).detach()) < 0.5 * first


def test_warmup_then_cosine():
    sched = WarmupCosine(warmup=4, total=20, min_ratio=0.1)
    assert [sched(s) for s in range(4)] == pytest.approx([0.25, 0.5, 0.75, 1.0])
    assert sched(4) == pytest.approx(1.0)
    assert sched(12) == pytest.approx(0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * 0.5)))
    assert sched(20) == pytest.approx(0.1) and sched(100) == pytest.approx(0.1)
