"""LODF contingency screening of many hours at once, on the GPU or with its numpy twin.

For H hours, K single-branch outages and M monitored branches (all branches), the DC
post-outage flow and loading are::

    f_post[h, k, m]  = f[h, m] + LODF[m, k] * f[h, out_idx[k]]
    loading[h, k, m] = |f_post[h, k, m]| / rating[m]

with ``LODF[:, k]`` the LODF column of outage ``out_idx[k]`` (e.g. the first result of
:func:`gat_hpc.pf.sensitivity.lodf_columns`). The outaged branch itself is excluded (its post
flow is 0) and branches rated 0 (or below) are unlimited and skipped (loading 0). For each
(h, k) the screen returns the maximum loading and its branch, the number of violations
(loading > threshold) and the ``top_n`` worst violations (loading descending, then branch
ascending), never building the H x K x M tensor: the GPU keeps one tile of it in registers,
the numpy twin one block of outages at a time.

The GPU kernel (``screening.cu``) streams the LODF once per block of hours and skips,
exactly, the tiles of 32 monitored branches (16 in float64) that cannot matter: every loading
of a tile is at most ``max|f/r| + max|LODF/r| * |f_k|`` over the tile, so when that bound
(rounded up) is no larger than both the running maximum and the threshold, the tile can
change no result. The running maxima start from the loadings of a few probe branches (the
most loaded ones of the call), so that skipping works from the first tile on. On real grids
most tiles are lightly loaded and far from most outages, so most of the arithmetic is skipped
(98% of it on case_ACTIVSg10k) while every result stays what the full scan gives. The rare
(hour, outage) pairs with violations are flagged by that pass, then counted and ranked by a
second kernel that reads only their LODF columns.

Both paths evaluate the same expression, ``|f[h,m]/r_m + (LODF[m,k]/r_m) * f[h,k]|``, on
inputs scaled by 1/rating in float64 and then rounded to the working dtype (the GPU with one
fused multiply-add, numpy with a multiply and an add).

float32 error bound
-------------------
With unit roundoff u = 2^-24 (= eps32 / 2), each computed loading satisfies::

    |loading32 - loading| <= 2.5 * eps32 * (|f[h,m]| + |LODF[m,k] * f[h,k]|) / rating[m]

First-order count: rounding f/r, LODF/r and f_k to float32 (u each, the last on the product
term), the product (u, numpy only; the GPU's FMA skips it) and the sum (u on a result no
larger than the two terms) give at most 2u |f/r| + 4u |LODF f_k / r| <= 2 eps32 (...);
the 2.5 leaves room for second-order terms. The maximum, count and top list inherit it: a
reported maximum lies within the largest per-branch bound of the true maximum, and only a
branch whose true loading lies within its bound of the threshold can be counted differently.
:func:`loading_error_bound` returns the per-element bound; the tests check it against float64.
float64 results agree with float64 references to about 1e-15 relative (1e-12 is tested).
"""

from __future__ import annotations

import math
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

import numpy as np

from gat_hpc.cuda import runtime
from gat_hpc.errors import InputError

FLOAT32_BOUND_FACTOR = 2.5  # the c of the float32 bound, in units of eps32
KB = 128                    # outages per thread block of the partial kernel (screening.cu)
VBLOCK = 512                # threads per block of the violations kernel (screening.cu)
SATURATE = 3                # partial-kernel blocks per SM that saturate device memory (measured)
NMAX = 16                   # largest top_n
PROBES = 8                  # probe branches whose loadings seed the GPU kernel's running maxima
# per dtype, as compiled in screening.cu: monitored branches per tile, hours per launch
_TILE = {np.dtype(np.float32): 32, np.dtype(np.float64): 16}
_HOURS = {np.dtype(np.float32): (8, 16, 24), np.dtype(np.float64): (8, 16)}

@dataclass
class ScreenResult:
    """Per (hour, outage) screening results; arrays are H x K (x top_n).

    ``max_loading``: largest post-outage loading (flow / rating, 1.0 = at rating);
    ``argmax``: its monitored branch (row of the LODF, int32), -1 when every loading is 0;
    ``n_violations``: branches with loading > threshold; ``top_ids`` / ``top_loading``: the
    ``top_n`` worst violations, loading descending then branch ascending, padded with -1 / 0;
    ``timings``: seconds (GPU: ``upload``, ``kernel`` from device events (all kernels of the
    screen), ``violations`` (the part of ``kernel`` spent counting violations), ``download``,
    ``total`` wall clock; numpy: ``total``).
    """

    max_loading: np.ndarray
    argmax: np.ndarray
    n_violations: np.ndarray
    top_ids: np.ndarray
    top_loading: np.ndarray
    timings: dict = field(default_factory=dict)


# ---------------------------------------------------------------- inputs shared by both paths
def probe_branches(load):
    """Indices of the ``PROBES`` largest entries of ``load`` (all of them when fewer), largest
    first, ties by index: what a stable descending sort would give, by a partial sort."""
    load = np.asarray(load)
    if len(load) <= PROBES:
        top = np.arange(len(load))
    else:
        top = np.argpartition(-load, PROBES - 1)[:PROBES]
    return top[np.lexsort((top, -load[top]))].astype(np.int32)


def inverse_ratings(ratings):
    """1/rating per branch (float64), 0 for unlimited branches (rating <= 0)."""
    r = np.asarray(ratings, dtype=np.float64)
    inv = np.zeros_like(r)
    np.divide(1.0, r, out=inv, where=r > 0)
    return inv


def _check_plan(lodf, out_idx, ratings):
    lodf = np.asarray(lodf)
    if lodf.ndim != 2:
        raise InputError(f"LODF must be a 2-d array (monitored branches x outages), got shape {lodf.shape}")
    m, k = lodf.shape
    out_idx = np.atleast_1d(np.asarray(out_idx, dtype=np.int64))
    if out_idx.shape != (k,):
        raise InputError(f"out_idx must list one branch per LODF column ({k}), got {out_idx.shape[0]}")
    if k and (out_idx.min() < 0 or out_idx.max() >= m):
        raise InputError(f"out_idx must index the {m} monitored branches, got range "
                         f"{out_idx.min()}..{out_idx.max()}")
    ratings = np.asarray(ratings, dtype=np.float64)
    if ratings.shape != (m,):
        raise InputError(f"ratings must have one entry per monitored branch ({m}), got {ratings.shape}")
    return lodf, out_idx, ratings


def _check_dtype(dtype):
    dt = np.dtype(dtype)
    if dt not in _HOURS:
        raise InputError(f"screening dtype must be float32 or float64, got {dt}")
    return dt


def _check_screen(flows, n_branch, threshold, top_n):
    flows = np.asarray(flows, dtype=np.float64)
    if flows.ndim == 1:
        flows = flows[None, :]
    if flows.ndim != 2 or flows.shape[1] != n_branch:
        raise InputError(f"flows must be hours x {n_branch} branches, got shape {flows.shape}")
    if not (threshold >= 0 and math.isfinite(threshold)):
        raise InputError(f"threshold must be a finite loading >= 0, got {threshold}")
    if not 0 <= int(top_n) <= NMAX:
        raise InputError(f"top_n must be between 0 and {NMAX}, got {top_n}")
    return flows, float(threshold), int(top_n)


def scaled_lodf(lodf, out_idx, inv, dtype, transpose=False, block=1024):
    """LODF[m, k] / rating[m] rounded to ``dtype``, NaN at (out_idx[k], k); K x M if ``transpose``.

    Built ``block`` columns at a time so that the float64 temporaries stay small.
    """
    m, k = lodf.shape
    out = np.empty((k, m) if transpose else (m, k), dtype=dtype)
    for j0 in range(0, k, block):
        j1 = min(k, j0 + block)
        part = (np.asarray(lodf[:, j0:j1], dtype=np.float64) * inv[:, None]).astype(dtype)
        part[out_idx[j0:j1], np.arange(j1 - j0)] = np.nan
        if transpose:
            out[j0:j1] = part.T
        else:
            out[:, j0:j1] = part
    return out


def tile_major(ls, tm, kb=KB):
    """The GPU layout of a scaled M x K LODF: zero-padded to multiples of ``tm`` rows and ``kb``
    columns, stored tile by tile so the ``tm`` values of one column in one row tile are
    contiguous (shape MP/tm x KP x tm)."""
    m, k = ls.shape
    mp, kp = -(-m // tm) * tm, -(-k // kb) * kb
    padded = np.zeros((mp, kp), dtype=ls.dtype)
    padded[:m, :k] = ls
    return np.ascontiguousarray(padded.reshape(mp // tm, tm, kp).transpose(0, 2, 1))


def loading_error_bound(flows, lodf, out_idx, ratings, factor=FLOAT32_BOUND_FACTOR,
                        eps=float(np.finfo(np.float32).eps)):
    """Per-element bound (H x K x M) on the float32 loading error; see the module docstring.

    Dense: for tests and small cases only.
    """
    flows = np.atleast_2d(np.asarray(flows, dtype=np.float64))
    inv = inverse_ratings(ratings)
    lodf = np.asarray(lodf, dtype=np.float64)
    fk = flows[:, out_idx]
    terms = np.abs(flows)[:, None, :] + np.abs(lodf.T[None, :, :] * fk[:, :, None])
    return factor * eps * terms * inv[None, None, :]


def post_outage_loadings(flows, lodf, out_idx, ratings, dtype=np.float64):
    """Dense H x K x M loadings, computed exactly as the numpy twin computes them.

    For tests and small cases only (the twin itself never holds more than one block).
    """
    lodf, out_idx, ratings = _check_plan(lodf, out_idx, ratings)
    flows = np.atleast_2d(np.asarray(flows, dtype=np.float64))
    dt = _check_dtype(dtype)
    inv = inverse_ratings(ratings)
    lt = scaled_lodf(lodf, out_idx, inv, dt, transpose=True)
    ld = lt[None, :, :] * flows[:, out_idx].astype(dt)[:, :, None]
    ld += (flows * inv[None, :]).astype(dt)[:, None, :]
    np.abs(ld, out=ld)
    ld[:, np.arange(len(out_idx)), out_idx] = 0
    return ld


# ---------------------------------------------------------------- the plan (one LODF, many hours)
class LodfScreen:
    """An LODF prepared once for screening any number of hour blocks.

    ``lodf``: M x K (float32 or float64; row m = monitored branch, column k = outage
    ``out_idx[k]``); ``ratings``: M limits in the flows' unit (<= 0: unlimited);
    ``dtype``: float32 (default) or float64 arithmetic; ``device``: "gpu" (CUDA kernel) or
    "cpu" (the numpy twin); ``workers``: threads for the numpy twin (numpy releases the GIL in
    its array loops); ``n_split``: GPU only, how many parts the monitored branches are cut
    into to fill the GPU (None: chosen from the device's size).
    On the GPU the scaled LODF is uploaded once and stays on the device.
    """

    def __init__(self, lodf, out_idx, ratings, dtype=np.float32, device="gpu", workers=1,
                 n_split=None):
        device = runtime.check_device(device)
        lodf, out_idx, ratings = _check_plan(lodf, out_idx, ratings)
        self.dtype = _check_dtype(dtype)
        self.device = device
        self.n_monitored, self.n_outages = lodf.shape
        self.out_idx = out_idx
        self.inv = inverse_ratings(ratings)
        self.workers = max(1, int(workers))
        self.timings = {}
        self._n_split = n_split
        t0 = time.perf_counter()
        if device == "cpu":
            self._lt = scaled_lodf(lodf, out_idx, self.inv, self.dtype, transpose=True)
            self.timings["prepare"] = time.perf_counter() - t0
            return
        drv = runtime.ensure_context()  # fail early, before the host work, when there is no GPU
        self._tm = _TILE[self.dtype]
        lt = tile_major(scaled_lodf(lodf, out_idx, self.inv, self.dtype), self._tm)
        # per tile and outage, the largest |LODF| / rating: the bound that lets tiles be skipped
        bmax = np.fmax.reduce(np.abs(lt), axis=2)
        t1 = time.perf_counter()
        self._d_lt = runtime.to_device(lt)
        self._d_bmax = runtime.to_device(bmax)
        drv.Context.synchronize()
        t2 = time.perf_counter()
        self.timings.update(prepare=t1 - t0, upload_lodf=t2 - t1)
        self._mp, self._kp = lt.shape[0] * self._tm, lt.shape[1]
        self._sms = runtime.device_info()["multiprocessors"]
        self._buffers = {}

    # ------------------------------------------------------------ public
    def configure(self, n_split=None):
        """GPU only: fix the number of monitored-branch splits (None: chosen from the device's
        size). For tuning and benchmarks; results do not depend on it."""
        self._n_split = n_split

    def screen(self, flows, threshold=1.0, top_n=5):
        """Screen hours x branches ``flows`` (1-d: one hour); returns a :class:`ScreenResult`."""
        flows, threshold, top_n = _check_screen(flows, self.n_monitored, threshold, top_n)
        if self.device == "cpu":
            return self._screen_numpy(flows, threshold, top_n)
        return self._screen_gpu(flows, threshold, top_n)

    # ------------------------------------------------------------ numpy twin
    def _screen_numpy(self, flows, threshold, top_n):
        t0 = time.perf_counter()
        dt = self.dtype
        h_count, k_count, m_count = flows.shape[0], self.n_outages, self.n_monitored
        fs = (flows * self.inv[None, :]).astype(dt)
        fout = flows[:, self.out_idx].astype(dt)
        thr = dt.type(threshold)
        res = _empty_result(h_count, k_count, top_n, dt)
        # ~4 MB of loadings per step: big enough for numpy, small enough for the cache
        chunk = max(1, (1 << 20) // max(1, m_count))
        starts = range(0, k_count, chunk)

        def run(k0):
            k1 = min(k_count, k0 + chunk)
            _screen_block_numpy(self._lt[k0:k1], fs, fout[:, k0:k1], self.out_idx[k0:k1], thr,
                                top_n, k0, res)

        if self.workers > 1:
            with ThreadPoolExecutor(self.workers) as pool:
                list(pool.map(run, starts))
        else:
            for k0 in starts:
                run(k0)
        res.timings["total"] = time.perf_counter() - t0
        return res

    # ------------------------------------------------------------ GPU
    def _hours_per_launch(self, hours):
        """The compiled hour block for ``hours`` hours: the smallest that holds them, else the largest."""
        sizes = _HOURS[self.dtype]
        fits = [hb for hb in sizes if hb >= hours]
        return fits[0] if fits else sizes[-1]

    def _kernels(self, hb):
        mod = runtime.module("screening.cu")
        suffix = "f32" if self.dtype == np.float32 else "f64"
        part = mod.get_function(f"screen_partial_{suffix}_h{hb}")
        real = "f" if suffix == "f32" else "d"
        part.prepare("PPPPPPiiiii" + real + "PPP")
        merge = mod.get_function(f"screen_merge_{suffix}_h{hb}")
        merge.prepare("PPPPPPiiiiiPPPPP")
        viol = mod.get_function(f"screen_violations_{suffix}_h{hb}")
        viol.prepare("PPPPPiii" + real + "iiPPP")
        gather = mod.get_function(f"gather_top_{suffix}")
        gather.prepare("PPPiiPP")
        return part, merge, viol, gather

    def splits(self):
        """Number of monitored-branch splits for the partial kernel: the fewest that
        give every SM ``SATURATE`` blocks (the LODF stream saturates device memory there, and
        each further split adds 12 bytes per hour and outage of partial results plus a split
        tail: on an H100 with case_ACTIVSg10k's 69 outage blocks, 6 splits = 3.1 blocks per SM
        ran in 0.258 ms, 7 in 0.268, 8 in 0.302); at least as many as keep a split's tiles
        below 0xffff (the kernel notes them in 16 bits), at most one per 4 tiles."""
        n_tiles = self._mp // self._tm
        fewest = math.ceil(n_tiles / 0xff00)
        if self._n_split is not None:
            return max(1, fewest, min(int(self._n_split), n_tiles))
        info = runtime.device_info()
        nkb = self._kp // KB
        want = math.ceil(SATURATE * info["multiprocessors"] / nkb)
        return max(fewest, min(want, max(1, n_tiles // 4)))

    def _device_buffers(self, h_count, hb, n_split, top_n):
        """Scratch, inputs and outputs of a call shape, allocated once and reused, with
        page-locked host copies of the inputs and dense outputs (fast transfers)."""
        key = (h_count, hb, n_split, top_n)
        if key not in self._buffers:
            self._buffers.clear()
            drv = runtime.ensure_context()
            n = n_split * hb * self.n_outages
            pairs = h_count * self.n_outages
            e = runtime.empty_device
            b = {"p_max": e(n, self.dtype), "p_bt": e(n, np.int32), "p_flag": e(n, np.int32),
                 "listed": e(hb * self.n_outages, np.int32), "n_listed": e(1, np.int32),
                 "fs": e((self._mp // self._tm, hb, self._tm), self.dtype),
                 "am": e((self._mp // self._tm, hb), self.dtype),
                 "fo": e((hb, self._kp), self.dtype),
                 "probe": e(PROBES, np.int32),
                 "max": e((h_count, self.n_outages), self.dtype),
                 "arg": e((h_count, self.n_outages), np.int32),
                 "cnt": e((h_count, self.n_outages), np.int32),
                 "tid": e(max(1, pairs * top_n), np.int32),
                 "tld": e(max(1, pairs * top_n), self.dtype)}
            for name in ("fs", "am", "fo", "max", "arg", "cnt"):
                b["host_" + name] = drv.pagelocked_empty(b[name].shape, b[name].dtype)
            self._buffers[key] = b
        return self._buffers[key]

    def _screen_gpu(self, flows, threshold, top_n):
        drv = runtime.ensure_context()
        t0 = time.perf_counter()
        dt = self.dtype
        h_count, k_count, m_count = flows.shape[0], self.n_outages, self.n_monitored
        hb = self._hours_per_launch(h_count)
        part, merge, viol, gather = self._kernels(hb)
        n_tiles = self._mp // self._tm
        n_split = self.splits()
        per_split = math.ceil(n_tiles / n_split)
        n_split = math.ceil(n_tiles / per_split)
        b = self._device_buffers(h_count, hb, n_split, top_n)
        fs = flows * self.inv[None, :]
        fout = flows[:, self.out_idx]
        thr = dt.type(threshold)
        kernel_s, upload_s = 0.0, 0.0
        start, mid, stop = drv.Event(), drv.Event(), drv.Event()
        viol_s = 0.0
        fs_t, am, fo = b["host_fs"], b["host_am"], b["host_fo"]
        for h0 in range(0, h_count, hb):
            h1 = min(h_count, h0 + hb)
            # the kernel always works on hb hours and padded sizes: zero flows fill the rest;
            # flows go tile by tile, hour by hour (tile x hour x row), with each tile-hour's
            # largest |flow / rating|
            padded = np.zeros((hb, self._mp), dtype=dt)
            padded[:h1 - h0, :m_count] = fs[h0:h1]
            fs_t[...] = padded.reshape(hb, n_tiles, self._tm).transpose(1, 0, 2)
            np.abs(fs_t).max(axis=2, out=am)
            # the seeds' probe branches: the most loaded of these hours (see screening.cu)
            probe = probe_branches(np.abs(padded[:, :m_count]).max(axis=0))
            fo.fill(0)
            fo[:h1 - h0, :k_count] = fout[h0:h1]
            tu = time.perf_counter()
            drv.memcpy_htod(b["fs"].gpudata, fs_t)
            drv.memcpy_htod(b["am"].gpudata, am)
            drv.memcpy_htod(b["fo"].gpudata, fo)
            drv.memcpy_htod(b["probe"].gpudata, probe)
            upload_s += time.perf_counter() - tu
            start.record()
            part.prepared_call((self._kp // KB, n_split, 1), (KB, 1, 1),
                               self._d_lt.gpudata, self._d_bmax.gpudata, b["fs"].gpudata,
                               b["am"].gpudata, b["fo"].gpudata, b["probe"].gpudata, len(probe), k_count,
                               self._kp, per_split, n_tiles, thr, b["p_max"].gpudata,
                               b["p_bt"].gpudata, b["p_flag"].gpudata)
            n_pairs = (h1 - h0) * k_count
            drv.memset_d32_async(b["n_listed"].gpudata, 0, 1)  # in stream order: no host wait
            merge.prepared_call((math.ceil(n_pairs / 256), 1, 1), (256, 1, 1),
                                b["p_max"].gpudata, b["p_bt"].gpudata, b["p_flag"].gpudata,
                                self._d_lt.gpudata, b["fs"].gpudata, b["fo"].gpudata, n_split,
                                h1 - h0, k_count, self._kp, h0, b["max"].gpudata,
                                b["arg"].gpudata, b["cnt"].gpudata, b["n_listed"].gpudata,
                                b["listed"].gpudata)
            mid.record()
            # the pairs with violations: exact counts and top lists (a block each)
            viol.prepared_call((2 * self._sms, 1, 1), (VBLOCK, 1, 1),
                               self._d_lt.gpudata, b["fs"].gpudata, b["fo"].gpudata,
                               b["n_listed"].gpudata, b["listed"].gpudata, k_count, self._kp,
                               n_tiles, thr, top_n, h0, b["cnt"].gpudata, b["tid"].gpudata,
                               b["tld"].gpudata)
            stop.record()
            stop.synchronize()
            kernel_s += stop.time_since(start) * 1e-3
            viol_s += stop.time_since(mid) * 1e-3
        td = time.perf_counter()
        for name in ("max", "arg", "cnt"):
            drv.memcpy_dtoh(b["host_" + name], b[name].gpudata)
        res = ScreenResult(max_loading=b["host_max"].copy(), argmax=b["host_arg"].copy(),
                           n_violations=b["host_cnt"].copy(),
                           top_ids=np.full((h_count, k_count, top_n), -1, dtype=np.int32),
                           top_loading=np.zeros((h_count, k_count, top_n), dtype=dt))
        # only pairs with violations have top lists: gather and download those rows
        pairs = np.flatnonzero(res.n_violations.ravel() > 0).astype(np.int32)
        if top_n and len(pairs):
            d_pairs = runtime.to_device(pairs)
            d_id = runtime.empty_device(len(pairs) * top_n, np.int32)
            d_ld = runtime.empty_device(len(pairs) * top_n, dt)
            gather.prepared_call((math.ceil(len(pairs) * top_n / 256), 1, 1), (256, 1, 1),
                                 b["tid"].gpudata, b["tld"].gpudata, d_pairs.gpudata, len(pairs),
                                 top_n, d_id.gpudata, d_ld.gpudata)
            res.top_ids.reshape(-1, top_n)[pairs] = d_id.get().reshape(-1, top_n)
            res.top_loading.reshape(-1, top_n)[pairs] = d_ld.get().reshape(-1, top_n)
        t1 = time.perf_counter()
        res.timings.update(upload=upload_s, kernel=kernel_s, violations=viol_s, download=t1 - td, total=t1 - t0,
                           n_split=n_split, hours_per_launch=hb, registers=part.num_regs)
        return res


def _empty_result(h_count, k_count, top_n, dt):
    return ScreenResult(max_loading=np.zeros((h_count, k_count), dtype=dt),
                        argmax=np.full((h_count, k_count), -1, dtype=np.int32),
                        n_violations=np.zeros((h_count, k_count), dtype=np.int32),
                        top_ids=np.full((h_count, k_count, top_n), -1, dtype=np.int32),
                        top_loading=np.zeros((h_count, k_count, top_n), dtype=dt))


def _screen_block_numpy(lt, fs, fout, out_idx, thr, top_n, k0, res):
    """The numpy twin on outages k0..k0+C-1 (``lt``: their scaled LODF rows, C x M), all hours."""
    c = lt.shape[0]
    rows = np.arange(c)
    ks = slice(k0, k0 + c)
    for h in range(fs.shape[0]):
        ld = lt * fout[h][:, None]
        ld += fs[h][None, :]
        np.abs(ld, out=ld)
        ld[rows, out_idx] = 0  # the outaged branch (NaN in lt) carries nothing afterwards
        mx = ld.max(axis=1)
        arg = ld.argmax(axis=1).astype(np.int32)
        arg[mx == 0] = -1
        viol = ld > thr
        res.max_loading[h, ks] = mx
        res.argmax[h, ks] = arg
        res.n_violations[h, ks] = viol.sum(axis=1)
        if top_n and viol.any():
            r, m = np.nonzero(viol)
            v = ld[r, m]
            order = np.lexsort((m, -v, r))  # by outage, then loading descending, then branch
            r, m, v = r[order], m[order], v[order]
            first = np.searchsorted(r, r)  # start of each outage's run
            rank = np.arange(len(r)) - first
            keep = rank < top_n
            res.top_ids[h, k0 + r[keep], rank[keep]] = m[keep]
            res.top_loading[h, k0 + r[keep], rank[keep]] = v[keep]


# ---------------------------------------------------------------- one-shot functions
def screen_lodf(flows, lodf, out_idx, ratings, threshold=1.0, top_n=5, dtype=np.float32,
                device="gpu", workers=1):
    """Screen ``flows`` (H x M) against every outage of ``lodf`` (M x K); see :class:`LodfScreen`.

    Returns a :class:`ScreenResult`. For several hour blocks against one LODF, build a
    :class:`LodfScreen` once instead (the GPU then uploads the LODF once).
    """
    return LodfScreen(lodf, out_idx, ratings, dtype=dtype, device=device,
                      workers=workers).screen(flows, threshold, top_n)


def screen_lodf_numpy(flows, lodf, out_idx, ratings, threshold=1.0, top_n=5, dtype=np.float32,
                      workers=1):
    """The numpy twin of :func:`screen_lodf` (same arguments and results, ``device="cpu"``)."""
    return screen_lodf(flows, lodf, out_idx, ratings, threshold, top_n, dtype, "cpu", workers)
