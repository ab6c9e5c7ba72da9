"""Only lost nodes/processes are retried; bad data and bugs fail at once, and retries are bounded."""

from __future__ import annotations

import pytest
from ray.exceptions import ActorDiedError, NodeDiedError, RayTaskError

from foundry.errors import DataValidationError
from foundry.runtime.node_loss import is_node_loss, retry_on_node_loss


def _flaky(failures: list[BaseException]):
    calls = {"n": 0}

    def fn():
        calls["n"] += 1
        if failures:
            raise failures.pop(0)
        return "done"

    return fn, calls


def _wrapped(inner: BaseException) -> Exception:
    try:
        try:
            raise inner
        except BaseException as exc:
            raise RuntimeError("Ray Data execution failed") from exc
    except RuntimeError as outer:
        return outer


@pytest.mark.parametrize("exc, lost", [
    (ActorDiedError(), True),
    (NodeDiedError("node gone"), True),
    (_wrapped(ActorDiedError()), True),  # Ray Data re-raises with the loss as the cause
    (RayTaskError("fn", "tb", NodeDiedError("gone")), True),
    (ValueError("column x is not numeric"), False),
    (_wrapped(KeyError("x")), False),
])
def test_what_counts_as_a_node_loss(exc, lost):
    assert is_node_loss(exc) is lost


def test_a_lost_node_is_retried_until_it_works():
    fn, calls = _flaky([ActorDiedError(), _wrapped(NodeDiedError("gone"))])
    said = []
    assert retry_on_node_loss(fn, "preparing", retries=2, say=said.append, backoff_s=0) == "done"
    assert calls["n"] == 3 and len(said) == 2 and "retry 2/2" in said[-1]


def test_retries_are_bounded():
    fn, calls = _flaky([ActorDiedError(), ActorDiedError(), ActorDiedError()])
    with pytest.raises(ActorDiedError):
        retry_on_node_loss(fn, "preparing", retries=2, say=lambda _: None, backoff_s=0)
    assert calls["n"] == 3


def test_bad_data_is_never_retried():
    fn, calls = _flaky([DataValidationError("age: 12 values above the allowed maximum")])
    with pytest.raises(DataValidationError):
        retry_on_node_loss(fn, "preparing", retries=5, say=lambda _: None, backoff_s=0)
    assert calls["n"] == 1
