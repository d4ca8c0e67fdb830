"""Damaged prompt records: one schema (medsamkit.record_schema) refuses them before any work, in every reader.

A real record is made once by the CLI (a propagation from a box on the bundled lung CT, LiteMedSAM on
CPU); each case below damages one field of it as a user's editor or a half copy would, and expects
replay and report to exit 2 with one line naming the file, the field and what is wrong, writing
nothing, in well under the time a model load takes. The effect's resume reads segment tags through the
same check (decode_tag); the server refuses the same option values as the CLI (cli_types rules).
"""
from __future__ import annotations

import json
import time
from pathlib import Path
from urllib.parse import quote

import pytest

REPO = Path(__file__).resolve().parents[2]
CT = REPO / "medsamkit" / "data" / "sample_lung_ct.nii.gz"
MODEL = ["--engine", "torch", "--device", "cpu"]


@pytest.fixture(scope="module")
def good_record(tmp_path_factory):
    """(sidecar path, parsed record) of one CLI propagation with its options (margin_px, score_threshold)."""
    from medsamkit.cli.commands import main
    from medsamkit.records.record import read_record, sidecar_path

    out = tmp_path_factory.mktemp("prop") / "prop.seg.nrrd"
    argv = ["propagate", CT, "--slice", 11, "--box", 92, 93, 123, 122, "--window", "lung", "--margin-px", 3,
            "--out", out, *MODEL]
    assert main([str(a) for a in argv]) == 0
    side = sidecar_path(out)
    return side, read_record(side)


def _set(path: str, value):
    """A mutation: set (or with value=KeyError delete) the dotted ``path`` inside the first entry."""
    def mutate(entry):
        keys = path.split(".")
        node = entry
        for k in keys[:-1]:
            node = node[int(k)] if isinstance(node, list) else node[k]
        if value is KeyError:
            del node[keys[-1]]
        else:
            node[keys[-1]] = value
    return mutate


# (case id, mutation, the field the message must name, words the message must hold)
CASES = [
    ("box as a list", _set("prompt.box", [92, 93, 123, 122]), "prompt.box", "must be an object"),
    ("points as text", _set("prompt.points", "92,93"), "prompt.points", "must be a list"),
    ("segment as text", _set("segment", "tumour"), "segment", "must be an object"),
    ("adapter as text", _set("model.adapter", "lora.safetensors"), "model.adapter", "must be an object"),
    ("weights_sha256 as a number", _set("model.weights_sha256", 12345), "model.weights_sha256", "must be text"),
    ("window bound as text", _set("window.low", "-900"), "window.low", "finite number"),
    ("margin as text", _set("prompt.options.margin_px", "3"), "prompt.options.margin_px", "not a number"),
    ("no points key", _set("prompt.points", KeyError), "prompt", "missing 'points'"),
    ("no options key", _set("prompt.options", KeyError), "prompt", "missing 'options'"),
    ("snapshot as a number", _set("result.snapshot", 7), "result.snapshot", "must be text"),
    ("10^6 points", _set("prompt.points", [{"xy": [100.0, 100.0], "label": 1}] * 10**6), "prompt.points",
     "at most 256"),
    ("3000^3 voxels", _set("image.shape", [3000, 3000, 3000]), "image.shape", "voxels"),
    ("time as a word", _set("time", "yesterday"), "time", "ISO 8601"),
    ("time as a number", _set("time", 1733180000), "time", "must be text"),
    ("model_seconds as text", _set("model_seconds", "1.5"), "model_seconds", "finite number"),
    ("plan key abc", _set("prompt.plan", {"axis": 0, "boxes": {"abc": [90, 90, 120, 120]}, "marked": []}),
     "prompt.plan.boxes", "'abc' is not a slice index"),
    ("score key as text", _set("result.scores", {"abc": 0.9}), "result.scores", "not a slice index"),
    ("slice index past the volume", _set("plane.index", 500), "plane.index", "outside"),
    ("negative margin", _set("prompt.options.margin_px", -5), "prompt.options.margin_px", "negative; give 0 or more"),
    ("threshold 5", _set("prompt.options.score_threshold", 5), "prompt.options.score_threshold", "outside 0..1"),
    ("a box prompt without its box", _set("prompt.box", None), "prompt", "without box or points"),
]


def _damaged(good, mutate, folder: Path) -> Path:
    record = json.loads(json.dumps(good))
    mutate(record["entries"][0])
    path = folder / "bad.prompts.json"
    path.write_text(json.dumps(record), encoding="utf-8")
    return path


@pytest.mark.parametrize("case,mutate,field,words", CASES, ids=[c[0] for c in CASES])
def test_a_damaged_record_is_refused_in_one_line_by_replay_and_report(good_record, tmp_path, capsys, case, mutate,
                                                                      field, words):
    from medsamkit.cli.commands import main

    bad = _damaged(good_record[1], mutate, tmp_path)
    out = tmp_path / "replayed.seg.nrrd"
    for argv in (["replay", bad, "--volume", CT, "--out", out, "--device", "cpu"],
                 ["report", "--case", bad, CT, "--out-dir", tmp_path / "report"]):
        capsys.readouterr()
        t0 = time.perf_counter()
        assert main([str(a) for a in argv]) == 2
        seconds = time.perf_counter() - t0
        err = capsys.readouterr().err.strip()
        assert "\n" not in err and "Traceback" not in err
        assert "bad.prompts.json" in err and f"field {field}:" in err and words in err, err
        assert seconds < 30  # no model load, no allocation (a 3000³ snapshot: 25 GiB); 10^6 points parse in ~5 s
    assert not out.exists() and not (tmp_path / "report").exists()


def test_the_effect_resume_reads_tags_through_the_same_check(good_record):
    """A segment tag (what the effect's get_record decodes) with a damaged field: the same refusal."""
    from medsamkit.records.record import RecordError, decode_tag, encode_tag

    record = json.loads(json.dumps(good_record[1]))
    assert decode_tag(encode_tag(record)) == record  # the intact record passes
    record["entries"][0]["prompt"]["options"]["score_threshold"] = 5
    with pytest.raises(RecordError, match=r"segment tag, entry 1 .*field prompt.options.score_threshold: 5 is "
                                          r"outside 0\.\.1"):
        decode_tag(quote(json.dumps(record), safe=""))


def test_a_deeply_nested_record_is_refused_not_a_recursion_error(tmp_path):
    from medsamkit.records.record import RecordError, read_record

    path = tmp_path / "deep.prompts.json"
    path.write_text('{"schema": "medsamkit.prompt-record", "entries": ' + "[" * 100_000 + "]" * 100_000 + "}")
    with pytest.raises(RecordError, match="nested too deeply"):
        read_record(path)


def test_a_snapshot_that_inflates_past_its_shape_is_refused_without_inflating_it():
    """A zlib bomb in a snapshot: 64 MiB of zero bits declared for a 16 x 16 image stops at 33 bytes."""
    import base64
    import zlib

    from medsamkit.records.record import RecordError, unpack_mask

    bomb = base64.b64encode(zlib.compress(b"\0" * (64 << 20), 9)).decode("ascii")
    with pytest.raises(RecordError, match="needs 32"):
        unpack_mask(bomb, (16, 16))


def test_records_and_the_server_hold_option_values_to_the_cli_rules():
    """One rule per option (medsamkit.limits): the CLI parser, a record and a server request refuse the same values."""
    import argparse

    pydantic = pytest.importorskip("pydantic")
    from medsamkit.cli import arg_types as cli_types
    from medsamkit.record_schema import OPTION_RULES
    from medsamkit.server.models import PropagateRequest

    # the very same rule objects behind the CLI's argparse types and the record's options
    assert cli_types.probability.rule is OPTION_RULES["score_threshold"]
    assert cli_types.non_negative_float.rule is OPTION_RULES["margin_px"] is OPTION_RULES["margin_mm"]

    for argtype, bad, good in ((cli_types.non_negative_float, -5, 3), (cli_types.probability, 5, 0.5),
                               (cli_types.non_negative_int, -1, 2)):
        with pytest.raises(argparse.ArgumentTypeError) as cli_err:
            argtype(str(bad))
        assert cli_types.value_problem(argtype, bad) == str(cli_err.value)
        assert cli_types.value_problem(argtype, good) is None
    assert "not a number" in cli_types.value_problem(cli_types.probability, "0.5")
    assert "not a number" in cli_types.value_problem(cli_types.probability, True)
    assert "not an integer" in cli_types.value_problem(cli_types.non_negative_int, 2.5)
    for field, bad in (("margin_px", -5), ("score_threshold", 5), ("min_area", -1), ("max_slices", -3)):
        with pytest.raises(pydantic.ValidationError, match=field):
            PropagateRequest(slice_index=11, **{field: bad})
    assert PropagateRequest(slice_index=11, margin_px=3, score_threshold=0.5).margin_px == 3
