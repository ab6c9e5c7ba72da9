"""Only what pyproject.toml cannot say: the top-level conf/ folder ships in the wheel as the package
``foundry_conf`` (Hydra's ``pkg://foundry_conf``), so an installed Foundry (``pip install .``, a wheel,
an image) composes its bundled configs from any directory. The layout stays as it is: conf/ at the top."""

from pathlib import Path

from setuptools import find_packages, setup

CONF = Path(__file__).resolve().parent / "conf"
# Every config group folder is named as a package of its own: setuptools warns about (and may drop) data
# folders that Python could import but `packages` does not list.
CONF_PACKAGES = ["foundry_conf", *sorted("foundry_conf." + ".".join(d.relative_to(CONF).parts)
                                         for d in CONF.rglob("*") if d.is_dir() and d.name != "__pycache__")]

setup(
    packages=[*find_packages(include=["foundry*", "jobs*", "serve_apps*", "cluster*"]), *CONF_PACKAGES],
    package_dir={"foundry_conf": "conf"},
)
