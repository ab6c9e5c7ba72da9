"""The request and response models of the HTTP API, built from the data schema at start-up.

Why built, not written: features, types, ranges and categories live in the Hydra data config (the
single source of truth), so the contract, and the /docs and /openapi.json that describe it, follow
the data set instead of a hand-written copy that could drift from it.

Why every check is a field constraint: pydantic-core validates the whole body in one pass in Rust,
and each failure carries its location (``rows[3].age``), so any bad input is answered with a
message that names the row and the feature. The serving policies (``serve.input_policy``) decide
which constraints exist: ``out_of_range=reject`` adds ``ge``/``le`` from the schema's min/max, and
an unknown category is rejected only where the policy says so. Rows are TypedDicts, not models:
validation then yields plain dicts keyed by the feature names (which need not be Python
identifiers), which is what inference turns into columns.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from typing import Annotated, Any, Optional

from pydantic import AfterValidator, BaseModel, BeforeValidator, ConfigDict, Field, create_model
from pydantic_core import PydanticCustomError
from typing_extensions import NotRequired, TypedDict

from foundry.config import (
    DataConfig,
    FeatureSpec,
    FeatureType,
    OutOfRangePolicy,
    ServeConfig,
    Task,
    UnknownCategoryPolicy,
    UnknownCategoryServePolicy,
)

REQUEST_ID_PATTERN = r"^[0-9a-f]{32}$"
CLIENT_REQUEST_ID_PATTERN = r"^(?:[0-9a-fA-F]{32}|[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12})$"
_SHOWN_VALUE = 40  # longest slice of a client's value echoed back in an error message


def _shown(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= _SHOWN_VALUE else text[:_SHOWN_VALUE] + "...'"


def as_category(value: Any) -> str:
    """Categories compare as strings (as in training), so ``1`` and ``"1"`` are one category;
    anything else (bools, floats, lists) is a type error rather than a silent ``str()``."""
    if isinstance(value, str):
        return value
    if isinstance(value, int) and not isinstance(value, bool):
        return str(value)
    raise PydanticCustomError("category_type", "expected a category (a string), got {kind}",
                              {"kind": type(value).__name__})


def _category_checker(allowed: list[str] | None, reject_unknown: bool):
    allowed_set = frozenset(allowed or ())

    def check(value: Any) -> str:
        text = as_category(value)
        if reject_unknown and allowed is not None and text not in allowed_set:
            raise PydanticCustomError("unknown_category", "{value} is not an allowed category; allowed: {allowed}",
                                      {"value": _shown(text), "allowed": ", ".join(allowed)})
        return text

    return check


def _category_schema(enum: list[str] | None):
    """The published schema says what ``as_category`` takes: a string (from ``enum`` when unknown
    categories are rejected) or an integer, compared as its decimal string. A schema that said only
    "string" would call valid requests invalid (schemathesis' negative cases found it)."""

    def update(schema: dict) -> None:
        schema.pop("type", None)
        string = {"type": "string", **({"enum": enum} if enum else {})}
        integer = {"type": "integer", **({"enum": [int(v) for v in enum if v.lstrip("-").isdigit()]} if enum else {})}
        if enum and not integer["enum"]:
            schema.update(string)
        else:
            schema["anyOf"] = [string, integer]

    return update


def rejects_unknown(feature: FeatureSpec, policy: UnknownCategoryServePolicy) -> bool:
    if policy is UnknownCategoryServePolicy.schema:
        return feature.on_unknown is UnknownCategoryPolicy.error
    return policy is UnknownCategoryServePolicy.reject


def _feature_type(f: FeatureSpec, serve: ServeConfig) -> Any:
    if f.type is FeatureType.numeric:
        bounded = serve.input_policy.out_of_range is OutOfRangePolicy.reject
        rng = f"in [{'-inf' if f.min is None else f.min}, {'inf' if f.max is None else f.max}]"
        base = Annotated[float, Field(strict=True, allow_inf_nan=False,
                                      ge=f.min if bounded else None, le=f.max if bounded else None,
                                      description=f"numeric {rng}" + ("" if bounded else
                                                                      f" ({serve.input_policy.out_of_range.value})"))]
    else:
        reject = rejects_unknown(f, serve.input_policy.unknown_category)
        values = list(f.values) if f.values is not None else None
        desc = "categorical" + (f": one of {values}" if values else "")
        if values and not reject:
            desc += " (other values are accepted and use the model's 'unknown' category)"
        base = Annotated[str, BeforeValidator(_category_checker(values, reject)),
                         Field(description=desc, json_schema_extra=_category_schema(values if reject else None))]
    if f.nullable:
        return NotRequired[Optional[base]]  # noqa: UP045 -- evaluated by pydantic at run time
    return base


def _unique_ids(items: list[dict]) -> list[dict]:
    seen: dict[str, int] = {}
    for i, item in enumerate(items):
        rid = item["request_id"]
        if rid in seen:
            raise PydanticCustomError("duplicate_request_id",
                                      "request_id {rid} appears twice (labels[{first}] and labels[{again}])",
                                      {"rid": rid, "first": seen[rid], "again": i})
        seen[rid] = i
    return items


def _finite_label(value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise PydanticCustomError("label_type", "expected a number, got {kind}", {"kind": type(value).__name__})
    if not math.isfinite(value):
        raise PydanticCustomError("finite_number", "Input should be a finite number")
    return float(value)


def _label_type(data: DataConfig) -> Any:
    if data.task is Task.regression:
        return Annotated[float, BeforeValidator(_finite_label), Field(description=f"the true {data.label}")]
    classes = list(data.classes)
    # The enum puts the rule the validator enforces into the OpenAPI schema too (as for the features'
    # rejected categories), so a client generated from the schema sends a label the API accepts.
    return Annotated[str, BeforeValidator(_category_checker(classes, True)),
                     Field(description=f"the true {data.label}: one of {classes}", json_schema_extra={"enum": classes})]


# ---- responses (the same for every data set) ------------------------------------------------------

class RowPrediction(BaseModel):
    request_id: str = Field(description="unique id of this row's prediction; send it back to /feedback")
    prediction: str | float = Field(description="predicted class label, or the predicted value (regression)")
    probabilities: dict[str, float] | None = Field(None, description="class -> probability (classification)")
    model_version: str


class PredictResponse(BaseModel):
    model: str
    model_version: str = Field(description="the one version that produced every row of this response")
    request_id: str = Field(description="the request's id (the client's, or a new one); row 0 is answered under it")
    predictions: list[RowPrediction]


class FeedbackResponse(BaseModel):
    accepted: int
    model: str
    corrections: int = 0


class Problem(BaseModel):
    field: str
    type: str
    message: str


class ErrorResponse(BaseModel):
    error: str = Field(description="machine-readable reason, e.g. out_of_range, missing_field, unauthorized")
    message: str = Field(description="human-readable summary naming the offending field(s)")
    problems: list[Problem] = Field(default_factory=list)


@dataclass(frozen=True)
class ApiModels:
    """Everything about the HTTP contract that depends on the data schema and the serving config."""

    feature_names: tuple[str, ...]
    predict_request: type[BaseModel]
    feedback_request: type[BaseModel]
    clip_bounds: dict[str, tuple[float | None, float | None]]  # features to clip (out_of_range=clip)


def _model_name(name: str) -> str:
    return re.sub(r"[^0-9A-Za-z]", "", name.title()) or "Model"


def build_models(data: DataConfig, serve: ServeConfig) -> ApiModels:
    features = {f.name: _feature_type(f, serve) for f in data.features}
    title = _model_name(data.name)
    row = TypedDict(f"{title}Features", features)  # functional form: feature names need not be identifiers
    row.__pydantic_config__ = ConfigDict(extra="forbid")
    max_rows = serve.limits.max_rows
    forbid = ConfigDict(extra="forbid")
    predict_request = create_model(
        f"{title}PredictRequest", __config__=forbid,
        rows=(Annotated[list[row], Field(min_length=1, max_length=max_rows,
                                         description=f"1 to {max_rows} rows, each a JSON object keyed by feature name")],
              ...),
        request_id=(Optional[Annotated[str, Field(pattern=CLIENT_REQUEST_ID_PATTERN, strict=True)]],  # noqa: UP045
                    Field(default=None, description="optional: your id for this request (32 hex digits or a UUID). "
                          "A retry with the same id gets the same row ids and, during a canary, the same version")),
    )
    item = TypedDict(f"{title}Feedback", {  # noqa: UP013 -- named per data set in the OpenAPI schema
        "request_id": Annotated[str, Field(pattern=REQUEST_ID_PATTERN, strict=True,
                                           description="a request_id returned by /predict")],
        "label": _label_type(data),
    })
    item.__pydantic_config__ = forbid
    feedback_request = create_model(
        f"{title}FeedbackRequest", __config__=forbid,
        labels=(Annotated[list[item], Field(min_length=1, max_length=max_rows), AfterValidator(_unique_ids)], ...),
    )
    clip = {}
    if serve.input_policy.out_of_range is OutOfRangePolicy.clip:
        clip = {f.name: (f.min, f.max) for f in data.features
                if f.type is FeatureType.numeric and (f.min is not None or f.max is not None)}
    return ApiModels(tuple(features), predict_request, feedback_request, clip)
