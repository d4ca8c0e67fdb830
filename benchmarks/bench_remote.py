"""Remote backend on loopback: per-click round trip (remote vs local), bytes per click, 4-client throughput.

Starts ``medsamkit serve`` on 127.0.0.1 (a free port) unless --url names a running server, then
measures on the bundled lung CT (a 224x224 slice of a 23-slice volume) and a 447x512 RGB
endoscopy image from Testing/Data:

- click round trip: median over --clicks prompts on an already encoded slice (decoder + transport),
  remote vs the same prompts on a LocalBackend in this process (same device), both submitted to a
  worker thread as the Slicer effect does;
- first click on a new slice (includes the encoding) and the one-time upload;
- bytes per click (HTTP bodies; headers add ~0.3 KB each way) against a naive protocol that sends
  the slice with every click and gets the full uint8 mask back;
- throughput: clicks/s with --clients concurrent clients (own sessions, warm embeddings) vs one.

    python benchmarks/bench_remote.py --quick                # CPU, fewer clicks
    python benchmarks/bench_remote.py --device cuda          # server and local model on the GPU
"""
from __future__ import annotations

import argparse
import json
import os
import re
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))


def start_server(device: str, engine: str, log_dir: Path):
    log = log_dir / "serve.log"
    env = dict(os.environ, PYTHONPATH=str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    with open(log, "wb") as out:
        proc = subprocess.Popen([sys.executable, "-m", "medsamkit", "serve", "--host", "127.0.0.1", "--port", "0",
                                 "--device", device, "--engine", engine, "--max-sessions", "16"],
                                stdout=out, stderr=subprocess.STDOUT,
                                env=env)
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline:
        m = re.search(r"listening on (http://127\.0\.0\.1:\d+)", log.read_text(errors="replace"))
        if m:
            return proc, m.group(1)
        if proc.poll() is not None:
            break
        time.sleep(0.2)
    proc.kill()
    raise SystemExit(f"server did not start:\n{log.read_text(errors='replace')[-2000:]}")


def load_inputs():
    from PIL import Image

    from medsamkit.io import read_image

    ct = read_image(REPO / "medsamkit" / "data" / "sample_lung_ct.nii.gz").array
    label = read_image(REPO / "medsamkit" / "data" / "sample_lung_ct.label.nii.gz").array > 0
    k = int(np.argmax(label.sum(axis=(1, 2))))
    ys, xs = np.nonzero(label[k])
    ct_box = [float(xs.min() - 3), float(ys.min() - 3), float(xs.max() + 3), float(ys.max() + 3)]
    data = REPO / "Testing" / "Data"
    rgb = np.array(Image.open(data / "cju1aqqv02qwz0878a5cyhr67.img.png"))
    return [
        {"name": "CT slice 224x224 (int16 volume 23x224x224)", "kind": "volume", "array": ct, "norm": "lung",
         "slice": dict(slice_index=k, axis=0), "box": ct_box, "slice_bytes": ct[k].nbytes, "hw": ct.shape[1:]},
        {"name": "RGB image 447x512", "kind": "image", "array": rgb, "norm": "auto", "slice": {},
         "box": [213.0, 239.0, 370.0, 396.0], "slice_bytes": rgb.nbytes, "hw": rgb.shape[:2]},
    ]


def click_prompts(box, n: int) -> list[dict]:
    """n prompts a user might make on one slice: jittered boxes and a box + click."""
    rng = np.random.default_rng(0)
    out = []
    x0, y0, x1, y1 = box
    for i in range(n):
        j = rng.uniform(-3, 3, 4)
        b = [x0 + j[0], y0 + j[1], x1 + j[2], y1 + j[3]]
        if i % 2:
            out.append(dict(box=b, points=[[(x0 + x1) / 2, (y0 + y1) / 2]], point_labels=[1]))
        else:
            out.append(dict(box=b))
    return out


def open_image(backend, case):
    if case["kind"] == "volume":
        return backend.set_volume(case["array"], normalization=case["norm"])
    return backend.set_image(case["array"], normalization=case["norm"])


def time_clicks(local, remote, case, prompts, worker) -> dict:
    """Each click as the Slicer effect makes it (submitted to the backend's worker thread, awaited),
    local and remote alternately so both see the same machine load."""
    out = {"local": [], "remote": [], "server": [], "local_preds": [], "remote_preds": []}
    for i, p in enumerate(prompts):
        order = (("local", local), ("remote", remote)) if i % 2 == 0 else (("remote", remote), ("local", local))
        for name, backend in order:
            t = time.perf_counter()
            pred = worker.submit(backend.predict, **p, **case["slice"]).result(timeout=600)
            out[name].append(time.perf_counter() - t)
            out[f"{name}_preds"].append(pred)
            if name == "remote":
                out["server"].append(pred.server_ms / 1000)
    return out


def throughput(url: str, case, clients: int, clicks: int) -> float:
    from medsamkit.backend.remote import RemoteBackend

    backends = [RemoteBackend(url, timeout=120) for _ in range(clients)]
    try:
        for b in backends:
            open_image(b, case)
            b.predict(box=case["box"], **case["slice"])  # warm: embedding cached in each session
        prompts = click_prompts(case["box"], clicks)
        barrier = threading.Barrier(clients + 1)

        def run(b):
            barrier.wait()
            for p in prompts:
                b.predict(**p, **case["slice"])

        threads = [threading.Thread(target=run, args=(b,)) for b in backends]
        for t in threads:
            t.start()
        barrier.wait()
        t0 = time.perf_counter()
        for t in threads:
            t.join()
        return clients * clicks / (time.perf_counter() - t0)
    finally:
        for b in backends:
            b.close()


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--url", default=None, help="a running server (default: start one on 127.0.0.1)")
    ap.add_argument("--device", default="cpu", help="cpu or cuda (server and local model)")
    ap.add_argument("--engine", default="torch", choices=("torch", "onnx", "auto"),
                    help="inference engine of both the server and the local model (default torch)")
    ap.add_argument("--clicks", type=int, default=30)
    ap.add_argument("--clients", type=int, default=4)
    ap.add_argument("--quick", action="store_true", help="10 clicks, one input")
    ap.add_argument("--json", default=None, help="also write the figures to this JSON file")
    args = ap.parse_args(argv)
    if args.quick:
        args.clicks = 10

    import warnings

    warnings.filterwarnings("ignore", category=FutureWarning)
    from medsamkit.backend.local import LocalBackend
    from medsamkit.backend.remote import RemoteBackend
    from concurrent.futures import ThreadPoolExecutor
    from medsamkit.models import load_model
    from medsamkit.protocol import wire

    proc = None
    tmp = tempfile.TemporaryDirectory()
    url = args.url
    if url is None:
        proc, url = start_server(args.device, args.engine, Path(tmp.name))
    results = {"device": args.device, "engine": args.engine, "url": url, "clicks": args.clicks,
               "clients": args.clients, "inputs": []}
    # Local clicks run on a worker thread, as the effect runs them: on this (loaded) 2-core machine a
    # decode on the interpreter's main thread took ~2 s against ~0.25 s on any other thread.
    worker = ThreadPoolExecutor(1, thread_name_prefix="medsamkit-click")
    try:
        model = load_model("litemedsam", device=args.device, engine=args.engine)
        cases = load_inputs()[: 1 if args.quick else None]
        for case in cases:
            prompts = click_prompts(case["box"], args.clicks)
            with LocalBackend(model) as local, RemoteBackend(url, timeout=120) as remote:
                open_image(local, case)
                t = time.perf_counter()
                open_image(remote, case)
                upload_s = time.perf_counter() - t
                upload_bytes = remote.bytes_sent
                t = time.perf_counter()
                local.predict(box=case["box"], **case["slice"])
                first_local = time.perf_counter() - t
                t = time.perf_counter()
                remote.predict(box=case["box"], **case["slice"])
                first_remote = time.perf_counter() - t
                s0, r0 = remote.bytes_sent, remote.bytes_received
                timed = time_clicks(local, remote, case, prompts, worker)
                lt, rt, lp, rp = timed["local"], timed["remote"], timed["local_preds"], timed["remote_preds"]
                transport = [r - s for r, s in zip(rt, timed["server"])]
                sent = (remote.bytes_sent - s0) / len(prompts)
                received = (remote.bytes_received - r0) / len(prompts)
                same = sum(np.array_equal(a.mask, b.mask) for a, b in zip(lp, rp))
            h, w = case["hw"]
            naive_up, naive_down = case["slice_bytes"], h * w  # slice every click; uint8 mask back
            row = {
                "input": case["name"], "upload_bytes": upload_bytes, "raw_bytes": int(case["array"].nbytes),
                "upload_s": upload_s, "first_click_local_s": first_local, "first_click_remote_s": first_remote,
                "click_local_ms": 1000 * statistics.median(lt), "click_remote_ms": 1000 * statistics.median(rt),
                "click_transport_ms": 1000 * statistics.median(transport),
                "sent_per_click": sent, "received_per_click": received, "naive_sent_per_click": naive_up,
                "naive_received_per_click": naive_down, "identical_masks": f"{same}/{len(prompts)}",
                "bitpacked_full_mask_bytes": len(wire.encode_mask(np.ones((h, w), bool), wire.CODEC_NONE)),
            }
            results["inputs"].append(row)
            print(f"\n{case['name']}  (device {args.device}, {len(prompts)} clicks, "
                  f"masks identical {row['identical_masks']})")
            print(f"  upload once:      {upload_bytes / 1024:8.1f} KiB sent (raw {row['raw_bytes'] / 1024:.1f} KiB), "
                  f"{upload_s * 1000:.0f} ms")
            print(f"  first click:      local {first_local * 1000:7.1f} ms   remote {first_remote * 1000:7.1f} ms "
                  "(encoding)")
            print(f"  click (median):   local {row['click_local_ms']:7.1f} ms   remote {row['click_remote_ms']:7.1f} ms"
                  f"   ratio {row['click_remote_ms'] / row['click_local_ms']:.2f}x; remote minus server time "
                  f"(HTTP + JSON + mask coding) {row['click_transport_ms']:.1f} ms")
            print(f"  bytes per click:  sent {sent:7.0f} B vs naive {naive_up:8d} B ({naive_up / sent:,.0f}x less); "
                  f"received {received:6.0f} B vs naive {naive_down:7d} B ({naive_down / max(received, 1):,.0f}x less)")
        case = cases[0]
        clicks = max(5, args.clicks // 2)
        one = throughput(url, case, 1, clicks)
        many = throughput(url, case, args.clients, clicks)
        results["throughput"] = {"input": case["name"], "one_client_clicks_per_s": one,
                                 "n_clients_clicks_per_s": many, "clicks_per_client": clicks}
        print(f"\nthroughput ({case['name']}, warm): 1 client {one:.1f} clicks/s, {args.clients} clients "
              f"{many:.1f} clicks/s ({many / one:.2f}x)")
    finally:
        worker.shutdown(wait=False)
        if proc is not None:
            proc.terminate()
            proc.wait(15)
        tmp.cleanup()
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
