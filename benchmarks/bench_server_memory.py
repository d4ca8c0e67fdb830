"""Server memory over rounds of sessions: RSS of a real ``medsamkit serve`` (psutil) before, during and after.

Each round opens ``--sessions`` sessions on the bundled lung CT, runs a box on three slices and one
propagation in each, then closes them all. Prints the server's RSS after start, at each round's peak
and after its close, in MiB. Usage::

    python benchmarks/bench_server_memory.py [--rounds 3] [--sessions 4] [--engine auto]
"""
from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
import psutil

REPO = Path(__file__).resolve().parents[1]
CT = REPO / "medsamkit" / "data" / "sample_lung_ct.nii.gz"
LABEL = REPO / "medsamkit" / "data" / "sample_lung_ct.label.nii.gz"


def main() -> None:
    from medsamkit.backend.process import ModelProcess, model_arguments
    from medsamkit.backend.remote import RemoteBackend
    from medsamkit.io import read_image

    ap = argparse.ArgumentParser()
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--sessions", type=int, default=4)
    ap.add_argument("--engine", default="auto")
    args = ap.parse_args()
    image, label = read_image(CT), read_image(LABEL).array > 0
    ys, xs = np.nonzero(label[11])
    box = [float(xs.min() - 3), float(ys.min() - 3), float(xs.max() + 3), float(ys.max() + 3)]
    proc = ModelProcess(model_arguments(engine=args.engine, device="cpu"))
    url = proc.start()
    server = psutil.Process(proc.server_pid)
    mib = lambda: server.memory_info().rss / 2**20  # noqa: E731
    try:
        client = RemoteBackend(url, token_file=proc.token_file, timeout=600)
        client.info()
        print(f"engine {args.engine}: after start {mib():.0f} MiB")
        client.close()
        for r in range(1, args.rounds + 1):
            peak = 0.0
            backends = []
            for _ in range(args.sessions):
                b = RemoteBackend(url, token_file=proc.token_file, timeout=600)
                b.set_volume(image.array, normalization="lung", direction=image.direction)
                for k in (10, 11, 12):
                    b.predict(box=box, slice_index=k, axis=0)
                b.propagate(11, 0, box=box)
                backends.append(b)
                peak = max(peak, mib())
            for b in backends:
                b.close()
            time.sleep(1.0)
            print(f"round {r}: peak {peak:.0f} MiB, after closing {args.sessions} sessions {mib():.0f} MiB")
    finally:
        proc.stop()


if __name__ == "__main__":
    main()
