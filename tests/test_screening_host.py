"""Host-side helpers of the GPU screening (no GPU needed)."""

import numpy as np

from gat_hpc.cuda.screening import PROBES, probe_branches


def test_probe_branches_equal_a_stable_descending_sort():
    rng = np.random.default_rng(5)
    for m in (0, 3, PROBES, PROBES + 1, 1000):
        for load in (rng.random(m), np.round(rng.random(m), 1)):  # the second with many ties
            got = probe_branches(load)
            want = np.argsort(-load, kind="stable")[:PROBES]
            assert got.dtype == np.int32 and len(got) == min(m, PROBES)
            assert np.array_equal(load[got], load[want])  # the same values, largest first
            if len(np.unique(load)) == len(load):
                assert np.array_equal(got, want)
            assert np.all(np.diff(load[got]) <= 0)
