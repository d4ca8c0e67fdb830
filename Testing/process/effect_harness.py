"""The effect's path, headless, as a script: run it in a fresh interpreter and read its JSON line.

What the Segment Editor effect does for a box, without Qt: medsamkit.mrml.interactive prepares the
request from the scene on the main thread, the effect's model session (medsamkit.mrml.session.ModelSession)
starts the model process on the worker thread (jobs.Worker, polled like the effect's QTimer), the
result is written into the segment through the editor logic. Prints one JSON object: the voxels
written, whether torch (or another heavy module) was ever imported here, the model process's pid.

    python Testing/process/effect_harness.py [--engine torch|onnx|auto] [--slice K]
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
DATA = REPO / "medsamkit" / "data"


def main(argv=None) -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--engine", default="torch")
    parser.add_argument("--slice", type=int, default=11)
    args = parser.parse_args(argv)

    import numpy as np

    from medsamkit.io import read_image
    from medsamkit.mrml.context import make_context, quiet_vtk
    from medsamkit.mrml.session import ModelSession
    from medsamkit.mrml.interactive import PromptState, apply_result, prepare_slice_request, \
        run_request, volume_key
    from medsamkit.mrml.session import Worker
    from medsamkit.mrml.segments import EditorLogicTarget, new_segmentation, segment_array
    from medsamkit.mrml.volumes import load_volume, volume_geometry, volume_plane_slice_to_ras

    quiet_vtk("ERROR")
    ctx = make_context()
    node = load_volume(ctx, DATA / "sample_lung_ct.nii.gz")
    label = read_image(DATA / "sample_lung_ct.label.nii.gz").array > 0
    seg, sid = new_segmentation(ctx, node, segment_name="tumour")
    target = EditorLogicTarget(ctx, seg, node, sid)
    g, k = volume_geometry(node), args.slice
    ys, xs = np.nonzero(label[k])
    corners = [g.ijk_to_ras_points(g.slice_to_ijk([xy], k, 0))[0]
               for xy in ((xs.min() - 3, ys.min() - 3), (xs.max() + 3, ys.max() + 3))]
    prompt = PromptState().set_box(node, volume_plane_slice_to_ras(g, 0, k), *corners)

    session, worker = ModelSession(), Worker()
    options = {"Engine": args.engine, "Device": "cpu"}
    request = prepare_slice_request(node, seg, prompt, window="lung",
                                    whole_volume=not session.holds_volume(volume_key(node)))

    def work(progress=None, cancel=None):  # the effect's worker function
        return run_request(session.open(progress=progress, cancel=cancel, **options), request, progress, cancel)

    t0 = time.perf_counter()
    job = worker.submit(work, label="box")
    while not job.done():  # the effect's QTimer poll
        time.sleep(0.1)
    result = job.result()
    apply_result(target, result, "replace")
    seconds = time.perf_counter() - t0
    written = segment_array(ctx, seg, sid, node).astype(bool)
    dice = float(2 * (written[k] & label[k]).sum() / (written[k].sum() + label[k].sum()))
    info = session.backend.info()
    pid = session.backend.process.server_pid
    heavy = sorted(m for m in ("torch", "torchvision", "onnxruntime", "timm", "segment_anything", "fastapi",
                               "uvicorn") if m in sys.modules)
    session.close()
    worker.shutdown()
    print(json.dumps({"voxels": int(written.sum()), "slice_voxels": int(written[k].sum()), "dice": dice,
                      "heavy_modules": heavy, "server_pid": pid, "engine": info.extra.get("engine"),
                      "process": bool(info.extra.get("process")), "seconds": seconds}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
