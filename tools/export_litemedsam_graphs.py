"""Write the LiteMedSAM ONNX graphs shipped without their weights (medsamkit/fast/graphs/).

Run once per export recipe, with the torch extra installed::

    python tools/export_litemedsam_graphs.py            # writes the graphs and graphs.json
    python tools/export_litemedsam_graphs.py --check    # compares what it would write with the shipped files

Each graph is exported with its weights named by their checkpoint keys (``named=True`` in
medsamkit.fast.onnx_export), then every initialiser that is a checkpoint tensor is removed and
recorded (name, shape, dtype) in graphs.json, beside the file's SHA-256. The torch-free loader
(medsamkit.fast.graphs) binds the authors' weights to those names. The script refuses to write
when an initialiser named like a checkpoint key has another shape, when a checkpoint key that the
graphs need is missing, or when a file would exceed 5 MB.
"""
from __future__ import annotations

import argparse
import hashlib
import json
import sys
import tempfile
from pathlib import Path

OUT = Path(__file__).resolve().parents[1] / "medsamkit" / "fast" / "graphs"
LIMIT = 5 * 1024 * 1024
ONNX_DTYPES = {1: "float32", 7: "int64", 6: "int32", 10: "float16", 11: "float64"}


def strip(src: str, state: dict) -> tuple[bytes, list]:
    """(graph bytes without the checkpoint tensors, [[name, shape, dtype], ...] in graph order)."""
    import onnx

    model = onnx.load(src)
    kept, weights = [], []
    for init in model.graph.initializer:
        if init.name in state:
            shape = [int(d) for d in init.dims]
            if tuple(shape) != tuple(state[init.name].shape):
                sys.exit(f"{init.name}: graph shape {shape} != checkpoint shape {tuple(state[init.name].shape)}")
            weights.append([init.name, shape, ONNX_DTYPES[init.data_type]])
        else:
            kept.append(init)
    del model.graph.initializer[:]
    model.graph.initializer.extend(kept)
    return model.SerializeToString(), weights


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--check", action="store_true", help="compare with the shipped files, write nothing")
    args = ap.parse_args(argv)
    from medsamkit.fast import onnx_export
    from medsamkit.fast.graphs import COMPONENTS, MANIFEST
    from medsamkit.models import load_model

    model = load_model("litemedsam", device="cpu", engine="torch")
    state = {k: v.detach().numpy() for k, v in model.net.state_dict().items()}
    manifest = {"kind": "litemedsam", "opset": onnx_export.OPSET, "checkpoint_sha256": model.checkpoint_sha256,
                "low_res_size": int(model.low_res_size),
                "graphs": {}}
    files = {}
    with tempfile.TemporaryDirectory() as tmp:
        for comp in COMPONENTS:
            path = str(Path(tmp) / f"{comp}.onnx")
            if comp == "encoder":
                onnx_export.export_encoder(model.net, model.transform.spec.size, path, named=True)
            else:
                onnx_export.export_decoder_part(model.net, comp, path, named=True)
            data, weights = strip(path, state)
            if len(data) > LIMIT:
                sys.exit(f"{comp}: {len(data):,} bytes without weights, over the 5 MB limit")
            name = f"litemedsam-{comp}.onnx"
            files[name] = data
            manifest["graphs"][comp] = {"file": name, "sha256": hashlib.sha256(data).hexdigest(),
                                        "weights": weights}
    text = json.dumps(manifest, indent=1) + "\n"
    if args.check:
        same = all((OUT / n).is_file() and (OUT / n).read_bytes() == d for n, d in files.items())
        same = same and (OUT / MANIFEST).read_text() == text
        print("shipped graphs are up to date" if same else "shipped graphs differ from a fresh export")
        return 0 if same else 1
    OUT.mkdir(parents=True, exist_ok=True)
    for name, data in files.items():
        (OUT / name).write_bytes(data)
        print(f"{name}: {len(data):,} bytes, {len(manifest['graphs'][name[11:-5]]['weights'])} weights by name")
    (OUT / MANIFEST).write_text(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
