"""Typed configs for the unit tests: the default data set and its multi-class and regression variants."""

from __future__ import annotations

import pytest

from foundry import config


@pytest.fixture(scope="session")
def unit_storage_root(tmp_path_factory):
    return tmp_path_factory.mktemp("unit-storage")


@pytest.fixture(scope="session")
def cfg(unit_storage_root):
    return config.load([f"storage.root={unit_storage_root}"])


@pytest.fixture(scope="session")
def ltv_cfg(unit_storage_root):
    return config.load([f"storage.root={unit_storage_root}", "data=churn_ltv"])


@pytest.fixture(scope="session")
def seg_cfg(unit_storage_root):
    return config.load([f"storage.root={unit_storage_root}", "data=churn_segment"])
