"""CUDA kernels against their numpy twins (needs an NVIDIA GPU and PyCUDA; skips otherwise)."""

import numpy as np
import pytest

from gat_hpc.cuda import adequacy, runtime
from gat_hpc.cuda.mismatch import complex64_bound, power_mismatch
from gat_hpc.cuda.ptdf import PtdfFlows, float32_bound, ptdf_flows, ptdf_flows_numpy
from gat_hpc.cuda.screening import (LodfScreen, loading_error_bound, screen_lodf,
                                    screen_lodf_numpy)
from gat_hpc.pf.sensitivity import make_ptdf
from gat_hpc.pf.ybus import make_sbus, make_ybus
from tests.conftest import need
from tests.gpu.cases import load_case, reference_screen, screening_case

pytestmark = pytest.mark.gpu


@pytest.fixture(scope="module", autouse=True)
def gpu():
    ok, why = runtime.gpu_available()
    if ok:
        runtime.select_device()
    return ok, why


@pytest.fixture(autouse=True)
def needs_gpu(gpu):
    need("gpu", gpu[0], gpu[1])


def random_screen(rng, h, m, k, unrated=0.1):
    """Random flows, LODF columns, distinct outages and ratings (some unrated), M x K."""
    flows = rng.standard_normal((h, m)) * rng.uniform(10, 300, m)
    lodf = rng.standard_normal((m, k)) * 0.3
    out_idx = rng.choice(m, size=k, replace=False)
    lodf[out_idx, np.arange(k)] = -1.0
    ratings = rng.uniform(150, 600, m)
    ratings[rng.random(m) < unrated] = 0.0
    return flows, lodf, out_idx, ratings


def assert_same(a, b):
    for name in ("max_loading", "argmax", "n_violations", "top_ids", "top_loading"):
        np.testing.assert_array_equal(getattr(a, name), getattr(b, name), err_msg=name)


def assert_matches_reference(res, loading, mx, count, tops, rtol):
    h, k = np.indices(mx.shape)
    np.testing.assert_allclose(res.max_loading, mx, rtol=rtol, atol=1e-14)
    np.testing.assert_allclose(loading[h, k, res.argmax], mx, rtol=rtol, atol=1e-14)
    np.testing.assert_array_equal(res.n_violations, count)
    for (hh, kk), top in tops.items():
        n = len(top)
        np.testing.assert_allclose(res.top_loading[hh, kk, :n], [t[0] for t in top], rtol=rtol)
        np.testing.assert_allclose(loading[hh, kk, res.top_ids[hh, kk, :n]], [t[0] for t in top], rtol=rtol)
        assert np.all(res.top_ids[hh, kk, n:] == -1)


# ---------------------------------------------------------------- LODF screening
def test_screen_float64_matches_loops_on_case118():
    flows, cols, out_idx, ratings = screening_case()
    ref = reference_screen(flows, cols, out_idx, ratings, threshold=1.0, top_n=4)
    res = screen_lodf(flows, cols, out_idx, ratings, 1.0, 4, np.float64)
    assert ref[2].sum() > 20
    assert_matches_reference(res, *ref, rtol=1e-12)
    twin = screen_lodf_numpy(flows, cols, out_idx, ratings, 1.0, 4, np.float64)
    np.testing.assert_allclose(res.max_loading, twin.max_loading, rtol=1e-12)


def test_screen_float32_within_bound():
    rng = np.random.default_rng(11)
    flows, lodf, out_idx, ratings = random_screen(rng, 7, 300, 150)
    loading, mx, count, _ = reference_screen(flows, lodf, out_idx, ratings, 1.0, 5)
    bound = loading_error_bound(flows, lodf, out_idx, ratings)
    bound[:, np.arange(len(out_idx)), out_idx] = 0
    res = screen_lodf(flows, lodf, out_idx, ratings, 1.0, 5, np.float32)
    assert count.sum() > 100
    assert np.all(np.abs(res.max_loading - mx) <= bound.max(axis=2))
    h, k = np.indices(mx.shape)
    assert np.all(np.abs(loading[h, k, res.argmax] - mx) <= 2 * bound.max(axis=2))
    lo = (loading - bound > 1.0).sum(axis=2)
    hi = (loading + bound > 1.0).sum(axis=2)
    assert np.all((lo <= res.n_violations) & (res.n_violations <= hi))
    ok = res.top_ids >= 0
    hh, kk, _ = np.nonzero(ok)
    ids = res.top_ids[ok]
    assert np.all(np.abs(res.top_loading[ok] - loading[hh, kk, ids]) <= bound[hh, kk, ids])


@pytest.mark.parametrize("dtype,hours", [(np.float32, 24), (np.float32, 40), (np.float32, 5),
                                         (np.float64, 16), (np.float64, 20)])
def test_screen_matches_twin_for_any_split_and_hour_block(dtype, hours):
    rng = np.random.default_rng(hours)
    flows, lodf, out_idx, ratings = random_screen(rng, hours, 1000, 333)
    twin = screen_lodf_numpy(flows, lodf, out_idx, ratings, 1.0, 6, dtype)
    results = [LodfScreen(lodf, out_idx, ratings, dtype, n_split=s).screen(flows, 1.0, 6)
               for s in (None, 1, 3, 7)]
    for other in results[1:]:
        assert_same(results[0], other)  # the split only changes how the work is cut
    res = results[0]
    rtol = 1e-12 if dtype == np.float64 else 1e-5
    np.testing.assert_allclose(res.max_loading, twin.max_loading, rtol=rtol)
    assert np.mean(res.n_violations == twin.n_violations) > 0.999
    assert res.max_loading.dtype == dtype and res.max_loading.shape == (hours, 333)


def test_screen_exact_ties_match_twin():
    flows = np.array([[4.0, -4.0, 2.0, 8.0, 1.0, 6.0]])
    lodf = np.zeros((6, 2))
    lodf[:, 0] = [-1.0, 0.0, 0.5, -0.5, 0.0, 0.0]
    lodf[:, 1] = [0.0, 0.0, 0.0, -1.0, 0.5, -0.25]
    ratings = np.array([2.0, 2.0, 2.0, 2.0, 2.0, 0.0])
    for dtype in (np.float32, np.float64):
        gpu = screen_lodf(flows, lodf, [0, 3], ratings, 1.0, 3, dtype)
        cpu = screen_lodf_numpy(flows, lodf, [0, 3], ratings, 1.0, 3, dtype)
        assert_same(gpu, cpu)
        assert gpu.top_ids[0, 0].tolist() == [3, 1, 2]


def test_screen_first_maximum_across_tiles_and_splits():
    # branches 5 and 150 carry the same, largest loading: the first one is reported whatever
    # the split, and the tile of branch 150 (a tie, not a new maximum) changes nothing
    m = 200
    flows = np.zeros((2, m))
    flows[:, :] = 10.0
    flows[:, 5] = flows[:, 150] = 96.0
    flows[:, 199] = 64.0
    lodf = np.zeros((m, 3))
    out_idx = np.array([199, 198, 197])
    lodf[out_idx, np.arange(3)] = -1.0
    lodf[5, 0] = lodf[150, 0] = 0.5  # outage of 199 adds 32 to both
    ratings = np.full(m, 128.0)
    for dtype in (np.float32, np.float64):
        cpu = screen_lodf_numpy(flows, lodf, out_idx, ratings, 0.7, 3, dtype)
        for n_split in (1, 2, 4):
            gpu = LodfScreen(lodf, out_idx, ratings, dtype, n_split=n_split).screen(flows, 0.7, 3)
            assert_same(gpu, cpu)
        assert cpu.argmax[0].tolist() == [5, 5, 5]
        assert cpu.max_loading[0, 0] == 1.0 and cpu.max_loading[0, 1] == 0.75
        assert cpu.top_ids[0, 0].tolist() == [5, 150, -1]


def test_screen_many_violations_with_ties_in_one_pair():
    # the outage of branch 1 overloads 300 branches spread over every tile and split, in three
    # groups of equal loading: the violations kernel's count, and its top list in (loading
    # desc, branch asc) order across its warps' ranges, must equal the twin's
    rng = np.random.default_rng(11)
    m = 3000
    out_idx = np.array([0, 1, 2, 3])
    flows = np.full((3, m), 50.0)
    flows[:, 1] = 100.0
    lodf = np.zeros((m, 4))
    lodf[out_idx, np.arange(4)] = -1.0
    hit = np.sort(rng.choice(np.arange(10, m), 300, replace=False))
    lodf[hit, 1] = rng.choice([0.5, 0.75, 1.0], 300)  # loadings (50 + 100 LODF) / 90 > 1
    ratings = np.full(m, 90.0)
    for dtype in (np.float32, np.float64):
        cpu = screen_lodf_numpy(flows, lodf, out_idx, ratings, 1.0, 16, dtype)
        for n_split in (None, 3):
            gpu = LodfScreen(lodf, out_idx, ratings, dtype, n_split=n_split).screen(flows, 1.0, 16)
            assert_same(gpu, cpu)
        assert cpu.n_violations[:, 1].tolist() == [300] * 3
        assert cpu.top_ids[0, 1].tolist() == hit[lodf[hit, 1] == 1.0][:16].tolist()
        assert cpu.n_violations[:, 0].tolist() == [1] * 3  # branch 1 itself, 100 / 90


# ---------------------------------------------------------------- PTDF flows
@pytest.mark.parametrize("n_scen", [24, 300])
def test_ptdf_flows_kernel_and_cublas(n_scen):
    net = load_case("case118")
    ptdf = make_ptdf(net)
    rng = np.random.default_rng(n_scen)
    p = rng.standard_normal((n_scen, net.n_bus))
    ref = ptdf_flows_numpy(p, ptdf, np.float64)
    f64 = ptdf_flows(p, ptdf, np.float64)
    assert np.max(np.abs(f64 - ref)) <= 1e-12 * np.max(np.abs(ref))
    bound = float32_bound(p, ptdf)
    f32 = ptdf_flows(p, ptdf, np.float32)
    assert np.all(np.abs(f32 - ref) <= bound)
    try:
        from gat_hpc.cuda import cublas
        cublas.library()
    except Exception as exc:  # noqa: BLE001 - any load failure means no cuBLAS here
        pytest.skip(f"cuBLAS not loadable: {exc}")
    plan = PtdfFlows(ptdf, np.float32)
    fc = plan.flows(p, method="cublas")
    assert np.all(np.abs(fc - ref) <= bound)


# ---------------------------------------------------------------- power mismatch
@pytest.mark.parametrize("shared_sbus", [True, False])
def test_mismatch_matches_twin(shared_sbus):
    net = load_case("case118")
    ybus, _, _ = make_ybus(net)
    sbus = make_sbus(net)
    rng = np.random.default_rng(8)
    b = 70
    v = (1 + 0.03 * rng.standard_normal((b, net.n_bus))) * np.exp(0.3j * rng.standard_normal((b, net.n_bus)))
    s = sbus if shared_sbus else sbus * rng.uniform(0.5, 1.5, (b, 1))
    ref = power_mismatch(ybus, v, s, device="cpu")
    got = power_mismatch(ybus, v, s, np.complex128)
    scale = np.abs(v) * (abs(ybus) @ np.abs(v).T).T + np.abs(s)
    assert np.all(np.abs(got - ref) <= 1e-12 * scale)
    got32 = power_mismatch(ybus, v, s, np.complex64)
    assert got32.dtype == np.complex64
    assert np.all(np.abs(got32 - ref) <= complex64_bound(ybus, v, s))


# ---------------------------------------------------------------- Philox and the capacity check
def test_philox_bit_identical():
    ctr = np.array([c for c, _, _ in adequacy.PHILOX_KAT], dtype=np.uint32)
    for i, (_, key, want) in enumerate(adequacy.PHILOX_KAT):
        assert adequacy.philox4x32_gpu(ctr[i], key).tolist() == list(want)
    rng = np.random.default_rng(1)
    counters = rng.integers(0, 2 ** 32, size=(5000, 4), dtype=np.uint32)
    key = (0xDEADBEEF, 0x01234567)
    np.testing.assert_array_equal(adequacy.philox4x32_gpu(counters, key),
                                  adequacy.philox4x32(counters, key))


@pytest.mark.parametrize("n_units,sample0", [(37, 0), (3001, (5 << 32) - 3)])
def test_capacity_check_identical_indices(n_units, sample0):
    rng = np.random.default_rng(n_units)
    cap = rng.uniform(5, 400, n_units).round(3)
    q = rng.uniform(0.01, 0.2, n_units)
    q[::17] = 1.0  # some units always out
    hours = 1000
    mean = (cap * np.where(q < 1, 1 - q, 0)).sum()
    sd = np.sqrt((cap ** 2 * np.where(q < 1, q * (1 - q), 0)).sum())
    load = (mean - 1.5 * sd) * (0.9 + 0.1 * np.sin(np.arange(hours) / 11.0))
    for hour0 in (0, 4000):
        gpu = adequacy.capacity_check(cap, q, load, 19, seed=77, sample0=sample0, hour0=hour0)
        cpu = adequacy.capacity_check_numpy(cap, q, load, 19, seed=77, sample0=sample0, workers=4, hour0=hour0)
        assert gpu.lole_h.sum() > 10
        np.testing.assert_array_equal(gpu.lole_h, cpu.lole_h)
        np.testing.assert_array_equal(gpu.eue_mwh, cpu.eue_mwh)
        np.testing.assert_array_equal(gpu.hour_lol, cpu.hour_lol)
        np.testing.assert_array_equal(gpu.hour_eue_mwh, cpu.hour_eue_mwh)


def test_select_device_is_stable():
    ordinal = runtime.select_device()
    assert ordinal == runtime.select_device()
    info = runtime.device_info()
    assert info["multiprocessors"] > 0 and info["memory_bytes"] > 0
