"""The demo's own API key file: created owner-only, reused, and tightened if someone loosened it."""

from __future__ import annotations

import os
import stat

from foundry import config
from foundry.demo import KEY_FILE, api_key


def test_the_demo_key_file_is_owner_only_and_reused(tmp_path, monkeypatch):
    monkeypatch.delenv("FOUNDRY_API_KEY", raising=False)
    old_umask = os.umask(0)  # the most permissive umask: the mode must come from the code
    try:
        cfg = config.load([f"storage.root={tmp_path}", f"demo.report_dir={tmp_path / 'reports'}"])
        key = api_key(cfg)
        path = tmp_path / "reports" / KEY_FILE
        assert stat.S_IMODE(path.stat().st_mode) == 0o600 and len(key) >= 16
        path.chmod(0o644)
        assert api_key(cfg) == key
        assert stat.S_IMODE(path.stat().st_mode) == 0o600
    finally:
        os.umask(old_umask)
    monkeypatch.setenv("FOUNDRY_API_KEY", "from-the-environment-0123456789")
    assert api_key(cfg) == "from-the-environment-0123456789"
