"""Memory of the torch-free model process: the encoder's activations go back to the OS after each encode.

A fresh interpreter loads the torch-free LiteMedSAM, encodes a test image and its mirror image, and
reports its RSS (VmRSS) and peak (VmHWM) from /proc after each step (Linux with glibc only).
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

pytest.importorskip("onnxruntime", reason="the ONNX engine needs onnxruntime")
REPO = Path(__file__).resolve().parents[2]
PNG = REPO / "Testing" / "Data" / "043_HC.img.png"

SCRIPT = textwrap.dedent('''
    import json, sys
    def status():
        fields = dict(ln.split(":", 1) for ln in open("/proc/self/status"))
        return {k: int(fields[k].split()[0]) // 1024 for k in ("VmRSS", "VmHWM")}
    from medsamkit.io import read_image
    from medsamkit.models import load_model
    from medsamkit.predictor import Predictor
    out = {"imported": status()}
    model = load_model("litemedsam", device="cpu", engine="onnx")
    out["loaded"] = status()
    img = read_image(sys.argv[1]).array
    pred = Predictor(model)
    pred.set_image(img)
    out["encoded"] = status()
    pred.predict(box=[123, 85, 357, 314])
    pred.set_image(img[:, ::-1].copy())
    out["encoded again"] = status()
    out["torch"] = "torch" in sys.modules
    print("RESULT " + json.dumps(out))
''')


@pytest.mark.skipif(not (sys.platform.startswith("linux") and os.confstr("CS_GNU_LIBC_VERSION")),
                    reason="RSS from /proc and glibc's heap")
def test_encoder_activations_do_not_stay_in_the_process(tmp_path):
    env = dict(os.environ, PYTHONPATH=str(REPO), MEDSAMKIT_CACHE_DIR=str(tmp_path / "cache"))
    env.pop("MEDSAMKIT_ENGINE", None)
    run = subprocess.run([sys.executable, "-c", SCRIPT, str(PNG)], capture_output=True, text=True, timeout=600,
                         cwd=str(tmp_path), env=env)
    lines = [ln for ln in run.stdout.splitlines() if ln.startswith("RESULT ")]
    assert lines, run.stderr[-2000:]
    mb = json.loads(lines[-1][len("RESULT "):])
    assert not mb["torch"]
    activations = mb["encoded"]["VmHWM"] - mb["loaded"]["VmRSS"]
    assert activations > 100, mb  # the encoder did run at full size
    # after an encode the process is back near its size after loading (measured +22 to +51 MiB: the
    # embedding, the decoder's image part, the image) and a second encode peaks no higher than the first
    assert mb["encoded"]["VmRSS"] - mb["loaded"]["VmRSS"] < 64, mb
    assert mb["encoded again"]["VmHWM"] - mb["encoded"]["VmHWM"] < 64, mb
    # loading: the checkpoint's arrays and the bound graphs are not kept beside the sessions' weights
    assert mb["loaded"]["VmRSS"] - mb["imported"]["VmRSS"] < 160, mb
