"""Segmentation losses of the two training recipes, on low-res logits in the model frame.

All losses take ``logits`` (B, 1, L, L) float (pre-sigmoid), ``target`` (B, 1, L, L) float in {0, 1}
and ``iou_pred`` (B, 1) (the decoder's predicted IoU; ignored where the recipe has no IoU term),
and return a scalar tensor. Reductions are per sample then averaged over the batch, so a sample's
weight does not depend on its object's size.

- :class:`DiceBCELoss` — MedSAM (``train_one_gpu.py``): MONAI ``DiceLoss(sigmoid=True,
  squared_pred=True, reduction="mean")`` + ``BCEWithLogitsLoss``.
- :class:`FocalDiceIoULoss` — SAM-Med2D (``utils.py`` ``FocalDiceloss_IoULoss``): 20 × focal
  (γ 2, α 0.25) + Dice (smooth 1) + MSE between the predicted IoU and the soft IoU of the mask.
  SAM-Med2D pools its Dice and IoU over the whole batch; here they are per sample (see above).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ..errors import InputError


def _flat(x: torch.Tensor) -> torch.Tensor:
    return x.reshape(x.shape[0], -1)


class DiceBCELoss(nn.Module):
    """MedSAM: squared soft Dice (smooth 1e-5) + binary cross-entropy, both on sigmoid(logits)."""

    def __init__(self, smooth: float = 1e-5):
        super().__init__()
        self.smooth = smooth

    def forward(self, logits: torch.Tensor, target: torch.Tensor, iou_pred: torch.Tensor | None = None):
        logits, target = logits.float(), target.float()
        p = _flat(torch.sigmoid(logits))
        t = _flat(target)
        inter = (p * t).sum(1)
        denom = (p * p).sum(1) + (t * t).sum(1)
        dice = 1.0 - (2.0 * inter + self.smooth) / (denom + self.smooth)
        bce = F.binary_cross_entropy_with_logits(logits, target, reduction="none")
        return dice.mean() + _flat(bce).mean(1).mean()


class FocalDiceIoULoss(nn.Module):
    """SAM-Med2D: ``focal_weight`` × focal + Dice + ``iou_weight`` × MSE(predicted IoU, soft IoU)."""

    def __init__(self, focal_weight: float = 20.0, iou_weight: float = 1.0, gamma: float = 2.0, alpha: float = 0.25):
        super().__init__()
        self.focal_weight, self.iou_weight, self.gamma, self.alpha = focal_weight, iou_weight, gamma, alpha

    def forward(self, logits: torch.Tensor, target: torch.Tensor, iou_pred: torch.Tensor | None = None):
        logits, target = logits.float(), target.float()
        p = torch.sigmoid(logits)
        # focal, written with log-sigmoid for stability (SAM-Med2D: log(p + 1e-12))
        log_p, log_1p = F.logsigmoid(logits), F.logsigmoid(-logits)
        focal = -(self.alpha * target * (1 - p) ** self.gamma * log_p
                  + (1 - self.alpha) * (1 - target) * p ** self.gamma * log_1p)
        focal = _flat(focal).mean(1)
        pf, tf = _flat(p), _flat(target)
        inter = (pf * tf).sum(1)
        dice = 1.0 - (2.0 * inter + 1.0) / (pf.sum(1) + tf.sum(1) + 1.0)
        loss = self.focal_weight * focal + dice
        if iou_pred is not None and self.iou_weight:
            union = pf.sum(1) + tf.sum(1) - inter
            soft_iou = (inter + 1e-7) / (union + 1e-7)
            loss = loss + self.iou_weight * (soft_iou - iou_pred.float().reshape(-1)) ** 2
        return loss.mean()


LOSSES = {"dice-bce": DiceBCELoss, "focal-dice-iou": FocalDiceIoULoss}


def make_loss(name: str, model_kind: str = "") -> nn.Module:
    """Config name -> loss. ``auto``: SAM-Med2D's recipe for sam-med2d, MedSAM's for every other kind."""
    if name == "auto":
        name = "focal-dice-iou" if model_kind == "sam-med2d" else "dice-bce"
    if name not in LOSSES:
        raise InputError(f"Unknown loss '{name}'; use dice-bce (MedSAM) or focal-dice-iou (SAM-Med2D).")
    return LOSSES[name]()
