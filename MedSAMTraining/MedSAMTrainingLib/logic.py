"""What the MedSAMTraining module does, without Qt: export, configure, run, follow, stop, resume, register.

``MedSAMTraining.py``'s Logic class inherits this with the application's scene and segmentations
logic; the tests use a slicer-core scene. Training always runs in a separate process
(:class:`medsamkit.training.launcher.TrainingProcess`): the application stays responsive, a crash
of the training cannot take the scene down, and the GPU memory is returned when it ends.
"""
from __future__ import annotations

import shutil
import sys
from pathlib import Path

from medsamkit.mrml.training_export import export_dataset


def default_python() -> str:
    """The interpreter for the training process: Slicer's PythonSlicer launcher when present."""
    return shutil.which("PythonSlicer") or sys.executable


class TrainingLogic:
    """scene: vtkMRMLScene; segmentations_logic: vtkSlicerSegmentationsModuleLogic; python: interpreter path."""

    def __init__(self, scene, segmentations_logic, python: str | None = None, env: dict | None = None):
        self.scene = scene
        self.segmentations_logic = segmentations_logic
        self.python = python or default_python()
        self.env = env
        self.process = None

    # -------------------------------------------------------------------------------- data
    def export_scene_dataset(self, items, out_dir, modality=None, window=None) -> Path:
        """items: [(volume node, segmentation node, segment IDs or None)] -> manifest.json path."""
        if not items:
            raise ValueError("Add at least one volume with its segmentation.")
        return export_dataset(items, out_dir, self.segmentations_logic, modality=modality or None,
                              window=window or None)

    @staticmethod
    def check_folder(folder) -> dict:
        """What ``medsamkit train --data folder`` would find: {"cases": n, "case_ids": [...], "warnings": [...]}."""
        from medsamkit.training.cases import discover_cases

        sources, warnings = discover_cases([str(folder)], [])
        return {"cases": len(sources), "case_ids": [s.case_id for s in sources], "warnings": warnings}

    # -------------------------------------------------------------------------------- run
    @staticmethod
    def make_config(data, run_dir, model="litemedsam", checkpoint=None, parts="decoder", epochs=10, batch_size=4,
                    lr=1e-4, window="auto", device="auto", labels=None, **extra):
        """A validated TrainConfig for the module's choices (``extra``: any other TrainConfig option)."""
        from medsamkit.training.config import TrainConfig

        cfg = TrainConfig(data=[str(data)], out=str(run_dir), model=model, checkpoint=checkpoint or None,
                          parts=parts, epochs=int(epochs), batch_size=int(batch_size), lr=float(lr),
                          window=window or "auto", device=device or "auto", labels=list(labels or []))
        for key, value in extra.items():
            if not hasattr(cfg, key):
                raise ValueError(f"Unknown training option '{key}'.")
            setattr(cfg, key, value)
        return cfg.validate()

    def start(self, config) -> None:
        """Launch training for ``config`` (a TrainConfig) in a new process; its run folder is ``config.out``."""
        from medsamkit.training.launcher import TrainingProcess

        if self.process is not None and self.process.running:
            raise RuntimeError("Training is already running; stop it first.")
        self.process = TrainingProcess(config.out, python=self.python, env=self.env)
        self.process.start(config)

    def attach(self, run_dir) -> None:
        """Follow (and be able to resume) an existing run folder, e.g. after restarting Slicer."""
        from medsamkit.training.launcher import TrainingProcess

        self.process = TrainingProcess(run_dir, python=self.python, env=self.env)

    def poll(self) -> dict:
        """Progress for the GUI timer: see TrainingProcess.poll (step, total_steps, loss, val_dice, status...)."""
        if self.process is None:
            return {"status": None}
        return self.process.poll()

    def stop(self, grace: float | None = None):
        """Ask the training to checkpoint and exit; returns at once (poll() escalates, see TrainingProcess.stop)."""
        if self.process is None:
            return None
        return self.process.stop(grace)

    def resume(self) -> None:
        if self.process is None:
            raise RuntimeError("No training run to resume; start one or choose its run folder.")
        self.process.resume()

    # -------------------------------------------------------------------------------- result
    def register_adapter(self, name: str, adapter_path=None) -> dict:
        """Make the run's adapter selectable in the MedSAM effect (user-level adapters.json)."""
        from medsamkit.training.adapter_registry import register_adapter

        path = adapter_path
        if path is None:
            if self.process is None:
                raise RuntimeError("No training run: choose the adapter file to register.")
            path = self.process.run_dir / "adapter.safetensors"
        if not Path(path).is_file():
            raise FileNotFoundError(f"No adapter at {path}: the run has not finished an epoch yet.")
        return register_adapter(path, name=name)

    @staticmethod
    def registered_adapters(kind=None) -> list:
        from medsamkit.training.adapter_registry import list_adapters

        return list_adapters(kind)
