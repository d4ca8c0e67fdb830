"""Which parameters train: adapters, mask decoder, prompt encoder, image encoder (or all of them).

Single source of truth for mapping a part name to state_dict keys. Everything else is frozen:
``requires_grad=False``, left out of the optimizer, and its module kept in eval mode so that no
buffer moves either (TinyViT's BatchNorm statistics would otherwise drift), so frozen tensors stay
bit-identical — the tests compare them byte for byte.

Adapter keys follow SAM-Med2D's layout: ``image_encoder.blocks.<i>.Adapter.<...>``.
"""
from __future__ import annotations

from ..errors import InputError

PART_PREFIXES = {
    "decoder": ("mask_decoder.",),
    "prompt_encoder": ("prompt_encoder.",),
    "encoder": ("image_encoder.",),
    "click_decoder": ("mask_decoder.",),
}
# click_decoder: the mask decoder without its two-way transformer MLPs (2.1 M of its 4.1 M parameters)
# and without the hypernetwork MLPs of mask tokens 1-3, which single-mask models (LiteMedSAM) never
# use. What remains (attention, tokens, upscaling, IoU head: 1.5 M) is what learns to read points,
# and its delta ships small (the litemedsam-clicks model).
PART_EXCLUDES = {
    "click_decoder": (".mlp.lin", "output_hypernetworks_mlps.1.", "output_hypernetworks_mlps.2.",
                      "output_hypernetworks_mlps.3."),
}
ADAPTER_TOKEN = ".Adapter."


def is_adapter_key(key: str) -> bool:
    return ADAPTER_TOKEN in key


def key_is_trained(key: str, parts) -> bool:
    """True when state_dict/parameter ``key`` belongs to one of ``parts``."""
    if "adapters" in parts and is_adapter_key(key):
        return True
    return any(key.startswith(prefix) and not any(x in key for x in PART_EXCLUDES.get(p, ()))
               for p in parts for prefix in PART_PREFIXES.get(p, ()))


def has_adapters(net) -> bool:
    return any(is_adapter_key(name) for name, _ in net.named_parameters())


def configure_trainable(net, parts) -> list[str]:
    """Set ``requires_grad`` for ``parts`` only; return the trainable parameter names (sorted as in the net).

    Raises InputError when adapters are requested but the network has none (insert them first,
    see :mod:`medsamkit.models.adapter_file`) or when nothing would train.
    """
    if "adapters" in parts and not has_adapters(net):
        raise InputError("parts includes 'adapters' but this network has no adapter layers. Adapters exist in "
                         "SAM-family ViT encoders (sam-vit-b/l/h, medsam, medicosam, sam-med2d); for LiteMedSAM "
                         "train --parts decoder or full.")
    names = []
    for name, param in net.named_parameters():
        train = key_is_trained(name, parts)
        param.requires_grad_(train)
        if train:
            names.append(name)
    if not names:
        raise InputError(f"No parameters belong to parts {'+'.join(parts)}; nothing would train.")
    return names


def set_train_modes(net, parts) -> None:
    """Eval mode everywhere, train mode only on modules that hold trained parameters."""
    net.train(False)
    for name, module in net.named_modules():
        own = list(module.parameters(recurse=False))
        # Only leaf-level behaviour matters (BatchNorm statistics, TinyViT's bias cache); SAM-family
        # networks have no dropout, so parameter-free modules may stay in eval mode.
        if name and own and key_is_trained(f"{name}.weight", parts):
            module.train(True)


def trained_state(net, parts) -> dict:
    """CPU copies of every state_dict entry (parameters and buffers) of ``parts``, keyed as in the net."""
    return {k: v.detach().to("cpu").clone().contiguous() for k, v in net.state_dict().items()
            if key_is_trained(k, parts)}
