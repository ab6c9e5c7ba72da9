"""Which version answers a request, and the request ids that make that reproducible.

A request is routed by a hash of its request id, salted with the challenger's version id:
``u = blake2b(salt:id) / 2**64``; the challenger answers when ``u < fraction``. So every replica
(and every replica the autoscaler adds) splits traffic the same way without coordination, a retry
with the same ``request_id`` meets the same version, and stepping the fraction up (5% -> 25%) only
adds requests to the challenger's share: no request flips back. A new challenger (a new salt) gets a
fresh, independent split. The whole request (all its rows) goes to one version.

Row ids: a request may carry its own ``request_id`` (32 hex digits, or a UUID with dashes); otherwise
one is drawn. Row 0 of the request is answered under that id, row ``i`` under
``blake2b(id:i)`` (32 hex digits), so a retried request returns the same row ids and its labels
(``POST /feedback``) land on the same rows whichever replica answered.
"""

from __future__ import annotations

import hashlib
import uuid

_SCALE = float(2**64)


def normalize_request_id(request_id: str | None) -> str:
    """The request's id as 32 lowercase hex digits (a fresh one when the client sent none)."""
    if request_id is None:
        return uuid.uuid4().hex
    return request_id.replace("-", "").lower()


def row_ids(request_id: str, rows: int) -> list[str]:
    """The ids the rows of one request are answered under (row 0: the request id itself)."""
    return [request_id] + [hashlib.blake2b(f"{request_id}:{i}".encode(), digest_size=16).hexdigest()
                           for i in range(1, rows)]


def bucket(request_id: str, salt: str) -> float:
    """A uniform number in [0, 1) fixed by the request id and the salt."""
    digest = hashlib.blake2b(f"{salt}:{request_id}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") / _SCALE


def to_challenger(request_id: str, salt: str, fraction: float) -> bool:
    return fraction > 0 and (fraction >= 1 or bucket(request_id, salt) < fraction)
