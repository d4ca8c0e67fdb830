"""Prompt-record benchmark: record overhead, replay time, review-queue precision on the dev 3D cases.

1. Recording overhead per result, as a ratio to that result's model time (goal < 1 %):
   - the Segment Editor path (medsamkit.mrml: apply_result -> record_result, the segment tag with the
     segment snapshot) for a box on a new slice (encoder + decoder) and a refinement click (decoder only);
   - the CLI path (cli_records.volume_record + the .prompts.json sidecar) for a markers run.
2. Replay time of the markers run vs the original run (same model; voxel-identical is checked).
3. Review ranking on dev 3D marker runs (simulated reader every 5 slices, medsamkit.simulated_reader): among the
   20 % of slices ranked first, the share that are among the run's 20 % worst-Dice slices (chance = 0.2).

    python benchmarks/bench_records.py [DEV_DATA_DIR] [--every 5] [--skip-review]
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "Testing" / "records"))
CT = REPO / "medsamkit" / "data" / "sample_lung_ct.nii.gz"
CT_LABEL = REPO / "medsamkit" / "data" / "sample_lung_ct.label.nii.gz"


def mrml_overhead(predictor, repeats: int = 3) -> list[tuple[str, float, float]]:
    from medsamkit.mrml.context import make_context, quiet_vtk
    from medsamkit.backend.local import LocalBackend
    from medsamkit.mrml.session import ModelSession
    from medsamkit.mrml.interactive import PromptState, apply_result, prepare_slice_request, run_request
    from medsamkit.mrml.segments import EditorLogicTarget, new_segmentation
    from medsamkit.mrml.volumes import load_volume, volume_geometry, volume_plane_slice_to_ras

    quiet_vtk("ERROR")
    ctx = make_context()
    node = load_volume(ctx, CT)
    seg, sid = new_segmentation(ctx, node, segment_name="tumour")
    target = EditorLogicTarget(ctx, seg, node, sid)
    g = volume_geometry(node)
    engine = ModelSession(LocalBackend(predictor=predictor))
    rows = []
    for k in (10, 11, 12)[:repeats]:
        view = volume_plane_slice_to_ras(g, 0, k)
        ras = [g.ijk_to_ras_points(g.slice_to_ijk([xy], k, 0))[0] for xy in ((92, 93), (123, 122), (121, 120))]
        state = PromptState()
        prompt = state.set_box(node, view, ras[0], ras[1])
        predictor.cache.clear()
        res = run_request(engine, prepare_slice_request(node, seg, prompt, window="lung"))
        apply_result(target, res)
        from medsamkit.mrml.records import get_record

        entry = get_record(seg, sid)["entries"][-1]
        del entry
        overhead = _last_overhead(target, res)
        rows.append(("effect: box on a new slice (encode + decode)", res.seconds, overhead))
        state.remember(res)
        prompt = state.add_point(node, view, ras[2], positive=False)
        res = run_request(engine, prepare_slice_request(node, seg, prompt, window="lung", mask_input=state.previous))
        apply_result(target, res)
        rows.append(("effect: refinement click (decode only)", res.seconds, _last_overhead(target, res)))
    ctx.scene.Clear(1)
    return rows


def _last_overhead(target, result) -> float:
    """Time of one record_result call on the same result (re-run; the entry it adds is then dropped)."""
    from medsamkit.mrml.records import get_record, record_result, set_record

    before = get_record(target.segmentation_node, target.segment_id)
    t0 = time.perf_counter()
    record_result(target, result)
    seconds = time.perf_counter() - t0
    set_record(target.segmentation_node, target.segment_id, before)
    return seconds


def cli_overhead_and_replay(predictor, tmp: Path):
    from types import SimpleNamespace

    from medsamkit.backend.local import LocalBackend
    from medsamkit.cli.records import volume_record, write_record_outputs
    from medsamkit.geometry import VolumeGeometry
    from medsamkit.io import read_image
    from medsamkit.markers import boxes_from_markers
    from medsamkit.simulated_reader import simulate_markers
    from medsamkit.records.replay import replay

    image = read_image(CT)
    label = read_image(CT_LABEL).array > 0
    geom = VolumeGeometry.from_image(image)
    markers = simulate_markers(label, geom, axis=0, every=2)
    plan = boxes_from_markers(markers, geom, axis=0)
    backend = LocalBackend(predictor=predictor)
    predictor.cache.clear()
    t0 = time.perf_counter()
    backend.set_volume(image.array, normalization="lung", direction=image.direction)
    res = backend.segment_plan(plan)
    model_s = time.perf_counter() - t0
    args = SimpleNamespace(window="lung", backend="local")
    t0 = time.perf_counter()
    record = volume_record("markers", args, image, backend, res, model_s, "tumour", plan=plan, markers=markers,
                           options={"refine": False})
    write_record_outputs(tmp / "lung.seg.nrrd", record)
    overhead = time.perf_counter() - t0
    predictor.cache.clear()  # replay from scratch, as a new process would
    out = replay(backend, record, image)
    return ("CLI: markers run, 3 slices (record + sidecar)", model_s, overhead), (model_s, out.seconds,
                                                                                 out.all_identical)


def review(predictor, dev_dir: Path, every: int):
    from dev_runs import marker_runs

    from medsamkit.records.review import precision_at

    rows, hits, total = [], 0, 0
    for r in marker_runs(predictor, dev_dir, every=every):
        prec, chance = precision_at(r["queue"], r["dice"])
        n = max(1, int(round(0.2 * len(r["dice"]))))
        hits, total = hits + prec * n, total + n
        rows.append((r["case"], r["label"], len(r["dice"]), n, prec, float(np.mean(list(r["dice"].values())))))
        print(f"  {r['case']:<24} label {r['label']}: {len(r['dice']):3d} slices, top {n:2d}: precision {prec:.2f} "
              f"(chance {chance:.2f}), mean slice Dice {rows[-1][5]:.3f}, {r['seconds']:.0f} s", flush=True)
    return rows, hits / max(total, 1)


def main(argv=None) -> int:
    import tempfile

    from medsamkit.models import load_model
    from medsamkit.predictor import Predictor

    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("dev_dir", nargs="?", default=str(REPO.parent / "shared" / "data"))
    p.add_argument("--every", type=int, default=5)
    p.add_argument("--skip-review", action="store_true")
    p.add_argument("--engine", default="torch")
    args = p.parse_args(argv)
    predictor = Predictor(load_model("litemedsam", device="cpu", engine=args.engine))
    print("1. recording overhead per result (ratio to the model time; goal < 1 %)")
    rows = mrml_overhead(predictor)
    with tempfile.TemporaryDirectory() as tmp:
        cli_row, (orig_s, replay_s, same) = cli_overhead_and_replay(predictor, Path(tmp))
    rows.append(cli_row)
    for name in dict.fromkeys(r[0] for r in rows):
        sel = [r for r in rows if r[0] == name]
        model_s, over_s = np.median([r[1] for r in sel]), np.median([r[2] for r in sel])
        print(f"  {name:<50} model {model_s * 1000:8.1f} ms, record {over_s * 1000:6.2f} ms, "
              f"ratio {100 * over_s / model_s:5.2f} %")
    print("2. replay of the markers run (same model, cold embedding cache)")
    print(f"  original {orig_s:.2f} s, replay {replay_s:.2f} s, ratio {replay_s / orig_s:.2f}; "
          f"voxel-identical: {same}")
    if not args.skip_review:
        print(f"3. review queue precision at 20 % on the dev 3D marker runs (every {args.every} slices)")
        _, pooled = review(predictor, Path(args.dev_dir), args.every)
        print(f"  pooled precision at 20 %: {pooled:.2f} (chance 0.20)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
