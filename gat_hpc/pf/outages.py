"""DC contingency screening: post-outage flows from LODF/PTDF, reduced per (hour, outage).

Single branch outage k (LODF[k, k] = -1, so the outaged branch ends at 0):
    f_post = f + LODF[:, k] f[k]
Outage of a set O of branches (N-2 pairs, multi-element contingencies):
    f_post = f + LODF[:, O] (I - L)^-1 f[O],  L[i, j] = LODF[O_i, O_j] for i != j, 0 on the diagonal;
for a pair {k, l}: (I - L)^-1 = [[1, a], [b, 1]] / (1 - a b) with a = LODF[k, l], b = LODF[l, k].
When I - L is singular the set islands part of the network.
Generator outage g (output P_g): the injection -P_g at its bus is balanced by the slack
(``slack``) or by the remaining generators in proportion to weights w (``participation``):
    f_post = f - P_g (PTDF[:, bus_g] - sum_j w_j PTDF[:, bus_j]).

Everything is vectorised over hours and outages; the hours x outages x branches tensor is
only ever formed in blocks of bounded size (``block_elements``), and each block is reduced
at once to the per-(hour, outage) summary and the worst violations.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

BLOCK_ELEMENTS = 1_000_000  # hours x outages x branches per block: 8 MB of float64 (measured best of 64 K..4 M)


@dataclass
class Reduction:
    """Per (hour, outage) reductions, arrays of shape (H, K); flows in MW, loading in percent.

    ``max_loading_pct``/``argmax_loading``: worst |flow| / rating over monitored branches;
    ``n_violations``: monitored branches above the threshold; ``max_abs_flow_mw`` and its
    branch; ``max_flow_mw``/``min_flow_mw`` over all in-service branches.
    ``violations``: rows (h, k, m, flow_mw, loading_pct) of the worst ``top`` violations of
    each (h, k) (all of them if fewer).
    """

    max_loading_pct: np.ndarray
    argmax_loading: np.ndarray
    n_violations: np.ndarray
    max_abs_flow_mw: np.ndarray
    argmax_abs_flow: np.ndarray
    max_flow_mw: np.ndarray
    min_flow_mw: np.ndarray
    violations: tuple
    timings: dict = field(default_factory=dict)  # seconds per phase, from the GPU screen


def _reduce_block(post_mw, inv_rating, threshold_pct, top, work=None):
    """post_mw: (H, K, M) flows; returns the Reduction fields for the block.

    ``inv_rating``: 100 / rating (MVA) for monitored branches, 0 for the others, so loading
    needs one multiply and unmonitored branches read as 0 %. Few passes over the block:
    it is the hot loop of every screen.
    """
    argmax = np.argmax(post_mw, axis=2)
    argmin = np.argmin(post_mw, axis=2)
    fmax = np.take_along_axis(post_mw, argmax[..., None], axis=2)[..., 0]
    fmin = np.take_along_axis(post_mw, argmin[..., None], axis=2)[..., 0]
    pos = fmax >= -fmin
    mxa = np.where(pos, fmax, -fmin)
    arga = np.where(pos, argmax, argmin)
    loading = np.abs(post_mw, out=work[: post_mw.size].reshape(post_mw.shape) if work is not None else None)
    loading *= inv_rating
    arg = np.argmax(loading, axis=2)
    mx = np.take_along_axis(loading, arg[..., None], axis=2)[..., 0]
    nviol = np.zeros(mx.shape, dtype=np.int64)
    rows = []
    hv, kv = np.nonzero(mx > threshold_pct)
    if hv.size:
        # only the (hour, outage) rows whose maximum is over the threshold can hold violations
        sub = loading[hv, kv]  # (n, M)
        r, m = np.nonzero(sub > threshold_pct)
        nviol[hv, kv] = np.bincount(r, minlength=len(hv))
        lv = sub[r, m]
        order = np.lexsort((-lv, r))  # worst first within each row
        g = r[order]
        first = np.r_[0, np.flatnonzero(np.diff(g)) + 1]
        rank = np.arange(len(g)) - np.repeat(first, np.diff(np.r_[first, len(g)]))
        sel = order[rank < top]
        h, k = hv[r[sel]], kv[r[sel]]
        rows = (h, k, m[sel], post_mw[h, k, m[sel]], lv[sel])
    return mx, arg, nviol, mxa, arga, fmax, fmin, rows


def screen(base_mw, deltas, rating, monitored, threshold_pct, top=5, block_elements=BLOCK_ELEMENTS):
    """Reduce post-outage flows ``base_mw[h] + deltas(h_block, k_block)`` over monitored branches.

    ``base_mw``: (H, M) pre-outage flows, MW; ``deltas(hs, ks)`` -> (len(hs), len(ks), M) flow
    changes for those hours and outages (an opened branch's change cancels its flow);
    ``rating``: (M,) MVA;
    ``monitored``: (M,) bool. Returns a :class:`Reduction` over K outages.
    """
    H, M = base_mw.shape
    inv_rating = np.where(monitored & (rating > 0), 100.0 / np.where(rating > 0, rating, 1.0), 0.0)
    K = deltas.n if hasattr(deltas, "n") else None
    if K is None:
        raise ValueError("deltas must expose the number of outages as .n")
    kb = max(1, min(K, block_elements // max(1, H * M)))
    hb = H if kb > 1 or H * M <= block_elements else max(1, block_elements // M)
    shape = (H, K)
    out = [np.empty(shape), np.empty(shape, np.int64), np.empty(shape, np.int64), np.empty(shape),
           np.empty(shape, np.int64), np.empty(shape), np.empty(shape)]
    vio = [[], [], [], [], []]
    work = None  # one buffer for the loadings of every block
    for h0 in range(0, H, hb):
        hs = np.arange(h0, min(H, h0 + hb))
        for k0 in range(0, K, kb):
            ks = np.arange(k0, min(K, k0 + kb))
            post = deltas(hs, ks)
            post += base_mw[hs][:, None, :]
            if work is None:
                work = np.empty(post.size)
            res = _reduce_block(post, inv_rating, threshold_pct, top, work)
            for arr, val in zip(out, res[:7]):
                arr[np.ix_(hs, ks)] = val
            if len(res[7]):
                h_i, k_i, m_i, f_i, l_i = res[7]
                for lst, val in zip(vio, (hs[h_i], ks[k_i], m_i, f_i, l_i)):
                    lst.append(val)
    violations = tuple(np.concatenate(v) if v else np.empty(0) for v in vio)
    return Reduction(*out, violations=violations)


class BranchOutageDeltas:
    """Flow changes of single branch outages: delta[h, k, :] = LODF[:, k] * f[h, out[k]]."""

    def __init__(self, base_mw, lodf_cols, outages):
        self.base = base_mw
        self.lt = np.ascontiguousarray(lodf_cols.T)  # K x M
        self.out = np.asarray(outages)
        self.n = len(self.out)

    def __call__(self, hs, ks):
        fk = self.base[np.ix_(hs, self.out[ks])]  # (h, k)
        return fk[:, :, None] * self.lt[ks][None, :, :]


class PairOutageDeltas:
    """Flow changes of branch pairs {k, l} from the two LODF columns and the 2x2 inverse."""

    def __init__(self, base_mw, lodf_k, lodf_l, k_idx, l_idx):
        self.base = base_mw
        self.lk = np.ascontiguousarray(lodf_k.T)  # P x M
        self.ll = np.ascontiguousarray(lodf_l.T)
        self.k, self.l = np.asarray(k_idx), np.asarray(l_idx)
        self.a = self.ll[np.arange(len(self.k)), self.k]  # LODF[k, l]: column l, row k
        self.b = self.lk[np.arange(len(self.k)), self.l]  # LODF[l, k]: column k, row l
        self.det = 1.0 - self.a * self.b
        self.n = len(self.k)

    def islanding(self, tol=1e-8):
        return np.abs(self.det) < tol

    def __call__(self, hs, ks):
        fk = self.base[np.ix_(hs, self.k[ks])]
        fl = self.base[np.ix_(hs, self.l[ks])]
        det = np.where(np.abs(self.det[ks]) < 1e-8, np.inf, self.det[ks])
        ck = (fk + self.a[ks] * fl) / det
        cl = (self.b[ks] * fk + fl) / det
        d = ck[:, :, None] * self.lk[ks][None] + cl[:, :, None] * self.ll[ks][None]
        i = np.arange(len(ks))
        d[:, i, self.k[ks]] = -fk  # the two opened branches carry nothing afterwards
        d[:, i, self.l[ks]] = -fl
        return d


class GenOutageDeltas:
    """Flow changes of generator outages: delta[h, g, :] = -P[h, g] * D[:, g] (MW)."""

    def __init__(self, pg_mw, dist):
        self.pg = pg_mw  # (H, G) output of each outaged generator
        self.dt = np.ascontiguousarray(dist.T)  # G x M
        self.n = self.dt.shape[0]

    def __call__(self, hs, ks):
        return -self.pg[np.ix_(hs, ks)][:, :, None] * self.dt[ks][None]


def multi_outage_flows(base, lodf_cols, outages):
    """Post-outage flows of one set of branches (any size), for H hours: (H, M), same units as base.

    ``lodf_cols``: (M, |O|) LODF columns of the set. Returns None when the set islands part of
    the network (I - L singular).
    """
    outages = np.asarray(outages)
    sub = lodf_cols[outages, :]  # |O| x |O|: LODF[O_i, O_j]
    L = sub - np.diag(np.diag(sub))
    A = np.eye(len(outages)) - L
    if abs(np.linalg.det(A)) < 1e-8:
        return None
    coef = np.linalg.solve(A, base[:, outages].T)  # |O| x H
    post = base + (lodf_cols @ coef).T
    post[:, outages] = 0.0
    return post


def screen_branch_outages_lodf(base_mw, lodf_cols, outages, rating, monitored, threshold_pct, top, device="gpu",
                               dtype=np.float32, screen=None):
    """Single-branch outages through :class:`gat_hpc.cuda.screening.LodfScreen` (``--device gpu``).

    The CUDA kernel (``device="gpu"``) or its numpy twin (``"cpu"``) gives per (hour, outage)
    the maximum loading, its branch, the violation count and the ``top`` worst violations,
    without the hours x outages x branches tensor. Their flows are re-evaluated here in float64
    (``f[h, m] + LODF[m, k] f[h, k]``), so only the loadings carry the float32 rounding
    (bound in :mod:`gat_hpc.cuda.screening`). The kernel does not track the largest absolute
    flow or the flow extremes: those fields are NaN (written as nulls) and their branch -1.
    ``screen``: a LodfScreen already built for these columns (to reuse across hour blocks).
    Returns ``(Reduction, screen)``.
    """
    from gat_hpc.cuda.screening import NMAX, LodfScreen

    if top > NMAX:
        raise ValueError(f"at most {NMAX} violations per (hour, outage) on the GPU path, got {top}")
    outages = np.asarray(outages, dtype=np.int64)
    if screen is None:
        limits = np.where(monitored & (rating > 0), rating, 0.0)
        screen = LodfScreen(lodf_cols, outages, limits, dtype=dtype, device=device)
    r = screen.screen(base_mw, threshold=threshold_pct / 100.0, top_n=top)
    H, K = r.max_loading.shape
    nan = np.full((H, K), np.nan)
    h, k, j = np.nonzero(r.top_ids >= 0)
    m = r.top_ids[h, k, j].astype(np.int64)
    flow = base_mw[h, m] + lodf_cols[m, k] * base_mw[h, outages[k]]
    red = Reduction(max_loading_pct=r.max_loading.astype(np.float64) * 100.0,
                    argmax_loading=np.maximum(r.argmax, 0).astype(np.int64),
                    n_violations=r.n_violations.astype(np.int64), max_abs_flow_mw=nan,
                    argmax_abs_flow=np.full((H, K), -1, np.int64), max_flow_mw=nan.copy(), min_flow_mw=nan.copy(),
                    violations=(h, k, m, flow, r.top_loading[h, k, j].astype(np.float64) * 100.0),
                    timings=r.timings)
    return red, screen
