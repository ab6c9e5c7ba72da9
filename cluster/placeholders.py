"""Values in a cluster config that only stand in for the user's own.

The shipped ``conf/cluster/{aws,gcp,kuberay}.yaml`` must render out of the box (for a look, and for
the tests), so they name an example AWS account (123456789012, the id AWS's documentation uses), images
under ``ghcr.io/example-org``, the GCP project ``example-project`` and ``example-foundry-artifacts``
buckets. Rendered as they are, ``ray up`` or ``kubectl apply`` fails much later (an unknown
instance profile, an image that cannot be pulled, a bucket someone else owns), so rendering names
each such key: a warning by default, a ConfigError with ``cluster.placeholders=fail`` or
``python -m cluster render --strict``.

Only the keys the rendered files use are scanned: ``storage.root`` and ``cluster.*``, without the
sections of the other kinds (``cloud`` and ``install`` on kuberay, ``kuberay`` on aws/gcp) or
``install.git_url`` when nothing is cloned.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Iterator
from enum import Enum
from typing import Any, NamedTuple

from foundry.config import ClusterConfig, ClusterKind, FoundryConfig, InstallSource

PATTERNS: list[tuple[re.Pattern[str], str]] = [
    (re.compile(r"(?<![0-9])(123456789012|000000000000)(?![0-9])"), "an example AWS account id"),
    # example-org, example.com, example-project, example-foundry-artifacts; not "examples" or "counterexample".
    (re.compile(r"(?<![A-Za-z0-9])example(?![A-Za-z0-9])", re.IGNORECASE), "an example name"),
    (re.compile(r"<[^<>\s]+>"), "a template slot"),
    (re.compile(r"(?<![A-Za-z0-9])(changeme|change-me|replace-?me|your-[a-z0-9-]+)(?![A-Za-z0-9])", re.IGNORECASE),
     "a fill-me-in marker"),
]


class Placeholder(NamedTuple):
    key: str
    value: str
    why: str

    def __str__(self) -> str:
        return f"{self.key}: {self.value!r} looks like {self.why}; set your own value"


class PlaceholderWarning(UserWarning):
    """A rendered cluster file still holds a placeholder value (one warning per key)."""


def _strings(key: str, value: Any) -> Iterator[tuple[str, str]]:
    if isinstance(value, Enum) or value is None:
        return
    if isinstance(value, str):
        yield key, value
    elif dataclasses.is_dataclass(value):
        for f in dataclasses.fields(value):
            yield from _strings(f"{key}.{f.name}", getattr(value, f.name))
    elif isinstance(value, dict):
        for k, v in value.items():
            yield from _strings(f"{key}.{k}", v)
    elif isinstance(value, (list, tuple)):
        for i, v in enumerate(value):
            yield from _strings(f"{key}[{i}]", v)


def _skipped(c: ClusterConfig) -> tuple[str, ...]:
    """Key prefixes the rendered files of this cluster kind do not use."""
    if c.kind is ClusterKind.kuberay:
        return ("cluster.cloud.", "cluster.install.")
    skipped = ("cluster.kuberay.",)
    if c.install.source is not InstallSource.git:
        skipped += ("cluster.install.git_url", "cluster.install.git_ref")
    return skipped


def find(cfg: FoundryConfig) -> list[Placeholder]:
    """Every used key of a rendered (aws/gcp/kuberay) cluster whose value looks like a placeholder."""
    if cfg.cluster.kind is ClusterKind.local:
        return []
    skipped = _skipped(cfg.cluster)
    found = []
    for key, value in [("storage.root", cfg.storage.root), *_strings("cluster", cfg.cluster)]:
        if key.startswith(skipped):
            continue
        for pattern, why in PATTERNS:
            if pattern.search(value):
                found.append(Placeholder(key, value, why))
                break
    return found
