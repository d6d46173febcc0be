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
