"""What the MRML layer costs on top of the engine, and the headless batch's wall time.

1. Box -> segment update for one slice (dev CT, slice 11, lung window):
   - engine alone: ``Predictor.set_image`` + ``predict`` on the slice array (what the CLI does);
   - MRML layer: RAS corners -> pixel box (``PromptState.set_box``), ``prepare_slice_request`` (slice copy,
     window), ``run_request`` (the same engine calls), ``apply_result`` (modifier labelmap, editor logic,
     undo state). Warm = the slice's embedding is cached (every prompt after the first on a slice);
     cold = first prompt on the slice (encoder included). The layer's own cost is timed directly (prompt +
     prepare + apply, everything but the engine call); overhead ratio = (engine + layer) / engine, because
     on a loaded machine the engine's own time varies far more than the layer adds.
   - the same on a large synthetic volume (512 x 512 x 160) to show how the write path scales.
2. Batch: ``medsamkit/cli/batch.py`` as a subprocess on the dev CT with reader lines on slices 10 and 12
   (model load and Slicer's readers/writers included), against ``segment_volume`` in-process.

    python benchmarks/bench_mrml.py [--quick] [--device cpu|cuda] [--repeats N] [--json OUT]
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
DATA = REPO / "medsamkit" / "data"


def _median_ms(fn, repeats):
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append((time.perf_counter() - t0) * 1000)
    return statistics.median(times)


def box_to_segment(predictor, ctx, node, box, k, window, repeats, label):
    from medsamkit.backend.local import LocalBackend
    from medsamkit.mrml.session import ModelSession
    from medsamkit.mrml.interactive import PromptState, apply_result, prepare_slice_request, run_request
    from medsamkit.mrml.segments import EditorLogicTarget, new_segmentation
    from medsamkit.mrml.volumes import array_from_volume, volume_geometry, volume_plane_slice_to_ras
    from medsamkit.preprocess import resolve_normalization

    engine = ModelSession(LocalBackend(predictor=predictor))  # in process, as "engine alone"; the slice only
    g = volume_geometry(node)
    view = volume_plane_slice_to_ras(g, 0, k)
    a, b = g.ijk_to_ras_points(g.slice_to_ijk([box[:2], box[2:]], k, 0))
    seg, sid = new_segmentation(ctx, node)
    target = EditorLogicTarget(ctx, seg, node, sid)
    image = array_from_volume(node)[k].copy()
    norm = resolve_normalization(window, image)
    parts = {"prompt": [], "prepare": [], "run": [], "apply": []}

    def engine_alone():
        predictor.set_image(image, norm)
        predictor.predict(box=box)

    def mrml():
        t = [time.perf_counter()]
        prompt = PromptState().set_box(node, view, a, b)
        t.append(time.perf_counter())
        request = prepare_slice_request(node, seg, prompt, window=norm)
        t.append(time.perf_counter())
        result = run_request(engine, request)
        t.append(time.perf_counter())
        apply_result(target, result, "replace")
        t.append(time.perf_counter())
        for key, t0, t1 in zip(parts, t[:-1], t[1:]):
            parts[key].append((t1 - t0) * 1000)

    predictor.cache.clear()
    t0 = time.perf_counter()
    engine_alone()
    cold_engine = (time.perf_counter() - t0) * 1000
    predictor.cache.clear()
    t0 = time.perf_counter()
    mrml()
    cold_mrml = (time.perf_counter() - t0) * 1000
    for v in parts.values():
        v.clear()
    engine_ms, mrml_ms = [], []
    for _ in range(repeats):  # interleaved, so that load drift on a busy machine hits both alike
        engine_ms.append(_median_ms(engine_alone, 1))
        mrml_ms.append(_median_ms(mrml, 1))
    warm_engine, warm_mrml = statistics.median(engine_ms), statistics.median(mrml_ms)
    layer = statistics.median([a + b + c for a, b, c in zip(parts["prompt"], parts["prepare"], parts["apply"])])
    row = {"case": label, "shape": list(node.GetImageData().GetDimensions())[::-1],
           "engine_warm_ms": warm_engine, "mrml_warm_ms": warm_mrml, "layer_ms": layer,
           "ratio_warm": (warm_engine + layer) / warm_engine, "engine_cold_ms": cold_engine, "mrml_cold_ms": cold_mrml,
           "ratio_cold": (cold_engine + layer) / cold_engine, **{f"{k}_ms": statistics.median(v) for k, v in parts.items()}}
    return row


def batch_wall_time(device, tmp):
    from medsamkit.geometry import VolumeGeometry
    from medsamkit.io import read_image
    from medsamkit.markers import boxes_from_markers, write_markers
    from medsamkit.models import load_model
    from medsamkit.predictor import Predictor
    from medsamkit.simulated_reader import simulate_markers
    from medsamkit.volume_segmentation import segment_volume

    ref = read_image(DATA / "sample_lung_ct.label.nii.gz")
    geometry = VolumeGeometry.from_image(ref)
    markers = simulate_markers(ref.array > 0, geometry, 0, slices=[10, 12])
    write_markers(markers, Path(tmp) / "ct.mrk.json")
    env = dict(os.environ, PYTHONPATH=str(REPO), MEDSAMKIT_DEVICE=device)
    cmd = [sys.executable, str(REPO / "medsamkit" / "cli" / "batch.py"), "--volume", str(DATA / "sample_lung_ct.nii.gz"),
           "--markers", str(Path(tmp) / "ct.mrk.json"), "--out", str(Path(tmp) / "ct.seg.nrrd"), "--window", "lung",
           "--device", device, "--reference", str(DATA / "sample_lung_ct.label.nii.gz"), "--quiet"]
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env)
    wall = time.perf_counter() - t0
    if proc.returncode != 0:
        raise SystemExit(f"batch failed: {proc.stderr}")
    t0 = time.perf_counter()
    predictor = Predictor(load_model(device=device))
    load = time.perf_counter() - t0
    image = read_image(DATA / "sample_lung_ct.nii.gz")
    t0 = time.perf_counter()
    segment_volume(predictor, image.array, boxes_from_markers(markers, geometry), normalization="lung")
    seg = time.perf_counter() - t0
    line = [s for s in proc.stdout.splitlines() if "Dice" in s]
    return {"batch_wall_s": wall, "engine_load_s": load, "engine_segment_volume_s": seg,
            "batch_summary": line[0].split(": ", 1)[-1] if line else ""}


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--quick", action="store_true", help="fewer repeats, no large volume")
    p.add_argument("--device", default="cpu", help="cpu (default) or cuda")
    p.add_argument("--repeats", type=int, default=None)
    p.add_argument("--json", default=None, help="also write the figures here")
    args = p.parse_args()
    repeats = args.repeats or (3 if args.quick else 10)

    from medsamkit.models import load_model
    from medsamkit.mrml.context import make_context, quiet_vtk
    from medsamkit.mrml.volumes import load_volume

    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "Testing"))
    from mrml_fixtures import add_volume_from_array  # the test helper: a volume node from an array
    from medsamkit.io import read_image
    from medsamkit.predictor import Predictor

    quiet_vtk()
    predictor = Predictor(load_model(device=args.device))
    ctx = make_context()
    node = load_volume(ctx, DATA / "sample_lung_ct.nii.gz")
    label = read_image(DATA / "sample_lung_ct.label.nii.gz").array > 0
    ys, xs = np.nonzero(label[11])
    box = np.array([xs.min() - 3, ys.min() - 3, xs.max() + 3, ys.max() + 3], dtype=float)
    rows = [box_to_segment(predictor, ctx, node, box, 11, "lung", repeats, "dev CT 224x224x23")]
    if not args.quick:
        big = np.random.default_rng(0).integers(10, 70, (160, 512, 512), dtype=np.int16)  # 84 MB
        big[80, 200:300, 220:320] += 300
        m = np.diag([0.7, 0.7, 1.25, 1.0])
        bnode = add_volume_from_array(ctx.scene, big, m, "big")
        del big
        rows.append(box_to_segment(predictor, ctx, bnode, np.array([210.0, 190, 330, 310]), 80, "soft-tissue",
                                   repeats, "synthetic 512x512x160"))
    print(f"Box -> segment update, one slice, device {args.device}, median of {repeats} (ms):")
    print(f"{'case':24s} {'engine':>8s} {'MRML':>8s} {'layer':>7s} {'ratio':>6s} | {'cold eng':>9s} {'cold MRML':>9s} "
          f"{'ratio':>6s} | prompt prepare run apply")
    for r in rows:
        print(f"{r['case']:24s} {r['engine_warm_ms']:8.1f} {r['mrml_warm_ms']:8.1f} {r['layer_ms']:7.1f} "
              f"{r['ratio_warm']:6.3f} | {r['engine_cold_ms']:9.1f} {r['mrml_cold_ms']:9.1f} {r['ratio_cold']:6.3f} | "
              f"{r['prompt_ms']:.1f} {r['prepare_ms']:.1f} {r['run_ms']:.1f} {r['apply_ms']:.1f}")
    with tempfile.TemporaryDirectory() as tmp:
        b = batch_wall_time(args.device, tmp)
    print(f"Batch (subprocess, dev CT, lines on slices 10 and 12 -> 3 slices): {b['batch_wall_s']:.1f} s wall "
          f"[{b['batch_summary']}]; in-process engine: model load {b['engine_load_s']:.1f} s + segment_volume "
          f"{b['engine_segment_volume_s']:.1f} s")
    if args.json:
        Path(args.json).write_text(json.dumps({"box_to_segment": rows, "batch": b}, indent=2))


if __name__ == "__main__":
    main()
