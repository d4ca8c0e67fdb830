"""Prompt records and the workflows built on them.

- record.py: the record format (schema, entries, sidecar ``<out>.prompts.json`` and ``.seg.nrrd`` segment
  tags); the single source of what a record holds.
- replay.py: re-run a record's prompts (voxel-identical with the same model; a Dice table with another).
- replay_backend.py: the backend a replay opens (the recorded model, or the one asked for).
- review.py: which slices to review first; report.py: the annotation report (CSV + HTML).
"""
