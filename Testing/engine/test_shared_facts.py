"""One source for each fact every face shares: model kinds, marker margin, engine default,
Dice, option names. The GUI files are read as text/AST here (no Qt), the way their values reach users."""
from __future__ import annotations

import ast

import numpy as np
import pytest

from conftest import REPO

GUI = REPO / "MedSAMSegment" / "MedSAMSegmentLib"


def _assigned_literal(path, name):
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Assign) and any(getattr(t, "id", None) == name for t in node.targets):
            return ast.literal_eval(node.value)
    raise AssertionError(f"{name} is not assigned in {path.name}")


def _typed_lists(path):
    """Tuple/list literals of a GUI file that spell out model kinds, windows or training parts again."""
    from medsamkit.models.registry import MODEL_KINDS
    from medsamkit.preprocess import WINDOW_PRESETS
    from medsamkit.training.config import PART_CHOICES

    facts = set(MODEL_KINDS) | set(WINDOW_PRESETS) | set(PART_CHOICES)
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, (ast.Tuple, ast.List)):
            words = {e.value for e in node.elts if isinstance(e, ast.Constant) and isinstance(e.value, str)}
            if len(words & facts) >= 2:
                yield node.lineno, sorted(words & facts)


def test_the_slicer_modules_take_their_lists_from_the_engine():
    """Model kinds, windows and training parts reach the GUI through medsamkit.mrml.choices, never typed again."""
    from medsamkit.models.registry import MODEL_KINDS
    from medsamkit.mrml import choices
    from medsamkit.preprocess import WINDOW_PRESETS

    typed = [f"{p.relative_to(REPO)}:{n} {words}" for folder in ("MedSAMSegment", "MedSAMTraining")
             for p in sorted((REPO / folder).rglob("*.py")) for n, words in _typed_lists(p)]
    assert typed == [], typed
    assert list(_typed_lists_of("K = ('litemedsam', 'medsam')")) and not list(_typed_lists_of("K = ('x', 'lung')"))
    assert choices.model_kinds() == tuple(MODEL_KINDS) and choices.model_kinds()[0] == "litemedsam"
    assert set(WINDOW_PRESETS) < set(choices.window_choices()) and choices.window_choices()[0] == "display"
    assert "none" in choices.window_choices(display=False) and "display" not in choices.window_choices(display=False)
    effect = (GUI / "OptionsPanel.py").read_text(encoding="utf-8")  # the effect's options panel
    training = (REPO / "MedSAMTraining" / "MedSAMTraining.py").read_text(encoding="utf-8")
    assert "choices.model_kinds()" in effect and "choices.window_choices()" in effect
    assert "choices.model_kinds()" in training and "choices.training_part_choices()" in training


def _typed_lists_of(code):
    import tempfile
    from pathlib import Path

    with tempfile.TemporaryDirectory() as d:
        path = Path(d) / "x.py"
        path.write_text(code)
        return list(_typed_lists(path))


def test_training_part_choices_parse_as_parts():
    from medsamkit.mrml import choices
    from medsamkit.training.config import TrainConfig

    for parts in choices.training_part_choices():
        assert TrainConfig(parts=parts).part_list(), parts


def _effect_margin_default():
    """The value the effect gives MarkerMarginMm by default: a number, or the name it reads it from."""
    tree = ast.parse((GUI / "OptionsPanel.py").read_text(encoding="utf-8"))  # where the effect sets its defaults
    for node in ast.walk(tree):
        if (isinstance(node, ast.Call) and getattr(node.func, "attr", "") == "setParameterDefault"
                and node.args and getattr(node.args[0], "id", "") == "MARKER_MARGIN_MM"):
            value = node.args[1]
            return ast.literal_eval(value) if isinstance(value, ast.Constant) else ast.unparse(value)
    raise AssertionError("the effect sets no default for MARKER_MARGIN_MM")


def test_effect_marker_margin_is_the_engine_default():
    from medsamkit.markers import DEFAULT_MARGIN_MM

    value = _effect_margin_default()
    assert value == DEFAULT_MARGIN_MM or str(value).endswith("DEFAULT_MARGIN_MM")


def test_cli_and_batch_margin_defaults_are_the_engine_default():
    from medsamkit.cli.commands import build_parser
    from medsamkit.markers import DEFAULT_MARGIN_MM
    from medsamkit.cli.batch import build_parser as batch_parser

    args = build_parser().parse_args(["markers", "v.nii.gz", "m.json", "--out", "o.seg.nrrd"])
    assert args.margin_mm == DEFAULT_MARGIN_MM
    assert batch_parser().parse_args(["--volume", "v.nrrd"]).margin_mm == DEFAULT_MARGIN_MM


def test_option_names_say_their_units_and_old_spellings_still_work(capsys):
    from medsamkit.cli.commands import build_parser

    p = build_parser()
    assert p.parse_args(["markers", "v", "m", "--out", "o.seg.nrrd", "--margin-mm", "4"]).margin_mm == 4
    assert p.parse_args(["propagate", "v", "--slice", "3", "--out", "o.seg.nrrd", "--margin-px", "5"]).margin_px == 5
    capsys.readouterr()
    old = p.parse_args(["markers", "v", "m", "--out", "o.seg.nrrd", "--margin", "4.5"])
    assert old.margin_mm == 4.5 and "--margin is deprecated; use --margin-mm" in capsys.readouterr().err
    old = p.parse_args(["propagate", "v", "--slice", "3", "--out", "o.seg.nrrd", "--margin", "6"])
    assert old.margin_px == 6 and "--margin is deprecated; use --margin-px" in capsys.readouterr().err


def test_one_engine_default_everywhere(monkeypatch):
    from medsamkit.cli.options import DEFAULT_ENGINE
    from medsamkit.cli.commands import build_parser
    from medsamkit.fast.engine import DEFAULT_ENGINE as LOADER_DEFAULT, resolve_engine
    from medsamkit.cli.batch import build_parser as batch_parser

    monkeypatch.delenv("MEDSAMKIT_ENGINE", raising=False)
    assert DEFAULT_ENGINE == LOADER_DEFAULT == resolve_engine(None) == "auto"  # load_model(engine=None) -> auto
    p = build_parser()
    for argv in (["segment", "i.png", "--out", "o.png"], ["markers", "v", "m", "--out", "o.seg.nrrd"],
                 ["propagate", "v", "--slice", "1", "--out", "o.seg.nrrd"], ["serve"], ["demo"]):
        assert p.parse_args(argv).engine == "auto", argv
    assert batch_parser().parse_args(["--volume", "v.nrrd"]).engine == "auto"


def _overlap_ratios(tree):
    """Lines of ``2 * |A and B| / ...``: a division whose numerator doubles an intersection (``&`` or
    ``logical_and``), however it is spelled or wrapped (int(), float(), .sum(), np.sum)."""
    def intersects(node):
        return any(isinstance(n, ast.BinOp) and isinstance(n.op, ast.BitAnd)
                   or isinstance(n, ast.Call) and getattr(n.func, "attr", getattr(n.func, "id", "")) == "logical_and"
                   for n in ast.walk(node))

    def doubled(node):
        return (isinstance(node, ast.BinOp) and isinstance(node.op, ast.Mult)
                and any(isinstance(s, ast.Constant) and s.value == 2 for s in (node.left, node.right)))

    for node in ast.walk(tree):
        if isinstance(node, ast.BinOp) and isinstance(node.op, ast.Div):
            if any(doubled(n) and intersects(n) for n in ast.walk(node.left)):
                yield node.lineno


def test_the_dice_finder_sees_the_usual_spellings():
    for code in ("d = 2.0 * int((a & b).sum()) / s", "d = float(2 * np.logical_and(a, b).sum() / t)",
                 "d = (2 * (x & y).sum()) / (x.sum() + y.sum())"):
        assert list(_overlap_ratios(ast.parse(code))) == [1], code
    assert list(_overlap_ratios(ast.parse("loss = 1 - (2.0 * inter + 1) / (p.sum() + t.sum() + 1)"))) == []


def test_dice_of_two_empty_masks_is_one_and_only_metrics_computes_dice():
    from medsamkit.metrics import dice

    empty = np.zeros((4, 4), bool)
    assert dice(empty, empty) == 1.0
    assert dice(empty, ~empty) == 0.0
    # every face (CLI demo, batch --reference, bench, replay, review, training validation) calls metrics.dice
    own = [f"{p.relative_to(REPO)}:{n}" for p in sorted((REPO / "medsamkit").rglob("*.py")) if p.name != "metrics.py"
           for n in _overlap_ratios(ast.parse(p.read_text(encoding="utf-8")))]
    own += [f"{p.relative_to(REPO)}:{n}" for folder in ("MedSAMSegment", "MedSAMTraining")
            for p in sorted((REPO / folder).rglob("*.py")) for n in _overlap_ratios(ast.parse(p.read_text(encoding="utf-8")))]
    assert own == [], f"Dice computed outside medsamkit.metrics: {own}"
