"""``--backend local|URL`` for CLI commands: the one option that moves a command's model to a server.

A command adds the options with :func:`add_backend_options` and gets its backend with
:func:`backend_from_args`; it then calls the Backend methods (set_volume, predict, propagate,
segment_markers, ...) and runs unchanged on a ``medsamkit serve`` machine.
"""
from __future__ import annotations

import argparse

from . import Backend, is_remote_spec, open_backend


def add_backend_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--backend", default="local", metavar="local|URL",
                   help="where the model runs: local (this process, default) or a 'medsamkit serve' address "
                        "such as http://gpu-box:8765")
    p.add_argument("--server-token-file", default=None, metavar="FILE",
                   help="file holding the server's token (or set MEDSAMKIT_TOKEN)")
    p.add_argument("--server-timeout", type=float, default=60.0, metavar="SECONDS",
                   help="seconds to wait for each answer of the server")


MODEL_OPTIONS = ("model", "checkpoint", "adapter")


def backend_from_args(args) -> Backend:
    """A RemoteBackend for ``--backend URL``; else a LocalBackend on the model of --model/--checkpoint/--device.

    With a server the model is the server's (``medsamkit serve --model ... --checkpoint ...``): giving
    --model/--checkpoint/--adapter as well is refused rather than silently ignored.
    """
    if is_remote_spec(args.backend):
        given = [f"--{name}" for name in MODEL_OPTIONS if getattr(args, name, None)]
        if given:
            from ..errors import InputError

            raise InputError(f"{' and '.join(given)} choose a local model; with --backend {args.backend} the server's "
                             "model is used. Start the server with those options (medsamkit serve --model ... "
                             "--checkpoint ...) or drop --backend.")
        return open_backend(args.backend, token_file=args.server_token_file, timeout=args.server_timeout)
    from ..cli import load_predictor
    from .local import LocalBackend

    return LocalBackend(predictor=load_predictor(args))


def describe(backend: Backend) -> str:
    """'litemedsam on cpu' or 'litemedsam on cuda at http://host:8765' for summaries."""
    info = backend.info()
    return f"{info.kind} on {info.device}" + (f" at {info.url}" if info.remote else "")
