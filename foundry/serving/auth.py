"""Checking the API keys that guard /predict, /model and /feedback: scopes, constant-time verification,
caches and a rate limit on verifying unknown keys.

What a key and a digest are, where keys and digests come from, rotation lists, the strength rules and
what travels to the replicas are in ``foundry.serving.keys`` (the key material); the names of it that
callers used to import from here are re-exported (``__all__``).

- Scopes. ``/predict`` and ``/model`` take a *predict* key. ``/feedback`` (labels that later train
  the model) takes a *feedback* key once ``serve.auth.feedback_key_env`` or ``feedback_key_file`` is
  set: then a predict key gets 403 on /feedback and a feedback key 403 on /predict and /model. Without
  one the predict key opens all three, as before (replicas log a warning: labels share the predict key).
- How a presented key is checked: PBKDF2 against every listed digest of both scopes (no early exit;
  ``hmac.compare_digest``), once per distinct key and process. The outcome is cached under
  HMAC-SHA256(per-process random secret, key), never the key itself, in two bounded LRUs: accepted
  keys (``ACCEPTED_CACHE``; only listed keys get in) and refused keys (``REFUSED_CACHE``: a wrong key
  sent again costs a dictionary lookup). A replica's digests never change while it lives, so entries
  need no expiry. A key that cannot be one (shorter than 32 or longer than 1024 characters, not
  printable ASCII) is refused without any work. Keys in neither cache are verified at most
  ``VERIFY_BURST`` at once and ``VERIFY_RATE`` per second (a token bucket); beyond that the request
  gets 429 without verification, so a flood of distinct wrong keys costs a bounded share of one CPU.
  Keys already verified are never throttled.
- How clients send it: ``X-API-Key: <key>`` or ``Authorization: Bearer <key>``.

``python -m foundry.serving.auth`` prints the digest(s) of ``$FOUNDRY_API_KEY`` (for a job's
runtime_env); ``--feedback`` those of the feedback key; ``--add-to LIST`` appends them to an existing
digest list (for a rotation).
"""

from __future__ import annotations

import enum
import hashlib
import hmac
import logging
import os
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Mapping, Sequence

from foundry.config import ServeAuthConfig
from foundry.errors import ConfigError
from foundry.serving.keys import (
    ITERATIONS,
    MAX_DIGESTS,
    MAX_KEY_LENGTH,
    MIN_KEY_LENGTH,
    Digest,
    KeyDigests,
    Scope,
    carried_digests,
    check_key_strength,
    digest_list,
    has_feedback_key,
    key_digest,
    key_weakness,
    load_api_key,
    load_api_keys,
    load_key_digests,
    parse_digests,
    printable_ascii,
)

API_KEY_HEADER = "x-api-key"

ACCEPTED_CACHE = 64
REFUSED_CACHE = 4096
VERIFY_RATE = 4.0  # uncached verifications per second, after a burst of VERIFY_BURST
VERIFY_BURST = 8


class AuthResult(enum.Enum):
    ok = "ok"
    missing = "missing"  # 401
    invalid = "invalid"  # 403
    wrong_scope = "wrong_scope"  # 403: a valid key, of the other scope
    busy = "busy"  # 429: too many unknown keys to verify right now


# ---- checking presented keys ------------------------------------------------------------------------

class ApiKeyChecker:
    """Checks request headers against the keys' digests; ``ApiKeyChecker(None)`` lets everything through.

    ``ApiKeyChecker(key, feedback_key)`` digests the given keys (each a key or a list of keys) here;
    replicas use ``from_digests(load_key_digests(...))``. See the module doc for the caches."""

    __slots__ = ("_digests", "_secret", "_accepted", "_refused", "_refused_max", "_lock", "_rate", "_burst",
                 "_tokens", "_last", "_clock", "verifications")

    def __init__(self, key: str | Sequence[str] | None, feedback_key: str | Sequence[str] | None = None, *,
                 iterations: int = ITERATIONS, refused_cache: int = REFUSED_CACHE, verify_rate: float = VERIFY_RATE,
                 verify_burst: int = VERIFY_BURST, clock: Callable[[], float] = time.monotonic):
        keys, feedback_keys = _as_keys(key, "key"), _as_keys(feedback_key, "feedback key")
        if feedback_keys is not None and keys is None:
            raise ValueError("a feedback key needs a predict key")
        self._digests = None if keys is None else KeyDigests.of_keys(keys, feedback_keys, iterations)
        self._secret = os.urandom(32)
        self._accepted: OrderedDict[bytes, frozenset[Scope]] = OrderedDict()
        self._refused: OrderedDict[bytes, None] = OrderedDict()
        self._refused_max = refused_cache
        self._lock = threading.Lock()
        self._rate, self._burst, self._clock = verify_rate, verify_burst, clock
        self._tokens, self._last = float(verify_burst), clock()
        self.verifications = 0  # slow verifications done (each: PBKDF2 against every listed digest)

    @classmethod
    def from_digests(cls, digests: KeyDigests | None, **options) -> ApiKeyChecker:
        checker = cls(None, **options)
        checker._digests = digests
        return checker

    @property
    def enabled(self) -> bool:
        return self._digests is not None

    @property
    def feedback_shares_the_predict_key(self) -> bool:
        return self._digests is not None and self._digests.feedback is None

    def cache_sizes(self) -> tuple[int, int]:
        """(accepted, refused) entries."""
        return len(self._accepted), len(self._refused)

    def __repr__(self) -> str:
        return f"ApiKeyChecker(enabled={self.enabled})"

    def _take_token(self) -> bool:
        now = self._clock()
        self._tokens = min(float(self._burst), self._tokens + max(0.0, now - self._last) * self._rate)
        self._last = now
        if self._tokens < 1:
            return False
        self._tokens -= 1
        return True

    def _verify(self, presented: str) -> frozenset[Scope]:
        key, digests = presented.encode("utf-8"), self._digests
        predict = [d.matches(key) for d in digests.predict]  # every digest, no early exit
        feedback = [d.matches(key) for d in digests.feedback or ()]
        if digests.feedback is None:
            return frozenset(Scope) if any(predict) else frozenset()
        return frozenset(s for s, hits in ((Scope.predict, predict), (Scope.feedback, feedback)) if any(hits))

    def _scopes(self, presented: str) -> frozenset[Scope] | None:
        """The scopes ``presented`` opens (empty: none), or None when it cannot be verified right now."""
        tag = hmac.new(self._secret, presented.encode("utf-8"), hashlib.sha256).digest()
        with self._lock:
            scopes = self._accepted.get(tag)
            if scopes is not None:
                self._accepted.move_to_end(tag)
                return scopes
            if tag in self._refused:
                self._refused.move_to_end(tag)
                return frozenset()
            if not self._take_token():
                return None
            self.verifications += 1
        scopes = self._verify(presented)
        with self._lock:
            cache, bound = (self._accepted, ACCEPTED_CACHE) if scopes else (self._refused, self._refused_max)
            cache[tag] = scopes or None
            cache.move_to_end(tag)
            while len(cache) > bound:
                cache.popitem(last=False)
        return scopes

    def check(self, presented: str | None, scope: Scope = Scope.predict) -> AuthResult:
        if self._digests is None:
            return AuthResult.ok
        if not presented:
            return AuthResult.missing
        if not MIN_KEY_LENGTH <= len(presented) <= MAX_KEY_LENGTH or not printable_ascii(presented):
            return AuthResult.invalid  # no configured key looks like this: nothing to verify
        scopes = self._scopes(presented)
        if scopes is None:
            return AuthResult.busy
        if scope in scopes:
            return AuthResult.ok
        return AuthResult.wrong_scope if scopes else AuthResult.invalid

    def check_headers(self, headers: Mapping[str, str], scope: Scope = Scope.predict) -> AuthResult:
        """``headers`` with lower-case names (ASGI and Starlette both give them so)."""
        return self.check(presented_key(headers), scope)


def _as_keys(keys: str | Sequence[str] | None, what: str) -> tuple[str, ...] | None:
    if keys is None:
        return None
    keys = (keys,) if isinstance(keys, str) else tuple(keys)
    if not keys:
        raise ValueError(f"no {what} given (None, not an empty list, turns auth off)")
    for key in keys:
        check_key_strength(key, f"ApiKeyChecker {what}")
    return keys


def replica_checker(auth: ServeAuthConfig, log: logging.Logger,
                    environ: Mapping[str, str] | None = None) -> ApiKeyChecker:
    """The checker a serving process starts with (no key fails it, never opens it), with its warnings."""
    checker = ApiKeyChecker.from_digests(load_key_digests(auth, environ))
    if not checker.enabled:
        log.warning("serve.auth.enabled=false: /predict, /feedback and /model accept requests without a key")
    elif checker.feedback_shares_the_predict_key:
        log.warning("no feedback key (serve.auth.feedback_key_env / feedback_key_file): every client that may "
                    "predict may also send /feedback labels, which train the next model")
    return checker


def presented_key(headers: Mapping[str, str]) -> str | None:
    key = headers.get(API_KEY_HEADER)
    if key:
        return key.strip()
    auth = headers.get("authorization", "")
    scheme, _, value = auth.partition(" ")
    if scheme.lower() == "bearer" and value.strip():
        return value.strip()
    return None


# ---- command line -----------------------------------------------------------------------------------

def _cli_digests(auth: ServeAuthConfig, feedback: bool, add_to: str | None) -> str:
    scope = Scope.feedback if feedback else Scope.predict
    if not auth.enabled:
        raise ConfigError("serve.auth.enabled=false: there is no key to digest")
    if feedback and not has_feedback_key(auth):
        raise ConfigError("--feedback: no feedback key is configured (set serve.auth.feedback_key_env, e.g. "
                          "serve.auth.feedback_key_env=FOUNDRY_FEEDBACK_KEY, or serve.auth.feedback_key_file)")
    keys = load_api_keys(auth, scope=scope)
    existing = list(parse_digests(add_to, "--add-to")) if add_to is not None and add_to.strip() else []
    out = list(existing)
    for key in keys:
        if not any(d.matches(key.encode("utf-8")) for d in existing):
            out.append(Digest.make(key))
    if len(out) > MAX_DIGESTS:
        raise ConfigError(f"--add-to: the list would hold {len(out)} digests, at most {MAX_DIGESTS} are accepted")
    return ",".join(map(str, out))


def main(argv: list[str] | None = None) -> int:
    """Print salted digests of the API key(s) in $FOUNDRY_API_KEY (serve.auth.api_key_env), comma-separated.

    Checked like a deploy checks them: what to give a job as ``FOUNDRY_API_KEY_SHA256`` instead of the key."""

    from foundry.config import sources as config_sources
    from foundry.console.entry import run_or_exit

    p = config_sources.parser("python -m foundry.serving.auth", main.__doc__.split("\n")[0])
    p.add_argument("--feedback", action="store_true",
                   help="the feedback key's digests (serve.auth.feedback_key_env/_file), for FOUNDRY_FEEDBACK_KEY_SHA256")
    p.add_argument("--add-to", metavar="DIGESTS",
                   help="an existing digest list: print it with the key's digest appended (rotation); a key it "
                        "already holds is not added again. To drop an old key, run without it")
    args = p.parse_intermixed_args(argv)
    print(run_or_exit(lambda: _cli_digests(config_sources.load(config_sources.from_args(args)).serve.auth,
                                           args.feedback, args.add_to)))
    return 0


__all__ = [
    "ACCEPTED_CACHE", "API_KEY_HEADER", "REFUSED_CACHE", "VERIFY_BURST", "VERIFY_RATE",
    "ApiKeyChecker", "AuthResult", "main", "presented_key", "replica_checker",
    # moved to foundry.serving.keys, re-exported for the callers that import them from here
    "Digest", "KeyDigests", "Scope", "carried_digests", "check_key_strength", "digest_list", "key_digest",
    "key_weakness", "load_api_key", "load_api_keys", "load_key_digests", "parse_digests",
]


if __name__ == "__main__":
    raise SystemExit(main())
