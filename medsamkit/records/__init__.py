"""Prompt records and the workflows built on them.

- record.py: the record format (what a record holds; sidecar ``<out>.prompts.json`` and ``.seg.nrrd``
  segment tags); the single source of what a record holds, and the one module to import it from.
- entries.py: an entry's blocks built from the engine's prompts, geometry, window, model and mask.
- document.py: the record as JSON (schema, version, list of entries) and the checks it passes.
- replay.py: re-run a record's prompts (voxel-identical with the same model; a Dice table with another).
- replay_backend.py: the backend a replay opens (the recorded model, or the one asked for).
- review.py: which slices to review first; report.py: the annotation report (CSV + HTML).
"""
