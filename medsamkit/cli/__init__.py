"""The faces: ``medsamkit`` console commands (main.py and one module per command group), their argparse
options and types (options.py, arg_types.py), the evaluation bench (bench.py) and the headless batch entry
point (batch.py, also run by ``Slicer --python-script``).

Each command parses, reaches a model through :func:`medsamkit.backend.open_backend` (``options.backend_from_options``),
calls the engine or a workflow package (``medsamkit.records``, ``medsamkit.recist``), prints, and returns an
exit status. Nothing below this package imports it.
"""
from __future__ import annotations


def main(argv=None) -> int:
    from .commands import main as run

    return run(argv)
