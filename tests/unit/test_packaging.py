"""An installed Foundry (``pip install .``, a wheel, an image) works from any directory: the wheel
ships the bundled conf/ (as the ``foundry_conf`` package) and every entry point composes from it.
Before, a non-editable install had no conf/ and every command failed."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import REPO_ROOT


@pytest.fixture(scope="module")
def installed(tmp_path_factory) -> Path:
    """The project's wheel, built from a copy of the tree (the build leaves nothing in the checkout) and
    installed into a folder of its own (dependencies come from this environment)."""
    tmp = tmp_path_factory.mktemp("wheel")
    files = subprocess.run(["git", "ls-files", "--cached", "--others", "--exclude-standard"], cwd=REPO_ROOT,
                           capture_output=True, text=True, check=True).stdout.split()
    for rel in files:
        if (REPO_ROOT / rel).is_file():
            (tmp / "src" / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(REPO_ROOT / rel, tmp / "src" / rel)
    pip = [sys.executable, "-m", "pip", "--disable-pip-version-check", "-q"]
    subprocess.run([*pip, "wheel", "--no-deps", "--no-build-isolation", "-w", str(tmp / "dist"), str(tmp / "src")],
                   check=True, capture_output=True, timeout=300)
    wheel = next((tmp / "dist").glob("foundry-*.whl"))
    subprocess.run([*pip, "install", "--no-deps", "--target", str(tmp / "site"), str(wheel)], check=True,
                   capture_output=True, timeout=300)
    return tmp / "site"


def _run(site: Path, cwd: Path, *args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(site)}  # the installed copy wins over the editable checkout
    return subprocess.run([sys.executable, *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=120)


def test_the_wheel_ships_the_bundled_configs(installed):
    assert (installed / "foundry_conf" / "config.yaml").is_file()
    for group in ("data", "model", "trainer", "drift", "serve", "cluster", "experiment"):
        assert list((installed / "foundry_conf" / group).glob("*.yaml")), group


def test_an_installed_entry_point_runs_from_another_directory(installed, tmp_path):
    helped = _run(installed, tmp_path, "-m", "jobs.train", "--help")
    assert helped.returncode == 0 and "--config-dir" in helped.stdout, helped.stderr
    composed = _run(installed, tmp_path, "-c",
                    "import foundry.config.sources as s; from foundry import config; "
                    "print(s.__file__); print(s.bundled_conf_dir()); print(config.load(['data=churn_ltv']).data.name)")
    assert composed.returncode == 0, composed.stderr
    module, conf, name = composed.stdout.split()
    assert module.startswith(str(installed)) and conf == str(installed / "foundry_conf") and name == "churn_ltv"
    bad = _run(installed, tmp_path, "-m", "jobs.train", "data=californa")
    assert bad.returncode == 2 and "churn_ltv" in bad.stderr  # the options listed come from the wheel
    assert list(tmp_path.iterdir()) == []


def test_the_wheel_declares_its_license(installed):
    """PyPI, pip-licenses and SBOM tools read the licence from the metadata; the text ships with it."""
    (dist_info,) = installed.glob("foundry-*.dist-info")
    metadata = (dist_info / "METADATA").read_text()
    assert "License-Expression: Apache-2.0" in metadata.splitlines()
    assert "Apache License" in (dist_info / "licenses" / "LICENSE").read_text()
