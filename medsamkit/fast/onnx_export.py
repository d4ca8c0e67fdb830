"""Export a loaded SAM-family network (LiteMedSAM measured) to ONNX: encoder and prompt decoder.

Encoder graph: ``image`` (1, 3, S, S) float32 model input -> ``embedding`` (1, 256, E, E).

The prompt encoder + mask decoder are two graphs, split where the prompts enter (all 4 mask tokens):

decoder-image (once per embedding; again for a click with a mask prompt)::

    embedding       (1, 256, E, E) float32
    mask_input      (1, 1, L, L) float32 low-res logits (zeros when unused)
    has_mask_input  (1,) float32       1.0 when mask_input is used, else 0.0
    -> keys (1, E*E, 256): image tokens + dense prompt; k0, v0 (1, E*E, 128): the first layer's
       token-to-image keys/values; q0 (1, E*E, 128): its image-to-token queries

decoder-prompt (every click)::

    keys, k0, v0, q0 as above
    point_coords    (1, N, 2) float32  model-frame XY, N >= 1 (dynamic)
    point_labels    (1, N)    float32  1 fg, 0 bg, 2 box top-left, 3 box bottom-right, -1 padding
    -> low_res_logits (1, 4, L, L), iou_predictions (1, 4)

Token 0 is the single-mask output, tokens 1..3 the multimask candidates, exactly as
``MaskDecoder.forward`` slices them. Boxes are passed as two corner points with labels 2/3 and
the padding point (label -1) is added only when there is no box — the same sparse embeddings as
``PromptEncoder.forward`` builds (``pad=(boxes is None)``), so masks match the torch path.
Splitting moves three of the decoder's 4096-token projections out of the click (8 ms, done once
after encoding) and the channels-last upscaling removes ConvTranspose, LayerNorm2d's strided
reductions and the NCHW transposes: a click costs 30 ms instead of 44 (median, 2 cores,
benchmarks/RESULTS.md), with logits equal to torch's within 3e-5.

Design notes: the legacy TorchScript exporter (``dynamo=False``) is used: the dynamo exporter
needs onnxscript, which the ``fast`` extra does not install, and the legacy one exports TinyViT
and the SAM decoder without changes (max |diff| of the embedding 3e-6). The network must be in
eval mode *after* its weights were loaded (TinyViT caches its attention biases in ``.eval()``),
which :func:`medsamkit.models.loader.load_model` guarantees. Export takes ~6 s on 2 cores.
"""
from __future__ import annotations

import contextlib
import io
import math
import warnings

import numpy as np

OPSET = 17
ENCODER_INPUTS = ("image",)
DECODER_IMAGE_INPUTS = ("embedding", "mask_input", "has_mask_input")
DECODER_IMAGE_OUTPUTS = ("keys", "k0", "v0", "q0")
DECODER_PROMPT_INPUTS = ("point_coords", "point_labels")
DECODER_PARTS = ("decoder-image", "decoder-prompt")


def _ct2x2_as_linear(ct):
    """ConvTranspose2d(k=2, s=2) -> (W (Cin, 4*Cout), b (4*Cout)), output columns ordered (di, dj, co)."""
    w = ct.weight  # (Cin, Cout, 2, 2)
    return w.permute(0, 2, 3, 1).reshape(w.shape[0], 4 * w.shape[1]), ct.bias.repeat(4)


def _conv2x2_as_linear(conv):
    """Conv2d(k=2, s=2) -> (W (4*Cin, Cout), b (Cout)), input rows ordered (di, dj, ci)."""
    w = conv.weight  # (Cout, Cin, 2, 2)
    return w.permute(2, 3, 1, 0).reshape(4 * w.shape[1], w.shape[0]), conv.bias


def _dense_pe(pe):
    """PromptEncoder.get_dense_pe as image-token rows (1, HW, C)."""
    return pe.get_dense_pe().flatten(2).transpose(1, 2)


def _layer_norm_last(x, ln):
    """SAM's LayerNorm2d (over channels) on channels-last rows."""
    import torch.nn.functional as F

    return F.layer_norm(x, (ln.weight.shape[0],), ln.weight, ln.bias, ln.eps)


def _attend(attn, q, k, v):
    """SAM ``Attention.forward`` after its input projections (q, k, v already projected)."""
    import torch

    def heads(x):
        return x.reshape(x.shape[0], x.shape[1], attn.num_heads, x.shape[2] // attn.num_heads).transpose(1, 2)

    q, k, v = heads(q), heads(k), heads(v)
    a = torch.softmax((q @ k.transpose(2, 3)) / math.sqrt(q.shape[-1]), dim=-1)
    out = (a @ v).transpose(1, 2)
    return attn.out_proj(out.reshape(out.shape[0], out.shape[1], out.shape[2] * out.shape[3]))


def _decoder_modules(net):
    """(image part, prompt part) of prompt encoder + mask decoder, split where the prompts enter.

    Image part (once per embedding and mask input): ``keys`` = image tokens (1, HW, C) plus the
    dense prompt, and the first transformer layer's projections of them that no prompt touches:
    the token-to-image keys/values (``k0``/``v0``) and the image-to-token queries (``q0``).
    Prompt part (every click): the rest of ``MaskDecoder.predict_masks`` for batch 1. The output
    upscaling runs channels-last (each 2x2 stride-2 transposed convolution is one matrix product,
    LayerNorm2d a LayerNorm over the last axis) and the pixels are put in image order only for
    the 4 output masks, which avoids the NCHW transposes, the strided channel reductions of
    LayerNorm2d and ONNX Runtime's ConvTranspose.
    """
    pe, dec = net.prompt_encoder, net.mask_decoder
    eh, ew = (int(v) for v in pe.image_embedding_size)
    return _image_part(pe, dec, eh, ew).eval(), _prompt_part(pe, dec, eh, ew).eval()


def _image_part(pe, dec, eh: int, ew: int):
    """The decoder's image part (see :func:`_decoder_modules`) for an (eh, ew) image embedding."""
    import torch.nn.functional as F
    from torch import nn

    class ImagePart(nn.Module):
        def __init__(self):
            super().__init__()
            # the network's own submodules under its own names: the graph's weights are named as the
            # checkpoint's keys; the matrices below are computed from them inside the graph
            self.prompt_encoder, self.mask_decoder = pe, dec

        def dense_from_mask(self, mask_input):
            """PromptEncoder.mask_downscaling, channels-last: (1, 1, 4*eh, 4*ew) -> (1, eh*ew, C).
            Pixel row y = 4Y + 2a + a2: the first 2x2 convolution sees (a2, b2), the second (a, b)."""
            md = self.prompt_encoder.mask_downscaling
            (m0, b0), (m1, b1) = _conv2x2_as_linear(md[0]), _conv2x2_as_linear(md[3])
            m2 = md[6].weight[:, :, 0, 0].t()
            x = mask_input.reshape(eh, 2, 2, ew, 2, 2).permute(0, 3, 1, 4, 2, 5).reshape(eh * ew * 4, 4)
            x = F.gelu(_layer_norm_last(x @ m0 + b0, md[1]))
            x = F.gelu(_layer_norm_last(x.reshape(eh * ew, m1.shape[0]) @ m1 + b1, md[4]))
            return (x @ m2 + md[6].bias).unsqueeze(0)

        def forward(self, embedding, mask_input, has_mask_input):
            pe = self.prompt_encoder
            has = has_mask_input.reshape(1, 1, 1)
            no_mask = pe.no_mask_embed.weight.reshape(1, 1, -1)
            dense = has * self.dense_from_mask(mask_input) + (1.0 - has) * no_mask
            keys = embedding.flatten(2).transpose(1, 2) + dense
            kp = keys + _dense_pe(pe)
            l0 = self.mask_decoder.transformer.layers[0]
            return (keys, l0.cross_attn_token_to_image.k_proj(kp), l0.cross_attn_token_to_image.v_proj(keys),
                    l0.cross_attn_image_to_token.q_proj(kp))

    return ImagePart()


def _prompt_part(pe, dec, eh: int, ew: int):
    """The decoder's prompt part (see :func:`_decoder_modules`) for an (eh, ew) image embedding."""
    import torch
    from torch import nn

    class PromptPart(nn.Module):
        def __init__(self):
            super().__init__()
            self.prompt_encoder, self.mask_decoder = pe, dec  # named as in the checkpoint (see ImagePart)
            h, w = pe.input_image_size
            self.scale_xy = (1.0 / w, 1.0 / h)

        def sparse(self, point_coords, point_labels):
            """PromptEncoder's sparse embeddings, branch-free (label -1 = padding point)."""
            pe = self.prompt_encoder
            coords = (point_coords + 0.5) * torch.tensor(self.scale_xy, dtype=torch.float32)  # pixel centre -> [0, 1]
            sparse = pe.pe_layer._pe_encoding(coords)  # (1, N, C)
            labels = point_labels.unsqueeze(-1)
            sparse = sparse * (labels != -1).to(sparse.dtype)
            sparse = sparse + pe.not_a_point_embed.weight * (labels == -1).to(sparse.dtype)
            for i in range(pe.num_point_embeddings):
                sparse = sparse + pe.point_embeddings[i].weight * (labels == i).to(sparse.dtype)
            return sparse

        def forward(self, keys, k0, v0, q0, point_coords, point_labels):
            dec = self.mask_decoder
            t = dec.transformer
            pos = _dense_pe(self.prompt_encoder)
            out_tokens = torch.cat([dec.iou_token.weight, dec.mask_tokens.weight])[None]
            tokens = torch.cat((out_tokens, self.sparse(point_coords, point_labels)), dim=1)
            # first layer (TwoWayAttentionBlock.forward) with the image-side projections given
            l0 = t.layers[0]
            if l0.skip_first_layer_pe:
                queries = l0.self_attn(q=tokens, k=tokens, v=tokens)
            else:
                q = tokens + tokens
                queries = tokens + l0.self_attn(q=q, k=q, v=tokens)
            queries = l0.norm1(queries)
            a = l0.cross_attn_token_to_image
            queries = l0.norm2(queries + _attend(a, a.q_proj(queries + tokens), k0, v0))
            queries = l0.norm3(queries + l0.mlp(queries))
            a = l0.cross_attn_image_to_token
            q = queries + tokens
            keys = l0.norm4(keys + _attend(a, q0, a.k_proj(q), a.v_proj(queries)))
            for layer in t.layers[1:]:
                queries, keys = layer(queries=queries, keys=keys, query_pe=tokens, key_pe=pos)
            attn = t.final_attn_token_to_image(q=queries + tokens, k=keys + pos, v=keys)
            queries = t.norm_final_attn(queries + attn)
            iou = dec.iou_prediction_head(queries[:, 0, :])
            hyper = torch.stack([dec.output_hypernetworks_mlps[i](queries[:, 1 + i, :])
                                 for i in range(dec.num_mask_tokens)], dim=1)[0]  # (M, C/8)
            return _masks_channels_last(dec, keys, hyper, eh, ew), iou

    return PromptPart()


def _masks_channels_last(dec, keys, hyper, eh: int, ew: int):
    """MaskDecoder's output upscaling and mask product, channels-last: image tokens ``keys`` (1, eh*ew, C)
    and the hypernetwork outputs ``hyper`` (M, C/8) -> masks (1, M, 4*eh, 4*ew)."""
    import torch.nn.functional as F

    up = dec.output_upscaling
    (w0, b0), (w1, b1) = _ct2x2_as_linear(up[0]), _ct2x2_as_linear(up[3])
    n, c0, c1 = eh * ew, w0.shape[1] // 4, w1.shape[1] // 4
    x = (keys[0] @ w0 + b0).reshape(n * 4, c0)  # rows (Y, X, di, dj)
    x = F.gelu(_layer_norm_last(x, up[1]))
    x = F.gelu(x @ w1 + b1).reshape(n * 16, c1)  # rows (Y, X, di, dj, di2, dj2)
    m = hyper.shape[0]
    masks = (hyper @ x.t()).reshape(m, eh, ew, 2, 2, 2, 2).permute(0, 1, 3, 5, 2, 4, 6)
    return masks.reshape(1, m, 4 * eh, 4 * ew)


def _export(module, args, path, input_names, output_names, dynamic_axes=None, named: bool = False) -> None:
    """named: keep every weight as an initialiser named by its checkpoint key (no constant folding, no
    Conv+BatchNorm fusion by the exporter; ONNX Runtime folds them when it loads the graph), so the
    weights can be removed from the file and bound again by name (:mod:`.graphs`)."""
    import torch

    mode = torch.onnx.TrainingMode.PRESERVE if named else torch.onnx.TrainingMode.EVAL
    with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
        warnings.simplefilter("ignore")  # TracerWarnings about Python ints in TinyViT's shape code
        with torch.no_grad():
            torch.onnx.export(module, args, path, dynamo=False, opset_version=OPSET, training=mode,
                              input_names=list(input_names), output_names=list(output_names),
                              dynamic_axes=dynamic_axes, do_constant_folding=not named)


@contextlib.contextmanager
def _attention_biases_in_graph(encoder):
    """TinyViT's Attention adds ``ab``, a copy of ``attention_biases[:, attention_bias_idxs]`` made by
    ``.eval()``; its training branch gathers from the checkpoint tensor instead (the only difference of
    its forward). Exported that way, the graph holds the checkpoint's tensor, not a derived copy."""
    mods = [m for m in encoder.modules() if hasattr(m, "attention_bias_idxs") and hasattr(m, "attention_biases")]
    for m in mods:
        m.training = True
    try:
        yield
    finally:
        for m in mods:
            m.training = False


def export_encoder(net, image_size: int, path: str, named: bool = False) -> None:
    """Write ``net.image_encoder`` as ONNX to ``path`` (input (1, 3, image_size, image_size)).

    named: weights named ``image_encoder.*`` as in the checkpoint (see :func:`_export`)."""
    import torch
    from torch import nn

    x = torch.zeros(1, 3, image_size, image_size, dtype=torch.float32)
    if not named:
        _export(net.image_encoder, (x,), path, ENCODER_INPUTS, ("embedding",))
        return

    class Encoder(nn.Module):
        def __init__(self):
            super().__init__()
            self.image_encoder = net.image_encoder

        def forward(self, image):
            return self.image_encoder(image)

    with _attention_biases_in_graph(net.image_encoder):
        _export(Encoder(), (x,), path, ENCODER_INPUTS, ("embedding",), named=True)


def export_decoder_part(net, part: str, path: str, named: bool = False) -> None:
    """Write one of the decoder's two graphs (``DECODER_PARTS``, see module docstring) to ``path``."""
    import torch

    image_part, prompt_part = _decoder_modules(net)
    low = tuple(net.prompt_encoder.mask_input_size)
    image_args = (torch.zeros(1, net.prompt_encoder.embed_dim, *net.prompt_encoder.image_embedding_size),
                  torch.zeros(1, 1, *low), torch.zeros(1))
    if part == "decoder-image":
        _export(image_part, image_args, path, DECODER_IMAGE_INPUTS, DECODER_IMAGE_OUTPUTS, named=named)
    elif part == "decoder-prompt":
        with torch.no_grad():
            feats = image_part(*image_args)
        coords = torch.tensor([[[10.0, 10.0], [100.0, 100.0]]])
        labels = torch.tensor([[2.0, 3.0]])
        _export(prompt_part, (*feats, coords, labels), path, DECODER_IMAGE_OUTPUTS + DECODER_PROMPT_INPUTS,
                ("low_res_logits", "iou_predictions"),
                dynamic_axes={"point_coords": {1: "num_points"}, "point_labels": {1: "num_points"}}, named=named)
    else:
        raise ValueError(f"unknown decoder part {part!r}; one of {DECODER_PARTS}")


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
