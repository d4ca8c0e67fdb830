"""SAM-Med2D's Adapter and how it is inserted into a SAM ViT image encoder (wrapping, not forking).

The single source of truth for the adapter architecture and its state_dict names. Layout and
maths follow SAM-Med2D (``Adapter_Layer`` in its ``image_encoder.py``; see the shared checkpoint
notes): every encoder block gets one adapter that runs *in parallel with the MLP* on the same
``norm2`` output::

    x = x + attn(norm1(x))
    n = norm2(x)
    x = x + mlp(n) + Adapter(n)          # stock SAM: x + mlp(n)

and the 6 adapter tensors of block ``i`` are saved as ``image_encoder.blocks.i.Adapter.*``.

Design note: we keep segment-anything's own ``Block`` objects (PyPI ``segment-anything``) and add
the adapter as a child module named ``Adapter`` plus a forward hook on ``block.mlp`` that adds
``Adapter(n)`` to the MLP output. That reproduces SAM-Med2D's block exactly, keeps upstream's
attention/window code untouched (no forked ``forward``), and yields the released key names and
order (the adapter is registered after ``mlp``, as in SAM-Med2D). The hook is a bound method of
the adapter, so ``copy.deepcopy`` and pickling keep each block wired to its own adapter.
"""
from __future__ import annotations

from ..errors import InputError

import torch
from torch import nn

ADAPTER_ATTR = "Adapter"  # attribute (and state_dict) name used by SAM-Med2D; do not rename
STYLE = "sam-med2d"       # the adapter layout style recorded in adapter files and checkpoints
DEFAULT_MLP_RATIO = 0.25


class Adapter(nn.Module):
    """SAM-Med2D adapter: channel (squeeze-excitation) gate, spatial conv bottleneck, LayerNorm.

    ``forward(x)``: x is (B, H, W, C) tokens (SAM's ViT layout), H and W even (16 at 256 input,
    64 at 1024); returns (B, H, W, C)::

        y = norm(x + spatial(x * channel(mean_hw(x))))     # skip_connect=True (SAM-Med2D)

    channel: Linear(C -> C*mlp_ratio, no bias) -> ReLU -> Linear(-> C, no bias) -> Sigmoid.
    spatial: Conv2d(C, C, k3, s2, p1, no bias) -> ReLU -> ConvTranspose2d(C, C, k4, s2, p1, no bias) -> ReLU.
    norm: LayerNorm(C) with PyTorch's default eps 1e-5 (the ViT blocks use 1e-6; SAM-Med2D does the same).
    Weights are Kaiming-normal (fan_out, relu) as upstream, so a fresh adapter changes the block output.
    """

    def __init__(self, dim: int = 768, mlp_ratio: float = 0.25, skip_connect: bool = True):
        super().__init__()
        hidden = int(dim * mlp_ratio)
        self.skip_connect = skip_connect
        # Names, Sequential indices and definition order fix the state_dict keys and their order
        # (norm, channel.0/2, spatial.0/2), exactly as in SAM-Med2D's released file.
        self.norm = nn.LayerNorm(dim)
        self.channel = nn.Sequential(
            nn.Linear(dim, hidden, bias=False), nn.ReLU(), nn.Linear(hidden, dim, bias=False), nn.Sigmoid())
        self.spatial = nn.Sequential(
            nn.Conv2d(dim, dim, kernel_size=3, stride=2, padding=1, bias=False), nn.ReLU(),
            nn.ConvTranspose2d(dim, dim, kernel_size=4, stride=2, padding=1, bias=False), nn.ReLU())
        for module in self.modules():
            if isinstance(module, (nn.Linear, nn.Conv2d, nn.ConvTranspose2d)):
                nn.init.kaiming_normal_(module.weight, mode="fan_out", nonlinearity="relu")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x.permute(0, 3, 1, 2)  # (B, H, W, C) -> (B, C, H, W)
        gate = self.channel(x.mean(dim=(2, 3)))[:, :, None, None]  # = AdaptiveAvgPool2d(1) upstream
        spatial = self.spatial(x * gate)
        x = x + spatial if self.skip_connect else spatial
        return self.norm(x.permute(0, 2, 3, 1))

    def add_to_mlp_output(self, mlp: nn.Module, inputs: tuple, output: torch.Tensor) -> torch.Tensor:
        """Forward hook on the block's MLP: ``mlp(n) + Adapter(n)`` with n = the MLP's input (norm2 output)."""
        return output + self(inputs[0])


def insert_adapters(image_encoder: nn.Module, mlp_ratio: float = 0.25) -> list[Adapter]:
    """Add one SAM-Med2D :class:`Adapter` to every block of a segment-anything ``ImageEncoderViT``.

    Modifies ``image_encoder`` in place (new parameters on the encoder's device/dtype) and returns
    the adapters in block order. The encoder's other parameters and its forward are unchanged apart
    from the parallel adapter branch. Raises ValueError if the encoder already has adapters or has
    no ``blocks`` with ``mlp``/``norm2`` (not a SAM ViT encoder).
    """
    blocks = getattr(image_encoder, "blocks", None)
    if blocks is None or not len(blocks) or not all(hasattr(b, "mlp") and hasattr(b, "norm2") for b in blocks):
        raise ValueError("insert_adapters needs a segment-anything ImageEncoderViT (blocks with norm2 and mlp).")
    if has_adapters(image_encoder):
        raise ValueError("This image encoder already has adapters.")
    ref = next(image_encoder.parameters())
    adapters = []
    for block in blocks:
        adapter = Adapter(block.norm2.normalized_shape[0], mlp_ratio=mlp_ratio).to(device=ref.device, dtype=ref.dtype)
        setattr(block, ADAPTER_ATTR, adapter)  # registered after mlp -> SAM-Med2D's key order
        block.mlp.register_forward_hook(adapter.add_to_mlp_output)
        adapters.append(adapter)
    return adapters


def has_adapters(image_encoder: nn.Module) -> bool:
    """True if any block of the encoder carries an ``Adapter`` child."""
    return any(isinstance(getattr(b, ADAPTER_ATTR, None), Adapter) for b in getattr(image_encoder, "blocks", ()))


def ensure_adapter_layout(net, layout: dict) -> None:
    """Rebuild the adapter layers described by ``layout`` on ``net`` (before loading trained weights)."""
    if not layout:
        return
    if layout.get("style") != STYLE:
        raise InputError(f"Unknown adapter style '{layout.get('style')}' (this medsamkit knows '{STYLE}').")
    encoder = net.image_encoder
    if has_adapters(encoder):
        return
    if not layout.get("inserted"):
        raise InputError("These weights were trained on a model that has adapters built in (SAM-Med2D); load that "
                         "base model (--model sam-med2d) to use them.")
    blocks = getattr(encoder, "blocks", None)
    if blocks is None or len(blocks) != layout.get("blocks"):
        raise InputError(f"These adapters were trained on a ViT with {layout.get('blocks')} blocks; this encoder has "
                         f"{len(blocks) if blocks is not None else 'no'} blocks.")
    insert_adapters(encoder, mlp_ratio=float(layout.get("mlp_ratio") or DEFAULT_MLP_RATIO))
