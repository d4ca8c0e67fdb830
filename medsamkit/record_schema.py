"""The prompt record's schema: types and limits of every field, checked before any work or allocation.

One validator (:func:`check_entry`) for every reader of a record: replay, the annotation report, the
effect's resume (:mod:`medsamkit.mrml.records`) and anything else that goes through
:func:`medsamkit.records.record.check_record`. A record is data from disk that a user may have edited, copied
half or received from someone else: a wrong type, a value out of range or a size that would make the
reader allocate gigabytes is refused with one line naming the record, the entry, the field and what is
wrong. Option values (``margin_px``, ``score_threshold``, ...) obey the rules of the CLI options that
set them: the :mod:`medsamkit.limits` rules that the CLI's argparse types (cli/arg_types.py) apply.

Limits: :data:`MAX_ENTRIES` entries, :data:`MAX_VOXELS` voxels in the image an entry refers to (a
snapshot is unpacked to that size), ``limits.MAX_POINTS`` clicks per prompt and
``limits.MAX_PLAN_SLICES`` boxes per plan (the server's request limits), coordinates within
:data:`MAX_COORD` of the origin.
"""
from __future__ import annotations

import math
import re
from datetime import datetime

from . import limits
from .limits import MAX_PLAN_SLICES, MAX_POINTS

MAX_ENTRIES = 100_000
MAX_VOXELS = 1 << 31     # 2 Gi voxels: 1290³; a 512 x 512 x 3000 CT has 0.8 Gi
MAX_COORD = 1e7          # pixels / mm
MAX_TEXT = 1000          # names, labels, versions
MAX_SECONDS = 1e7
KINDS = ("box", "points", "box+points", "refine", "propagate", "markers", "recist", "batch")
WRITE_MODES = ("replace", "add", "remove")
REGIONS = ("slice", "slab", "volume")
WINDOW_MODES = ("range", "percentile", "none")
ENTRY_KEYS = ("id", "kind", "segment", "time", "model_seconds", "image", "plane", "prompt", "window", "model",
              "medsamkit_version", "write", "result")
PROMPT_KEYS = ("box", "points", "options")
# prompt options -> the CLI option rule that sets them (cli/arg_types.py); "refine" a flag; text options
OPTION_RULES = {"margin_px": limits.non_negative_float, "margin_mm": limits.non_negative_float,
                "score_threshold": limits.probability, "min_area": limits.non_negative_int,
                "max_slices": limits.non_negative_int}
OPTION_CHOICES = {"single_slice": ("propagate", "slice"), "source": ("sr", "csv", "markups")}
OPTION_TEXT = ("lesion", "tracking_uid")
_HEX64 = re.compile(r"[0-9a-f]{64}")
_SLICE_KEY = re.compile(r"\d{1,9}")


class Problem(Exception):
    """A field's problem: ``field`` (dotted path inside the entry) and ``what``."""

    def __init__(self, field: str, what: str):
        super().__init__(f"{field}: {what}")
        self.field, self.what = field, what


def _kind_of(v) -> str:
    return "null" if v is None else {dict: "an object", list: "a list", str: "text", bool: "true/false"}.get(
        type(v), "a number" if isinstance(v, (int, float)) else type(v).__name__)


def _is_number(v) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and abs(v) < 2.0 ** 63 and math.isfinite(v)


def obj(v, field: str, keys=()) -> dict:
    if not isinstance(v, dict):
        raise Problem(field, f"must be an object, not {_kind_of(v)}")
    missing = [k for k in keys if k not in v]
    if missing:
        raise Problem(field, f"missing {', '.join(repr(k) for k in missing)}")
    return v


def text(v, field: str, choices=None, none_ok: bool = False, limit: int = MAX_TEXT) -> "str | None":
    if v is None and none_ok:
        return v
    if not isinstance(v, str):
        raise Problem(field, f"must be text, not {_kind_of(v)}")
    if len(v) > limit:
        raise Problem(field, f"is {len(v)} characters long; at most {limit}")
    if choices is not None and v not in choices:
        raise Problem(field, f"{v[:40]!r} is not one of {', '.join(choices)}")
    return v


def number(v, field: str, low: float = -MAX_COORD, high: float = MAX_COORD, integer: bool = False):
    if integer and (isinstance(v, bool) or not isinstance(v, int)):
        raise Problem(field, f"must be an integer, not {_kind_of(v)}")
    if not _is_number(v):
        numeric = isinstance(v, (int, float)) and not isinstance(v, bool)
        raise Problem(field, f"must be a finite number, not {repr(v)[:24] if numeric else _kind_of(v)}")
    if not low <= v <= high:
        raise Problem(field, f"{v:g} is outside {low:g}..{high:g}")
    return v


def numbers(v, field: str, n: int, low: float = -MAX_COORD, high: float = MAX_COORD) -> list:
    if not isinstance(v, list) or len(v) != n:
        got = f"{len(v)} values" if isinstance(v, list) else _kind_of(v)
        raise Problem(field, f"must be a list of {n} finite numbers, not {got}")
    for i, x in enumerate(v):
        number(x, f"{field}[{i}]", low, high)
    return v


def flag(v, field: str, none_ok: bool = False):
    if not isinstance(v, bool) and not (none_ok and v is None):
        raise Problem(field, f"must be true or false, not {_kind_of(v)}")
    return v


def sized_list(v, field: str, limit: int) -> list:
    if not isinstance(v, list):
        raise Problem(field, f"must be a list, not {_kind_of(v)}")
    if len(v) > limit:
        raise Problem(field, f"holds {len(v)} items; at most {limit}")
    return v


def check_entry(e) -> None:
    """Raise :class:`Problem` for the first field of entry ``e`` that is missing, of the wrong type or out of range."""
    obj(e, "entry", ENTRY_KEYS)
    text(e["id"], "id", limit=64)
    text(e["kind"], "kind", KINDS)
    text(obj(e["segment"], "segment", ("id",))["id"], "segment.id")
    text(e["segment"].get("name"), "segment.name", none_ok=True)
    _check_time(e["time"])
    number(e["model_seconds"], "model_seconds", 0.0, MAX_SECONDS)
    text(e["medsamkit_version"], "medsamkit_version", none_ok=True, limit=64)
    shape = _check_image(e["image"])
    _check_plane(e["plane"], shape)
    _check_prompt(e["prompt"], e["kind"], shape)
    _check_window(e["window"])
    _check_model(e["model"])
    w = obj(e["write"], "write", ("mode", "region"))
    text(w["mode"], "write.mode", WRITE_MODES)
    text(w["region"], "write.region", REGIONS)
    _check_result(e["result"], shape)
    needs_plane = len(shape) == 3 and e["prompt"].get("plan") is None
    if needs_plane and (e["plane"] is None or e["plane"]["index"] is None):
        raise Problem("plane", "a slice prompt on a volume needs its plane (axis and slice index)")


def _check_time(v) -> None:
    text(v, "time", limit=64)
    try:
        datetime.fromisoformat(v)
    except ValueError:
        raise Problem("time", f"{v!r} is not an ISO 8601 time (like 2026-12-02T23:50:01+00:00)") from None


def _check_image(img) -> tuple:
    obj(img, "image", ("shape", "spacing", "origin", "direction"))
    shape = sized_list(img["shape"], "image.shape", 3)
    if len(shape) not in (2, 3):
        raise Problem("image.shape", f"must have 2 or 3 sizes, not {len(shape)}")
    for i, n in enumerate(shape):
        number(n, f"image.shape[{i}]", 1, MAX_VOXELS, integer=True)
    voxels = math.prod(shape)
    if voxels > MAX_VOXELS:
        raise Problem("image.shape", f"declares {voxels:,} voxels; records of images up to {MAX_VOXELS:,} voxels "
                                     "are read")
    nd = len(shape)
    flag(img.get("is_volume", nd == 3), "image.is_volume")
    if bool(img.get("is_volume", nd == 3)) != (nd == 3):
        raise Problem("image.is_volume", f"says {img.get('is_volume')} for a shape of {nd} sizes")
    numbers(img["spacing"], "image.spacing", nd, 0.0, MAX_COORD)
    if not all(s > 0 for s in img["spacing"]):
        raise Problem("image.spacing", "every spacing must be greater than 0")
    numbers(img["origin"], "image.origin", nd)
    numbers(img["direction"], "image.direction", nd * nd, -2.0, 2.0)
    return tuple(shape)


def _check_plane(plane, shape) -> None:
    if plane is None:
        return
    obj(plane, "plane", ("axis", "index"))
    axis = number(plane["axis"], "plane.axis", 0, len(shape) - 1, integer=True)
    if plane["index"] is not None:  # a markers run names its axis only
        number(plane["index"], "plane.index", 0, shape[axis] - 1, integer=True)
    text(plane.get("name"), "plane.name", none_ok=True, limit=64)


def _check_prompt(p, kind: str, shape) -> None:
    obj(p, "prompt", PROMPT_KEYS)
    if p["box"] is not None:
        numbers(obj(p["box"], "prompt.box", ("xy",))["xy"], "prompt.box.xy", 4)
    for n, q in enumerate(sized_list(p["points"], "prompt.points", MAX_POINTS)):
        obj(q, f"prompt.points[{n}]", ("xy", "label"))
        numbers(q["xy"], f"prompt.points[{n}].xy", 2)
        if q["label"] not in (0, 1) or isinstance(q["label"], bool):
            raise Problem(f"prompt.points[{n}].label", f"must be 0 or 1, not {q['label']!r}"[:120])
    text(p.get("previous"), "prompt.previous", none_ok=True, limit=64)
    text(p.get("merge"), "prompt.merge", ("progressive",), none_ok=True)
    if p.get("plan") is not None:
        _check_plan(p["plan"], shape)
    for n, m in enumerate(sized_list(p.get("markers") or [], "prompt.markers", MAX_PLAN_SLICES)):
        obj(m, f"prompt.markers[{n}]", ("start_lps", "end_lps"))
        numbers(m["start_lps"], f"prompt.markers[{n}].start_lps", 3)
        numbers(m["end_lps"], f"prompt.markers[{n}].end_lps", 3)
        text(m.get("name", ""), f"prompt.markers[{n}].name")
    _check_options(obj(p["options"], "prompt.options"))
    if kind in ("box", "points", "box+points", "refine", "propagate") and p["box"] is None and not p["points"]:
        raise Problem("prompt", "a slice prompt without box or points")
    if kind in ("markers", "batch", "recist") and p.get("plan") is None:
        raise Problem("prompt.plan", f"a {kind} run needs its box plan")


def _check_plan(plan, shape) -> None:
    obj(plan, "prompt.plan", ("axis", "boxes"))
    axis = number(plan["axis"], "prompt.plan.axis", 0, 2, integer=True)
    if len(shape) == 3:
        last = shape[axis] - 1
    else:
        raise Problem("prompt.plan", "a box plan needs a 3D image")
    boxes = obj(plan["boxes"], "prompt.plan.boxes")
    if not boxes or len(boxes) > MAX_PLAN_SLICES:
        raise Problem("prompt.plan.boxes", f"holds {len(boxes)} boxes; 1..{MAX_PLAN_SLICES}")
    for k, b in boxes.items():
        if not _SLICE_KEY.fullmatch(k) or int(k) > last:
            raise Problem("prompt.plan.boxes", f"key {k[:20]!r} is not a slice index 0..{last}")
        numbers(b, f"prompt.plan.boxes.{k}", 4)
    for n, k in enumerate(sized_list(plan.get("marked", []), "prompt.plan.marked", MAX_PLAN_SLICES)):
        number(k, f"prompt.plan.marked[{n}]", 0, last, integer=True)


def _check_options(options: dict) -> None:
    for key, value in options.items():
        field = f"prompt.options.{key}"
        if key in OPTION_RULES:
            problem = limits.value_problem(OPTION_RULES[key], value)
            if problem:
                raise Problem(field, problem)
        elif key == "refine":
            flag(value, field)
        elif key in OPTION_CHOICES:
            text(value, field, OPTION_CHOICES[key])
        elif key in OPTION_TEXT:
            text(value, field, none_ok=True)


def _check_window(w) -> None:
    obj(w, "window", ("mode",))
    mode = text(w["mode"], "window.mode", WINDOW_MODES)
    for key in ("low", "high"):
        if w.get(key) is not None or mode == "range":
            number(w.get(key), f"window.{key}", -1e12, 1e12)
    if mode == "range" and not w["low"] < w["high"]:
        raise Problem("window", f"low ({w['low']:g}) must be below high ({w['high']:g})")
    flag(w.get("keep_zero", False), "window.keep_zero", none_ok=True)
    text(w.get("label"), "window.label", none_ok=True)
    text(w.get("requested"), "window.requested", none_ok=True)


def _check_model(m) -> None:
    obj(m, "model", ("kind",))
    text(m["kind"], "model.kind", limit=64)
    if not m["kind"]:
        raise Problem("model.kind", "is empty")
    text(m.get("weights_sha256"), "model.weights_sha256", none_ok=True, limit=64)  # a server may give a prefix
    if m.get("adapter") is not None:
        a = obj(m["adapter"], "model.adapter", ("name", "sha256"))
        text(a["name"], "model.adapter.name")
        text(a["sha256"], "model.adapter.sha256", limit=64)
    text(m.get("engine"), "model.engine", none_ok=True, limit=64)
    text(m.get("backend"), "model.backend", none_ok=True)


def snapshot_chars(shape) -> int:
    """The most characters a snapshot of an image of ``shape`` can take (base64 of zlib of the packed bits,
    incompressible data included)."""
    packed = (math.prod(shape) + 7) // 8
    return 4 * ((packed + packed // 1000 + 64) // 3 + 1)


def _check_result(r, shape) -> None:
    obj(r, "result", ("mask_sha256",))
    sha = text(r["mask_sha256"], "result.mask_sha256", limit=64)
    if not _HEX64.fullmatch(sha):
        raise Problem("result.mask_sha256", "must be 64 hexadecimal digits")
    if "voxels" in r:
        number(r["voxels"], "result.voxels", 0, MAX_VOXELS, integer=True)
    for n, k in enumerate(sized_list(r.get("slices", []), "result.slices", MAX_PLAN_SLICES)):
        number(k, f"result.slices[{n}]", 0, max(shape) - 1, integer=True)
    scores = obj(r.get("scores", {}), "result.scores")
    if len(scores) > MAX_PLAN_SLICES:
        raise Problem("result.scores", f"holds {len(scores)} scores; at most {MAX_PLAN_SLICES}")
    for k, v in scores.items():
        if not _SLICE_KEY.fullmatch(k):
            raise Problem("result.scores", f"key {k[:20]!r} is not a slice index")
        number(v, f"result.scores.{k}", -1e3, 1e3)
    if "snapshot" in r:
        text(r["snapshot"], "result.snapshot", limit=snapshot_chars(shape))
