"""The API keys' material: what a key and its digest are, how strong a key must be, and where keys and
digests come from. ``foundry.serving.auth`` checks the keys that requests present against them.

- A key is a secret string a client sends with each request (``foundry.serving.auth``). Each has a
  scope (``Scope``): a *predict* key opens ``/predict`` and ``/model``, a *feedback* key ``/feedback``
  (labels that later train the model). Without a feedback key (``has_feedback_key``) the predict key
  opens all three.
- Where keys come from, per scope: the file (``api_key_file`` / ``feedback_key_file``, e.g. a
  mounted secret; every replica reads it), otherwise the environment variable (``api_key_env`` /
  ``feedback_key_env``) of the process that deploys (``load_api_keys``). A missing or empty key with
  auth on is a start-up error, never an open endpoint; only ``serve.auth.enabled=false`` serves
  without one.
- Rotation without downtime. A key file or variable may list several keys, and a digest variable
  several digests (at most ``MAX_DIGESTS`` per scope), separated by commas or newlines
  (``split_list``); any listed key is accepted. List the new key next to the old one and deploy, move
  the clients to the new key, then deploy with the new key alone: the old one gets 403 from then on.
- Strength (``key_weakness``, ``check_key_strength``). Every key has at least 32 printable ASCII
  characters (at most 1024), at least 8 distinct ones, is not one short pattern repeated, and has at
  least 128 bits by a simple estimate (``estimated_bits``: length x log2 of the size of the character
  classes it uses: lower case, upper case, digits, other). Otherwise a ConfigError names the source;
  make a key with ``python -c 'import secrets; print(secrets.token_urlsafe(32))'``.
- A digest (``Digest``, ``key_digest``) is what stands for a key inside the cluster: a salted slow
  hash, ``pbkdf2-sha256:<iterations>:<salt>:<hash>`` (PBKDF2-HMAC-SHA256, a random 16-byte salt,
  salt and 32-byte hash in URL-safe base64 without padding; no ``$``, which shells, Makefiles and
  docker compose would expand). The salt makes two digests of one key differ and defeats precomputed
  tables; the iterations make each guess cost milliseconds. The plain hex SHA-256 of earlier versions
  is refused with a ConfigError saying how to make the new one (``parse_digests``).
- What travels to the replicas: only digests, in ``api_key_sha256_env`` / ``feedback_key_sha256_env``
  of the replicas' runtime_env (and of a job that deploys them). Ray writes every runtime_env to its
  logs and shows it on the dashboard, so the key itself must never be in one. ``carried_digests`` is
  what a deploy hands over, for each scope whose keys the replicas do not read from a file: digests
  handed to the deploying process pass on as they are, keys are digested, and a list the running
  application already holds for exactly the same keys is kept (``digest_list``), so a redeploy does
  not change the runtime_env. ``load_key_digests`` is what a replica checks against (``KeyDigests``).
"""

from __future__ import annotations

import base64
import binascii
import enum
import hashlib
import hmac
import math
import os
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from foundry.config import ServeAuthConfig
from foundry.errors import ConfigError

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

_SEPARATORS = re.compile(r"[,\r\n]+")
_PLAIN_SHA256 = re.compile(r"[0-9a-fA-F]{64}")


class Scope(str, enum.Enum):
    predict = "predict"  # /predict, /model
    feedback = "feedback"  # /feedback


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

def printable_ascii(key: str) -> bool:
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
    if not printable_ascii(key):
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


__all__ = [
    "ITERATIONS", "MAKE_A_DIGEST", "MAKE_A_KEY", "MAX_DIGESTS", "MAX_ITERATIONS", "MAX_KEY_LENGTH",
    "MIN_DISTINCT_CHARACTERS", "MIN_ITERATIONS", "MIN_KEY_BITS", "MIN_KEY_LENGTH", "SALT_BYTES", "SCHEME",
    "Digest", "KeyDigests", "Scope", "carried_digests", "check_key_strength", "digest_list", "estimated_bits",
    "has_feedback_key", "key_digest", "key_weakness", "load_api_key", "load_api_keys", "load_key_digests",
    "parse_digests", "printable_ascii", "split_list",
]
