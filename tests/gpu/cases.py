"""Small inputs shared by the GPU-layer tests: case118's DC flows over a few hours, its LODF."""

import os

import numpy as np

import gat_hpc
from gat_hpc.network.matpower import read_matpower
from gat_hpc.pf.dc import solve_dc
from gat_hpc.pf.sensitivity import make_lodf

DATA = os.path.join(os.path.dirname(gat_hpc.__file__), "data")


def load_case(name):
    return read_matpower(os.path.join(DATA, name + ".m"))


def hourly_dc_flows(net, scales):
    """From-end DC flows (MW), one row per hour, with loads and generation scaled together."""
    rows = []
    for s in scales:
        hour = net.copy()
        hour.load_p = net.load_p * s
        hour.pg = net.pg * s
        rows.append(solve_dc(hour).p_from_mw)
    return np.array(rows)


def screening_case(scales=(0.8, 0.95, 1.0, 1.1, 0.7)):
    """case118 flows (H x M, MW), its LODF columns of the non-bridge outages, those outages,
    and ratings: 1.15 x each branch's largest base flow (so outages overload some branches),
    with every seventh branch unrated (0 = unlimited)."""
    net = load_case("case118")
    flows = hourly_dc_flows(net, scales)
    lodf, bridge = make_lodf(net)
    out_idx = np.flatnonzero(net.branch_in_service() & ~bridge)
    ratings = np.round(1.15 * np.abs(flows).max(axis=0) + 1.0, 1)
    ratings[::7] = 0.0
    return flows, lodf[:, out_idx], out_idx, ratings


def reference_screen(flows, lodf_cols, out_idx, ratings, threshold, top_n):
    """Plain float64 loops over (hour, outage): the loadings and every reduction, one by one."""
    from gat_hpc.pf.sensitivity import post_outage_flows

    post = post_outage_flows(flows, lodf_cols, out_idx)  # H x K x M
    h_count, k_count, m_count = post.shape
    loading = np.zeros_like(post)
    for m in range(m_count):
        if ratings[m] > 0:
            loading[:, :, m] = np.abs(post[:, :, m]) / ratings[m]
    for k in range(k_count):
        loading[:, k, out_idx[k]] = 0.0
    mx = loading.max(axis=2)
    count = np.zeros((h_count, k_count), dtype=int)
    tops = {}
    for h in range(h_count):
        for k in range(k_count):
            viol = [(loading[h, k, m], m) for m in range(m_count) if loading[h, k, m] > threshold]
            count[h, k] = len(viol)
            tops[h, k] = sorted(viol, key=lambda t: (-t[0], t[1]))[:top_n]
    return loading, mx, count, tops


def contingency_chunk(tmp_path, case, hours, device="cpu", precision="float64", threshold=100.0, top=5,
                      rate_from_flow=None):
    """One chunk of the N-1 study (every contingency x ``hours`` profile hours) run through
    ``Contingency.run_chunk`` with config ``device`` ("cpu": the numpy LODF screen; "twin": the
    GPU path with the kernel's numpy twin; "gpu": the CUDA kernel). ``rating_scale`` shrinks
    rateA: when given, rateA = that factor x |base-case DC flow| + 5 MW
    (every seventh branch unrated), so that outages overload branches. Returns (contingencies, violations) tables, the
    violations sorted by (hour, contingency, branch)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    from gat_hpc.runs.spec import ChunkSpec
    from gat_hpc.studies.contingency import Contingency, all_branch_contingencies, load_profile

    net = read_matpower(case)
    if rate_from_flow is not None:
        rate = np.round(rate_from_flow * np.abs(solve_dc(net).p_from_mw) + 5.0, 1)
        rate[::7] = 0.0
        net.rate_a_mva = rate
    h = np.arange(hours)
    prof = os.path.join(tmp_path, f"profile-{hours}.parquet")
    pq.write_table(pa.table({"hour": h, "load_scale": 0.85 + 0.25 * np.sin(2 * np.pi * h / 24) ** 2}), prof)
    cfg = dict(mode="dc", depth=1, n2_candidates=1, threshold_pct=threshold, rating="rateA", ac_threshold_pct=None,
               dispatch="proportional", balancing="slack", top=100, violations_per_contingency=top,
               chunk_hours=hours, chunk_contingencies=10 ** 9, tol=1e-8, max_iter=20, hours=None,
               contingencies="all")
    if device != "cpu":
        cfg.update(device=device, precision=precision)
    profile = load_profile(prof, net)
    ctx = Contingency._base_context(net, profile, cfg)
    ctx["cont"] = all_branch_contingencies(net)
    ctx["hours_sel"] = profile.select(None)
    spec = ChunkSpec(run_id="x", chunk_id=0, study="contingency",
                     ranges={"hours": [0, hours], "contingencies": [0, ctx["cont"].num_rows]})
    tables, metrics = Contingency().run_chunk(ctx, spec)
    v = tables["violations"]
    v = v.take(np.lexsort([v[c].to_numpy() for c in ("monitored_branch_id", "contingency_index", "hour")]))
    return tables["contingencies"], v, metrics


def assert_device_chunk_matches(ref, got, loading_atol):
    """The GPU path's tables against the CPU screen's: loadings within ``loading_atol`` (percent),
    counts and violation rows equal, the flow extremes null on the GPU path."""
    import pyarrow as pa

    (rc, rv, _), (gc, gv, _) = ref, got
    assert rc.num_rows == gc.num_rows
    for name in ("hour", "contingency_index", "islanding"):
        assert rc[name].to_pylist() == gc[name].to_pylist(), name
    # a loading within the rounding of the threshold may count on one side or the other: in
    # float32 (on the GPU, whose fused multiply-add rounds once less than numpy) a few counts
    # may differ by one; in float64 none do
    ca, cb = (np.asarray(t["violation_count"].to_pylist()) for t in (rc, gc))
    off = ca != cb
    if loading_atol < 1e-8:
        assert not off.any()
    else:
        assert np.all(np.abs(ca - cb)[off] == 1) and off.mean() < 1e-3, (off.sum(), len(off))
    a = rc["max_loading_pct"].to_numpy(zero_copy_only=False)
    b = gc["max_loading_pct"].to_numpy(zero_copy_only=False)
    assert np.array_equal(np.isnan(a), np.isnan(b))
    assert np.nanmax(np.abs(a - b)) <= loading_atol, np.nanmax(np.abs(a - b))
    screened = ~np.asarray(gc["islanding"].to_pylist())
    assert gc["max_abs_flow_mw"].null_count == gc.num_rows  # not computed by the kernel
    assert rc["max_abs_flow_mw"].null_count == int((~screened).sum())
    if off.any():  # compare the violation rows of the (hour, outage) pairs counted alike
        keep = set(zip(np.asarray(rc["hour"].to_pylist())[~off], np.asarray(rc["contingency_index"].to_pylist())[~off]))
        sel = lambda t: t.filter(pa.array([k in keep for k in zip(t["hour"].to_pylist(),
                                                                   t["contingency_index"].to_pylist())]))
        rv, gv = sel(rv), sel(gv)
    assert rv.num_rows == gv.num_rows and rv.num_rows > 0
    for name in ("hour", "contingency_index"):
        assert rv[name].to_pylist() == gv[name].to_pylist(), name
    key = rv["hour"].to_numpy() * 10 ** 6 + rv["contingency_index"].to_numpy()
    same = np.asarray(rv["monitored_branch_id"].to_pylist()) == np.asarray(gv["monitored_branch_id"].to_pylist())
    # a top-N cut between two loadings equal to within the rounding (parallel branches) may
    # pick either branch: then the sorted loadings below still agree
    assert same.mean() > 0.99, same.mean()
    ls = lambda t: np.concatenate([np.sort(t["loading_pct"].to_numpy()[key == k]) for k in np.unique(key)])
    assert np.max(np.abs(ls(rv) - ls(gv))) <= loading_atol
    assert np.max(np.abs(rv["flow_mw"].to_numpy()[same] - gv["flow_mw"].to_numpy()[same])) < 1e-8
