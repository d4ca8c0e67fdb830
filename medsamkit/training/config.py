"""Training configuration: one flat set of options shared by YAML files, CLI flags and the Slicer module.

Single source of truth for every training option, its default and its allowed values. A YAML
config holds the same keys as :class:`TrainConfig` (``data: [folder, ...]``, ``epochs: 20``, ...);
CLI flags override it; relative paths in a YAML file are relative to the file's folder.

Design note: the options are flat (no nested sections) so that each one maps to exactly one
``--flag`` and one YAML key, and a run directory's ``config.yaml`` can be passed back to
``medsamkit train`` unchanged.
"""
from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass, field
from pathlib import Path

from ..errors import DependencyError, InputError

PARTS = ("adapters", "decoder", "prompt_encoder", "encoder", "click_decoder")
PART_PRESETS = {"full": ("encoder", "prompt_encoder", "decoder"), "clicks": ("prompt_encoder", "click_decoder")}
#: what MedSAM Training offers in its Parts box (each parses as ``parts``), the common choices first
PART_CHOICES = ("decoder", "adapters", "adapters+decoder", "full")
PROMPTS = ("box", "points", "mixed", "clicks")
LOSSES = ("auto", "dice-bce", "focal-dice-iou")
AMP = ("auto", "bf16", "off")
AUGMENT = ("flip", "none")
CACHE = ("auto", "on", "off")
PATH_KEYS = ("data", "pairs", "checkpoint", "out", "val_data", "embedding_dir")


@dataclass
class TrainConfig:
    """All training options (units in the names or the comments).

    Data: ``data`` lists folders (a shared-format ``manifest.json``, ``*.img.*``/``*.mask.*`` pairs,
    ``images/`` + ``labels/`` subfolders, or volume/label pairs such as ``X.nii.gz`` + ``X.seg.nrrd``)
    or manifest files; ``pairs`` lists explicit ``[image, label]`` files. ``labels`` restricts training
    to some label values (ints) or segment names (strings); empty = every label present.
    """

    data: list = field(default_factory=list)
    pairs: list = field(default_factory=list)
    labels: list = field(default_factory=list)
    modality: str | None = None          # for cases whose files/manifest do not say (CT, MR, US, ...)
    window: str = "auto"                 # intensity normalisation, exactly as `segment --window`
    axis: str = "axial"                  # slice plane of 3D volumes: axial, coronal, sagittal
    slices_per_volume: int = 16          # training slices drawn per (volume, label) per epoch
    foreground_fraction: float = 0.9     # share of those slices that contain the label
    background_margin: int = 5           # background slices come from this many slices past the label's ends
    val_slices_per_volume: int = 8       # fixed, evenly spaced foreground slices per validation volume
    val_fraction: float = 0.2            # share of cases held out for validation (by case, never by slice)
    val_cases: list = field(default_factory=list)  # explicit validation case ids (overrides val_fraction)
    augment: str = "flip"                # flip: random horizontal/vertical flips (LiteMedSAM's training); none

    model: str = "litemedsam"
    checkpoint: str | None = None        # base weights; None = the kind's bundled weights
    device: str = "auto"
    parts: str = "decoder"               # adapters | decoder | prompt_encoder | encoder | full, joined by '+'

    prompt: str = "box"                  # box | points | mixed (half boxes, half points; SAM-Med2D) | clicks
                                         # (box only, 1..points points, or box + points per sample; see prompt_simulation)
    box_jitter: int = 20                 # each box side moves outward by 0..box_jitter pixels (MedSAM)
    points: int = 1                      # positive points per point prompt (clicks: the most points of a first prompt)
    clicks: int = 0                      # iterative correction clicks per sample (SAM-Med2D uses 8)

    loss: str = "auto"                   # dice-bce (MedSAM) | focal-dice-iou (SAM-Med2D) | auto (by model)
    epochs: int = 10
    batch_size: int = 4
    accumulate: int = 1                  # gradient accumulation: micro-batches per optimizer step
    lr: float = 1e-4                     # AdamW, as MedSAM
    weight_decay: float = 0.01
    warmup: float = 0.05                 # < 1: fraction of all optimizer steps; >= 1: number of steps
    min_lr_ratio: float = 0.01           # cosine decays to lr * min_lr_ratio
    grad_clip: float = 1.0               # max gradient L2 norm; 0 = off
    amp: str = "auto"                    # auto: bf16 autocast on CUDA only; bf16; off
    patience: int = 5                    # early stopping: epochs without validation-Dice gain; 0 = off
    min_delta: float = 0.001             # smallest Dice gain that counts as improvement
    cache_embeddings: str = "auto"       # auto: cache the frozen encoder's embeddings when the encoder is frozen
    cache_gb: float = 2.0
    embedding_dir: str | None = None     # also keep frozen-encoder embeddings on disk here (float16; reused by reruns)
    num_workers: int = 0                 # DataLoader worker processes
    seed: int = 0
    max_steps: int = 0                   # stop after this many optimizer steps (0 = no limit)

    out: str = "medsamkit-train"         # run folder: checkpoints, metrics.jsonl, adapter.safetensors
    save_every: int = 0                  # also checkpoint every N optimizer steps (0 = at epoch ends only)
    validate_before: bool = True         # validation Dice of the base model before training
    val_data: list = field(default_factory=list)  # validation-only folders (manifest.json): click-protocol validation
    val_objects: int = 0                 # at most this many val_data objects (evenly spread; 0 = all)
    val_every: int = 0                   # also validate (and keep the best weights) every N optimizer steps
    tensorboard: str = "auto"            # auto: write TensorBoard events when tensorboard is installed; off

    # ---------------------------------------------------------------------------------------------
    def part_list(self) -> tuple[str, ...]:
        """``parts`` parsed into a sorted tuple of :data:`PARTS` (``full`` expanded)."""
        out: set[str] = set()
        for token in str(self.parts).replace(",", "+").split("+"):
            token = token.strip().lower().replace("-", "_")
            if not token:
                continue
            if token in ("decoders", "mask_decoder"):
                token = "decoder"
            if token == "adapter":
                token = "adapters"
            if token in PART_PRESETS:
                out.update(PART_PRESETS[token])
            elif token in PARTS:
                out.add(token)
            else:
                raise InputError(f"Unknown trainable part '{token}' in parts='{self.parts}'. Use adapters, decoder, "
                                 "prompt_encoder, encoder or full, joined with '+' (e.g. adapters+decoder).")
        if not out:
            raise InputError("parts is empty; choose adapters, decoder, prompt_encoder, encoder or full.")
        return tuple(p for p in PARTS if p in out)

    def validate(self) -> "TrainConfig":
        """Check choices and ranges; raises InputError naming the option and its valid values."""
        def choice(name, allowed):
            value = str(getattr(self, name)).lower()
            if value not in allowed:
                raise InputError(f"{name}='{getattr(self, name)}' is not valid; use one of {', '.join(allowed)}.")
            setattr(self, name, value)

        for name, allowed in (("prompt", PROMPTS), ("loss", LOSSES), ("amp", AMP), ("augment", AUGMENT),
                              ("cache_embeddings", CACHE)):
            choice(name, allowed)
        self.part_list()
        positive = ("epochs", "batch_size", "accumulate", "slices_per_volume", "val_slices_per_volume", "points")
        for name in positive:
            if int(getattr(self, name)) < 1:
                raise InputError(f"{name} must be at least 1 (got {getattr(self, name)}).")
        for name in ("clicks", "box_jitter", "background_margin", "patience", "num_workers", "max_steps",
                     "save_every", "val_objects", "val_every"):
            if int(getattr(self, name)) < 0:
                raise InputError(f"{name} must be 0 or more (got {getattr(self, name)}).")
        for name in ("foreground_fraction", "min_lr_ratio"):
            if not 0.0 <= float(getattr(self, name)) <= 1.0:
                raise InputError(f"{name} must be between 0 and 1 (got {getattr(self, name)}).")
        if not 0.0 <= float(self.val_fraction) < 1.0:
            raise InputError(f"val_fraction must be in [0, 1) (got {self.val_fraction}).")
        if float(self.lr) <= 0:
            raise InputError(f"lr must be positive (got {self.lr}).")
        if not self.data and not self.pairs:
            raise InputError("No training data: give --data FOLDER (repeatable) or pairs of image/label files "
                             "in the config ('pairs: [[image, label], ...]').")
        return self

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, values: dict, base_dir: "str | os.PathLike | None" = None) -> "TrainConfig":
        """Build from a dict (YAML content, saved config); unknown keys are an error.

        base_dir: folder that relative paths are resolved against (the YAML file's folder).
        """
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(values) - names)
        if unknown:
            raise InputError(f"Unknown training option(s) {', '.join(unknown)}. Valid options: {', '.join(sorted(names))}.")
        cfg = cls()
        for f in dataclasses.fields(cls):
            if f.name not in values:
                continue
            if values[f.name] is None and f.name not in ("checkpoint", "modality", "embedding_dir"):
                continue  # an empty YAML entry means "the default"
            setattr(cfg, f.name, _coerce(f.name, values[f.name], getattr(cfg, f.name)))
        if base_dir is not None:
            cfg.resolve_paths(base_dir)
        return cfg

    def resolve_paths(self, base_dir: "str | os.PathLike") -> None:
        """Make relative data/pairs/checkpoint/out paths absolute against ``base_dir``."""
        base = Path(base_dir)

        def fix(p):
            return p if p is None or Path(p).is_absolute() else str((base / p).resolve())

        self.data = [fix(str(p)) for p in self.data]
        self.val_data = [fix(str(p)) for p in self.val_data]
        self.embedding_dir = fix(self.embedding_dir) if self.embedding_dir else None
        self.pairs = [[fix(str(a)), fix(str(b))] for a, b in self.pairs]
        self.checkpoint = fix(self.checkpoint) if self.checkpoint else None
        self.out = fix(self.out)


def _coerce(name: str, value, default):
    """Value from YAML/flags -> the field's type, with a clear error."""
    try:
        if name in ("data", "labels", "val_cases", "val_data"):
            return [value] if isinstance(value, (str, int)) else list(value)
        if name == "pairs":
            pairs = [list(p) for p in value]
            if any(len(p) != 2 for p in pairs):
                raise ValueError("each pair needs exactly [image, label]")
            return pairs
        if isinstance(default, bool):
            if isinstance(value, str):
                return value.strip().lower() in ("1", "true", "yes", "on")
            return bool(value)
        if isinstance(default, int):
            return int(value)
        if isinstance(default, float):
            return float(value)
        return None if value is None else str(value)
    except (TypeError, ValueError) as exc:
        raise InputError(f"Training option {name}={value!r} has the wrong type ({exc}).") from exc


def load_config(path: "str | os.PathLike") -> TrainConfig:
    """Read a YAML (or JSON) config file; relative paths are resolved against its folder."""
    path = Path(path)
    if not path.is_file():
        raise InputError(f"Training config not found: {path}")
    text = path.read_text(encoding="utf-8")
    if path.suffix.lower() == ".json":
        import json

        values = json.loads(text)
    else:
        try:
            import yaml
        except ImportError as exc:  # pragma: no cover - the train extra installs it
            raise DependencyError('Reading a YAML training config needs pyyaml: python -m pip install "medsamkit[train]"') from exc
        try:
            values = yaml.safe_load(text) or {}
        except yaml.YAMLError as exc:
            raise InputError(f"{path} is not valid YAML: {exc}") from exc
    if not isinstance(values, dict):
        raise InputError(f"{path} must hold a mapping of option: value (got {type(values).__name__}).")
    return TrainConfig.from_dict(values, base_dir=path.parent)


def dump_yaml(cfg: TrainConfig) -> str:
    """The config as YAML text (``medsamkit train`` reads it back unchanged)."""
    import yaml

    return yaml.safe_dump(cfg.to_dict(), sort_keys=False)
