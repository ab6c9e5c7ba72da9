"""The API keys: where they come from, that a missing or weak one never means an open endpoint, that
only salted slow digests stand for them, rotation, the feedback scope, and that checking them is
constant time, cached, and bounded under a flood of wrong keys."""

from __future__ import annotations

import hashlib
import hmac
import logging

import pytest

from foundry.config import ServeAuthConfig
from foundry.errors import ConfigError
from foundry.serving import auth as auth_mod
from foundry.serving import keys as keys_mod
from foundry.serving.auth import (
    ApiKeyChecker,
    AuthResult,
    presented_key,
    replica_checker,
)
from foundry.serving.keys import (
    Digest,
    KeyDigests,
    Scope,
    key_digest,
    load_api_key,
    load_api_keys,
    load_key_digests,
    parse_digests,
)

KEY = "s3cret-key-for-tests-" + "Wm7Qx2Lk9Pz4Rb6Tn1Vc"
OTHER = "other-key-for-tests-" + "Ha5Jd8Fs3Gy0Ue2Io7Mp"
FEEDBACK = "feedback-key-for-tests-" + "Yc1Xv6Bn9Mq3Lw5Kz8Rt"
FAST = keys_mod.MIN_ITERATIONS  # the fewest iterations a digest may have: keeps floods in tests quick


def _checker(*args, **options) -> ApiKeyChecker:
    return ApiKeyChecker(*args, iterations=FAST, **options)


# ---- where keys come from ----------------------------------------------------------------------

def test_key_from_the_environment():
    cfg = ServeAuthConfig(api_key_env="MY_KEY")
    assert load_api_key(cfg, {"MY_KEY": f"  {KEY}\n"}) == KEY


def test_key_from_a_file_wins_over_the_environment(tmp_path):
    path = tmp_path / "key"
    path.write_text(KEY + "\n")
    cfg = ServeAuthConfig(api_key_env="MY_KEY", api_key_file=str(path))
    assert load_api_key(cfg, {"MY_KEY": OTHER}) == KEY


@pytest.mark.parametrize(("cfg", "environ", "names"), [
    (ServeAuthConfig(api_key_env="MY_KEY"), {}, "MY_KEY"),
    (ServeAuthConfig(api_key_env="MY_KEY"), {"MY_KEY": "   "}, "MY_KEY"),
    (ServeAuthConfig(api_key_env=None, api_key_file="/nonexistent/key"), {}, "serve.auth.api_key_file"),
    (ServeAuthConfig(api_key_env=None, api_key_file=None), {}, "serve.auth"),
    (ServeAuthConfig(api_key_env="MY_KEY", feedback_key_env="MY_FB"), {"MY_KEY": KEY}, "MY_FB"),
])
def test_a_missing_key_is_a_config_error_naming_its_source(cfg, environ, names):
    with pytest.raises(ConfigError, match=names.replace(".", r"\.")):
        load_key_digests(cfg, environ)


@pytest.mark.parametrize(("key", "why"), [
    ("short-key-0123456789", "shorter than 32"),
    ("s3cret-key-for-tests-0123456789", "shorter than 32"),  # 31 characters: the old tests' kind of key
    ("a" * 40, "only 1 distinct character"),
    ("passwordpasswordpasswordpassword", "only 7 distinct characters"),
    ("0123456789abcdef0123456789abcdef", "short pattern repeated"),
    ("Kq3-vZ8_Kq3-vZ8_Kq3-vZ8_Kq3-vZ8_Kq3", "short pattern repeated"),
    ("31415926535897932384626433832795028", "bits"),  # 35 digits: about 116 bits
    ("känguru-känguru-Schlüssel-0123456789-ÄÖÜ", "printable ASCII"),
])
def test_a_weak_key_is_refused_naming_its_source_and_how_to_make_one(key, why):
    with pytest.raises(ConfigError, match=why) as info:
        load_api_keys(ServeAuthConfig(api_key_env="MY_KEY"), {"MY_KEY": key})
    assert "serve.auth.api_key_env ($MY_KEY)" in str(info.value)
    assert "secrets.token_urlsafe(32)" in str(info.value) and key not in str(info.value)
    with pytest.raises(ConfigError, match=why):
        ApiKeyChecker(key)
    with pytest.raises(ConfigError, match=why):
        key_digest(key)


def test_each_listed_key_must_be_strong():
    with pytest.raises(ConfigError, match="key 2 of 2"):
        load_api_keys(ServeAuthConfig(api_key_env="MY_KEY"), {"MY_KEY": f"{KEY},weak-one"})


def test_strong_keys_pass():
    import secrets

    for key in (KEY, secrets.token_urlsafe(32), secrets.token_urlsafe(24), "0123456789abcdef" + "fedcba9876543210"):
        assert keys_mod.key_weakness(key) is None, key


# ---- digests --------------------------------------------------------------------------------------

def test_a_digest_verifies_its_key_only():
    digest = Digest.parse(key_digest(KEY, FAST), "test")
    assert digest.matches(KEY.encode()) and not digest.matches(OTHER.encode())
    assert not digest.matches((KEY + "x").encode()) and not digest.matches(KEY[:-1].encode())


def test_a_digest_is_salted_and_slow_not_the_plain_sha256():
    one, two = key_digest(KEY), key_digest(KEY)
    assert one != two  # a random salt each time: equal keys do not show as equal digests
    assert hashlib.sha256(KEY.encode()).hexdigest() not in one and KEY not in one
    scheme, iterations, salt, digest = one.split(":")
    assert scheme == "pbkdf2-sha256" and int(iterations) >= 100_000
    assert keys_mod._unb64(digest) != hashlib.sha256(KEY.encode()).digest()
    assert len(keys_mod._unb64(salt)) == 16 and str(Digest.parse(one, "test")) == one


def test_a_plain_sha256_digest_is_refused_with_how_to_make_the_new_one():
    cfg = ServeAuthConfig(api_key_env="MY_KEY", api_key_sha256_env="MY_KEY_SHA")
    with pytest.raises(ConfigError, match="python -m foundry.serving.auth") as info:
        load_key_digests(cfg, {"MY_KEY_SHA": hashlib.sha256(KEY.encode()).hexdigest(), "MY_KEY": KEY})
    assert "MY_KEY_SHA" in str(info.value) and "no longer accepted" in str(info.value)


@pytest.mark.parametrize("handed", [
    "abc", "z" * 64, "pbkdf2-sha256:100000:abc", "sha1:100000:AAAAAAAAAAAAAAAAAAAAAA:AAAA",
    "pbkdf2-sha256:10:AAAAAAAAAAAAAAAAAAAAAA:" + "A" * 43,  # too few iterations to be slow
    "pbkdf2-sha256:100000:AAAAAAAAAAAAAAAAAAAAAA:AAAA",  # a hash of the wrong length
    "pbkdf2-sha256:100000:!!:" + "A" * 43,
])
def test_a_malformed_digest_is_a_config_error_naming_the_variable(handed):
    cfg = ServeAuthConfig(api_key_env="MY_KEY", api_key_sha256_env="MY_KEY_SHA")
    with pytest.raises(ConfigError, match="MY_KEY_SHA"):
        load_key_digests(cfg, {"MY_KEY_SHA": handed, "MY_KEY": KEY})


def test_replicas_check_against_the_handed_digests_or_the_key_they_can_read(tmp_path):
    cfg = ServeAuthConfig(api_key_env="MY_KEY", api_key_sha256_env="MY_KEY_SHA")
    handed = key_digest(KEY, FAST)  # what serve_apps.deploy passes on
    digests = load_key_digests(cfg, {"MY_KEY_SHA": handed, "MY_KEY": OTHER})  # the handed digest wins
    assert [str(d) for d in digests.predict] == [handed] and digests.feedback is None
    checker = ApiKeyChecker.from_digests(digests)
    assert checker.check(KEY) is AuthResult.ok and checker.check(OTHER) is AuthResult.invalid
    from_env = ApiKeyChecker.from_digests(load_key_digests(cfg, {"MY_KEY": KEY}))
    assert from_env.check(KEY) is AuthResult.ok
    path = tmp_path / "key"
    path.write_text(OTHER)
    with_file = ServeAuthConfig(api_key_env="MY_KEY", api_key_file=str(path), api_key_sha256_env="MY_KEY_SHA")
    checker = ApiKeyChecker.from_digests(load_key_digests(with_file, {"MY_KEY_SHA": handed}))
    assert checker.check(OTHER) is AuthResult.ok and checker.check(KEY) is AuthResult.invalid
    assert load_key_digests(ServeAuthConfig(enabled=False), {}) is None


# ---- rotation -------------------------------------------------------------------------------------

def test_rotation_through_the_digest_list():
    cfg = ServeAuthConfig(api_key_env="MY_KEY", api_key_sha256_env="MY_KEY_SHA")
    old, new = key_digest(KEY, FAST), key_digest(OTHER, FAST)
    before = ApiKeyChecker.from_digests(load_key_digests(cfg, {"MY_KEY_SHA": old}))
    assert before.check(KEY) is AuthResult.ok and before.check(OTHER) is AuthResult.invalid
    during = ApiKeyChecker.from_digests(load_key_digests(cfg, {"MY_KEY_SHA": f"{old},\n{new}\n"}))
    assert during.check(KEY) is AuthResult.ok and during.check(OTHER) is AuthResult.ok
    after = ApiKeyChecker.from_digests(load_key_digests(cfg, {"MY_KEY_SHA": new}))
    assert after.check(OTHER) is AuthResult.ok and after.check(KEY) is AuthResult.invalid


def test_rotation_through_the_key_variable_and_file(tmp_path):
    cfg = ServeAuthConfig(api_key_env="MY_KEY")
    assert load_api_keys(cfg, {"MY_KEY": f"{OTHER}, {KEY}"}) == (OTHER, KEY)
    during = ApiKeyChecker.from_digests(load_key_digests(cfg, {"MY_KEY": f"{OTHER},{KEY}"}))
    assert during.check(KEY) is AuthResult.ok and during.check(OTHER) is AuthResult.ok
    path = tmp_path / "keys"
    path.write_text(f"{OTHER}\n")
    after = ApiKeyChecker.from_digests(load_key_digests(ServeAuthConfig(api_key_file=str(path)), {}))
    assert after.check(OTHER) is AuthResult.ok and after.check(KEY) is AuthResult.invalid


def test_the_cli_prints_digests_and_adds_to_a_list(monkeypatch, capsys, tmp_path):
    monkeypatch.setenv("FOUNDRY_API_KEY", KEY)
    root = f"storage.root={tmp_path}"
    assert auth_mod.main([root]) == 0
    (first,) = parse_digests(capsys.readouterr().out.strip(), "out")
    assert first.matches(KEY.encode())
    monkeypatch.setenv("FOUNDRY_API_KEY", OTHER)
    assert auth_mod.main([root, "--add-to", str(first)]) == 0
    listed = parse_digests(capsys.readouterr().out.strip(), "out")
    assert listed[0] == first and len(listed) == 2 and listed[1].matches(OTHER.encode())
    again = ",".join(map(str, listed))
    assert auth_mod.main([root, "--add-to", again]) == 0  # already listed: not added twice
    assert capsys.readouterr().out.strip() == again
    with pytest.raises(SystemExit) as info:
        auth_mod.main([root, "--feedback"])  # no feedback key configured
    assert info.value.code == 2 and "feedback_key_env" in capsys.readouterr().err
    monkeypatch.setenv("MY_FB", FEEDBACK)
    assert auth_mod.main([root, "--feedback", "serve.auth.feedback_key_env=MY_FB"]) == 0
    (fb,) = parse_digests(capsys.readouterr().out.strip(), "out")
    assert fb.matches(FEEDBACK.encode()) and not fb.matches(OTHER.encode())


# ---- scopes ---------------------------------------------------------------------------------------

def test_with_a_feedback_key_each_key_opens_its_own_scope_only():
    checker = _checker(KEY, FEEDBACK)
    assert checker.check(KEY, Scope.predict) is AuthResult.ok
    assert checker.check(KEY, Scope.feedback) is AuthResult.wrong_scope
    assert checker.check(FEEDBACK, Scope.feedback) is AuthResult.ok
    assert checker.check(FEEDBACK, Scope.predict) is AuthResult.wrong_scope
    assert checker.check(OTHER, Scope.feedback) is AuthResult.invalid
    assert not checker.feedback_shares_the_predict_key


def test_without_a_feedback_key_one_key_opens_everything():
    checker = _checker(KEY)
    assert all(checker.check(KEY, scope) is AuthResult.ok for scope in Scope)
    assert all(checker.check(OTHER, scope) is AuthResult.invalid for scope in Scope)
    assert checker.feedback_shares_the_predict_key


def test_the_feedback_key_is_loaded_and_handed_over_like_the_predict_key():
    cfg = ServeAuthConfig(api_key_env="MY_KEY", feedback_key_env="MY_FB", feedback_key_sha256_env="MY_FB_SHA")
    digests = load_key_digests(cfg, {"MY_KEY": KEY, "MY_FB": FEEDBACK})
    assert len(digests.predict) == 1 and len(digests.feedback) == 1
    handed = load_key_digests(cfg, {"MY_KEY": KEY, "MY_FB_SHA": key_digest(FEEDBACK, FAST)})
    checker = ApiKeyChecker.from_digests(handed)
    assert checker.check(FEEDBACK, Scope.feedback) is AuthResult.ok
    assert checker.check(KEY, Scope.feedback) is AuthResult.wrong_scope


def test_replicas_warn_when_labels_share_the_predict_key(caplog):
    log = logging.getLogger("test-auth")
    with caplog.at_level(logging.WARNING, logger="test-auth"):
        replica_checker(ServeAuthConfig(api_key_env="MY_KEY"), log, {"MY_KEY": KEY})
    assert "may also send /feedback labels" in caplog.text
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="test-auth"):
        replica_checker(ServeAuthConfig(api_key_env="MY_KEY", feedback_key_env="MY_FB"), log,
                        {"MY_KEY": KEY, "MY_FB": FEEDBACK})
    assert caplog.text == ""


# ---- checking -------------------------------------------------------------------------------------

def test_auth_off_only_when_explicit():
    assert load_api_key(ServeAuthConfig(enabled=False), {}) is None
    checker = ApiKeyChecker(None)
    assert not checker.enabled and checker.check(None) is AuthResult.ok
    with pytest.raises(ValueError):
        ApiKeyChecker([])  # an empty list is not "off"


def test_checker_results():
    checker = _checker(KEY)
    assert checker.check(KEY) is AuthResult.ok
    assert checker.check(None) is AuthResult.missing
    assert checker.check("") is AuthResult.missing
    assert checker.check(KEY + "x") is AuthResult.invalid
    assert checker.check(KEY[:-1]) is AuthResult.invalid


def test_comparison_is_constant_time_and_checks_every_listed_digest(monkeypatch):
    calls = []
    real = hmac.compare_digest

    def spy(a, b):
        calls.append((len(a), len(b)))
        return real(a, b)

    checker = ApiKeyChecker.from_digests(KeyDigests.of_keys([KEY, OTHER], iterations=FAST))
    monkeypatch.setattr(auth_mod.hmac, "compare_digest", spy)
    checker.check("x" * 40)
    checker.check("a much longer wrong key than the real one, a much longer wrong key")
    checker.check(KEY)  # matches the first digest: the second is still computed (no early exit)
    assert calls == [(32, 32)] * 6  # fixed-size digests: the key's length does not show either


def test_key_is_never_shown_or_kept():
    checker = _checker(KEY)
    assert checker.check(KEY) is AuthResult.ok and checker.check(OTHER) is AuthResult.invalid
    assert KEY not in repr(checker) and KEY not in str(vars(type(checker)))
    assert not hasattr(checker, "__dict__")  # only digests and cache tags are kept (__slots__)
    tags = list(checker._accepted) + list(checker._refused)
    plain = {KEY.encode(), OTHER.encode(), hashlib.sha256(KEY.encode()).digest(), hashlib.sha256(OTHER.encode()).digest()}
    assert len(tags) == 2 and not plain & set(tags)  # keyed with a per-process secret
    assert KEY not in repr(checker._digests)


def test_a_verified_key_is_not_verified_again():
    checker = _checker(KEY)
    for _ in range(50):
        assert checker.check(KEY) is AuthResult.ok
    assert checker.verifications == 1 and checker.cache_sizes() == (1, 0)


def test_a_repeated_wrong_key_is_verified_once():
    checker = _checker(KEY)
    for _ in range(50):
        assert checker.check(OTHER) is AuthResult.invalid
    assert checker.verifications == 1 and checker.cache_sizes() == (0, 1)


def test_the_failure_cache_is_bounded():
    checker = _checker(KEY, refused_cache=20, verify_burst=10_000)
    wrong = [f"{OTHER}-{i:05d}" for i in range(60)]
    for key in wrong:
        assert checker.check(key) is AuthResult.invalid
    assert checker.cache_sizes() == (0, 20) and checker.verifications == 60
    assert checker.check(wrong[-1]) is AuthResult.invalid and checker.verifications == 60  # recent: cached
    assert checker.check(wrong[0]) is AuthResult.invalid and checker.verifications == 61  # evicted: again


def test_a_flood_of_distinct_wrong_keys_is_verified_at_a_bounded_rate():
    now = [0.0]
    checker = _checker(KEY, verify_burst=5, verify_rate=2.0, clock=lambda: now[0])
    assert checker.check(KEY) is AuthResult.ok  # the real key, verified before the flood
    results = [checker.check(f"{OTHER}-{i:05d}") for i in range(200)]
    assert results.count(AuthResult.invalid) == 4 and results.count(AuthResult.busy) == 196
    assert checker.verifications == 5
    assert checker.check(KEY) is AuthResult.ok  # a verified key is never throttled
    now[0] += 1.0  # two more per second
    results = [checker.check(f"{OTHER}-more-{i:05d}") for i in range(20)]
    assert results.count(AuthResult.invalid) == 2 and checker.verifications == 7


def test_keys_no_configured_key_can_be_cost_nothing():
    checker = _checker(KEY, verify_burst=1, verify_rate=0.0)
    for presented in ("short", "x" * 5000, "é" * 40, "tab\tin-the-key-0123456789abcdefghijkl"):
        assert checker.check(presented) is AuthResult.invalid
    assert checker.verifications == 0 and checker.cache_sizes() == (0, 0)


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
