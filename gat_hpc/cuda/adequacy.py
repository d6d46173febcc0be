"""Monte-Carlo capacity check: unit outages drawn with Philox4x32-10, on the GPU or in numpy.

Model. U units with capacity ``c_u`` (MW) and forced outage rate ``q_u``; an hourly load
``load[h]`` (MW), hours of one hour each. In sample s and hour h unit u is on outage when its
uniform word is below its threshold::

    x(s, h, u) = word (u mod 4) of Philox4x32-10(counter = (u div 4, h, s mod 2^32, s div 2^32),
                                                  key = (seed mod 2^32, seed div 2^32))
    outage  <=>  x(s, h, u) < thr_u = floor(q_u * 2^32)       (probability thr_u / 2^32 ~ q_u)

Units with q_u >= 1 are always out. Available capacity is the sum of the capacities of the
units not on outage; a loss-of-load hour is one where available capacity is *strictly below*
the load (equal is served), and its shortfall is ``load - available``. Per sample:
LOLE (hours with loss of load) and EUE (sum of shortfalls, MWh).

Why identical on the GPU and in numpy: the generator is counter-based (no state, each draw a
pure function of (seed, sample, hour, unit)), its arithmetic is uint32 multiply/xor that both
sides do exactly, the outage test compares integers, and capacities and loads are rounded
to integer multiples of ``quantum_mw`` (1 kW by default) before any sum, so every sum is
exact whatever the order or the chunking. The sample index is part of the counter, so a
study split into chunks of samples (by ranks, array tasks or GPUs) draws the same states as
one run does.

Philox4x32-10 is Salmon et al.'s "Parallel random numbers: as easy as 1, 2, 3" (SC'11),
with Random123's round constants; :data:`PHILOX_KAT` holds its published known answers.
"""

from __future__ import annotations

import math
import time
import multiprocessing
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field

import numpy as np

from gat_hpc.cuda import runtime
from gat_hpc.errors import InputError

PHILOX_M0, PHILOX_M1 = 0xD2511F53, 0xCD9E8D57  # round multipliers
PHILOX_W0, PHILOX_W1 = 0x9E3779B9, 0xBB67AE85  # key increments (Weyl sequence)
PHILOX_ROUNDS = 10
_MASK32 = 0xFFFFFFFF

# Random123's kat_vectors for philox4x32-10: (counter, key, output)
PHILOX_KAT = (
    ((0x00000000, 0x00000000, 0x00000000, 0x00000000), (0x00000000, 0x00000000),
     (0x6627e8d5, 0xe169c58d, 0xbc57ac4c, 0x9b00dbd8)),
    ((0xffffffff, 0xffffffff, 0xffffffff, 0xffffffff), (0xffffffff, 0xffffffff),
     (0x408f276d, 0x41c83b0e, 0xa20bc7c6, 0x6d5451fd)),
    ((0x243f6a88, 0x85a308d3, 0x13198a2e, 0x03707344), (0xa4093822, 0x299f31d0),
     (0xd16cfe09, 0x94fdcceb, 0x5001e420, 0x24126ea1)),
)


# ---------------------------------------------------------------- Philox4x32-10 in numpy
def philox_rounds(c0, c1, c2, c3, k0, k1):
    """Philox4x32-10 on uint32 arrays (broadcast together); returns the four output words."""
    m0, m1, shift = np.uint64(PHILOX_M0), np.uint64(PHILOX_M1), np.uint64(32)
    for _ in range(PHILOX_ROUNDS):
        p0 = np.asarray(c0).astype(np.uint64) * m0  # exact: both factors < 2^32
        p1 = np.asarray(c2).astype(np.uint64) * m1
        c0, c1, c2, c3 = ((p1 >> shift).astype(np.uint32) ^ c1 ^ np.uint32(k0),
                          p1.astype(np.uint32),
                          (p0 >> shift).astype(np.uint32) ^ c3 ^ np.uint32(k1),
                          p0.astype(np.uint32))
        k0, k1 = (k0 + PHILOX_W0) & _MASK32, (k1 + PHILOX_W1) & _MASK32
    return c0, c1, c2, c3


def philox4x32(counters, key):
    """Philox4x32-10 of ``counters`` (... x 4 uint32) under ``key`` (two uint32); ... x 4 uint32."""
    c = np.asarray(counters, dtype=np.uint32)
    if c.shape[-1:] != (4,):
        raise InputError(f"Philox counters must have a last axis of 4 words, got shape {c.shape}")
    k0, k1 = (int(k) & _MASK32 for k in key)
    out = philox_rounds(c[..., 0], c[..., 1], c[..., 2], c[..., 3], k0, k1)
    return np.stack([np.broadcast_to(w, c.shape[:-1]) for w in out], axis=-1).astype(np.uint32)


def philox4x32_gpu(counters, key):
    """The GPU twin of :func:`philox4x32` (kernel ``philox_words``)."""
    c = np.ascontiguousarray(np.asarray(counters, dtype=np.uint32).reshape(-1, 4))
    k0, k1 = (int(k) & _MASK32 for k in key)
    fn = runtime.module("adequacy.cu").get_function("philox_words")
    fn.prepare("PIIiP")
    d_c = runtime.to_device(c)
    d_o = runtime.empty_device(c.shape, np.uint32)
    n = c.shape[0]
    fn.prepared_call((max(1, math.ceil(n / 256)), 1, 1), (256, 1, 1), d_c.gpudata, k0, k1, n,
                     d_o.gpudata)
    return d_o.get().reshape(np.shape(counters))


def seed_key(seed):
    """The Philox key (k0, k1) of a seed 0 <= seed < 2^64."""
    seed = int(seed)
    if not 0 <= seed < 1 << 64:
        raise InputError(f"seed must be an integer in 0..2^64-1, got {seed}")
    return seed & _MASK32, seed >> 32


def unit_words(seed, samples, hours, n_units):
    """The uint32 word x(s, h, u) of every unit: array len(samples) x len(hours) x n_units."""
    k0, k1 = seed_key(seed)
    s = np.asarray(samples, dtype=np.uint64)[:, None, None]
    h = np.asarray(hours, dtype=np.uint32)[None, :, None]
    quads = np.arange(math.ceil(n_units / 4), dtype=np.uint32)[None, None, :]
    words = philox_rounds(quads, h, (s & np.uint64(_MASK32)).astype(np.uint32),
                          (s >> np.uint64(32)).astype(np.uint32), k0, k1)
    shape = (len(np.atleast_1d(samples)), len(np.atleast_1d(hours)), quads.shape[-1])
    w = np.stack([np.broadcast_to(x, shape) for x in words], axis=-1)
    return w.reshape(shape[0], shape[1], -1)[:, :, :n_units]


def outage_thresholds(outage_rate):
    """(thr, always_out): uint32 thresholds floor(q * 2^32) and the units with q >= 1."""
    q = np.asarray(outage_rate, dtype=np.float64)
    if np.any(~np.isfinite(q)) or np.any(q < 0):
        raise InputError("forced outage rates must be finite and >= 0")
    always_out = q >= 1
    thr = np.where(always_out, 0, np.floor(np.minimum(q, 1) * 2.0 ** 32))
    return np.minimum(thr, _MASK32).astype(np.uint32), always_out


# ---------------------------------------------------------------- the capacity check
@dataclass
class AdequacyResult:
    """Per-sample indices: ``lole_h`` (loss-of-load hours, int64), ``eue_mwh`` (float64),
    ``samples`` (the sample ids), ``n_hours``; ``lolp`` = lole_h / n_hours; per hour, over
    the samples: ``hour_lol`` (samples with loss of load, int64) and ``hour_eue_mwh``;
    ``timings``."""

    samples: np.ndarray
    lole_h: np.ndarray
    eue_mwh: np.ndarray
    n_hours: int
    hour_lol: np.ndarray = None
    hour_eue_mwh: np.ndarray = None
    timings: dict = field(default_factory=dict)

    @property
    def lolp(self):
        """Loss-of-load probability per sample (fraction of hours)."""
        return self.lole_h / self.n_hours


@dataclass
class _Fleet:
    thr: np.ndarray      # uint32 per unit, padded to a multiple of 4 with 0
    cap: np.ndarray      # int64 quanta per unit, 0 for always-out units and padding
    cap_total: int
    load: np.ndarray     # int64 quanta per hour
    key: tuple
    quantum: float


def _fleet(capacity_mw, outage_rate, load_mw, seed, quantum_mw):
    cap = np.asarray(capacity_mw, dtype=np.float64)
    if cap.ndim != 1 or np.any(~np.isfinite(cap)) or np.any(cap < 0):
        raise InputError("unit capacities must be a 1-d array of finite MW >= 0")
    thr, always_out = outage_thresholds(outage_rate)
    if thr.shape != cap.shape:
        raise InputError(f"give one outage rate per unit ({cap.shape[0]}), got {thr.shape[0]}")
    load = np.asarray(load_mw, dtype=np.float64)
    if load.ndim != 1 or load.size == 0 or np.any(~np.isfinite(load)):
        raise InputError("the load must be a non-empty 1-d array of finite MW, one per hour")
    if not quantum_mw > 0:
        raise InputError(f"quantum_mw must be > 0, got {quantum_mw}")
    cap_q = np.where(always_out, 0, np.rint(cap / quantum_mw)).astype(np.int64)
    total = int(cap_q.sum())
    if total >= 1 << 62 or np.abs(load).max() / quantum_mw >= 2.0 ** 62:  # int64 sums must not overflow
        raise InputError(f"capacities or loads exceed 2^62 quanta of {quantum_mw} MW; use a larger quantum_mw")
    pad = (-len(cap_q)) % 4
    return _Fleet(thr=np.concatenate([thr, np.zeros(pad, np.uint32)]),
                  cap=np.concatenate([cap_q, np.zeros(pad, np.int64)]), cap_total=total,
                  load=np.rint(load / quantum_mw).astype(np.int64), key=seed_key(seed),
                  quantum=float(quantum_mw))


def _check_samples(n_samples, sample0):
    n_samples, sample0 = int(n_samples), int(sample0)
    if n_samples < 1 or sample0 < 0 or sample0 + n_samples > 1 << 63:
        raise InputError(f"need n_samples >= 1 and 0 <= sample0 (got {n_samples}, {sample0})")
    return n_samples, sample0


def capacity_check(capacity_mw, outage_rate, load_mw, n_samples, seed, sample0=0,
                   quantum_mw=1e-3, device="gpu", workers=1, hour0=0):
    """LOLE and EUE of samples ``sample0 .. sample0 + n_samples - 1``; see the module docstring.

    ``capacity_mw``, ``outage_rate``: per unit; ``load_mw``: per hour, hours ``hour0 ..
    hour0 + len(load_mw) - 1`` of the profile (the hour in the counter); ``seed``: 0..2^64-1;
    ``device``: "gpu" (kernel ``capacity_check``) or "cpu" (the vectorised numpy twin, on
    ``workers`` processes). Returns an :class:`AdequacyResult`; both devices give identical
    results for the same arguments.
    """
    device = runtime.check_device(device)
    n_samples, sample0 = _check_samples(n_samples, sample0)
    fleet = _fleet(capacity_mw, outage_rate, load_mw, seed, quantum_mw)
    hour0 = int(hour0)
    if hour0 < 0 or hour0 + len(fleet.load) > 1 << 31:
        raise InputError(f"hour0 must be >= 0 with hour0 + hours < 2^31, got {hour0}")
    t0 = time.perf_counter()
    if device == "cpu":
        lole, eue_q, h_lol, h_eue_q = _check_numpy(fleet, n_samples, sample0, max(1, int(workers)), hour0)
        timings = {}
    else:
        lole, eue_q, h_lol, h_eue_q, timings = _check_gpu(fleet, n_samples, sample0, hour0)
    timings["total"] = time.perf_counter() - t0
    return AdequacyResult(samples=np.arange(sample0, sample0 + n_samples, dtype=np.int64),
                          lole_h=lole.astype(np.int64), eue_mwh=eue_q * fleet.quantum,
                          n_hours=len(fleet.load), hour_lol=h_lol.astype(np.int64),
                          hour_eue_mwh=h_eue_q * fleet.quantum, timings=timings)


def capacity_check_numpy(capacity_mw, outage_rate, load_mw, n_samples, seed, sample0=0,
                         quantum_mw=1e-3, workers=1, hour0=0):
    """The numpy twin of :func:`capacity_check` (``device="cpu"``)."""
    return capacity_check(capacity_mw, outage_rate, load_mw, n_samples, seed, sample0,
                          quantum_mw, "cpu", workers, hour0)


def _check_samples_numpy(fleet, n_samples, sample0, hour0=0):
    """The numpy twin, serially, for samples sample0 .. sample0 + n_samples - 1:
    (lole, eue_q) per sample and (lol, eue_q) per hour."""
    n_hours, n_quads = len(fleet.load), len(fleet.thr) // 4
    lole = np.zeros(n_samples, dtype=np.int64)
    eue_q = np.zeros(n_samples, dtype=np.int64)
    h_lol = np.zeros(n_hours, dtype=np.int64)
    h_eue_q = np.zeros(n_hours, dtype=np.int64)
    quads = np.arange(n_quads, dtype=np.uint32)[None, :]
    block = max(1, (1 << 16) // n_quads)  # hours per step: ~64k Philox calls, cache-sized
    k0, k1 = fleet.key
    for i in range(n_samples):
        s = sample0 + i
        for h0 in range(0, n_hours, block):
            h = np.arange(h0, min(n_hours, h0 + block), dtype=np.uint32)
            words = philox_rounds(quads, h[:, None] + np.uint32(hour0), np.uint32(s & _MASK32),
                                  np.uint32(s >> 32), k0, k1)
            shape = (len(h), n_quads)
            x = np.stack([np.broadcast_to(w, shape) for w in words], axis=-1).reshape(len(h), -1)
            out = x < fleet.thr[None, :]
            out_cap = np.where(out, fleet.cap[None, :], 0).sum(axis=1)  # int64: exact in any order
            shortfall = fleet.load[h] - (fleet.cap_total - out_cap)
            lol = shortfall > 0  # available strictly below load
            lole[i] += int(lol.sum())
            eue_q[i] += int(shortfall[lol].sum())
            h_lol[h] += lol
            h_eue_q[h] += np.where(lol, shortfall, 0)
    return lole, eue_q, h_lol, h_eue_q


def _check_numpy(fleet, n_samples, sample0, workers, hour0=0):
    """The numpy twin on ``workers`` processes, each a contiguous range of samples.

    Processes, not threads: the twin is many mid-sized array operations, which threads in
    one process run no faster than one thread (allocator and interpreter contention). They
    start from a fork server where there is one (a clean single-threaded parent, even when
    this process holds a CUDA context), with this module already imported.
    """
    workers = min(workers, n_samples)
    if workers <= 1:
        return _check_samples_numpy(fleet, n_samples, sample0, hour0)
    bounds = np.linspace(0, n_samples, workers + 1).astype(int)
    if "forkserver" in multiprocessing.get_all_start_methods():
        ctx = multiprocessing.get_context("forkserver")
        ctx.set_forkserver_preload([__name__])
    else:
        ctx = multiprocessing.get_context()
    with ProcessPoolExecutor(workers, mp_context=ctx) as pool:
        parts = list(pool.map(_check_samples_numpy, [fleet] * workers, np.diff(bounds),
                              sample0 + bounds[:-1], [hour0] * workers))
    return (np.concatenate([p[0] for p in parts]), np.concatenate([p[1] for p in parts]),
            sum(p[2] for p in parts), sum(p[3] for p in parts))


def _check_gpu(fleet, n_samples, sample0, hour0=0):
    drv = runtime.ensure_context()
    fn = runtime.module("adequacy.cu").get_function("capacity_check")
    fn.prepare("PPiqPiiqiIIPPPP")
    t0 = time.perf_counter()
    d_thr, d_cap = runtime.to_device(fleet.thr), runtime.to_device(fleet.cap)
    d_load = runtime.to_device(fleet.load)
    d_lole = runtime.to_device(np.zeros(n_samples, dtype=np.int32))
    d_eue = runtime.to_device(np.zeros(n_samples, dtype=np.int64))
    d_hlol = runtime.to_device(np.zeros(len(fleet.load), dtype=np.uint64))
    d_heue = runtime.to_device(np.zeros(len(fleet.load), dtype=np.int64))
    drv.Context.synchronize()
    t1 = time.perf_counter()
    n_hours = len(fleet.load)
    start, stop = drv.Event(), drv.Event()
    start.record()
    fn.prepared_call((math.ceil(n_hours / 256), min(n_samples, 65535), 1), (256, 1, 1),
                     d_thr.gpudata, d_cap.gpudata, len(fleet.thr), fleet.cap_total,
                     d_load.gpudata, n_hours, hour0, sample0, n_samples, fleet.key[0], fleet.key[1],
                     d_lole.gpudata, d_eue.gpudata, d_hlol.gpudata, d_heue.gpudata)
    stop.record()
    stop.synchronize()
    t2 = time.perf_counter()
    lole, eue_q = d_lole.get(), d_eue.get()
    return lole, eue_q, d_hlol.get().astype(np.int64), d_heue.get(), {"upload": t1 - t0, "kernel": stop.time_since(start) * 1e-3,
                         "download": time.perf_counter() - t2}
