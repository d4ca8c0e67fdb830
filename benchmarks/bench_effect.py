"""The Slicer effect's model process: what it costs and what it saves, on the same slices in one run.

Everything goes through the effect's own path without Qt (medsamkit.mrml.interactive: prepare on the
"main thread", run_request on a medsamkit.mrml.session.ModelSession), on volumes loaded with slicer-core:

1. Click latency: a box on a slice, model process (ProcessBackend, ``--engine torch``) vs the same
   model in this process (LocalBackend on a Predictor), interleaved slice by slice. "cold" = the first
   box on a slice (encode + decode), "warm" = another box on it (decoder only). Goal: ratio <= 1.2.
2. First box on a viewed slice (the view prefetch ran: no encoder call, counted) vs a cold slice vs a
   warm click. Goal: viewed ~= warm (decoder time only).
3. Volume upload: a 512x512x300 int16 CT to the model process (set_volume: hash, compress, send,
   decode, session), built from the dev set's lung1 CT (its 23 slices, each shifted and with 5 HU
   Gaussian noise so no two slices are byte-identical: a compressor must not see repeats).
5. Slicer's GIL: the main thread holds the GIL the way Slicer's Qt event loop
   does (100 ms at a time inside C, then a moment of Python: the effect's poll), while the worker
   thread runs a box, through the model process and in process. Capped at 90 s per box.
4. A 40-slice marker run (one box on each of 40 distinct tumour slices of the dev set's BraTS case,
   markers request as the effect sends it) with the model process on ONNX Runtime vs on torch.
   Goal: >= 2x, identical voxels (the voxels that differ are counted).

Writes JSON (``--json``, default bench-effect.json) and prints the ratios.

    python benchmarks/bench_effect.py [--slices 4] [--markers 40] [--sections 1,2,3,4] [--device cpu]
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
DEV = Path(os.environ.get("MEDSAMKIT_DEV_DATA", REPO.parent / "shared" / "data"))


def load() -> str:
    try:
        return "load %.1f" % os.getloadavg()[0]
    except OSError:
        return "load ?"


def scene_case(ctx, image: Path, seg: Path):
    from medsamkit.io import read_image
    from medsamkit.mrml.segments import new_segmentation
    from medsamkit.mrml.volumes import load_volume, volume_geometry

    node = load_volume(ctx, image)
    label = read_image(seg).array > 0
    segmentation, _ = new_segmentation(ctx, node, segment_name="bench")
    return node, segmentation, label, volume_geometry(node)


def box_request(node, segmentation, g, label, k, session, window, pad=3, shift=0):
    from medsamkit.mrml.interactive import PromptState, prepare_slice_request, volume_key
    from medsamkit.mrml.volumes import volume_plane_slice_to_ras

    ys, xs = np.nonzero(label[k])
    corners = [g.ijk_to_ras_points(g.slice_to_ijk([xy], k, 0))[0]
               for xy in ((xs.min() - pad - shift, ys.min() - pad), (xs.max() + pad + shift, ys.max() + pad))]
    prompt = PromptState().set_box(node, volume_plane_slice_to_ras(g, 0, k), *corners)
    return prepare_slice_request(node, segmentation, prompt, window=window,
                                 whole_volume=not session.holds_volume(volume_key(node)))


def timed(fn):
    t0 = time.perf_counter()
    out = fn()
    return out, 1000 * (time.perf_counter() - t0)


def section_clicks(ctx, process, local, n_slices):
    """1 and 2: cold / warm clicks process vs in-process, then viewed vs cold slices in the process."""
    from medsamkit.mrml.interactive import prepare_view_request, run_request, run_view_request
    from medsamkit.mrml.volumes import volume_plane_slice_to_ras

    node, seg, label, g = scene_case(ctx, DEV / "pyradiomics/lung1.img.nii.gz", DEV / "pyradiomics/lung1.seg.nii.gz")
    tumour = [int(k) for k in np.nonzero(label.any((1, 2)))[0]]
    # the tumour slices, then neighbours with the tumour's box (a realistic box, never an empty slice)
    ks = tumour + [k for k in range(tumour[0] - 1, -1, -1)] + [k for k in range(tumour[-1] + 1, label.shape[0])]
    box_label = np.zeros_like(label)
    for k in ks:
        box_label[k] = label[k] if label[k].any() else label[tumour[len(tumour) // 2]]
    from medsamkit.mrml.interactive import NormalizationCache, volume_key
    from medsamkit.mrml.volumes import array_from_volume

    volume = array_from_volume(node, copy=True)
    norm = NormalizationCache().resolve(node, volume, "lung")
    for session in (local, process):  # both hold the volume before the first click (upload: section 3)
        session.use_volume(volume_key(node), volume, norm)
    use = ks[:2 * n_slices + 2]
    click_ks, view_ks = use[:n_slices], use[n_slices:2 * n_slices]
    for session in (local, process):  # warm-up off the table: first-call allocations of each engine
        for shift in (0, 2):
            run_request(session, box_request(node, seg, g, box_label, use[-1], session, "lung", shift=shift))
    rows = []
    print(f"\n## 1. Click latency on lung1 (512x512 CT), effect path, ms [{load()}]")
    print(f"{'slice':>5s} {'cold local':>11s} {'cold proc':>10s} {'warm local':>11s} {'warm proc':>10s} | same mask")
    for k in click_ks:
        row = {"slice": k}
        for kind in ("cold", "warm"):
            for name, session in (("local", local), ("process", process)):
                req = box_request(node, seg, g, box_label, k, session, "lung", shift=0 if kind == "cold" else 2)
                res, ms = timed(lambda: run_request(session, req))
                row[f"{kind}_{name}_ms"] = ms
                row[f"{kind}_{name}_mask"] = res.prediction.mask
        same = all(np.array_equal(row.pop(f"{kind}_local_mask"), row.pop(f"{kind}_process_mask"))
                   for kind in ("cold", "warm"))
        row["same_masks"] = same
        rows.append(row)
        print(f"{k:5d} {row['cold_local_ms']:11.1f} {row['cold_process_ms']:10.1f} {row['warm_local_ms']:11.1f} "
              f"{row['warm_process_ms']:10.1f} | {same} [{load()}]", flush=True)
    med = {key: statistics.median(r[key] for r in rows) for key in rows[0] if key.endswith("_ms")}
    clicks = {"slices": rows, "median_ms": med, "ratio_cold": med["cold_process_ms"] / med["cold_local_ms"],
              "ratio_warm": med["warm_process_ms"] / med["warm_local_ms"],
              "same_masks": all(r["same_masks"] for r in rows)}
    print(f"median: cold {med['cold_process_ms']:.0f} vs {med['cold_local_ms']:.0f} ms (x{clicks['ratio_cold']:.2f}), "
          f"warm {med['warm_process_ms']:.1f} vs {med['warm_local_ms']:.1f} ms (x{clicks['ratio_warm']:.2f}); goal <= 1.2")

    print(f"\n## 2. First box on a viewed slice (view prefetch) vs a cold slice, model process, ms [{load()}]")
    backend = process.backend
    viewed = []
    for k in view_ks:
        request = prepare_view_request(node, volume_plane_slice_to_ras(g, 0, k), "lung", None, process)
        before = backend.stats()
        assert run_view_request(process, request)
        while True:  # the user looks at the slice; the model process encodes it meanwhile
            st = backend.stats()
            if st["prefetch"]["requested"] > before["prefetch"]["requested"] and not st["prefetch"]["pending"] \
                    and not st["prefetch"]["running"]:
                break
            time.sleep(0.05)
        calls = st["encoder_calls"]
        _, ms = timed(lambda: run_request(process, box_request(node, seg, g, box_label, k, process, "lung")))
        viewed.append({"slice": k, "box_ms": ms, "encoder_calls_at_box": backend.stats()["encoder_calls"] - calls})
        print(f"viewed slice {k}: first box {ms:.1f} ms, encoder calls at box time "
              f"{viewed[-1]['encoder_calls_at_box']} [{load()}]", flush=True)
    cold = [r["cold_process_ms"] for r in rows]
    first = {"viewed": viewed, "viewed_median_ms": statistics.median(v["box_ms"] for v in viewed),
             "cold_median_ms": statistics.median(cold), "warm_median_ms": med["warm_process_ms"]}
    first["viewed_vs_warm"] = first["viewed_median_ms"] / first["warm_median_ms"]
    first["cold_vs_viewed"] = first["cold_median_ms"] / first["viewed_median_ms"]
    print(f"viewed {first['viewed_median_ms']:.1f} ms vs cold {first['cold_median_ms']:.0f} ms "
          f"(x{first['cold_vs_viewed']:.1f} faster); vs a warm click (decoder only) {first['warm_median_ms']:.1f} ms "
          f"(x{first['viewed_vs_warm']:.2f}); encoder calls at box time: "
          f"{sum(v['encoder_calls_at_box'] for v in viewed)}")
    return clicks, first


def section_gil(ctx, process, local, cap_s=90.0):
    """5: a box while the main thread holds the GIL like Slicer's event loop."""
    import ctypes

    from medsamkit.mrml.interactive import run_request
    from medsamkit.mrml.session import Worker

    hold = ctypes.PyDLL(None).usleep  # PyDLL: the call keeps the GIL, as C++ code of the Qt loop does
    node, seg, label, g = scene_case(ctx, DEV / "pyradiomics/lung1.img.nii.gz", DEV / "pyradiomics/lung1.seg.nii.gz")
    tumour = [int(k) for k in np.nonzero(label.any((1, 2)))[0]]
    k_cold = {"process": 20, "local": 21}
    out = {}
    print(f"\n## 5. A box while the main thread holds the GIL 100 ms at a time (Slicer's event loop), ms [{load()}]")
    worker = Worker()
    try:
        for kind in ("warm", "cold"):
            for name, session in (("local", local), ("process", process)):
                k = tumour[0] if kind == "warm" else k_cold[name]
                box_label = label if label[k].any() else np.repeat(label[tumour[:1]], label.shape[0], axis=0)
                if kind == "warm":  # encode first, off the clock
                    run_request(session, box_request(node, seg, g, box_label, k, session, "lung"))
                request = box_request(node, seg, g, box_label, k, session, "lung", shift=1)
                t0 = time.perf_counter()
                job = worker.submit(run_request, session, request)
                while not job.done() and time.perf_counter() - t0 < cap_s:
                    hold(100_000)      # the Qt loop: C++ with the GIL held
                    time.sleep(0.001)  # the poll timer's Python
                seconds = time.perf_counter() - t0
                if not job.done():
                    job.cancel()
                    while not job.done():
                        time.sleep(0.05)  # let it finish (GIL free now) before the next run
                out[f"{kind}_{name}_s"] = seconds if seconds < cap_s else None
                print(f"{kind:4s} {name:8s}: {'> %g s (capped)' % cap_s if seconds >= cap_s else '%.2f s' % seconds}"
                      f" [{load()}]", flush=True)
    finally:
        worker.shutdown()
    return out


def section_upload(process):  # process: the ModelSession
    from medsamkit.io import read_image

    lung = read_image(DEV / "pyradiomics/lung1.img.nii.gz").array
    rng = np.random.default_rng(0)
    vol = np.empty((300, 512, 512), np.int16)
    for k in range(300):
        plane = np.roll(lung[k % lung.shape[0]], (k // lung.shape[0], 2 * (k // lung.shape[0])), axis=(0, 1))
        vol[k] = np.clip(plane + rng.normal(0, 5, plane.shape), -32768, 32767).astype(np.int16)
    print(f"\n## 3. Volume upload to the model process: {vol.shape} {vol.dtype}, {vol.nbytes / 2**20:.0f} MiB [{load()}]")
    backend = process.backend
    sent0 = backend._remote.bytes_sent
    _, ms = timed(lambda: backend.set_volume(vol, "lung"))
    sent = backend._remote.bytes_sent - sent0
    process._held = None  # set behind the session's back: it must not think it holds lung1 any more
    out = {"shape": list(vol.shape), "mib": vol.nbytes / 2**20, "seconds": ms / 1000, "sent_mib": sent / 2**20,
           "mib_per_s": vol.nbytes / 2**20 / (ms / 1000)}
    print(f"set_volume {out['seconds']:.2f} s ({out['mib_per_s']:.0f} MiB/s; {out['sent_mib']:.0f} MiB on the wire "
          f"after compression) [{load()}]")
    return out


def section_markers(ctx, n, device):
    from medsamkit.backend.process import ProcessBackend
    from medsamkit.markers import BoxPlan
    from medsamkit.mrml.session import ModelSession
    from medsamkit.mrml.interactive import prepare_volume_request, run_request

    node, seg, label, g = scene_case(ctx, DEV / "brats/brats_2013_pat0002_1.img.nii.gz",
                                     DEV / "brats/brats_2013_pat0002_1.seg.nii.gz")
    ks = [int(k) for k in np.nonzero(label.any((1, 2)))[0]][:n]
    boxes = {}
    for k in ks:
        ys, xs = np.nonzero(label[k])
        boxes[k] = np.array([xs.min() - 2, ys.min() - 2, xs.max() + 2, ys.max() + 2], dtype=np.float64)
    plan = BoxPlan(0, boxes, ks)
    print(f"\n## 4. Marker run, {len(ks)} distinct BraTS tumour slices, effect path, model process [{load()}]")
    out, masks = {"slices": len(ks)}, {}
    for engine in ("torch", "onnx"):
        backend = ProcessBackend(engine=engine, device=device)
        session = ModelSession(backend)
        try:
            _, start_ms = timed(lambda: backend.start())
            request = prepare_volume_request(node, seg, "markers", "auto", plan=plan)
            res, ms = timed(lambda: run_request(session, request))
            info = backend.info()
            calls = backend.stats()["encoder_calls"]
        finally:
            session.close()
        masks[engine] = res.placement.mask
        out[engine] = {"seconds": ms / 1000, "start_s": start_ms / 1000, "engine": info.extra.get("engine"),
                       "encoder_calls": calls, "voxels": int(res.placement.mask.sum())}
        print(f"{engine:6s} ({info.extra.get('engine')}): {ms / 1000:6.1f} s ({ms / 1000 / len(ks):.2f} s/slice), "
              f"{calls} encodes, {out[engine]['voxels']} voxels; process start {start_ms / 1000:.1f} s [{load()}]",
              flush=True)
    diff = int((masks["torch"] != masks["onnx"]).sum())
    out["speedup"] = out["torch"]["seconds"] / out["onnx"]["seconds"]
    out["voxels_differing"] = diff
    out["identical"] = diff == 0
    print(f"onnx vs torch: x{out['speedup']:.2f} (goal >= 2); voxels differing: {diff} "
          f"({'identical' if diff == 0 else 'not identical'})")
    return out


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--slices", type=int, default=4, help="slices for the click and viewed-slice sections")
    parser.add_argument("--markers", type=int, default=40, help="slices of the marker run")
    parser.add_argument("--sections", default="1,2,3,4,5")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--json", default="bench-effect.json")
    args = parser.parse_args(argv)
    sections = {int(s) for s in args.sections.split(",")}
    if not (DEV / "manifest.json").is_file():
        print(f"The dev set was not found at {DEV}; set MEDSAMKIT_DEV_DATA.", file=sys.stderr)
        return 2

    import torch

    from medsamkit.backend.local import LocalBackend
    from medsamkit.backend.process import ProcessBackend
    from medsamkit.models import load_model
    from medsamkit.mrml.context import make_context, quiet_vtk
    from medsamkit.mrml.session import ModelSession
    from medsamkit.predictor import Predictor

    quiet_vtk("ERROR")
    ctx = make_context()
    report = {"machine": {"platform": platform.platform(), "cpus": os.cpu_count(), "torch": torch.__version__,
                          "device": args.device, "load_at_start": load()}}
    print(f"bench_effect: {report['machine']}")
    if sections & {1, 2, 3, 5}:
        local = ModelSession(LocalBackend(predictor=Predictor(load_model("litemedsam", device=args.device,
                                                                         engine="torch"))))
        process = ModelSession(ProcessBackend(engine="torch", device=args.device))
        try:
            _, start_ms = timed(lambda: process.backend.start())
            report["process_start_s"] = start_ms / 1000
            print(f"model process started in {start_ms / 1000:.1f} s (torch engine) [{load()}]")
            if sections & {1, 2}:
                report["clicks"], report["first_box"] = section_clicks(ctx, process, local, args.slices)
            if 3 in sections:
                report["upload"] = section_upload(process)
            if 5 in sections:
                report["gil"] = section_gil(ctx, process, local)
        finally:
            process.close()
    if 4 in sections:
        report["markers"] = section_markers(ctx, args.markers, args.device)
    report["machine"]["load_at_end"] = load()
    Path(args.json).write_text(json.dumps(report, indent=1, default=float))
    print(f"\nwrote {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
