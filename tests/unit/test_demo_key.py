"""The demo's own API key file: created owner-only, reused, and tightened if someone loosened it."""

from __future__ import annotations

import os
import stat

from foundry import config
from foundry.demo.session import KEY_FILE, api_key
from foundry.serving.keys import key_weakness


def test_the_demo_key_file_is_owner_only_and_reused(tmp_path, monkeypatch):
    monkeypatch.delenv("FOUNDRY_API_KEY", raising=False)
    old_umask = os.umask(0)  # the most permissive umask: the mode must come from the code
    try:
        cfg = config.load([f"storage.root={tmp_path}", f"demo.report_dir={tmp_path / 'reports'}"])
        key = api_key(cfg)
        path = tmp_path / "reports" / KEY_FILE
        assert stat.S_IMODE(path.stat().st_mode) == 0o600 and key_weakness(key) is None  # a key the serving accepts
        path.chmod(0o644)
        assert api_key(cfg) == key
        assert stat.S_IMODE(path.stat().st_mode) == 0o600
    finally:
        os.umask(old_umask)
    from_env = "from-the-environment-" + "SV-B75z2isGgid9PlzXbe6ju"
    monkeypatch.setenv("FOUNDRY_API_KEY", from_env)
    assert api_key(cfg) == from_env


def test_the_demo_hands_the_job_a_digest_and_reuses_the_running_one(tmp_path, monkeypatch):
    """A rerun of the demo must not change the Serve app's runtime_env (a new salt restarts every replica)."""
    import pytest

    from foundry.demo.session import key_env
    from foundry.errors import ConfigError
    from foundry.serving import control
    from foundry.serving.keys import parse_digests

    cfg = config.load([f"storage.root={tmp_path}"])
    key = "demo-key-" + "Pj2Ws7Xc4Vb9Nm1Lk6Hg3Fd"
    monkeypatch.setattr(control, "deployed_apps", lambda: {})
    first = key_env(cfg.serve, key)["FOUNDRY_API_KEY_SHA256"]
    assert key not in first and parse_digests(first, "test")[0].matches(key.encode())
    running = {cfg.serve.app_name: {"runtime_env": {"env_vars": {"FOUNDRY_API_KEY_SHA256": first}}}}
    monkeypatch.setattr(control, "deployed_apps", lambda: running)
    assert key_env(cfg.serve, key) == {"FOUNDRY_API_KEY_SHA256": first}
    other = "demo-key-" + "Qa8Zs3Dx6Cf1Vg4Bh9Nj2Mk"
    assert key_env(cfg.serve, other)["FOUNDRY_API_KEY_SHA256"] != first
    with pytest.raises(ConfigError, match="shorter than 32"):
        key_env(cfg.serve, "weak-demo-key")
