"""Fine-tuning of the promptable models: adapters, mask decoder, prompt encoder or everything.

Entry points: ``medsamkit train CONFIG.yaml|flags`` (cli/train.py), :func:`run_training`,
:class:`Trainer`, :class:`TrainConfig`, and :func:`apply_adapter` to use a trained
``adapter.safetensors`` (also ``load_model(..., adapter=PATH)``). Module map:

- config.py: options; cases.py: finding/reading (image, label) pairs; dataset.py: split, sampling,
  preprocessing identical to inference; prompt_simulation.py: boxes, points, correction clicks;
  losses.py: MedSAM and SAM-Med2D losses; parts.py: what trains; train_step.py: the objective;
  frozen_encoder.py: cached embeddings; validation.py: Dice; trainer.py: the loop; checkpointing.py:
  resumable state; the adapter file: medsamkit.models.adapter_file; metrics_log.py: JSON-lines metrics;
  distributed.py: torchrun/DDP; launcher.py: training in a separate process (Slicer);
  adapter_registry.py: adapters known to the Segment Editor effect.

Importing this package does not import torch (the names below load lazily).
"""
from __future__ import annotations

__all__ = ["TrainConfig", "load_config", "Trainer", "TrainResult", "run_training", "apply_adapter", "read_adapter"]


def __getattr__(name):
    if name in ("TrainConfig", "load_config"):
        from . import config

        return getattr(config, name)
    if name in ("Trainer", "TrainResult", "run_training"):
        from . import trainer

        return getattr(trainer, name)
    if name in ("apply_adapter", "read_adapter"):
        from ..models import adapter_file

        return getattr(adapter_file, name)
    raise AttributeError(name)
