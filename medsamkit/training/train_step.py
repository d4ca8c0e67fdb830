"""The training objective for one batch, as one ``nn.Module`` forward (so DDP can wrap it).

Prompting follows the inference path of :class:`medsamkit.models.base.PromptableModel.decode`
exactly (points + box + mask through the prompt encoder, one decoder call per image) with
gradients on. The decoder runs per image because segment-anything's PyPI ``MaskDecoder`` repeats
the image embedding once per prompt (``repeat_interleave``), so a batched call would pair every
image with every prompt; the decoder is small next to the encoder, so this costs little.

Iterative prompting (``clicks`` > 0; SAM-Med2D / MedicoSAM): after the first prediction, each
iteration adds one correction click at the centre of the largest error region (computed on the
detached low-res prediction, in the low-res frame, then mapped to the model-input frame) and feeds
the previous low-res logits back as the mask prompt; the loss is averaged over all iterations.
Multimask models (SAM-Med2D) keep the candidate with the highest predicted IoU, as at inference.
"""
from __future__ import annotations

import numpy as np
import torch
from torch import nn


class TrainStep(nn.Module):
    """forward(batch, embeddings=None) -> scalar loss.

    batch: from :func:`medsamkit.training.dataset.collate` with tensors on the right device.
    embeddings: (B, C, E, E) precomputed by a frozen encoder, or None to run ``net.image_encoder``.
    """

    def __init__(self, net: nn.Module, loss_fn: nn.Module, multimask: bool, clicks: int = 0, click_fn=None):
        super().__init__()
        self.net = net
        self.loss_fn = loss_fn
        self.multimask = bool(multimask)
        self.clicks = int(clicks)
        self.click_fn = click_fn

    def decode_one(self, emb: torch.Tensor, box, points, labels, mask_input):
        """One image: emb (1, C, E, E); box (4,) / points (N, 2) / labels (N,) tensors or None; mask_input
        (1, 1, L, L) or None -> (low-res logits (1, 1, L, L), predicted IoU (1, 1))."""
        pe = self.net.prompt_encoder
        pts = None if points is None else (points[None], labels[None])
        boxes = None if box is None else box.reshape(1, 1, 4)
        sparse, dense = pe(points=pts, boxes=boxes, masks=mask_input)
        low, iou = self.net.mask_decoder(image_embeddings=emb, image_pe=pe.get_dense_pe(),
                                         sparse_prompt_embeddings=sparse, dense_prompt_embeddings=dense,
                                         multimask_output=self.multimask)
        if self.multimask:
            best = int(iou[0].argmax())
            low, iou = low[:, best:best + 1], iou[:, best:best + 1]
        return low, iou

    def predict(self, embeddings: torch.Tensor, batch: dict, points=None, labels=None, mask_inputs=None):
        """All images of a batch -> (logits (B, 1, L, L), iou (B, 1))."""
        outs, ious = [], []
        for i in range(embeddings.shape[0]):
            pts = points[i] if points is not None else batch["points"][i]
            lab = labels[i] if labels is not None else batch["point_labels"][i]
            mask_in = None if mask_inputs is None else mask_inputs[i:i + 1]
            low, iou = self.decode_one(embeddings[i:i + 1], batch["box"][i], pts, lab, mask_in)
            outs.append(low)
            ious.append(iou)
        return torch.cat(outs), torch.cat(ious)

    def forward(self, batch: dict, embeddings: torch.Tensor | None = None) -> torch.Tensor:
        if embeddings is None:
            embeddings = self.net.image_encoder(batch["image"])
        target = batch["target"]
        logits, iou = self.predict(embeddings, batch)
        loss = self.loss_fn(logits, target, iou)
        if self.clicks <= 0:
            return loss
        points = list(batch["points"])
        labels = list(batch["point_labels"])
        size = self.net.prompt_encoder.input_image_size[0]
        scale = size / target.shape[-1]
        for _ in range(self.clicks):
            pred = (logits.detach() > 0).cpu().numpy()[:, 0]
            gt = target.detach().cpu().numpy()[:, 0] > 0.5
            for i in range(len(points)):
                click = self.click_fn(pred[i], gt[i])
                if click is None:
                    continue
                xy, lab = click
                # centre of the low-res pixel, in model-input pixels
                xy_in = torch.as_tensor((np.asarray(xy, dtype=np.float64) + 0.5) * scale - 0.5,
                                        dtype=torch.float32, device=target.device).reshape(1, 2)
                lab_t = torch.as_tensor([int(lab)], dtype=torch.int64, device=target.device)
                points[i] = xy_in if points[i] is None else torch.cat([points[i], xy_in])
                labels[i] = lab_t if labels[i] is None else torch.cat([labels[i], lab_t])
            logits, iou = self.predict(embeddings, batch, points, labels, mask_inputs=logits.detach())
            loss = loss + self.loss_fn(logits, target, iou)
        return loss / (self.clicks + 1)


def batch_to_device(batch: dict, device) -> dict:
    """Tensors and per-sample prompt arrays of a collated batch -> torch tensors on ``device``."""
    out = dict(batch)
    out["image"] = batch["image"].to(device, non_blocking=True)
    out["target"] = batch["target"].to(device, non_blocking=True)

    def conv(values, dtype):
        return [None if v is None else torch.as_tensor(v, dtype=dtype, device=device) for v in values]

    out["box"] = conv(batch["box"], torch.float32)
    out["points"] = conv(batch["points"], torch.float32)
    out["point_labels"] = conv(batch["point_labels"], torch.int64)
    return out
