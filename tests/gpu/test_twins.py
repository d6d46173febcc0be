"""The numpy twins of the CUDA kernels against plain loops and independent references (CPU, CI)."""

import math
import sys

import numpy as np
import pytest
import scipy.sparse as sp

from gat_hpc.cuda import adequacy, runtime
from gat_hpc.cuda.mismatch import complex64_bound, power_mismatch_numpy
from gat_hpc.cuda.ptdf import float32_bound, ptdf_flows_numpy
from gat_hpc.cuda.screening import (FLOAT32_BOUND_FACTOR, LodfScreen, loading_error_bound,
                                    post_outage_loadings, screen_lodf_numpy, tile_major)
from gat_hpc.errors import InputError
from gat_hpc.pf.dc import bus_injection, make_bdc, solve_dc
from gat_hpc.pf.sensitivity import make_ptdf
from gat_hpc.pf.ybus import make_sbus, make_ybus
from tests.gpu.cases import load_case, reference_screen, screening_case

EPS32 = float(np.finfo(np.float32).eps)


# ---------------------------------------------------------------- LODF screening
@pytest.fixture(scope="module")
def scr():
    flows, cols, out_idx, ratings = screening_case()
    ref = reference_screen(flows, cols, out_idx, ratings, threshold=1.0, top_n=4)
    return flows, cols, out_idx, ratings, ref


def test_screen_twin_float64_matches_loops(scr):
    flows, cols, out_idx, ratings, (loading, mx, count, tops) = scr
    res = screen_lodf_numpy(flows, cols, out_idx, ratings, threshold=1.0, top_n=4, dtype=np.float64)
    assert count.sum() > 20, "the case must overload some branches to test anything"
    np.testing.assert_allclose(res.max_loading, mx, rtol=1e-12, atol=1e-14)
    h, k = np.indices(mx.shape)
    # the reported branch carries the maximum (parallel twins may tie, so compare loadings)
    np.testing.assert_allclose(loading[h, k, res.argmax], mx, rtol=1e-12)
    assert np.all(res.argmax != out_idx[None, :])
    np.testing.assert_array_equal(res.n_violations, count)
    for (hh, kk), top in tops.items():
        got = [(res.top_loading[hh, kk, j], res.top_ids[hh, kk, j]) for j in range(len(top))]
        np.testing.assert_allclose([g[0] for g in got], [t[0] for t in top], rtol=1e-12)
        np.testing.assert_allclose(loading[hh, kk, [g[1] for g in got]], [t[0] for t in top], rtol=1e-12)
        assert np.all(res.top_ids[hh, kk, len(top):] == -1)
        assert np.all(res.top_loading[hh, kk, len(top):] == 0)


def test_screen_twin_threads_and_blocks_agree(scr):
    flows, cols, out_idx, ratings, _ = scr
    one = screen_lodf_numpy(flows, cols, out_idx, ratings, 0.9, 3, np.float32)
    many = screen_lodf_numpy(flows, cols, out_idx, ratings, 0.9, 3, np.float32, workers=3)
    for a, b in ((one.max_loading, many.max_loading), (one.argmax, many.argmax),
                 (one.n_violations, many.n_violations), (one.top_ids, many.top_ids)):
        np.testing.assert_array_equal(a, b)
    # a plan screens hour blocks one at a time with the same answers
    plan = LodfScreen(cols, out_idx, ratings, np.float32, device="cpu")
    part = plan.screen(flows[2:4], 0.9, 3)
    np.testing.assert_array_equal(part.max_loading, one.max_loading[2:4])
    np.testing.assert_array_equal(part.top_ids, one.top_ids[2:4])


def test_float32_loadings_within_the_stated_bound(scr):
    flows, cols, out_idx, ratings, (loading, mx, count, _) = scr
    ld32 = post_outage_loadings(flows, cols, out_idx, ratings, np.float32).astype(np.float64)
    bound = loading_error_bound(flows, cols, out_idx, ratings)
    bound[:, np.arange(len(out_idx)), out_idx] = 0
    err = np.abs(ld32 - loading)
    assert np.all(err <= bound)
    # the bound is not vacuous: rounding shows, and uses a visible part of it
    assert err.max() > 0 and (err / np.where(bound > 0, bound, 1)).max() > 0.05
    res = screen_lodf_numpy(flows, cols, out_idx, ratings, threshold=1.0, top_n=4)
    bmax = bound.max(axis=2)
    assert np.all(np.abs(res.max_loading - mx) <= bmax)
    lo = (loading - bound > 1.0).sum(axis=2)
    hi = (loading + bound > 1.0).sum(axis=2)
    assert np.all((lo <= res.n_violations) & (res.n_violations <= hi))
    assert FLOAT32_BOUND_FACTOR * EPS32 < 1e-6


def test_screen_exact_ties_and_exclusions():
    # integer flows and power-of-two ratings: every loading is exact, so ties are real ties
    flows = np.array([[4.0, -4.0, 2.0, 8.0, 1.0, 6.0]])
    lodf = np.zeros((6, 2))
    lodf[:, 0] = [-1.0, 0.0, 0.5, -0.5, 0.0, 0.0]   # outage of branch 0 (flow 4)
    lodf[:, 1] = [0.0, 0.0, 0.0, -1.0, 0.5, -0.25]  # outage of branch 3 (flow 8)
    ratings = np.array([2.0, 2.0, 2.0, 2.0, 2.0, 0.0])
    res = screen_lodf_numpy(flows, lodf, [0, 3], ratings, threshold=1.0, top_n=3, dtype=np.float64)
    # outage 0: post = [0, -4, 4, 6, 1, 6] -> loadings [0, 2, 2, 3, .5, unrated]
    assert res.max_loading[0, 0] == 3.0 and res.argmax[0, 0] == 3
    assert res.n_violations[0, 0] == 3
    assert res.top_ids[0, 0].tolist() == [3, 1, 2] and res.top_loading[0, 0].tolist() == [3, 2, 2]
    # outage 1: post = [4, -4, 2, 0, 5, 4] -> loadings [2, 2, 1, 0, 2.5, unrated]
    assert res.max_loading[0, 1] == 2.5 and res.argmax[0, 1] == 4
    assert res.n_violations[0, 1] == 3
    assert res.top_ids[0, 1].tolist() == [4, 0, 1]
    # all unrated: nothing loaded, no branch reported
    none = screen_lodf_numpy(flows, lodf, [0, 3], np.zeros(6), dtype=np.float64)
    assert np.all(none.max_loading == 0) and np.all(none.argmax == -1) and np.all(none.n_violations == 0)


def test_tile_major_layout():
    ls = np.arange(35 * 3, dtype=np.float32).reshape(35, 3) + 1
    lt = tile_major(ls, 16, kb=4)
    assert lt.shape == (3, 4, 16)
    for m in range(48):
        for k in range(4):
            want = ls[m, k] if m < 35 and k < 3 else 0
            assert lt[m // 16, k, m % 16] == want


def test_screen_rejects_bad_input():
    with pytest.raises(InputError, match="out_idx"):
        screen_lodf_numpy(np.zeros((1, 3)), np.zeros((3, 2)), [0, 3], np.ones(3))
    with pytest.raises(InputError, match="flows"):
        screen_lodf_numpy(np.zeros((1, 4)), np.zeros((3, 1)), [0], np.ones(3))
    with pytest.raises(InputError, match="top_n"):
        screen_lodf_numpy(np.zeros((1, 3)), np.zeros((3, 1)), [0], np.ones(3), top_n=99)
    with pytest.raises(InputError, match="dtype"):
        screen_lodf_numpy(np.zeros((1, 3)), np.zeros((3, 1)), [0], np.ones(3), dtype=np.float16)


# ---------------------------------------------------------------- PTDF flows
def test_ptdf_twin_matches_dc_solves():
    net = load_case("case118")
    ptdf = make_ptdf(net)
    _, _, pbusinj, pfinj = make_bdc(net)
    scales = [0.7, 1.0, 1.2]
    p = []
    direct = []
    for s in scales:
        hour = net.copy()
        hour.load_p, hour.pg = net.load_p * s, net.pg * s
        p.append(bus_injection(hour) - pbusinj)
        direct.append(solve_dc(hour).p_from)
    f64 = ptdf_flows_numpy(np.array(p), ptdf, np.float64) + pfinj
    np.testing.assert_allclose(f64, np.array(direct), rtol=1e-9, atol=1e-10)
    f32 = ptdf_flows_numpy(np.array(p), ptdf, np.float32).astype(np.float64) + pfinj
    assert np.all(np.abs(f32 - f64) <= float32_bound(p, ptdf))


# ---------------------------------------------------------------- power mismatch
def test_mismatch_twin_matches_loops():
    net = load_case("case14")
    ybus, _, _ = make_ybus(net)
    sbus = make_sbus(net)
    rng = np.random.default_rng(3)
    v = (1 + 0.05 * rng.standard_normal((4, net.n_bus))) * np.exp(0.2j * rng.standard_normal((4, net.n_bus)))
    ref = np.zeros_like(v)
    y = ybus.toarray()
    for b in range(v.shape[0]):
        for i in range(net.n_bus):
            cur = sum(y[i, j] * v[b, j] for j in range(net.n_bus))
            ref[b, i] = v[b, i] * np.conj(cur) - sbus[i]
    mis = power_mismatch_numpy(ybus, v, sbus)
    np.testing.assert_allclose(mis, ref, rtol=1e-12, atol=1e-12)
    mis64 = power_mismatch_numpy(ybus, v, sbus, np.complex64)
    assert mis64.dtype == np.complex64
    assert np.all(np.abs(mis64 - ref) <= complex64_bound(ybus, v, sbus))
    # per-vector Sbus
    s2 = np.tile(sbus, (4, 1)) * np.array([[1.0], [0.5], [2.0], [0.0]])
    ref2 = ref + sbus - s2
    np.testing.assert_allclose(power_mismatch_numpy(ybus, v, s2), ref2, rtol=1e-12, atol=1e-12)


def test_mismatch_is_zero_at_a_solved_point():
    # a 2-bus network solved by hand: V2 chosen, S1 and S2 computed from it, mismatch must vanish
    y = sp.csr_matrix(np.array([[1 - 10j, -1 + 10j], [-1 + 10j, 1 - 10j]]))
    v = np.array([1.0, 0.98 * np.exp(-0.05j)])
    s = v * np.conj(y @ v)
    assert np.abs(power_mismatch_numpy(y, v, s)).max() < 1e-14
    assert np.abs(power_mismatch_numpy(y, v, s * 1.01)).max() > 1e-3


# ---------------------------------------------------------------- Philox and the capacity check
def test_philox_known_answers():
    for ctr, key, want in adequacy.PHILOX_KAT:
        assert adequacy.philox4x32(np.array(ctr), key).tolist() == list(want)


def philox_scalar(ctr, key):
    """Philox4x32-10 written out with Python integers, one counter at a time."""
    c, (k0, k1) = list(ctr), key
    for _ in range(10):
        p0, p1 = 0xD2511F53 * c[0], 0xCD9E8D57 * c[2]
        c = [(p1 >> 32) ^ c[1] ^ k0, p1 & 0xFFFFFFFF, (p0 >> 32) ^ c[3] ^ k1, p0 & 0xFFFFFFFF]
        k0, k1 = (k0 + 0x9E3779B9) & 0xFFFFFFFF, (k1 + 0xBB67AE85) & 0xFFFFFFFF
    return c


def test_unit_words_follow_the_counter_layout():
    seed = (7 << 32) | 12345
    samples, hours = [0, 5, (3 << 32) + 9], [0, 1, 17]
    w = adequacy.unit_words(seed, samples, hours, 7)
    assert w.shape == (3, 3, 7) and w.dtype == np.uint32
    key = adequacy.seed_key(seed)
    for i, s in enumerate(samples):
        for j, h in enumerate(hours):
            for u in range(7):
                out = philox_scalar((u // 4, h, s & 0xFFFFFFFF, s >> 32), key)
                assert w[i, j, u] == out[u % 4]


def capacity_loops(cap, q, load, n_samples, seed, sample0=0, quantum=1e-3):
    """LOLE/EUE by explicit loops over samples, hours and units (float sums, exact data)."""
    thr, always = adequacy.outage_thresholds(q)
    lole, eue = np.zeros(n_samples, int), np.zeros(n_samples)
    for i in range(n_samples):
        w = adequacy.unit_words(seed, [sample0 + i], np.arange(len(load)), len(cap))[0]
        for h in range(len(load)):
            avail = sum(cap[u] for u in range(len(cap)) if not always[u] and w[h, u] >= thr[u])
            if avail < load[h]:
                lole[i] += 1
                eue[i] += load[h] - avail
    return lole, eue


def test_capacity_check_twin_matches_loops():
    cap = np.array([120.0, 80.0, 80.0, 50.0, 35.5, 20.0, 400.0])
    q = np.array([0.3, 0.2, 0.2, 0.1, 0.4, 0.05, 1.0])  # the last unit is always out
    load = np.array([250.0, 300.0, 320.0, 290.0, 200.0, 385.5, 330.0, 310.0, 360.0, 230.0])
    res = adequacy.capacity_check_numpy(cap, q, load, 12, seed=99, sample0=40)
    lole, eue = capacity_loops(cap, q, load, 12, 99, sample0=40)
    assert lole.sum() > 5
    np.testing.assert_array_equal(res.lole_h, lole)
    np.testing.assert_allclose(res.eue_mwh, eue, rtol=0, atol=1e-9)
    np.testing.assert_array_equal(res.samples, np.arange(40, 52))


def test_capacity_check_is_chunking_independent():
    rng = np.random.default_rng(0)
    cap, q = rng.uniform(10, 300, 53), rng.uniform(0.02, 0.15, 53)
    load = 0.85 * cap.sum() * (0.8 + 0.2 * np.sin(np.arange(200) / 7.0))
    whole = adequacy.capacity_check_numpy(cap, q, load, 10, seed=5)
    a = adequacy.capacity_check_numpy(cap, q, load, 4, seed=5)
    b = adequacy.capacity_check_numpy(cap, q, load, 6, seed=5, sample0=4, workers=2)
    np.testing.assert_array_equal(whole.lole_h, np.concatenate([a.lole_h, b.lole_h]))
    np.testing.assert_array_equal(whole.eue_mwh, np.concatenate([a.eue_mwh, b.eue_mwh]))
    other = adequacy.capacity_check_numpy(cap, q, load, 10, seed=6)
    assert not np.array_equal(whole.eue_mwh, other.eue_mwh)
    # per hour: the sums over samples, split the same way
    np.testing.assert_array_equal(whole.hour_lol, a.hour_lol + b.hour_lol)
    assert whole.hour_lol.sum() == whole.lole_h.sum() > 0
    assert whole.hour_eue_mwh.sum() == pytest.approx(whole.eue_mwh.sum(), rel=1e-12)
    # cut into hours 0..119 and 120..199 (hour0): the same states, hence the same totals
    h1 = adequacy.capacity_check_numpy(cap, q, load[:120], 10, seed=5)
    h2 = adequacy.capacity_check_numpy(cap, q, load[120:], 10, seed=5, hour0=120, workers=2)
    np.testing.assert_array_equal(whole.lole_h, h1.lole_h + h2.lole_h)
    np.testing.assert_array_equal(whole.hour_lol, np.concatenate([h1.hour_lol, h2.hour_lol]))
    np.testing.assert_array_equal(whole.hour_eue_mwh, np.concatenate([h1.hour_eue_mwh, h2.hour_eue_mwh]))


def test_lolp_and_eue_match_enumeration():
    # two units, one load: P(loss) and E(shortfall) by enumerating the four states
    cap, q = np.array([100.0, 50.0]), np.array([0.1, 0.2])
    n_samples, n_hours = 50, 2000
    for load, lolp, eue in ((120.0, 0.28, 0.18 * 20 + 0.08 * 70 + 0.02 * 120),
                            (100.0, 0.10, 0.08 * 50 + 0.02 * 100)):  # 100 available serves 100
        res = adequacy.capacity_check_numpy(cap, q, np.full(n_hours, load), n_samples, seed=2024)
        n = n_samples * n_hours
        assert abs(res.lole_h.sum() / n - lolp) < 5 * math.sqrt(lolp * (1 - lolp) / n)
        assert abs(res.eue_mwh.sum() / n - eue) < 0.05 * eue


def test_strictly_below_rule():
    cap, q = np.array([100.0, 50.0]), np.zeros(2)  # never out
    at = adequacy.capacity_check_numpy(cap, q, np.full(24, 150.0), 3, seed=1)
    assert np.all(at.lole_h == 0) and np.all(at.eue_mwh == 0)
    over = adequacy.capacity_check_numpy(cap, q, np.full(24, 150.001), 3, seed=1)
    assert np.all(over.lole_h == 24)
    np.testing.assert_allclose(over.eue_mwh, 24 * 0.001, rtol=1e-12)


def test_capacity_check_rejects_bad_input():
    with pytest.raises(InputError, match="outage rates"):
        adequacy.capacity_check_numpy([10.0], [-0.1], [5.0], 1, 0)
    with pytest.raises(InputError, match="seed"):
        adequacy.capacity_check_numpy([10.0], [0.1], [5.0], 1, -1)
    with pytest.raises(InputError, match="one outage rate per unit"):
        adequacy.capacity_check_numpy([10.0, 5.0], [0.1], [5.0], 1, 0)


# ---------------------------------------------------------------- device selection and import
def test_local_rank_and_ordinal():
    assert runtime.local_rank({}) == 0
    assert runtime.local_rank({"SLURM_LOCALID": "3"}) == 3
    assert runtime.local_rank({"OMPI_COMM_WORLD_LOCAL_RANK": "1", "SLURM_LOCALID": "3"}) == 1
    assert runtime.visible_devices({"CUDA_VISIBLE_DEVICES": "2,3"}) == ["2", "3"]
    assert runtime.visible_devices({}) is None
    # --gpus-per-task=1: one visible GPU, every rank takes ordinal 0
    assert [runtime.device_ordinal(r, 1) for r in range(4)] == [0, 0, 0, 0]
    # all GPUs of the node visible: round-robin by local rank
    assert [runtime.device_ordinal(r, 4) for r in range(6)] == [0, 1, 2, 3, 0, 1]
    with pytest.raises(InputError, match="needs an NVIDIA GPU"):
        runtime.device_ordinal(0, 0)


def test_gpu_path_without_pycuda_says_what_to_do(monkeypatch):
    try:
        import pycuda.driver  # noqa: F401
        pytest.skip("PyCUDA is installed here; the missing-PyCUDA message cannot be shown")
    except ImportError:
        pass
    monkeypatch.setitem(runtime._state, "driver", None)
    ok, why = runtime.gpu_available()
    assert not ok and why.startswith("--device gpu needs an NVIDIA GPU and PyCUDA: ")
    with pytest.raises(InputError, match="--device gpu needs an NVIDIA GPU and PyCUDA: .*--device cpu"):
        LodfScreen(np.zeros((3, 1)), [0], np.ones(3), device="gpu")
    assert "pycuda" not in sys.modules


def _slot(_):
    import os
    import time

    time.sleep(0.1)  # keep this worker busy so that the others take items too
    return runtime.local_rank(), os.getpid()


def test_process_executor_workers_take_distinct_gpu_slots(monkeypatch):
    """The process executor's initializer numbers its workers: worker i of a process with local
    rank r gets slot r W + i, which select_device maps to GPU slot % N."""
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor

    from gat_hpc.executors.process import _start_worker

    for parent_rank, want in ((None, {0, 1, 2}), ("1", {3, 4, 5})):
        if parent_rank is None:
            monkeypatch.delenv("OMPI_COMM_WORLD_LOCAL_RANK", raising=False)
        else:
            monkeypatch.setenv("OMPI_COMM_WORLD_LOCAL_RANK", parent_rank)
        for name in ("GAT_HPC_GPU_SLOT", "MV2_COMM_WORLD_LOCAL_RANK", "MPI_LOCALRANKID", "SLURM_LOCALID", "LOCAL_RANK"):
            monkeypatch.delenv(name, raising=False)
        ctx = multiprocessing.get_context("fork")
        counter = ctx.Value("i", 0)
        with ProcessPoolExecutor(3, mp_context=ctx, initializer=_start_worker, initargs=(counter, 3)) as pool:
            seen = set(pool.map(_slot, range(9)))
        slots = {pid: slot for slot, pid in seen}
        assert len(seen) == len(slots)  # one slot per worker process, for good
        assert set(slots.values()) <= want and len(set(slots.values())) == len(slots) >= 2
    assert runtime.device_ordinal(5, 2) == 1
