"""argparse ``type=`` functions for numeric options: checked at parse time, one clear line each.

``--threshold 5`` or ``--max-sessions 0`` must be refused before anything runs (a model load, a
server start), with the allowed range in the message; argparse prints
``medsamkit CMD: error: argument --x: <message>`` and exits with status 2. The rules themselves are
:mod:`medsamkit.limits`, which the server's requests and prompt records use too.
"""
from __future__ import annotations

import argparse
import math

from .. import limits
from ..limits import RuleError


def _number(text: str, kind=float):
    try:
        value = kind(text)
    except (TypeError, ValueError):
        raise argparse.ArgumentTypeError(f"'{text}' is not {'an integer' if kind is int else 'a number'}") from None
    if kind is float and not math.isfinite(value):
        raise argparse.ArgumentTypeError(f"'{text}' is not a finite number")
    return value


def _argtype(rule):
    """The argparse ``type=`` function of a :mod:`medsamkit.limits` rule: parse the text, then the rule."""
    def argtype(text: str):
        try:
            return rule(_number(text, rule.kind))
        except RuleError as exc:
            raise argparse.ArgumentTypeError(str(exc)) from None

    argtype.__name__, argtype.__doc__, argtype.rule = rule.__name__, rule.__doc__, rule
    return argtype


probability = _argtype(limits.probability)
non_negative_float = _argtype(limits.non_negative_float)
positive_float = _argtype(limits.positive_float)
non_negative_int = _argtype(limits.non_negative_int)
positive_int = _argtype(limits.positive_int)
port = _argtype(limits.port)


def value_problem(argtype, value) -> "str | None":
    """What is wrong with ``value`` read from JSON under the rule of the ``type=`` function ``argtype``."""
    return limits.value_problem(argtype.rule, value)


# ---- checks run after reading the input and before loading a model (a bad slice/box/NaN voxel is
# ---- answered in well under a second instead of after the 7-9 s model load)
def check_prompt_early(image, box=None, points=None, point_labels=None, slice_index=None, axis="axial") -> None:
    """Validate slice index, plane and prompts against ``image`` (an io.ImageData); InputError if bad.

    The same checks (and messages) the backend makes later, plus the NaN/Inf rule on the whole input.
    """
    from ..backend.base import ImageInfo, slice_hw
    from ..errors import InputError
    from ..preprocess import check_finite
    from ..prompts import make_prompt
    from ..volume import numpy_axis

    if image.is_3d:
        if slice_index is None:
            raise InputError(f"The input is a 3D volume {image.array.shape[::-1]} (x, y, z); choose a slice with "
                             "--slice K (and --axis axial|coronal|sagittal).")
        ax = numpy_axis(axis, image.direction)
        hw = slice_hw(ImageInfo(tuple(image.array.shape), True, ""), slice_index, ax)
    else:
        if slice_index not in (None, 0):
            raise InputError("--slice only applies to 3D volumes; this input is a 2D image.")
        hw = tuple(image.array.shape[:2])
    make_prompt(hw, box, points, point_labels)
    check_finite(image.array, is_volume=image.is_3d)


def check_volume_early(image) -> None:
    """The NaN/Inf rule on a whole volume, before a 3D job loads its model."""
    from ..preprocess import check_finite

    check_finite(image.array, is_volume=True)
