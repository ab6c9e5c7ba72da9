"""Turn every way a request can be wrong into one 4xx answer that names the field.

FastAPI/pydantic report a list of errors with machine locations (``("body", "rows", 3, "age")``)
and generic messages ("Field required"); clients need ``rows[3].age: Field required``. Each error
also gets a short *reason* (``missing_field``, ``out_of_range``...) that is the value of the
``error`` key in the response and the tag of the rejected-requests metric, so its cardinality is
fixed by this module, never by client input.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

MAX_PROBLEMS = 20  # a 1000-row request can fail 12,000 ways; the first few are enough to fix it

_REASONS = {
    "missing": "missing_field",
    "extra_forbidden": "extra_field",
    "finite_number": "not_finite",
    "unknown_category": "unknown_category",
    "greater_than_equal": "out_of_range",
    "less_than_equal": "out_of_range",
    "greater_than": "out_of_range",
    "less_than": "out_of_range",
    "too_short": "empty",
    "too_long": "too_many_rows",
    "json_invalid": "malformed_json",
    "duplicate_request_id": "duplicate_request_id",
    "string_pattern_mismatch": "invalid_request_id",
}
# Reasons that are about the size of a request rather than its content.
_STATUS = {"too_many_rows": 413, "malformed_json": 400}


@dataclass
class Rejection:
    status: int
    reason: str
    message: str
    problems: list[dict[str, str]] = field(default_factory=list)

    def body(self) -> dict[str, Any]:
        return {"error": self.reason, "message": self.message, "problems": self.problems}


def field_path(loc: Sequence[Any]) -> str:
    """``("body", "rows", 3, "age")`` -> ``rows[3].age``; the body itself is ``body``."""
    parts = list(loc)
    if parts and parts[0] == "body":
        parts = parts[1:]
    out = ""
    for p in parts:
        if isinstance(p, int):
            out += f"[{p}]"
        else:
            out += f".{p}" if out else str(p)
    return out or "body"


def reason_of(error_type: str) -> str:
    if error_type in _REASONS:
        return _REASONS[error_type]
    if error_type.endswith(("_type", "_parsing")):
        return "wrong_type"
    return "invalid"


def describe(errors: Iterable[dict[str, Any]]) -> Rejection:
    """One rejection for a list of pydantic/FastAPI errors; the first error picks status and reason."""
    problems: list[dict[str, str]] = []
    first_reason = None
    total = 0
    for err in errors:
        total += 1
        etype = str(err.get("type", "invalid"))
        reason = reason_of(etype)
        first_reason = first_reason or reason
        loc = tuple(err.get("loc", ()))
        if etype == "json_invalid":
            # FastAPI puts the character offset where the field would be.
            pos = loc[1] if len(loc) > 1 else "?"
            detail = (err.get("ctx") or {}).get("error", "invalid JSON")
            problems.append({"field": "body", "type": reason, "message": f"malformed JSON at character {pos}: {detail}"})
            continue
        path = field_path(loc)
        message = str(err.get("msg", "invalid value"))
        if etype == "missing" and path == "body":
            message = "the request body is empty; send a JSON object"
        elif etype == "extra_forbidden":
            message = "unexpected field (not in the schema)"
        if len(problems) < MAX_PROBLEMS:
            problems.append({"field": path, "type": reason, "message": message})
    if first_reason is None:
        return Rejection(422, "invalid", "invalid request")
    summary = "; ".join(f"{p['field']}: {p['message']}" for p in problems[:3])
    if total > 3:
        summary += f" (and {total - 3} more problem(s))"
    return Rejection(_STATUS.get(first_reason, 422), first_reason, summary, problems)


def simple(status: int, reason: str, message: str, field_name: str = "body") -> Rejection:
    return Rejection(status, reason, message, [{"field": field_name, "type": reason, "message": message}])


class Refused(Exception):
    """A request the backend refuses after validation (e.g. labels without provenance): one 4xx answer."""

    def __init__(self, rejection: Rejection):
        super().__init__(rejection.message)
        self.rejection = rejection
