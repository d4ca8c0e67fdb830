"""Qt-free parts of the MedSAMTraining module (slicer-core only): dataset export and the module logic."""
from medsamkit.mrml.training_export import export_dataset, segment_names
from .logic import TrainingLogic, default_python

__all__ = ["export_dataset", "segment_names", "TrainingLogic", "default_python"]
