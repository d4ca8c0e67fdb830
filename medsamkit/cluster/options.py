"""The ``--cluster`` options shared by ``recist``, ``replay`` and the batch."""
from __future__ import annotations

DEFAULT_RETRIES = 3


def add_cluster_options(p) -> None:
    g = p.add_argument_group("cluster (Ray)")
    g.add_argument("--cluster", default=None, metavar="ray://HOST:PORT|auto|local",
                   help="run the studies/cases as Ray tasks: ray://HOST:PORT (Ray Client of a running cluster), "
                        "auto (the cluster this machine joined with 'ray start') or local (start Ray here); "
                        "needs medsamkit[cluster]. Default: one process on this machine, no Ray")
    g.add_argument("--cluster-gpus", type=float, default=None, metavar="N",
                   help="GPUs per task (default: 1 when the cluster has GPUs and --device is auto or cuda, else 0; "
                        "0.5 puts two tasks on a GPU)")
    g.add_argument("--cluster-retries", type=int, default=DEFAULT_RETRIES, metavar="N",
                   help=f"times a task is re-run elsewhere when its worker dies (default {DEFAULT_RETRIES})")
    g.add_argument("--summary", default=None, metavar="FILE.csv",
                   help="where the run's summary goes (CSV, and JSON beside it with the same name); default: "
                        "cluster-summary.csv in the output folder (recist) or beside the case list")


def model_spec(args) -> dict:
    """The model options a worker needs to open the same backend as the plain run (picklable)."""
    return {"backend": getattr(args, "backend", "local") or "local", "model": getattr(args, "model", None),
            "checkpoint": getattr(args, "checkpoint", None), "adapter": getattr(args, "adapter", None),
            "engine": getattr(args, "engine", None), "device": getattr(args, "device", None),
            "server_token_file": getattr(args, "server_token_file", None),
            "server_timeout": getattr(args, "server_timeout", None)}
