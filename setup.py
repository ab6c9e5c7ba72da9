"""Only what pyproject.toml cannot say: the top-level conf/ folder ships in the wheel as the package
``foundry_conf`` (Hydra's ``pkg://foundry_conf``), so an installed Foundry (``pip install .``, a wheel,
an image) composes its bundled configs from any directory. The layout stays as it is: conf/ at the top."""

from setuptools import find_packages, setup

setup(
    packages=[*find_packages(include=["foundry*", "jobs*", "serve_apps*", "cluster*"]), "foundry_conf"],
    package_dir={"foundry_conf": "conf"},
)
