"""The effect while the main thread holds the GIL as Slicer's Qt event loop does: held/free ratios.

Runs the real effect (loaded as Slicer loads it, Testing/extension/slicer_app.py) with its real
model session, worker and timers and a model process, the event loop modelled in real time
(Testing/extension/gil_timing.py): between timers the main thread waits inside C with the GIL held
("held") or free ("free"), interleaved. Three cases:

- box: a box on an already-encoded slice of the bundled CT, mouse press to result in the segment;
- upload: a 50 MiB int16 volume to the model process on the effect's worker;
- prefetch: the view prefetch, from its dwell timer to the model process taking the request, the main
  loop otherwise idle.

For each timer setting (``--timers``: interval,wait in ms; the effect's default first, then a 100 ms
poll with no wait, for comparison) prints medians and held/free, and writes JSON.

    python benchmarks/bench_gil.py [--runs 5] [--engine torch|onnx] [--timers 2,10 2,5 100,0]
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
for folder in (REPO, REPO / "Testing", REPO / "Testing" / "extension"):
    sys.path.insert(0, str(folder))


def load() -> str:
    try:
        return "load %.1f" % os.getloadavg()[0]
    except OSError:
        return "load ?"


def effect_session(monkeypatch, tmp, engine):
    """The effect on the bundled CT in a Slicer 5.10 harness, on a started model process."""
    import types

    import gil_timing
    import slicer_app
    from medsamkit.io import read_image
    from medsamkit.mrml.context import make_context, quiet_vtk
    from medsamkit.mrml.segments import new_segmentation
    from medsamkit.mrml.volumes import load_volume, volume_geometry
    from slicer_fixtures import DATA, SEGMENT_MODULE

    quiet_vtk("ERROR")
    ctx = make_context()
    h = slicer_app.Harness(monkeypatch, "5.10.0", ctx, Path(tmp))
    h.start(SEGMENT_MODULE)
    node = load_volume(ctx, DATA / "sample_lung_ct.nii.gz")
    seg, sid = new_segmentation(ctx, node, segment_name="tumour")
    editor = h.editor(node, seg, sid)
    editor.setActiveEffectByName("MedSAM")
    scripted = editor.activeEffect()
    scripted.setParameter("Window", "lung")
    s = types.SimpleNamespace(h=h, editor=editor, scripted=scripted, effect=scripted.self(), ctx=ctx, node=node,
                              seg=seg, sid=sid, g=volume_geometry(node),
                              label=read_image(DATA / "sample_lung_ct.label.nii.gz").array > 0)
    import vtk

    s.vtk = vtk
    return s, gil_timing.use_model_process(s, engine)


def set_timers(s, interval_ms, wait_ms):
    sys.modules["MedSAMSegmentLib.SegmentEditorEffect"].POLL_WAIT_MS = wait_ms
    s.effect.pollTimer.setInterval(interval_ms)


def measure(s, session, runs, volumes):
    import gil_timing as g
    from test_effect import _drag_box, _tumour_box, _view

    k = 11
    view = _view(s, k)
    drag = lambda: _drag_box(s, view, *_tumour_box(s, k))  # noqa: E731
    g.time_box(s, drag, g.free)  # encodes slice 11 (and uploads the CT): off the clock
    times = {case: {"held": [], "free": []} for case in ("box", "upload", "prefetch")}
    for run in range(runs):
        for name in ("free", "held"):
            times["box"][name].append(g.time_box(s, drag, g.BLOCKS[name]))
    for run in range(max(2, runs // 2)):
        for i, name in enumerate(("free", "held")):
            times["upload"][name].append(g.time_upload(s, session, volumes[i], g.BLOCKS[name]))
    g.time_box(s, drag, g.free)  # the CT back in the model process
    for run in range(runs):
        for i, name in enumerate(("free", "held")):
            ras = s.effect.sliceToRas(_view(s, 3 + (2 * run + i) % 18))
            times["prefetch"][name].append(g.time_prefetch(s, ras, g.BLOCKS[name], timeout=30.0))
    return times


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--engine", default="torch")
    parser.add_argument("--timers", nargs="+", default=["2,10", "100,0"], help="interval,wait in ms")
    parser.add_argument("--json", default="bench-gil.json")
    args = parser.parse_args(argv)
    import pytest

    import gil_timing as g
    from medsamkit.mrml.volumes import array_from_volume

    report = {"engine": args.engine, "runs": args.runs, "load_at_start": load(), "settings": {}}
    monkeypatch = pytest.MonkeyPatch()
    with tempfile.TemporaryDirectory() as tmp:
        s, session = effect_session(monkeypatch, tmp, args.engine)
        try:
            print(f"bench_gil: {session.description}; {args.runs} runs per case [{load()}]")
            volumes = g.upload_volumes(array_from_volume(s.node), mib=50)
            for setting in args.timers:
                interval, wait = (int(v) for v in setting.split(","))
                set_timers(s, interval, wait)
                t0 = time.monotonic()
                ratios = g.ratios(measure(s, session, args.runs, volumes))
                report["settings"][setting] = {case: {"held_s": h, "free_s": f, "ratio": r}
                                               for case, (h, f, r) in ratios.items()}
                print(f"\ntimer {interval} ms, wait {wait} ms ({time.monotonic() - t0:.0f} s) [{load()}]")
                for case, (h, f, r) in ratios.items():
                    print(f"  {case:8s} held {h * 1000:7.0f} ms  free {f * 1000:7.0f} ms  held/free {r:5.2f}")
        finally:
            s.effect.session.close()
            s.editor._destroy()
            monkeypatch.undo()
    report["load_at_end"] = load()
    Path(args.json).write_text(json.dumps(report, indent=1))
    print(f"\nwrote {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
