"""Rules and limits for numbers that come from users: one source for the CLI's options (``cli/arg_types.py``), the
server's requests (``server/models.py``) and prompt records (``record_schema``), so that they cannot drift.

A rule ``rule(value) -> value`` raises :class:`RuleError` with the allowed range; ``rule.kind`` is the
Python type it takes (float or int). :func:`value_problem` applies a rule to a value read from JSON.
"""
from __future__ import annotations

import math

MAX_POINTS = 256        # clicks in one prompt (requests and prompt records)
MAX_PLAN_SLICES = 4096  # boxes in one plan: more slices than any volume axis accepted has
_LARGEST = 2.0 ** 63    # beyond this a JSON integer is no option value (and would overflow a float)


class RuleError(ValueError):
    """A value outside its option's range (the message says which range)."""


def _rule(kind):
    def wrap(check):
        check.kind = kind
        return check
    return wrap


@_rule(float)
def probability(value: float) -> float:
    """A number in 0..1 (a predicted-IoU threshold, a fraction)."""
    if not 0.0 <= value <= 1.0:
        raise RuleError(f"{value:g} is outside 0..1")
    return value


@_rule(float)
def non_negative_float(value: float) -> float:
    if value < 0:
        raise RuleError(f"{value:g} is negative; give 0 or more")
    return value


@_rule(float)
def positive_float(value: float) -> float:
    if value <= 0:
        raise RuleError(f"{value:g} must be greater than 0")
    return value


@_rule(int)
def non_negative_int(value: int) -> int:
    if value < 0:
        raise RuleError(f"{value} is negative; give 0 or more")
    return value


@_rule(int)
def positive_int(value: int) -> int:
    if value < 1:
        raise RuleError(f"{value} must be 1 or more")
    return value


@_rule(int)
def port(value: int) -> int:
    """A TCP port 0..65535 (0 = any free port)."""
    if not 0 <= value <= 65535:
        raise RuleError(f"{value} is not a TCP port; give 1..65535 (or 0 for any free port)")
    return value


def value_problem(rule, value) -> "str | None":
    """What is wrong with ``value`` (a number read from JSON) under ``rule``; None when the CLI would accept it."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return f"{type(value).__name__} {_short(value)} is not {'an integer' if rule.kind is int else 'a number'}"
    if rule.kind is int and not isinstance(value, int):
        return f"{value!r} is not an integer"
    if abs(value) >= _LARGEST or not math.isfinite(value):
        return f"{_short(value)} is not a finite number of sensible size"
    try:
        rule(rule.kind(value))
    except RuleError as exc:
        return str(exc)
    return None


def _short(value, limit: int = 40) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[:limit] + "..."
