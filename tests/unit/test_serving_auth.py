"""The API key: where it comes from, that a missing one never means an open endpoint, and that it
is compared in constant time and never shown."""

from __future__ import annotations

import hmac

import pytest

from foundry.config import ServeAuthConfig
from foundry.errors import ConfigError
from foundry.serving import auth as auth_mod
from foundry.serving.auth import (
    ApiKeyChecker,
    AuthResult,
    key_digest,
    load_api_key,
    load_key_digest,
    presented_key,
)

KEY = "s3cret-key-for-tests-0123456789"


def test_key_from_the_environment():
    cfg = ServeAuthConfig(api_key_env="MY_KEY")
    assert load_api_key(cfg, {"MY_KEY": f"  {KEY}\n"}) == KEY


def test_key_from_a_file_wins_over_the_environment(tmp_path):
    path = tmp_path / "key"
    path.write_text(KEY + "\n")
    cfg = ServeAuthConfig(api_key_env="MY_KEY", api_key_file=str(path))
    assert load_api_key(cfg, {"MY_KEY": "other-key-other-key-other"}) == KEY


@pytest.mark.parametrize(("cfg", "environ", "names"), [
    (ServeAuthConfig(api_key_env="MY_KEY"), {}, "MY_KEY"),
    (ServeAuthConfig(api_key_env="MY_KEY"), {"MY_KEY": "   "}, "MY_KEY"),
    (ServeAuthConfig(api_key_env="MY_KEY"), {"MY_KEY": "short"}, "shorter than"),
    (ServeAuthConfig(api_key_env=None, api_key_file="/nonexistent/key"), {}, "serve.auth.api_key_file"),
    (ServeAuthConfig(api_key_env=None, api_key_file=None), {}, "serve.auth"),
])
def test_missing_or_weak_key_is_a_config_error(cfg, environ, names):
    with pytest.raises(ConfigError, match=names.replace(".", r"\.")):
        load_api_key(cfg, environ)


def test_replicas_check_against_the_handed_digest_or_the_key_they_can_read(tmp_path):
    cfg = ServeAuthConfig(api_key_env="MY_KEY", api_key_sha256_env="MY_KEY_SHA")
    handed = load_key_digest(cfg, {"MY_KEY_SHA": key_digest(KEY)})  # what serve_apps.deploy passes on
    assert handed.hex() == key_digest(KEY) and load_key_digest(cfg, {"MY_KEY": KEY}) == handed
    checker = ApiKeyChecker.from_digest(handed)
    assert checker.check(KEY) is AuthResult.ok and checker.check(KEY + "x") is AuthResult.invalid
    path = tmp_path / "key"
    path.write_text("file-key-file-key-file-key")
    with_file = ServeAuthConfig(api_key_env="MY_KEY", api_key_file=str(path), api_key_sha256_env="MY_KEY_SHA")
    assert load_key_digest(with_file, {"MY_KEY_SHA": key_digest(KEY)}).hex() == key_digest("file-key-file-key-file-key")
    assert load_key_digest(ServeAuthConfig(enabled=False), {}) is None


@pytest.mark.parametrize("handed", ["abc", "z" * 64, key_digest(KEY)[:-2]])
def test_a_malformed_digest_is_a_config_error_naming_the_variable(handed):
    cfg = ServeAuthConfig(api_key_env="MY_KEY", api_key_sha256_env="MY_KEY_SHA")
    with pytest.raises(ConfigError, match="MY_KEY_SHA"):
        load_key_digest(cfg, {"MY_KEY_SHA": handed, "MY_KEY": KEY})


def test_auth_off_only_when_explicit():
    assert load_api_key(ServeAuthConfig(enabled=False), {}) is None
    checker = ApiKeyChecker(None)
    assert not checker.enabled and checker.check(None) is AuthResult.ok


def test_checker_results():
    checker = ApiKeyChecker(KEY)
    assert checker.check(KEY) is AuthResult.ok
    assert checker.check(None) is AuthResult.missing
    assert checker.check("") is AuthResult.missing
    assert checker.check(KEY + "x") is AuthResult.invalid
    assert checker.check(KEY[:-1]) is AuthResult.invalid


def test_comparison_is_constant_time(monkeypatch):
    calls = []
    real = hmac.compare_digest

    def spy(a, b):
        calls.append((len(a), len(b)))
        return real(a, b)

    monkeypatch.setattr(auth_mod.hmac, "compare_digest", spy)
    ApiKeyChecker(KEY).check("x")
    ApiKeyChecker(KEY).check("a much longer wrong key than the real one")
    assert calls == [(32, 32), (32, 32)]  # digests: the key's length does not show either


def test_key_is_never_shown():
    checker = ApiKeyChecker(KEY)
    assert KEY not in repr(checker) and KEY not in str(vars(type(checker)))
    assert not hasattr(checker, "__dict__")  # only the digest is kept (__slots__)


@pytest.mark.parametrize(("headers", "expected"), [
    ({"x-api-key": KEY}, KEY),
    ({"x-api-key": f" {KEY} "}, KEY),
    ({"authorization": f"Bearer {KEY}"}, KEY),
    ({"authorization": f"bearer {KEY}"}, KEY),
    ({"authorization": f"Basic {KEY}"}, None),
    ({"authorization": "Bearer "}, None),
    ({}, None),
])
def test_presented_key(headers, expected):
    assert presented_key(headers) == expected
