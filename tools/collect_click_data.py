"""Collect the public 2D training data of the ``litemedsam-clicks`` model from local git mirrors.

Reads images and masks straight out of bare git mirrors of public GitHub copies (``git cat-file``
at a fixed commit; nothing is downloaded here), converts them to the shared pair format
``<case>.img.png`` + ``<case>.mask.png`` (0 background / 1 object; longest side at most 512 px,
Lanczos for images, nearest for masks, never upscaled: the dev set's preprocessing) and writes
``sources.json``: for every written file its dataset, case id, source repository, commit, source
paths with their git blob ids, the licence, and the SHA-256 of the written file.

Never used for training (checked by id, and asserted again before anything is written):
every case of ``training-exclude.json`` (held-out evaluation cases), every case of a dataset it
reserves whole (``reserved_whole``, e.g. cvc_clinicdb), and every case of the development set
(``manifest.json``: kept for validation and model selection). For HC18 the whole examination
(number prefix, e.g. ``010_HC`` and ``010_2HC``) of such a case is left out, because images of
one examination look almost alike.

Usage (mirror folders are the bare git directories of the repositories named in SOURCES)::

    python tools/collect_click_data.py --out click-data --exclude DATA/training-exclude.json \
        --dev-manifest DATA/manifest.json \
        --mirror hc18=MIRRORS/rileyaquilano+Ultrasound_Final/repo \
        --mirror kvasir=MIRRORS/ViniciusSimm+Colo-Retal-Induscon2023/repo \
        --mirror ph2=MIRRORS/chelseaparlett+SkinCancerVariation/repo \
        --mirror jsrt=MIRRORS/AnishHota+JSRT-Segmentation/repo \
        --count hc18=150 --count kvasir=150 --count ph2=60 --count jsrt=50

Selection: the sorted source ids minus the excluded ones, permuted with
``numpy.random.default_rng(seed)``, first ``count`` kept (HC18: at most one image per examination).
"""
from __future__ import annotations

import argparse
import hashlib
import io
import json
import re
import subprocess
import sys
from pathlib import Path

import numpy as np

SOURCES = {
    "hc18": {
        "repository": "rileyaquilano/Ultrasound_Final",
        "commit": "97880301776e972b44d34a94087ea11ec6f0bc66",
        "licence": "CC BY 4.0 (HC18 challenge data, Zenodo DOI 10.5281/zenodo.1322001)",
        "permissive": True,
    },
    "kvasir": {
        "repository": "ViniciusSimm/Colo-Retal-Induscon2023",
        "commit": "c5846892339ad5295f05c4dbec123f7b6bbbf3e6",
        "licence": "Kvasir-SEG terms: research and educational use only; commercial use prohibited without prior "
                   "approval (Simula Research Laboratory)",
        "permissive": False,
    },
    "ph2": {
        "repository": "chelseaparlett/SkinCancerVariation",
        "commit": "e06866b70a49acfba5762f289ca169f056e97997",
        "licence": "PH2 terms: freely available for research and benchmarking purposes; cite the dataset paper",
        "permissive": False,
    },
    "jsrt": {
        "repository": "AnishHota/JSRT-Segmentation",
        "commit": "047d3193a744c4cd62b5dd1b217a6e9e63db8446",
        "licence": "JSRT database: research/educational use under the JSRT terms; SCR masks: research use, "
                   "cite van Ginneken et al. 2006",
        "permissive": False,
    },
}
JSRT_STRUCTURES = ("right_lung", "left_lung", "heart", "right_clavicle", "left_clavicle")
MAX_SIDE = 512
DEFAULT_SEED = 20261203


# ------------------------------------------------------------------------------------------ git
def git(mirror: Path, *args: str, binary: bool = False):
    out = subprocess.run(["git", "--git-dir", str(mirror), *args], check=True, capture_output=True)
    return out.stdout if binary else out.stdout.decode()


def list_files(mirror: Path, commit: str, prefix: str) -> dict:
    """{path: blob id} of the files under ``prefix`` at ``commit``."""
    out = {}
    for line in git(mirror, "ls-tree", "-r", commit, "--", prefix).splitlines():
        meta, path = line.split("\t", 1)
        out[path] = meta.split()[2]
    return out


def read_blob(mirror: Path, blob: str) -> bytes:
    return git(mirror, "cat-file", "blob", blob, binary=True)


# ------------------------------------------------------------------------------------------ images
def open_image(data: bytes):
    from PIL import Image

    return Image.open(io.BytesIO(data))


def downscale(image, mask):
    """(PIL image, (H, W) uint8 mask) -> both with the longest side <= MAX_SIDE (never upscaled)."""
    from PIL import Image

    w, h = image.size
    scale = min(1.0, MAX_SIDE / max(w, h))
    if scale < 1.0:
        size = (max(1, round(w * scale)), max(1, round(h * scale)))
        image = image.resize(size, Image.LANCZOS)
        mask = np.array(Image.fromarray(mask).resize(size, Image.NEAREST))
    return image, mask


def grey_or_rgb(image):
    if image.mode in ("L", "RGB"):
        return image
    if image.mode in ("I;16", "I", "F"):
        arr = np.asarray(image, dtype=np.float64)
        lo, hi = np.percentile(arr, [0.5, 99.5])
        return type(image).fromarray(np.clip((arr - lo) / max(hi - lo, 1e-9) * 255, 0, 255).astype(np.uint8))
    return image.convert("RGB") if "A" in image.mode or image.mode == "P" else image.convert("L")


# ------------------------------------------------------------------------------------------ datasets
def hc18_cases(mirror, commit):
    files = list_files(mirror, commit, "training_set")
    cases = {}
    for path, blob in files.items():
        m = re.match(r"training_set/(\d+_\d*HC)\.png$", path)
        if m and f"training_set/{m.group(1)}_Annotation.png" in files:
            ann = f"training_set/{m.group(1)}_Annotation.png"
            cases[m.group(1)] = [(path, blob), (ann, files[ann])]
    return cases


def hc18_read(mirror, parts):
    from scipy import ndimage

    image = grey_or_rgb(open_image(read_blob(mirror, parts[0][1])))
    outline = np.asarray(open_image(read_blob(mirror, parts[1][1])).convert("L")) > 127
    mask = ndimage.binary_fill_holes(ndimage.binary_closing(outline, iterations=2)).astype(np.uint8)
    return [("", image, mask)]


def _paired_cases(files, pattern, mask_of):
    """{case id: [(image path, blob), (mask path, blob)]} for each file matching ``pattern`` whose mask
    (``mask_of(match)``) is in ``files`` too; the case id is the pattern's first group."""
    cases = {}
    for path, blob in files.items():
        m = re.match(pattern, path)
        if m and mask_of(m) in files:
            cases[m.group(1)] = [(path, blob), (mask_of(m), files[mask_of(m)])]
    return cases


def kvasir_cases(mirror, commit):
    return _paired_cases(list_files(mirror, commit, "datasets/Kvasir-SEG"),
                         r"datasets/Kvasir-SEG/images/([^/]+)\.jpg$",
                         lambda m: f"datasets/Kvasir-SEG/masks/{m.group(1)}.jpg")


def ph2_cases(mirror, commit):
    root = "PH2Dataset/PH2 Dataset images"
    return _paired_cases(list_files(mirror, commit, root),
                         re.escape(root) + r"/(IMD\d+)/\1_Dermoscopic_Image/\1\.bmp$",
                         lambda m: f"{root}/{m.group(1)}/{m.group(1)}_lesion/{m.group(1)}_lesion.bmp")


def image_and_mask_read(mirror, parts):
    """An image and its binary mask file (Kvasir-SEG, PH2): mask = grey level >= 128."""
    image = grey_or_rgb(open_image(read_blob(mirror, parts[0][1])))
    mask = (np.asarray(open_image(read_blob(mirror, parts[1][1])).convert("L")) >= 128).astype(np.uint8)
    return [("", image, mask)]


def jsrt_cases(mirror, commit):
    files = list_files(mirror, commit, "JSRT")
    cases = {}
    for path, blob in files.items():
        m = re.match(r"JSRT/jsrt_images/images/(JPC\w+)\.IMG\.png$", path)
        if not m:
            continue
        masks = [f"JSRT/masks/masks/{s}/{m.group(1)}.gif" for s in JSRT_STRUCTURES]
        if all(p in files for p in masks):
            cases[m.group(1)] = [(path, blob)] + [(p, files[p]) for p in masks]
    return cases


def jsrt_read(mirror, parts):
    """One pair per structure (the structures overlap); the image is the same for all five."""
    from PIL import Image

    image = grey_or_rgb(open_image(read_blob(mirror, parts[0][1])))
    out = []
    for name, (path, blob) in zip(JSRT_STRUCTURES, parts[1:]):
        m = np.asarray(open_image(read_blob(mirror, blob)).convert("L")) > 127
        m = np.array(Image.fromarray(m.astype(np.uint8)).resize(image.size, Image.NEAREST))
        out.append((f"_{name}", image, m.astype(np.uint8)))
    return out


READERS = {"hc18": (hc18_cases, hc18_read), "kvasir": (kvasir_cases, image_and_mask_read),
           "ph2": (ph2_cases, image_and_mask_read), "jsrt": (jsrt_cases, jsrt_read)}


# ------------------------------------------------------------------------------------------ exclusion
def forbidden_ids(exclude_path: Path, manifest_path: Path) -> tuple[dict, set]:
    """-> ({dataset: set of case ids never to train on}, datasets reserved whole)."""
    exclude = json.loads(exclude_path.read_text(encoding="utf-8"))
    manifest = json.loads(manifest_path.read_text(encoding="utf-8"))
    ids: dict = {}
    for dataset, cases in exclude.get("cases", {}).items():
        ids.setdefault(dataset, set()).update(cases)
    if isinstance(manifest["cases"], dict):  # {dataset: [case ids]} (Testing/Data/click_training/dev-set-ids.json)
        for dataset, cases in manifest["cases"].items():
            ids.setdefault(dataset, set()).update(cases)
    else:  # the dev set's manifest.json
        for case in manifest["cases"]:
            ids.setdefault(case["dataset"], set()).add(case["case_id"])
    return ids, set(exclude.get("reserved_whole", {}))


def hc18_exam(case_id: str) -> str:
    return case_id.split("_")[0]


def is_forbidden(dataset: str, case_id: str, ids: dict, reserved: set) -> bool:
    if dataset in reserved:
        return True
    banned = ids.get(dataset, set())
    if dataset == "hc18":
        return hc18_exam(case_id) in {hc18_exam(c) for c in banned}
    return case_id in banned


def select(dataset: str, cases: dict, count: int, seed: int, ids: dict, reserved: set) -> list:
    allowed = sorted(c for c in cases if not is_forbidden(dataset, c, ids, reserved))
    order = [allowed[i] for i in np.random.default_rng([seed, sorted(SOURCES).index(dataset)]).permutation(len(allowed))]
    if dataset == "hc18":  # one image per examination
        seen, kept = set(), []
        for c in order:
            if hc18_exam(c) not in seen:
                seen.add(hc18_exam(c))
                kept.append(c)
        order = kept
    return order[:count]


# ------------------------------------------------------------------------------------------ main
def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def collect(out: Path, mirrors: dict, counts: dict, exclude: Path, dev_manifest: Path, seed: int,
            commits: dict | None = None) -> dict:
    ids, reserved = forbidden_ids(exclude, dev_manifest)
    out.mkdir(parents=True, exist_ok=True)
    records, totals = [], {}
    for dataset, mirror in sorted(mirrors.items()):
        if dataset in reserved:
            raise SystemExit(f"{dataset} is reserved whole by {exclude.name}; it can never be training data.")
        src = SOURCES[dataset]
        commit = (commits or {}).get(dataset) or src["commit"]
        list_fn, read_fn = READERS[dataset]
        cases = list_fn(Path(mirror), commit)
        chosen = select(dataset, cases, counts.get(dataset, 0), seed, ids, reserved)
        totals[dataset] = {"source_cases": len(cases), "selected": len(chosen)}
        for case_id in chosen:
            assert not is_forbidden(dataset, case_id, ids, reserved), (dataset, case_id)
            parts = cases[case_id]
            for suffix, image, mask in read_fn(Path(mirror), parts):
                image, mask = downscale(image, mask)
                if mask.sum() < 16:
                    continue
                name = f"{dataset}_{case_id}{suffix}"
                img_path, mask_path = out / f"{name}.img.png", out / f"{name}.mask.png"
                image.save(img_path)
                _save_mask(mask, mask_path)
                records.append({
                    "name": name, "dataset": dataset, "case_id": case_id, "structure": suffix.lstrip("_") or None,
                    "repository": src["repository"], "commit": commit, "licence": src["licence"],
                    "permissive": src["permissive"],
                    "source_paths": [{"path": p, "git_blob": b} for p, b in parts],
                    "files": {img_path.name: sha256(img_path), mask_path.name: sha256(mask_path)},
                })
    summary = {"format": "medsamkit-click-training-data", "seed": seed, "max_side": MAX_SIDE,
               "excluded_by": [exclude.name, dev_manifest.name], "datasets": totals,
               "pairs": len(records), "records": records}
    (out / "sources.json").write_text(json.dumps(summary, indent=1), encoding="utf-8")
    return summary


def _save_mask(mask: np.ndarray, path: Path) -> None:
    from PIL import Image

    Image.fromarray(mask.astype(np.uint8)).save(path)


def _pairs(values: list, kind=str) -> dict:
    out = {}
    for v in values or []:
        key, _, val = v.partition("=")
        if not val:
            raise SystemExit(f"expected NAME=VALUE, got {v!r}")
        if key not in SOURCES:
            raise SystemExit(f"unknown dataset {key!r}; choose from {', '.join(SOURCES)}")
        out[key] = kind(val)
    return out


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", required=True, type=Path)
    p.add_argument("--exclude", required=True, type=Path, help="training-exclude.json of the shared data")
    p.add_argument("--dev-manifest", required=True, type=Path, help="manifest.json of the development set")
    p.add_argument("--mirror", action="append", required=True, help="DATASET=bare git directory (repeatable)")
    p.add_argument("--count", action="append", help="DATASET=N images (repeatable)")
    p.add_argument("--commit", action="append", help="DATASET=commit (default: the one in SOURCES)")
    p.add_argument("--seed", type=int, default=DEFAULT_SEED)
    args = p.parse_args(argv)
    summary = collect(args.out, _pairs(args.mirror), _pairs(args.count, int), args.exclude, args.dev_manifest,
                      args.seed, _pairs(args.commit))
    print(json.dumps(summary["datasets"]), f"{summary['pairs']} pairs written to {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
