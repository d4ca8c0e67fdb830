"""RECIST benchmark: RECIST from DICOM SR -> DICOM SEG, seconds per lesion and per study, and the
overhead of the DICOM path against the NIfTI path on the same case (ratio).

For each dev case (pyradiomics lung1 CT, brain1 MR, the BraTS case; whole tumour) the volume is written
as a DICOM series (shuffled file names, a second series beside it) with the simulated reader's lines
every N slices stored as a TID 1500 SR. Then, each with a fresh backend (empty embedding cache, so both
encode every slice):

- NIfTI path (what ``medsamkit markers`` does): read the .nii.gz and the .mrk.json, boxes, set_volume,
  segment_plan, write the .seg.nrrd;
- DICOM path (``medsamkit recist``): index the folder, read SR and series, plan, segment, write SEG +
  .seg.nrrd + .nii.gz + CSV/JSON.

Prints per case: seconds of each path, their ratio, the DICOM-only I/O seconds (index/read + writing),
seconds per lesion, and the Dice of both routes against the label (they should agree).

    python benchmarks/bench_recist.py DEV_DATA_DIR [--every 5] [--engine auto] [--device cpu] [--cases lung1,brain1,brats]
"""
from __future__ import annotations

import argparse
import sys
import tempfile
import time
from argparse import Namespace
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "Testing" / "dicom"))
sys.path.insert(0, str(REPO))

CASES = {"lung1": ("pyradiomics/lung1.img.nii.gz", "pyradiomics/lung1.seg.nii.gz", "CT"),
         "brain1": ("pyradiomics/brain1.img.nii.gz", "pyradiomics/brain1.seg.nii.gz", "MR"),
         "brats": ("brats/brats_2013_pat0002_1.img.nii.gz", "brats/brats_2013_pat0002_1.seg.nii.gz", "MR")}


def _dice(a, b) -> float:
    a, b = np.asarray(a, bool), np.asarray(b, bool)
    return float(2 * (a & b).sum() / max(a.sum() + b.sum(), 1))


def _backend(args):
    from medsamkit.cli.options import backend_from_options

    return backend_from_options(Namespace(model=None, checkpoint=None, device=args.device, engine=args.engine,
                                       adapter=None, backend="local", server_token_file=None, server_timeout=60.0))


def run_case(name: str, data: Path, args, work: Path) -> dict:
    from dicom_fixtures import to_grid, write_study

    from medsamkit.geometry import VolumeGeometry
    from medsamkit.io import read_image
    from medsamkit.markers import boxes_from_markers, read_markers, write_markers
    from medsamkit.recist import RecistOptions, load_study, segment_study, write_study as write_outputs
    from medsamkit.segmentation_file import write_segmentation

    img_rel, seg_rel, modality = CASES[name]
    image, label = read_image(data / img_rel), read_image(data / seg_rel).array > 0
    series, markers = write_study(work / name / "study", image, label, modality, every=args.every)
    write_markers(markers, work / name / "axes.mrk.json")
    # NIfTI path
    with _backend(args) as backend:
        t0 = time.perf_counter()
        img = read_image(data / img_rel)
        plan = boxes_from_markers(read_markers(work / name / "axes.mrk.json"), VolumeGeometry.from_image(img))
        backend.set_volume(img.array, normalization="auto", modality=modality, direction=img.direction)
        ref = backend.segment_plan(plan).mask
        write_segmentation(ref, work / name / "nifti.seg.nrrd", img, [(1, "T1")])
        t_nifti = time.perf_counter() - t0
    # DICOM path
    with _backend(args) as backend:
        model = {"model": backend.info().kind, "engine": str(backend.info().extra.get("engine", ""))}
        t0 = time.perf_counter()
        study = load_study(work / name / "study")
        t_read = time.perf_counter() - t0
        results = segment_study(backend, study, RecistOptions())
        t1 = time.perf_counter()
        write_outputs(work / name / "out", study, results, model)
        t_write = time.perf_counter() - t1
        t_dicom = time.perf_counter() - t0
    ours = to_grid(results[0].mask, study.image, image)
    return {"case": name, "slices": len(plan.slices), "marked": len(plan.marked), "nifti_s": t_nifti,
            "dicom_s": t_dicom, "ratio": t_dicom / t_nifti, "read_s": t_read, "write_s": t_write,
            "lesion_s": results[0].seconds, "dice_nifti": _dice(ref, label), "dice_dicom": _dice(ours, label),
            "engine": model["engine"]}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("dev_data")
    parser.add_argument("--every", type=int, default=5)
    parser.add_argument("--engine", default="auto")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--cases", default="lung1,brain1,brats")
    args = parser.parse_args(argv)
    rows = []
    with tempfile.TemporaryDirectory(prefix="bench-recist-") as tmp:
        for name in args.cases.split(","):
            row = run_case(name, Path(args.dev_data), args, Path(tmp))
            rows.append(row)
            print(f"{name}: {row}", flush=True)
    print(f"\nRECIST from DICOM SR, simulated reader every {args.every} slices, engine {rows[0]['engine']}, "
          f"device {args.device}")
    print("| case | slices segmented (marked) | NIfTI path s | DICOM path s | ratio DICOM/NIfTI | DICOM read s | "
          "DICOM write s | s per lesion | Dice NIfTI | Dice DICOM |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['case']} | {r['slices']} ({r['marked']}) | {r['nifti_s']:.1f} | {r['dicom_s']:.1f} | "
              f"{r['ratio']:.2f} | {r['read_s']:.2f} | {r['write_s']:.2f} | {r['lesion_s']:.1f} | "
              f"{r['dice_nifti']:.4f} | {r['dice_dicom']:.4f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
