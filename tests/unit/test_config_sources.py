"""Where configuration comes from (foundry/config/sources.py): a user's folder, a registered version's
stored config, overrides; the same options and exit codes on every command; nothing left in the
working directory. Without Ray: versions are registered by tests/versions.py."""

from __future__ import annotations

import os
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from foundry import config
from foundry.config.sources import ConfigSources, compose, load
from foundry.errors import ConfigError
from tests.conftest import REPO_ROOT
from tests.own_data import DATA_YAML
from tests.versions import register_version

COMMANDS = ["jobs.train", "jobs.tune", "jobs.pipeline", "jobs.monitor", "serve_apps.deploy", "foundry.registry",
            "foundry.ops.events", "foundry.ops.status", "foundry.serving.standalone", "foundry.serving.auth", "cluster"]


def run(module: str, *args: str, cwd: Path, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", module, *args], cwd=cwd, capture_output=True, text=True,
                          timeout=120, env={**os.environ, **(env or {})})


@pytest.fixture(scope="module")
def user_conf(tmp_path_factory) -> Path:
    """A user's own config folder outside the repository: a data yaml the bundled conf/ does not have."""
    folder = tmp_path_factory.mktemp("myconf")
    (folder / "data").mkdir()
    (folder / "data" / "parcels.yaml").write_text(DATA_YAML.format(path=folder / "parcels.csv"))
    return folder


@pytest.fixture(scope="module")
def stored(tmp_path_factory):
    """A registered version whose config differs from the bundled defaults in several places."""
    root = tmp_path_factory.mktemp("stored-root")
    cfg = config.load([f"storage.root={root}", "model_name=stored", "trainer.lr=0.0123", "data.split.key=[customer_id]",
                       "drift.window.size=700"])
    registry = cfg.storage.layout.open_registry()
    version = register_version(registry, cfg, root / "work")
    return {"root": str(root), "cfg": cfg, "version": version, "registry": registry}


def test_a_user_folder_adds_its_data_yaml(user_conf):
    cfg = load(ConfigSources(("data=parcels",), config_dir=str(user_conf)))
    assert cfg.model_name == "parcels" and cfg.data.split.key == "parcel_id" and cfg.data.task.value == "multiclass"
    with pytest.raises(ConfigError, match="parcels"):  # the bundled folder alone does not have it
        load(ConfigSources(("data=parcels",)))


def test_a_user_primary_config_is_used_and_wins(tmp_path):
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "churn.yaml").write_text(
        (REPO_ROOT / "conf" / "data" / "churn.yaml").read_text().replace("name: churn", "name: mychurn"))
    primary = (REPO_ROOT / "conf" / "config.yaml").read_text()
    (tmp_path / "mine.yaml").write_text(primary)
    cfg = load(ConfigSources((), config_dir=str(tmp_path), config_name="mine"))
    assert cfg.data.name == "mychurn"  # the user's data/churn.yaml, not the bundled one
    assert cfg.trainer == config.load([]).trainer  # the groups the user does not have come from conf/


def test_a_retrain_rebuilds_from_the_stored_config_not_from_the_folders(stored):
    cfg = load(ConfigSources((f"storage.root={stored['root']}",), from_version="stored"))
    assert cfg == stored["cfg"]  # every section, data schema included, as it was trained
    bundled = config.load([f"storage.root={stored['root']}"])
    assert bundled.trainer.lr != cfg.trainer.lr and bundled.drift.window.size != cfg.drift.window.size
    # Overrides on top: keys, and config groups, which win over the stored values as on the folders.
    on_top = load(ConfigSources((f"storage.root={stored['root']}", "+experiment=quick", "trainer.epochs=2"),
                                from_version=f"stored@{stored['version']}"))
    assert on_top.trainer.epochs == 2 and on_top.model.hidden_sizes == [32] and on_top.trainer.lr == 0.005
    assert on_top.data.split.key == ["customer_id"]  # untouched keys stay the stored ones


def test_stored_config_errors_name_the_version(stored, tmp_path):
    with pytest.raises(ConfigError, match=r"unknown model 'nope'"):
        load(ConfigSources((f"storage.root={stored['root']}",), from_version="nope"))
    with pytest.raises(ConfigError, match=rf"stored@production \(version {stored['version']}\).*num_workrs"):
        load(ConfigSources((f"storage.root={stored['root']}", "trainer.num_workrs=1"), from_version="stored"))


def test_a_tampered_stored_config_is_refused(stored, tmp_path):
    import shutil

    copy = tmp_path / "root"
    shutil.copytree(stored["root"], copy)
    path = next((copy / "registry" / "stored").rglob("v*/config.yaml"))
    path.write_text(path.read_text().replace("0.0123", "0.5"))
    with pytest.raises(ConfigError, match="checksum"):
        compose(ConfigSources((f"storage.root={copy}",), from_version="stored"))


def test_every_command_takes_the_same_config_options():
    with ThreadPoolExecutor(4) as pool:
        helps = dict(zip(COMMANDS, pool.map(lambda m: run(m, "--help", cwd=REPO_ROOT), COMMANDS), strict=True))
    for module, proc in helps.items():
        assert proc.returncode == 0, (module, proc.stderr[-2000:])
        for option in ("--config-dir", "--config-name", "--from-version"):
            assert option in proc.stdout, (module, option)


@pytest.mark.parametrize(("override", "words"), [
    ("data=californa", "Could not find 'data/californa'"),
    ("trainer.num_workrs=2", "trainer.num_workrs"),
    ("trainer.num_workers=abc", "trainer.num_workers"),
])
def test_composition_errors_exit_2_and_leave_no_folder(override, words, tmp_path):
    """Hydra's @hydra.main exited 1 and created ./~/.foundry/runs/... in the working directory."""
    proc = run("jobs.train", override, cwd=tmp_path)
    assert proc.returncode == 2, proc.stderr[-2000:]
    assert words in proc.stderr and "Traceback" not in proc.stderr
    assert list(tmp_path.iterdir()) == []


def test_commands_find_a_users_model_by_config_dir_or_stored_version(user_conf, stored, tmp_path):
    """serve_apps.deploy, jobs.monitor and the registry CLI rejected --config-dir (unrecognized arguments)."""
    root = f"storage.root={stored['root']}"
    listed = run("foundry.registry", "--config-dir", str(user_conf), "list", "data=parcels", root, cwd=tmp_path)
    assert listed.returncode == 0 and "stored" in listed.stdout, listed.stderr
    written = run("serve_apps.deploy", "--from-version", "stored", root, "--write", str(tmp_path / "serve.yaml"),
                  cwd=tmp_path)
    assert written.returncode == 0, written.stderr
    assert stored["version"] in (tmp_path / "serve.yaml").read_text()
    bad = run("jobs.monitor", "--config-dir", str(tmp_path / "missing"), "--status", cwd=tmp_path)
    assert bad.returncode == 2 and "is not a folder" in bad.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["serve.yaml"]  # nothing else, no "~" folder


def test_the_schema_is_stored_with_hydra_once_per_process_not_at_every_compose(monkeypatch):
    """Storing the structured schema costs ~0.24 s (a quarter of a compose); it was redone at every compose."""
    from hydra.core.config_store import ConfigStore

    from foundry import config
    from foundry.config.root import SCHEMA_NAME

    config.load([])  # stored by now, whatever ran before
    stores = []
    real_store = ConfigStore.store
    monkeypatch.setattr(ConfigStore, "store", lambda self, *a, **k: stores.append(k.get("name")) or real_store(self, *a, **k))
    first = config.load(["model_name=once_a"])
    second = config.load(["model_name=once_b"])
    assert stores == [] and (first.model_name, second.model_name) == ("once_a", "once_b")
    # Gone from the store (as after a clear), it is stored again at the next compose.
    monkeypatch.delitem(ConfigStore.instance().repo, f"{SCHEMA_NAME}.yaml")
    assert config.load(["model_name=once_c"]).model_name == "once_c" and stores == [SCHEMA_NAME]
