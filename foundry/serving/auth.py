"""The API keys that guard /predict, /model and /feedback: salted slow digests, rotation, two scopes.

- Scopes. ``/predict`` and ``/model`` take a *predict* key. ``/feedback`` (labels that later train
  the model) takes a *feedback* key once ``serve.auth.feedback_key_env`` or ``feedback_key_file`` is
  set: then a predict key gets 403 on /feedback and a feedback key 403 on /predict and /model. Without
  one the predict key opens all three, as before (replicas log a warning: labels share the predict key).
- Where keys come from, per scope: the file (``api_key_file`` / ``feedback_key_file``, e.g. a
  mounted secret; every replica reads it), otherwise the environment variable (``api_key_env`` /
  ``feedback_key_env``) of the process that deploys. A missing or empty key with auth on is a
  start-up error, never an open endpoint; only ``serve.auth.enabled=false`` serves without one.
- Rotation without downtime. A key file or variable may list several keys, and a digest variable
  several digests, separated by commas or newlines; any listed key is accepted. List the new key
  next to the old one and deploy, move the clients to the new key, then deploy with the new key
  alone: the old one gets 403 from then on.
- Strength. Every key has at least 32 printable ASCII characters, at least 8 distinct ones, is not
  one short pattern repeated, and has at least 128 bits by a simple estimate (length x log2 of the
  size of the character classes it uses: lower case, upper case, digits, other). Otherwise a
  ConfigError names the source; make a key with
  ``python -c 'import secrets; print(secrets.token_urlsafe(32))'``.
- What reaches the cluster: only salted slow digests, in ``api_key_sha256_env`` /
  ``feedback_key_sha256_env`` of the replicas' runtime_env (and of a job that deploys them). Ray
  writes every runtime_env to its logs and shows it on the dashboard, so the key itself must never be
  in one. Format: ``pbkdf2-sha256:<iterations>:<salt>:<hash>`` (PBKDF2-HMAC-SHA256, a random 16-byte
  salt, salt and 32-byte hash in URL-safe base64 without padding; no ``$``, which shells, Makefiles
  and docker compose would expand). The salt makes two digests of one key differ and defeats
  precomputed tables; the iterations make each guess cost milliseconds. The plain hex SHA-256 of
  earlier versions is refused with a ConfigError saying how to make the new one.
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

import base64
import binascii
import enum
import hashlib
import hmac
import logging
import math
import os
import re
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from foundry.config import ServeAuthConfig
from foundry.errors import ConfigError

API_KEY_HEADER = "x-api-key"
MIN_KEY_LENGTH = 32
MAX_KEY_LENGTH = 1024
MIN_KEY_BITS = 128
MIN_DISTINCT_CHARACTERS = 8
MAKE_A_KEY = "python -c 'import secrets; print(secrets.token_urlsafe(32))'"
MAKE_A_DIGEST = "python -m foundry.serving.auth"

SCHEME = "pbkdf2-sha256"
ITERATIONS = 100_000  # ~10-20 ms per digest: once per distinct key and replica, never per request
MIN_ITERATIONS = 10_000
MAX_ITERATIONS = 2_000_000
SALT_BYTES = 16
MAX_DIGESTS = 16  # per scope; a rotation needs two

ACCEPTED_CACHE = 64
REFUSED_CACHE = 4096
VERIFY_RATE = 4.0  # uncached verifications per second, after a burst of VERIFY_BURST
VERIFY_BURST = 8

_SEPARATORS = re.compile(r"[,\r\n]+")
_PLAIN_SHA256 = re.compile(r"[0-9a-fA-F]{64}")


class Scope(str, enum.Enum):
    predict = "predict"  # /predict, /model
    feedback = "feedback"  # /feedback


class AuthResult(enum.Enum):
    ok = "ok"
    missing = "missing"  # 401
    invalid = "invalid"  # 403
    wrong_scope = "wrong_scope"  # 403: a valid key, of the other scope
    busy = "busy"  # 429: too many unknown keys to verify right now


# ---- digests ----------------------------------------------------------------------------------------

def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


@dataclass(frozen=True)
class Digest:
    """One key's salted slow digest; ``str()`` is the form that travels, ``parse`` reads it back."""

    iterations: int
    salt: bytes
    hash: bytes

    @classmethod
    def make(cls, key: str, iterations: int = ITERATIONS) -> Digest:
        salt = os.urandom(SALT_BYTES)
        return cls(iterations, salt, hashlib.pbkdf2_hmac("sha256", key.encode("utf-8"), salt, iterations))

    @classmethod
    def parse(cls, text: str, source: str) -> Digest:
        if _PLAIN_SHA256.fullmatch(text):
            raise ConfigError(f"{source}: a plain SHA-256 digest is no longer accepted (unsalted and fast: a key "
                              f"could be guessed from it where Ray shows it); make a salted one with "
                              f"`{MAKE_A_DIGEST}` (from $FOUNDRY_API_KEY) and hand that over instead")
        parts = text.split(":")
        try:
            if len(parts) != 4 or parts[0] != SCHEME or not parts[1].isdigit():
                raise ValueError
            digest = cls(int(parts[1]), _unb64(parts[2]), _unb64(parts[3]))
        except (ValueError, binascii.Error):
            raise ConfigError(f"{source}: not a key digest ({SCHEME}:<iterations>:<salt>:<hash>); make one with "
                              f"`{MAKE_A_DIGEST}`") from None
        if not MIN_ITERATIONS <= digest.iterations <= MAX_ITERATIONS or len(digest.salt) < 8 \
                or len(digest.hash) != hashlib.sha256().digest_size:
            raise ConfigError(f"{source}: the digest's iterations must be in [{MIN_ITERATIONS}, {MAX_ITERATIONS}], "
                              f"its salt at least 8 bytes and its hash 32; make one with `{MAKE_A_DIGEST}`")
        return digest

    def matches(self, key: bytes) -> bool:
        return hmac.compare_digest(hashlib.pbkdf2_hmac("sha256", key, self.salt, self.iterations), self.hash)

    def __str__(self) -> str:
        return f"{SCHEME}:{self.iterations}:{_b64(self.salt)}:{_b64(self.hash)}"

    def __repr__(self) -> str:
        return f"Digest({SCHEME}, iterations={self.iterations})"


def key_digest(key: str, iterations: int = ITERATIONS) -> str:
    """A fresh salted digest of ``key`` (after the strength check): what stands for it inside the cluster."""
    check_key_strength(key, "the key")
    return str(Digest.make(key, iterations))


def parse_digests(text: str, source: str) -> tuple[Digest, ...]:
    """A comma- or newline-separated list of digests (ConfigError naming ``source``)."""
    digests = tuple(Digest.parse(part, source) for part in split_list(text))
    if not digests:
        raise ConfigError(f"{source}: no digest listed; make one with `{MAKE_A_DIGEST}`")
    if len(digests) > MAX_DIGESTS:
        raise ConfigError(f"{source}: {len(digests)} digests listed, at most {MAX_DIGESTS} are accepted")
    return digests


def split_list(text: str) -> list[str]:
    """Keys or digests separated by commas or newlines; blanks dropped, duplicates kept once."""
    return list(dict.fromkeys(p.strip() for p in _SEPARATORS.split(text) if p.strip()))


# ---- strength ---------------------------------------------------------------------------------------

def _printable_ascii(key: str) -> bool:
    return all(" " <= c <= "~" for c in key)


def estimated_bits(key: str) -> float:
    """Length x log2 of the size of the character classes used (an upper bound for a random key)."""
    pool = (26 * any(c.islower() for c in key) + 26 * any(c.isupper() for c in key)
            + 10 * any(c.isdigit() for c in key) + 33 * any(not c.isalnum() for c in key))
    return len(key) * math.log2(pool) if pool > 1 else 0.0


def _repeats(key: str) -> bool:
    """Whether ``key`` is its first p characters over and over (p at most half its length)."""
    return any(key[p:] == key[:-p] for p in range(1, len(key) // 2 + 1))


def key_weakness(key: str) -> str | None:
    """Why ``key`` is too weak to guard the endpoints, or None."""
    if len(key) < MIN_KEY_LENGTH:
        return f"the key is shorter than {MIN_KEY_LENGTH} characters"
    if len(key) > MAX_KEY_LENGTH:
        return f"the key is longer than {MAX_KEY_LENGTH} characters"
    if not _printable_ascii(key):
        return "the key has characters other than printable ASCII (they do not survive HTTP headers)"
    distinct = len(set(key))
    if distinct < MIN_DISTINCT_CHARACTERS:
        return f"the key has only {distinct} distinct character{'' if distinct == 1 else 's'}"
    if _repeats(key):
        return "the key is a short pattern repeated"
    bits = estimated_bits(key)
    if bits < MIN_KEY_BITS:
        return f"the key has about {bits:.0f} bits by its length and character classes, fewer than {MIN_KEY_BITS}"
    return None


def check_key_strength(key: str, source: str) -> None:
    weakness = key_weakness(key)
    if weakness:
        raise ConfigError(f"{source}: {weakness}; make a random one with {MAKE_A_KEY}")


# ---- where keys and digests come from ---------------------------------------------------------------

@dataclass(frozen=True)
class _Source:
    prefix: str  # serve.auth.api_key / serve.auth.feedback_key
    env: str | None
    file: str | None
    digest_env: str | None


def _source(auth: ServeAuthConfig, scope: Scope) -> _Source:
    if scope is Scope.predict:
        return _Source("serve.auth.api_key", auth.api_key_env, auth.api_key_file, auth.api_key_sha256_env)
    return _Source("serve.auth.feedback_key", auth.feedback_key_env, auth.feedback_key_file,
                   auth.feedback_key_sha256_env)


def has_feedback_key(auth: ServeAuthConfig) -> bool:
    """Whether /feedback takes its own key (else the predict key opens it too)."""
    return auth.enabled and bool(auth.feedback_key_env or auth.feedback_key_file)


def load_api_keys(auth: ServeAuthConfig, environ: Mapping[str, str] | None = None,
                  scope: Scope = Scope.predict) -> tuple[str, ...] | None:
    """The configured keys of ``scope``: None when auth is off (or, for feedback, no feedback key is
    configured). Raises ConfigError naming the source for a missing, empty or weak key."""
    if not auth.enabled or (scope is Scope.feedback and not has_feedback_key(auth)):
        return None
    environ = os.environ if environ is None else environ
    src = _source(auth, scope)
    if src.file:
        path = Path(os.path.expanduser(src.file))
        try:
            text = path.read_text()
        except OSError as exc:
            raise ConfigError(f"{src.prefix}_file: cannot read {path} ({exc.strerror or exc})") from None
        source = f"{src.prefix}_file ({path})"
    elif src.env:
        text = environ.get(src.env, "")
        source = f"{src.prefix}_env (${src.env})"
    else:
        raise ConfigError(f"{src.prefix}: auth is on but neither {src.prefix}_env nor {src.prefix}_file is set")
    keys = split_list(text)
    if not keys:
        off = "serve.auth.enabled=false to serve without one" if scope is Scope.predict else \
            "serve.auth.feedback_key_env=null to let the predict key send labels"
        raise ConfigError(f"{source}: no key (the {'file' if src.file else 'variable'} is empty or not set); export "
                          f"a key (e.g. {MAKE_A_KEY}) or set {off}")
    for i, key in enumerate(keys):
        check_key_strength(key, source if len(keys) == 1 else f"{source}, key {i + 1} of {len(keys)}")
    return tuple(keys)


def load_api_key(auth: ServeAuthConfig, environ: Mapping[str, str] | None = None) -> str | None:
    """The first (current) predict key, or None when auth is explicitly off."""
    keys = load_api_keys(auth, environ)
    return keys[0] if keys else None


@dataclass(frozen=True)
class KeyDigests:
    """What a replica checks keys against. ``feedback`` None: the predict keys open /feedback too."""

    predict: tuple[Digest, ...]
    feedback: tuple[Digest, ...] | None = None

    @classmethod
    def of_keys(cls, keys: Sequence[str], feedback_keys: Sequence[str] | None = None,
                iterations: int = ITERATIONS) -> KeyDigests:
        return cls(tuple(Digest.make(k, iterations) for k in keys),
                   None if feedback_keys is None else tuple(Digest.make(k, iterations) for k in feedback_keys))


def _scope_digests(auth: ServeAuthConfig, scope: Scope, environ: Mapping[str, str]) -> tuple[Digest, ...]:
    src = _source(auth, scope)
    handed = environ.get(src.digest_env, "").strip() if src.digest_env else ""
    if src.file or not handed:
        return tuple(Digest.make(k) for k in load_api_keys(auth, environ, scope))
    return parse_digests(handed, f"{src.prefix}_sha256_env (${src.digest_env})")


def load_key_digests(auth: ServeAuthConfig, environ: Mapping[str, str] | None = None) -> KeyDigests | None:
    """What a replica checks keys against, per scope: digests of the key file's keys, the digests handed
    over in ``*_sha256_env``, or digests of the keys in ``*_env`` (e.g. a Kubernetes Secret mounted as
    an environment variable). None when auth is off; ConfigError naming the source."""
    if not auth.enabled:
        return None
    environ = os.environ if environ is None else environ
    return KeyDigests(_scope_digests(auth, Scope.predict, environ),
                      _scope_digests(auth, Scope.feedback, environ) if has_feedback_key(auth) else None)


def _still_valid(previous: str | None, keys: Sequence[str]) -> bool:
    """Whether ``previous`` (a digest list) stands for exactly ``keys``: each key matches one of its
    digests and each digest one of the keys."""
    if not previous:
        return False
    try:
        digests = parse_digests(previous, "previous")
    except ConfigError:
        return False
    matched = [[d.matches(k.encode("utf-8")) for d in digests] for k in keys]
    return all(any(row) for row in matched) and all(any(col) for col in zip(*matched, strict=True))


def digest_list(keys: Sequence[str], previous: str | None = None) -> str:
    """The comma-separated digests of ``keys``: ``previous`` itself when it stands for exactly these keys
    (so a redeploy leaves a running application's runtime_env unchanged), else fresh ones."""
    return previous if _still_valid(previous, keys) else ",".join(str(Digest.make(k)) for k in keys)


def carried_digests(auth: ServeAuthConfig, environ: Mapping[str, str] | None = None,
                    previous: Mapping[str, str] | None = None) -> dict[str, str]:
    """``{digest variable: digest list}`` to hand to the replicas, for each scope whose keys the
    replicas do not read from a file themselves. Digests handed to this process pass on as they are;
    keys are digested, unless ``previous`` (the running application's variables) already holds a list
    for exactly these keys: then it is kept, so a redeploy does not change the runtime_env (a fresh
    salt would restart every replica)."""
    if not auth.enabled:
        return {}
    environ = os.environ if environ is None else environ
    out = {}
    for scope in Scope:
        src = _source(auth, scope)
        if src.file or not src.digest_env or (scope is Scope.feedback and not has_feedback_key(auth)):
            continue
        handed = environ.get(src.digest_env, "").strip()
        if handed:
            digests = parse_digests(handed, f"{src.prefix}_sha256_env (${src.digest_env})")
            out[src.digest_env] = ",".join(map(str, digests))
            continue
        out[src.digest_env] = digest_list(load_api_keys(auth, environ, scope), (previous or {}).get(src.digest_env))
    return out


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
        if not MIN_KEY_LENGTH <= len(presented) <= MAX_KEY_LENGTH or not _printable_ascii(presented):
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

    from foundry import config_sources
    from foundry.cli import run_or_exit

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


if __name__ == "__main__":
    raise SystemExit(main())
