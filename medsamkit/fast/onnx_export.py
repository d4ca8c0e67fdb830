"""Export a loaded SAM-family network (LiteMedSAM measured) to ONNX: encoder and prompt decoder.

Encoder graph: ``image`` (1, 3, S, S) float32 model input -> ``embedding`` (1, 256, E, E).
Decoder graph (prompt encoder + mask decoder in one graph, all 4 mask tokens)::

    embedding       (1, 256, E, E) float32
    point_coords    (1, N, 2) float32  model-frame XY, N >= 1 (dynamic)
    point_labels    (1, N)    float32  1 fg, 0 bg, 2 box top-left, 3 box bottom-right, -1 padding
    mask_input      (1, 1, L, L) float32 low-res logits (zeros when unused)
    has_mask_input  (1,) float32       1.0 when mask_input is used, else 0.0
    -> low_res_logits (1, 4, L, L), iou_predictions (1, 4)

Token 0 is the single-mask output, tokens 1..3 the multimask candidates, exactly as
``MaskDecoder.forward`` slices them. Boxes are passed as two corner points with labels 2/3 and
the padding point (label -1) is added only when there is no box — the same sparse embeddings as
``PromptEncoder.forward`` builds (``pad=(boxes is None)``), so masks match the torch path.

Design notes: the legacy TorchScript exporter (``dynamo=False``) is used: the dynamo exporter
needs onnxscript, which the ``fast`` extra does not install, and the legacy one exports TinyViT
and the SAM decoder without changes (max |diff| of the embedding 3e-6). The network must be in
eval mode *after* its weights were loaded (TinyViT caches its attention biases in ``.eval()``),
which :func:`medsamkit.models.registry.load_model` guarantees. Export takes ~6 s on 2 cores.
"""
from __future__ import annotations

import contextlib
import io
import warnings

import numpy as np

OPSET = 17
ENCODER_INPUTS = ("image",)
DECODER_INPUTS = ("embedding", "point_coords", "point_labels", "mask_input", "has_mask_input")


def _decoder_module(net):
    import torch
    from torch import nn

    class SamPromptDecoder(nn.Module):
        """Prompt encoder + mask decoder with fixed-shape, branch-free prompt handling."""

        def __init__(self, prompt_encoder, mask_decoder):
            super().__init__()
            self.pe = prompt_encoder
            self.dec = mask_decoder
            self.register_buffer("dense_pe", prompt_encoder.get_dense_pe().detach().clone())
            h, w = prompt_encoder.input_image_size
            self.register_buffer("scale_xy", torch.tensor([1.0 / w, 1.0 / h], dtype=torch.float32))

        def forward(self, embedding, point_coords, point_labels, mask_input, has_mask_input):
            pe = self.pe
            coords = (point_coords + 0.5) * self.scale_xy  # pixel centre, then [0, 1] (XY)
            sparse = pe.pe_layer._pe_encoding(coords)  # (1, N, C)
            labels = point_labels.unsqueeze(-1)
            sparse = sparse * (labels != -1).to(sparse.dtype)
            sparse = sparse + pe.not_a_point_embed.weight * (labels == -1).to(sparse.dtype)
            for i in range(pe.num_point_embeddings):
                sparse = sparse + pe.point_embeddings[i].weight * (labels == i).to(sparse.dtype)
            has = has_mask_input.reshape(1, 1, 1, 1)
            dense = has * pe.mask_downscaling(mask_input) + (1.0 - has) * pe.no_mask_embed.weight.reshape(1, -1, 1, 1)
            masks, iou = self.dec.predict_masks(
                image_embeddings=embedding, image_pe=self.dense_pe,
                sparse_prompt_embeddings=sparse, dense_prompt_embeddings=dense)
            return masks, iou

    return SamPromptDecoder(net.prompt_encoder, net.mask_decoder).eval()


def _export(module, args, path, input_names, output_names, dynamic_axes=None) -> None:
    import torch

    with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
        warnings.simplefilter("ignore")  # TracerWarnings about Python ints in TinyViT's shape code
        with torch.no_grad():
            torch.onnx.export(module, args, path, dynamo=False, opset_version=OPSET,
                              input_names=list(input_names), output_names=list(output_names),
                              dynamic_axes=dynamic_axes, do_constant_folding=True)


def export_encoder(net, image_size: int, path: str) -> None:
    """Write ``net.image_encoder`` as ONNX to ``path`` (input (1, 3, image_size, image_size))."""
    import torch

    x = torch.zeros(1, 3, image_size, image_size, dtype=torch.float32)
    _export(net.image_encoder, (x,), path, ENCODER_INPUTS, ("embedding",))


def export_decoder(net, path: str) -> None:
    """Write prompt encoder + mask decoder as one ONNX graph to ``path`` (see module docstring)."""
    import torch

    module = _decoder_module(net)
    e = tuple(net.prompt_encoder.image_embedding_size)
    low = tuple(net.prompt_encoder.mask_input_size)
    emb = torch.zeros(1, net.prompt_encoder.embed_dim, *e)
    coords = torch.tensor([[[10.0, 10.0], [100.0, 100.0]]])
    labels = torch.tensor([[2.0, 3.0]])
    mask = torch.zeros(1, 1, *low)
    has = torch.zeros(1)
    _export(module, (emb, coords, labels, mask, has), path, DECODER_INPUTS,
            ("low_res_logits", "iou_predictions"),
            dynamic_axes={"point_coords": {1: "num_points"}, "point_labels": {1: "num_points"}})


def quantize_int8(src: str, dst: str) -> None:
    """Dynamic int8 quantisation of the MatMul/Gemm weights of an fp32 ONNX file (per channel).

    Activations stay float and are quantised per call from their observed range, so no
    calibration data are needed. Accuracy must be checked against the fp32 reference (see
    Testing/engine/test_fast_accuracy.py); it is only used when asked for (precision="int8").
    """
    import logging

    from onnxruntime.quantization import QuantType, quantize_dynamic

    root = logging.getLogger()
    level = root.level
    root.setLevel(logging.ERROR)  # the quantiser logs a warning per shape it cannot infer
    try:
        quantize_dynamic(src, dst, weight_type=QuantType.QInt8, per_channel=True,
                         op_types_to_quantize=["MatMul", "Gemm"])
    finally:
        root.setLevel(level)


def decoder_prompt_arrays(coords, labels, box, mask_input, low_res_size: int):
    """Model-frame prompts -> the decoder graph's inputs (numpy, float32), as PromptEncoder builds them.

    coords: (N, 2) XY or None; labels: (N,) or None; box: (4,) XYXY or None; mask_input: (L, L)
    logits or None. Points first, then the two box corners; a padding point only without a box.
    """
    pts = [] if coords is None or len(coords) == 0 else [np.asarray(coords, np.float32).reshape(-1, 2)]
    labs = [] if coords is None or len(coords) == 0 else [np.asarray(labels, np.float32).reshape(-1)]
    if box is not None:
        pts.append(np.asarray(box, np.float32).reshape(2, 2))
        labs.append(np.array([2.0, 3.0], np.float32))
    else:
        pts.append(np.zeros((1, 2), np.float32))
        labs.append(np.array([-1.0], np.float32))
    point_coords = np.concatenate(pts)[None]
    point_labels = np.concatenate(labs)[None]
    if mask_input is None:
        mask = np.zeros((1, 1, low_res_size, low_res_size), np.float32)
        has = np.zeros(1, np.float32)
    else:
        mask = np.ascontiguousarray(np.asarray(mask_input, np.float32).reshape(1, 1, low_res_size, low_res_size))
        has = np.ones(1, np.float32)
    return {"point_coords": point_coords, "point_labels": point_labels, "mask_input": mask, "has_mask_input": has}
