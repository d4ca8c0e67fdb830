"""Request bodies of the JSON endpoints (pydantic): shapes and ranges checked before any work.

Anything that does not match is answered 422 by FastAPI with the offending field named.
Coordinates are XY pixels of the session's 2D image or of the chosen slice (prompts.py).
"""
from __future__ import annotations

from typing import Annotated, Optional

from pydantic import AfterValidator, BaseModel, ConfigDict, Field

from .. import limits

from ..limits import MAX_PLAN_SLICES, MAX_POINTS  # noqa: F401  (shared with the prompt records' schema)

Finite = Annotated[float, Field(allow_inf_nan=False)]
XY = Annotated[list[Finite], Field(min_length=2, max_length=2)]


class PredictRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    box: Optional[Annotated[list[Finite], Field(min_length=4, max_length=4)]] = None   # [x0, y0, x1, y1]
    points: Optional[Annotated[list[XY], Field(max_length=MAX_POINTS)]] = None           # (N, 2) XY
    point_labels: Optional[Annotated[list[Annotated[int, Field(ge=0, le=1)]], Field(max_length=MAX_POINTS)]] = None
    mask_prediction: Optional[Annotated[str, Field(max_length=64)]] = None  # id of an earlier prediction
    mask_id: Optional[Annotated[str, Field(max_length=64)]] = None          # id from POST .../masks
    multimask_output: Optional[bool] = None
    slice_index: Optional[Annotated[int, Field(ge=0)]] = None
    axis: Annotated[int, Field(ge=0, le=2)] = 0


Box = Annotated[list[Finite], Field(min_length=4, max_length=4)]


def cli_rule(rule) -> AfterValidator:
    """The CLI option's rule (medsamkit.limits) on a request field: a value the CLI refuses is refused here."""
    def check(value):
        problem = limits.value_problem(rule, value)
        if problem:
            raise ValueError(problem)
        return value
    return AfterValidator(check)


class PropagateRequest(BaseModel):
    """medsamkit.volume_segmentation.propagate's arguments; options left out take the engine's defaults."""

    model_config = ConfigDict(extra="forbid")

    slice_index: Annotated[int, Field(ge=0)]
    axis: Annotated[int, Field(ge=0, le=2)] = 0
    box: Optional[Box] = None
    points: Optional[Annotated[list[XY], Field(max_length=MAX_POINTS)]] = None
    point_labels: Optional[Annotated[list[Annotated[int, Field(ge=0, le=1)]], Field(max_length=MAX_POINTS)]] = None
    margin_px: Optional[Annotated[float, Field(allow_inf_nan=False), cli_rule(limits.non_negative_float)]] = None
    score_threshold: Optional[Annotated[float, Field(allow_inf_nan=False), cli_rule(limits.probability)]] = None
    min_area: Optional[Annotated[int, cli_rule(limits.non_negative_int)]] = None
    max_slices: Optional[Annotated[int, cli_rule(limits.non_negative_int)]] = None


class PlanRequest(BaseModel):
    """A medsamkit.markers.BoxPlan (computed by the client from its markers) plus segment_volume options."""

    model_config = ConfigDict(extra="forbid")

    axis: Annotated[int, Field(ge=0, le=2)]
    boxes: Annotated[dict[int, Box], Field(min_length=1, max_length=MAX_PLAN_SLICES)]  # slice -> XYXY pixels
    marked: Annotated[list[int], Field(max_length=MAX_PLAN_SLICES)] = []
    warnings: Annotated[list[Annotated[str, Field(max_length=1000)]], Field(max_length=100)] = []
    refine: bool = False
