"""What every section's checks share: one error that names the key, the numeric ranges declared on the fields
themselves (``bounded`` / ``check_bounds``), and the name rules used in more than one section."""

from __future__ import annotations

import dataclasses
import re
from typing import Any

from foundry.errors import ConfigError

# A Ray object name (a Serve application, a monitor actor's prefix).
SERVE_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")

# OmegaConf's marker for a value the YAML must give (``omegaconf.MISSING``), spelled here so that the
# schema modules import without OmegaConf (~0.16 s): a training worker unpickles its TrainerConfig and
# Task, and needs neither OmegaConf nor Hydra (tests/unit/test_config_imports.py).
MISSING = "???"

# The key of a field's ``metadata`` that holds its range (OmegaConf and Hydra ignore field metadata).
BOUNDS = "foundry.bounds"


def check_model_name(name: str) -> None:
    """``model_name`` names folders and actors: non-empty, no '/' (the whole config, a replica's, the monitor's)."""
    require(bool(name) and "/" not in name, "model_name", f"must be a non-empty name without '/', got {name!r}")


def require(ok: bool, key: str, message: str) -> None:
    """Raise ``ConfigError("<key>: <message>")`` unless ``ok``: every check names the key it is about."""
    if not ok:
        raise ConfigError(f"{key}: {message}")


@dataclasses.dataclass(frozen=True)
class Bounds:
    """A numeric range: a lower bound (``ge`` inclusive or ``gt`` exclusive) and/or an upper one (``le``/``lt``)."""

    ge: float | None = None
    gt: float | None = None
    le: float | None = None
    lt: float | None = None

    def __post_init__(self) -> None:
        if (self.ge is not None and self.gt is not None) or (self.le is not None and self.lt is not None):
            raise ValueError("a bound takes at most one of ge/gt and one of le/lt")
        if all(b is None for b in (self.ge, self.gt, self.le, self.lt)):
            raise ValueError("a bound needs at least one of ge, gt, le, lt")

    def holds(self, value: Any) -> bool:
        return ((self.ge is None or value >= self.ge) and (self.gt is None or value > self.gt)
                and (self.le is None or value <= self.le) and (self.lt is None or value < self.lt))

    def describe(self) -> str:
        """``>= 1``, ``> 0``, ``<= 60``, or both sides as an interval: ``in (0, 1)``, ``in [0, 60]``."""
        low, high = self.ge if self.ge is not None else self.gt, self.le if self.le is not None else self.lt
        if low is not None and high is not None:
            return f"in {'[' if self.ge is not None else '('}{low}, {high}{']' if self.le is not None else ')'}"
        if low is not None:
            return f"{'>=' if self.ge is not None else '>'} {low}"
        return f"{'<=' if self.le is not None else '<'} {high}"


def bounded(default: Any, *, ge: float | None = None, gt: float | None = None,
            le: float | None = None, lt: float | None = None) -> Any:
    """A dataclass field with a default and a numeric range, enforced by ``check_bounds``::

        epochs: int = bounded(20, ge=1)            # must be >= 1
        lr: float = bounded(1e-3, gt=0)             # must be > 0
        p_val: float = bounded(0.05, gt=0, lt=1)    # must be in (0, 1)

    The range lives in the field's metadata, which OmegaConf (and so Hydra's schema) ignores; a None value
    (an Optional field left null) is not checked. The section's ``validate()`` calls ``check_bounds``.
    """
    return dataclasses.field(default=default, metadata={BOUNDS: Bounds(ge=ge, gt=gt, le=le, lt=lt)})


def field_bounds(cls_or_obj: Any) -> dict[str, Bounds]:
    """The ranges a dataclass declares with ``bounded``, by field name."""
    return {f.name: f.metadata[BOUNDS] for f in dataclasses.fields(cls_or_obj) if BOUNDS in f.metadata}


def check_bounds(obj: Any, prefix: str) -> None:
    """Check every ``bounded`` field of the dataclass ``obj`` (its own fields, not nested sections'): raise
    ``ConfigError("<prefix>.<field>: must be >= 1, got 0")`` for the first value out of its range."""
    for name, bounds in field_bounds(obj).items():
        value = getattr(obj, name)
        if value is not None:
            require(bounds.holds(value), f"{prefix}.{name}", f"must be {bounds.describe()}, got {value}")
