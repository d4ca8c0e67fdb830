"""argparse ``type=`` functions for numeric options: checked at parse time, one clear line each.

``--threshold 5`` or ``--max-sessions 0`` must be refused before anything runs (a model load, a
server start), with the allowed range in the message; argparse prints
``medsamkit CMD: error: argument --x: <message>`` and exits with status 2.
"""
from __future__ import annotations

import argparse
import math


def _number(text: str, kind=float):
    try:
        value = kind(text)
    except (TypeError, ValueError):
        raise argparse.ArgumentTypeError(f"'{text}' is not {'an integer' if kind is int else 'a number'}") from None
    if kind is float and not math.isfinite(value):
        raise argparse.ArgumentTypeError(f"'{text}' is not a finite number")
    return value


def _rule(kind):
    """An option rule ``check(value) -> value`` (raises ArgumentTypeError) -> the argparse ``type=`` function
    that parses the text first. The rule stays reachable (``.check``, ``.kind``) so that values read from a
    file (a prompt record, a JSON request) are held to the same rule: :func:`value_problem`."""
    def wrap(check):
        def argtype(text: str):
            return check(_number(text, kind))

        argtype.__name__, argtype.__doc__ = check.__name__, check.__doc__
        argtype.kind, argtype.check = kind, check
        return argtype
    return wrap


@_rule(float)
def probability(value: float) -> float:
    """A number in 0..1 (a predicted-IoU threshold, a fraction)."""
    if not 0.0 <= value <= 1.0:
        raise argparse.ArgumentTypeError(f"{value:g} is outside 0..1")
    return value


@_rule(float)
def non_negative_float(value: float) -> float:
    if value < 0:
        raise argparse.ArgumentTypeError(f"{value:g} is negative; give 0 or more")
    return value


@_rule(float)
def positive_float(value: float) -> float:
    if value <= 0:
        raise argparse.ArgumentTypeError(f"{value:g} must be greater than 0")
    return value


@_rule(int)
def non_negative_int(value: int) -> int:
    if value < 0:
        raise argparse.ArgumentTypeError(f"{value} is negative; give 0 or more")
    return value


@_rule(int)
def positive_int(value: int) -> int:
    if value < 1:
        raise argparse.ArgumentTypeError(f"{value} must be 1 or more")
    return value


@_rule(int)
def port(value: int) -> int:
    """A TCP port 0..65535 (0 = any free port)."""
    if not 0 <= value <= 65535:
        raise argparse.ArgumentTypeError(f"{value} is not a TCP port; give 1..65535 (or 0 for any free port)")
    return value


_LARGEST = 2.0 ** 63  # beyond this a JSON integer is no option value (and would overflow a float)


def value_problem(argtype, value) -> "str | None":
    """What is wrong with ``value`` (a number read from JSON) under the option rule ``argtype`` (one of the
    ``type=`` functions above); None when the CLI would accept it."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return f"{type(value).__name__} {_short(value)} is not {'an integer' if argtype.kind is int else 'a number'}"
    if argtype.kind is int and not isinstance(value, int):
        return f"{value!r} is not an integer"
    if abs(value) >= _LARGEST or not math.isfinite(value):
        return f"{_short(value)} is not a finite number of sensible size"
    try:
        argtype.check(argtype.kind(value))
    except argparse.ArgumentTypeError as exc:
        return str(exc)
    return None


def _short(value, limit: int = 40) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[:limit] + "..."


# ---- checks run after reading the input and before loading a model (a bad slice/box/NaN voxel is
# ---- answered in well under a second instead of after the 7-9 s model load)
def check_prompt_early(image, box=None, points=None, point_labels=None, slice_index=None, axis="axial") -> None:
    """Validate slice index, plane and prompts against ``image`` (an io.ImageData); InputError if bad.

    The same checks (and messages) the backend makes later, plus the NaN/Inf rule on the whole input.
    """
    from .backend.base import ImageInfo, slice_hw
    from .errors import InputError
    from .preprocess import check_finite
    from .prompts import make_prompt
    from .volume import numpy_axis

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
    from .preprocess import check_finite

    check_finite(image.array, is_volume=True)
