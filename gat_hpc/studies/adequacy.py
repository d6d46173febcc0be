"""Monte-Carlo resource adequacy: LOLE, EUE and LOLP with confidence intervals.

Model. Generators (and, in the ``dc`` network mode, branches) are two-state units: up or on
forced outage, with forced outage rate ``FOR`` (the long-run fraction of time on outage) and,
for sequential sampling, a mean time to repair ``MTTR`` (hours). One *sample* is one pass
through the profile's hours; its indices are totals over those hours:

- ``lole_h``: hours with loss of load; ``eue_mwh``: unserved energy (hours of one hour);
  ``lolp`` = lole_h / hours. No rescaling to 8,760 hours: a one-year profile gives
  per-year figures, a one-week profile per-week figures.
- ``copperplate``: available capacity ``A`` (sum of Pmax of in-service units that are up)
  against the load ``L`` (the sum of the bus loads): loss of load when ``A < L`` *strictly*
  (a tie is served, the convention of the IEEE reliability test systems), shortfall
  ``L - A``. Capacities and loads are counted in integer quanta of :data:`QUANTUM_MW`
  (1 kW), so the comparison is exact and sums do not depend on their order.
- ``dc``: the minimum load shedding that the DC network allows with the units that are up
  (branch limits rateA, an LP solved by HiGHS, see :class:`ShedLP`). Hours with ample margin
  skip the LP: when ``A >= L`` and the DC flows of the proportional dispatch (every available
  unit at the same fraction of its Pmax) respect every limit -- with no branch on outage, or
  one branch whose outage the LODF describes -- no load is shed, which is exact. The others
  (capacity short, an overload to redispatch, several branches out) go to the LP.

Randomness. Sample ``s`` draws from ``numpy.random.SeedSequence(seed, spawn_key=(s,))``
(a PCG64 stream), so its unit states do not depend on which chunk, process, rank or array
task computes it, nor on how the hours are split:

- ``nonsequential``: independent hourly states. Hour ``t`` (0-based position in the selected
  hours) of random unit ``u`` uses 32-bit word ``u`` of the ``t``-th group of ceil(U / 2)
  64-bit outputs of the stream (reached with PCG64's ``advance``, so a chunk of hours draws
  only its own words); the unit is out when the word is below ``floor(FOR * 2^32)``
  (probability within 2.4e-10 of FOR; FOR = 1 means always out).
- ``sequential``: a two-state Markov chain per unit with exponential up and down times of
  means MTTF = MTTR (1 - FOR) / FOR and MTTR, started from its stationary distribution
  (down with probability FOR, the remaining time in that state exponential by the
  memoryless property). The state in hour ``t`` is the state at time ``t``. The whole
  timeline of the selected hours is drawn for the sample (events, not hours: cheap), and a
  chunk reads only its hours from it, so chunk boundaries cannot change a sample.

Both methods have the stationary marginal per hour, so their expected indices are the exact
values of the capacity outage probability table (:mod:`gat_hpc.studies.copt`,
``method = analytic``), which needs no sampling.

Chunks and batches. A run is chunked by samples x hours (``chunk_samples`` x
``chunk_hours``, sample-major). With ``target_cov`` the samples are planned in batches of
``batch_samples``: the ``adequacy`` command runs a batch, reads the per-sample EUE of every
finished chunk, and appends the chunks of the next batch to the run directory (new chunk
specs and ``n_chunks`` in run.json, the batch recorded under ``batches``) only while the
coefficient of variation of the EUE estimate is above the target and fewer than ``samples``
samples are planned. Samples are numbered in order, so a stopped run is a prefix of the
full one: the same seed gives the same first N samples whatever the target.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass

import numpy as np
import pyarrow as pa

from gat_hpc.errors import InputError

QUANTUM_MW = 1e-3  # 1 kW: capacities, loads and shortfalls are counted in integer quanta, so
# with hourly steps unserved energy is a whole number of kWh, which sums exactly in any order
SCREEN_TOL = 1e-9  # relative slack on branch limits in the no-LP screen
BLOCK_ELEMENTS = 1 << 22  # unit-hours handled at once (bounds memory: ~4 M)
METHODS = ("nonsequential", "sequential", "analytic")
NETWORKS = ("copperplate", "dc")
RNGS = ("pcg64", "philox")  # philox: the counter-based states of gat_hpc.cuda.adequacy (GPU or its twin)


# ---------------------------------------------------------------- reliability data
@dataclass
class Reliability:
    """Outage data per case element: FOR in [0, 1] (0 when not listed), MTTR hours (NaN when not given)."""

    gen_for: np.ndarray
    gen_mttr: np.ndarray
    branch_for: np.ndarray
    branch_mttr: np.ndarray
    path: str


def read_reliability(path, net):
    """Read ``R.csv`` (or Parquet): ``gen_id`` or ``branch_id``, ``for``, optional ``mttr_h``.

    A row names one generator (``gen_id``, the 1-based row of the case's gen table) or one
    branch (``branch_id``); elements not listed never fail. Raises InputError naming the row
    for a FOR outside [0, 1], an unknown or repeated id, or a non-positive MTTR.
    """
    from gat_hpc.studies.profiles import read_table

    t = read_table(path)
    cols = set(t.column_names)
    if "for" not in cols or not ({"gen_id", "branch_id"} & cols):
        raise InputError(f"{path}: reliability data needs columns gen_id (or branch_id) and for, optionally mttr_h "
                         f"(has: {', '.join(t.column_names)})")
    n = t.num_rows

    def column(name, kind):
        if name not in cols:
            return np.full(n, np.nan)
        c = t[name]
        try:
            v = np.asarray(c.to_numpy(zero_copy_only=False), dtype=np.float64)
        except (TypeError, ValueError):
            raise InputError(f"{path}: column '{name}' must hold numbers") from None
        if kind == "id":
            ok = np.isnan(v) | (v == np.round(v))
            if not np.all(ok):
                k = int(np.flatnonzero(~ok)[0])
                raise InputError(f"{path}: row {k + 1}: {name} = {v[k]:g} is not an integer")
        return v

    gid, bid = column("gen_id", "id"), column("branch_id", "id")
    rate, mttr = column("for", "num"), column("mttr_h", "num")
    both = ~np.isnan(gid) & ~np.isnan(bid)
    neither = np.isnan(gid) & np.isnan(bid)
    for bad, why in ((both, "gives both gen_id and branch_id; one element per row"),
                     (neither, "names no element: give gen_id or branch_id")):
        if np.any(bad):
            k = int(np.flatnonzero(bad)[0])
            raise InputError(f"{path}: row {k + 1} {why}")
    bad = ~np.isfinite(rate) | (rate < 0) | (rate > 1)
    if np.any(bad):
        k = int(np.flatnonzero(bad)[0])
        what = f"gen {int(gid[k])}" if not np.isnan(gid[k]) else f"branch {int(bid[k])}"
        raise InputError(f"{path}: row {k + 1} ({what}): for = {rate[k]} is outside [0, 1]; "
                         "the forced outage rate is a probability")
    bad = ~np.isnan(mttr) & (~np.isfinite(mttr) | (mttr <= 0))
    if np.any(bad):
        k = int(np.flatnonzero(bad)[0])
        raise InputError(f"{path}: row {k + 1}: mttr_h = {mttr[k]} must be a positive number of hours")

    def assign(ids, size, what):
        f_arr, m_arr = np.zeros(size), np.full(size, np.nan)
        rows = np.flatnonzero(~np.isnan(ids))
        idx = ids[rows].astype(np.int64)
        bad = (idx < 1) | (idx > size)
        if np.any(bad):
            k = int(rows[np.flatnonzero(bad)[0]])
            raise InputError(f"{path}: row {k + 1}: {what}_id {int(ids[k])} is not in the case "
                             f"({what} ids are 1..{size}, the rows of its {what} table)")
        uniq, first, counts = np.unique(idx, return_index=True, return_counts=True)
        if np.any(counts > 1):
            dup = uniq[counts > 1][0]
            raise InputError(f"{path}: {what}_id {dup} is listed more than once")
        f_arr[idx - 1] = rate[rows]
        m_arr[idx - 1] = mttr[rows]
        return f_arr, m_arr

    gf, gm = assign(gid, net.n_gen, "gen")
    bf, bm = assign(bid, net.n_branch, "branch")
    return Reliability(gen_for=gf, gen_mttr=gm, branch_for=bf, branch_mttr=bm, path=path)


# ---------------------------------------------------------------- profiles
class CaseLoad:
    """The case's own loads as a one-hour profile (hour 0), when no profile is given."""

    kind = "case"
    path = "(case loads)"

    def __init__(self, net):
        self.net = net
        self.hours = np.array([0], dtype=np.int64)

    def bus_load(self, k):
        return self.net.bus_load()

    def select(self, hours):
        if hours is None:
            return np.arange(1)
        return np.flatnonzero((self.hours >= hours[0]) & (self.hours < hours[1]))


def open_profile(path, net):
    """A profile table, a MATPOWER scenario table (.m), or the case loads when ``path`` is None."""
    if path is None:
        return CaseLoad(net)
    from gat_hpc.studies.contingency import load_profile

    return load_profile(path, net)


def consecutive_hours(profile, hours):
    """Profile row indices of the selected hours; InputError on an empty range or a gap."""
    sel = profile.select(hours)
    if sel.size == 0:
        raise InputError(f"{profile.path}: no profile hours in the selected range")
    h = np.asarray(profile.hours)[sel]
    gaps = np.flatnonzero(np.diff(h) != 1)
    if gaps.size:
        k = int(gaps[0])
        raise InputError(f"{profile.path}: the hours jump from {h[k]} to {h[k + 1]}; a sample is one pass "
                         "through consecutive hours, so the profile needs one row per hour with no gaps "
                         "(select a gap-free range with --hours A:B)")
    return sel


def bus_loads_mw(profile, rows, net):
    """Real load per bus (MW), array len(rows) x n_bus; InputError for a non-finite value."""
    out = np.empty((len(rows), net.n_bus))
    for i, k in enumerate(rows):
        out[i] = profile.bus_load(int(k)).real * net.base_mva
    bad = ~np.isfinite(out)
    if np.any(bad):
        i, b = np.argwhere(bad)[0]
        raise InputError(f"{profile.path}: hour {profile.hours[rows[i]]}: the load of bus {net.bus_id[b]} is not finite")
    return out


# ---------------------------------------------------------------- the fleet
@dataclass
class Fleet:
    """The units of a study: which can fail, their capacity in quanta, and the sure capacity.

    Random units (0 < FOR < 1) are numbered generators first (by gen_id), then branches
    (by branch_id, dc mode only). ``fixed_q``: capacity of the in-service generators that
    never fail; generators with FOR = 1 and branches with FOR = 1 are out for good (left out
    of the capacity and of the network).
    """

    gen: np.ndarray        # internal index of each random generator unit
    branch: np.ndarray     # internal index of each random branch unit
    cap_q: np.ndarray      # float64 integer quanta per random generator unit
    q: np.ndarray          # FOR per random unit (generators, then branches)
    mttr: np.ndarray       # MTTR per random unit, hours (NaN when not given)
    thr: np.ndarray        # uint32 outage threshold per random unit
    fixed_q: float
    gen_out: np.ndarray    # generators out for good (FOR = 1)
    branch_out: np.ndarray  # branches out for good
    markov: "MarkovUnits | None" = None  # sequential sampling parameters, made on first use

    @property
    def n_gen(self):
        return len(self.gen)

    @property
    def n_units(self):
        return len(self.q)

    @property
    def total_q(self):
        return float(self.cap_q.sum()) + self.fixed_q


def build_fleet(net, rel, network="copperplate"):
    on = net.gen_status & (net.pmax > 0)
    cap_q = np.rint(np.where(on, net.pmax, 0.0) * net.base_mva / QUANTUM_MW)
    if cap_q.sum() >= 2.0 ** 53:
        raise InputError(f"{net.source}: installed capacity is too large to count exactly in {QUANTUM_MW} MW quanta")
    q = rel.gen_for
    rand_g = np.flatnonzero(on & (q > 0) & (q < 1))
    gen_out = np.flatnonzero(on & (q >= 1))
    sure = on & (q <= 0)
    live_br = net.branch_in_service()
    if network == "dc":
        bq = rel.branch_for
        rand_b = np.flatnonzero(live_br & (bq > 0) & (bq < 1))
        branch_out = np.flatnonzero(live_br & (bq >= 1))
    else:
        rand_b = np.zeros(0, dtype=np.int64)
        branch_out = np.zeros(0, dtype=np.int64)
    q_all = np.concatenate([q[rand_g], rel.branch_for[rand_b]])
    mttr = np.concatenate([rel.gen_mttr[rand_g], rel.branch_mttr[rand_b]])
    return Fleet(gen=rand_g, branch=rand_b, cap_q=cap_q[rand_g], q=q_all, mttr=mttr,
                 thr=np.floor(q_all * 2.0 ** 32).astype(np.uint32), fixed_q=float(cap_q[sure].sum()),
                 gen_out=gen_out, branch_out=branch_out)


def check_sequential(fleet, net, rel):
    """Sequential sampling needs an MTTR for every unit that can fail."""
    bad = np.isnan(fleet.mttr)
    if np.any(bad):
        u = int(np.flatnonzero(bad)[0])
        what = (f"gen {net.gen_id[fleet.gen[u]]}" if u < fleet.n_gen
                else f"branch {net.branch_id[fleet.branch[u - fleet.n_gen]]}")
        raise InputError(f"{rel.path}: {what} has for > 0 but no mttr_h; --method sequential needs the mean "
                         "time to repair of every unit that can fail")


# ---------------------------------------------------------------- samplers
def sample_stream(seed, sample):
    """The PCG64 bit generator of one sample: SeedSequence(seed, spawn_key=(sample,))."""
    return np.random.PCG64(np.random.SeedSequence(int(seed), spawn_key=(int(sample),)))


def nonsequential_outages(seed, sample, thr, t0, t1):
    """Outage states (t1 - t0) x U (True = out) of hours t0..t1-1 of one sample.

    Hour t uses the t-th group of ceil(U / 2) 64-bit outputs of the sample's stream, read
    as 2 x 32-bit words (little-endian order) and compared with ``thr``.
    """
    n_units = len(thr)
    if n_units == 0:
        return np.zeros((t1 - t0, 0), dtype=bool)
    words = (n_units + 1) // 2
    bg = sample_stream(seed, sample)
    bg.advance(t0 * words)
    raw = bg.random_raw((t1 - t0) * words)
    w32 = raw.view(np.uint32).reshape(t1 - t0, 2 * words)[:, :n_units]
    return w32 < thr


@dataclass
class MarkovUnits:
    """Two-state units for sequential sampling: mean up time MTTF = MTTR (1 - FOR) / FOR, mean down time MTTR.

    ``block``: periods drawn at a time per unit, about twice the cycles of the fastest unit
    over ``horizon`` hours (more blocks follow until every unit's timeline passes it).
    """

    q: np.ndarray
    mttf: np.ndarray
    mttr: np.ndarray
    horizon: int
    block: int

    @classmethod
    def create(cls, q, mttr, horizon):
        q = np.asarray(q, dtype=np.float64)
        mttr = np.asarray(mttr, dtype=np.float64)
        mttf = mttr * (1.0 - q) / np.where(q > 0, q, 1.0)
        cycle = float(np.min(mttf + mttr)) if len(q) else np.inf
        block = int(min(2 * np.ceil(horizon / cycle) + 8, 1 << 16)) if np.isfinite(cycle) else 8
        return cls(q=q, mttf=mttf, mttr=mttr, horizon=int(horizon), block=block)


def _markov_events(rng, down0, units):
    """Event times (K x U, cumulative hours) ending the alternating up/down periods of each unit.

    Row j of unit u ends its j-th period, a down period when ``down0[u]`` xor (j odd); the
    first period is the remainder of the initial state (exponential: memoryless).
    """
    parity = (np.arange(units.block) % 2).astype(bool)
    mean = np.where(down0[None, :] ^ parity[:, None], units.mttr[None, :], units.mttf[None, :])
    blocks, start = [], np.zeros(len(down0))
    while True:
        ev = start[None, :] + np.cumsum(rng.standard_exponential(mean.shape) * mean, axis=0)
        blocks.append(ev)
        start = ev[-1]
        if np.all(start >= units.horizon):
            break
    return blocks[0] if len(blocks) == 1 else np.concatenate(blocks, axis=0)


def sequential_outages_many(seed, samples, units, t0, t1):
    """Outage states len(samples) x (t1 - t0) x U of hours t0..t1-1 of the samples' Markov timelines.

    Each sample's timeline covers ``units.horizon`` hours and is drawn whole from its own
    stream, so it is the same whatever (t0, t1): the state in hour t is the state at time t,
    i.e. the initial state flipped once per event at or before t.
    """
    samples = list(samples)
    n_s, n_u, n_h = len(samples), len(units.q), t1 - t0
    if n_u == 0:
        return np.zeros((n_s, n_h, 0), dtype=bool)
    down0 = np.empty((n_s, n_u), dtype=bool)
    events = []
    for i, s in enumerate(samples):
        rng = np.random.Generator(sample_stream(seed, s))
        down0[i] = rng.random(n_u) < units.q
        events.append(_markov_events(rng, down0[i], units))
    k = max(len(e) for e in events)
    ev = np.full((n_s, k, n_u), np.inf)
    for i, e in enumerate(events):
        ev[i, :len(e)] = e
    before = (ev <= t0).sum(axis=1)  # flips up to and including hour t0
    si, ki, ui = np.nonzero((ev > t0) & (ev <= t1 - 1))
    # an event in (t-1, t] shows from hour t on; only the parity of the flips matters, so
    # uint8 counts that wrap at 256 are enough (and 8 x lighter than int64)
    hour = np.ceil(ev[si, ki, ui]).astype(np.int64) - t0
    flips = np.zeros((n_s, n_h, n_u), dtype=np.uint8)
    np.add.at(flips, (si, hour, ui), 1)
    flips[:, 0] += (before & 1).astype(np.uint8)
    parity = np.cumsum(flips, axis=1, dtype=np.uint8) & 1
    return parity.view(bool) ^ down0[:, None, :]


def sequential_outages(seed, sample, q, mttr, horizon, t0, t1):
    """Outage states (t1 - t0) x U of one sample; see :func:`sequential_outages_many`."""
    return sequential_outages_many(seed, [sample], MarkovUnits.create(q, mttr, horizon), t0, t1)[0]


def outages(method, seed, samples, fleet, t0, t1, horizon):
    """Outage states of several samples: array len(samples) x (t1 - t0) x U."""
    if method == "sequential":
        if fleet.markov is None or fleet.markov.horizon != horizon:
            fleet.markov = MarkovUnits.create(fleet.q, fleet.mttr, horizon)
        return sequential_outages_many(seed, samples, fleet.markov, t0, t1)
    return np.stack([nonsequential_outages(seed, s, fleet.thr, t0, t1) for s in samples])


def byte_tables(cap_q):
    """Lost-capacity tables for groups of 8 units: table[j, v] = capacity (quanta) of the units of
    group j whose bits are set in byte v (bit k = unit 8 j + k). Shape ceil(U / 8) x 256."""
    n_bytes = (len(cap_q) + 7) // 8
    padded = np.zeros(n_bytes * 8)
    padded[:len(cap_q)] = cap_q
    bits = (np.arange(256)[:, None] >> np.arange(8)[None, :]) & 1  # 256 x 8
    return np.ascontiguousarray((bits @ padded.reshape(n_bytes, 8).T).T)


def lost_capacity_q(down_gen, tables):
    """Capacity on outage (quanta) per row of ``down_gen`` (rows x generator units), exact.

    The outage flags are packed 8 to a byte and each byte looks its group's lost capacity up
    in ``tables`` (:func:`byte_tables`): U / 8 lookups per row instead of U additions. Table
    entries are sums of at most 8 integers, so every sum is exact in float64.
    """
    rows = down_gen.shape[0]
    lost = np.zeros(rows)
    if down_gen.shape[1] == 0:
        return lost
    packed = np.packbits(down_gen, axis=1, bitorder="little")
    for j in range(packed.shape[1]):
        lost += tables[j][packed[:, j]]
    return lost


# ---------------------------------------------------------------- the dc network
class ShedLP:
    """Minimum load shedding with DC branch limits for one hour, warm-started hour after hour.

    Columns (p.u.): ``pg`` of each in-service generator in [0, Pmax x up], ``shed`` per bus in
    [0, max(load, 0)] (cost 1), ``curt`` per bus in [0, max(-load, 0)] (a negative load is an
    injection that may be curtailed, cost 0), ``theta`` per bus (free; one reference per
    island fixed at 0), ``f`` per in-service branch in [-rateA, rateA] (free when rateA = 0).
    Rows: nodal balance ``sum pg + shed - curt - (Cft' f)_b = load_b`` and flow definitions
    ``f - Bf theta = Pfinj``. A branch on outage gets ``f = 0`` and a free definition row,
    so an hour changes bounds only and HiGHS restarts from the previous basis.
    """

    def __init__(self, net, gens, branches):
        import scipy.sparse as sp

        from gat_hpc.pf.dc import branch_susceptance
        from gat_hpc.pf.topology import bus_types

        self.net = net
        self.gens = np.asarray(gens, dtype=np.int64)
        self.branches = np.asarray(branches, dtype=np.int64)
        nb, ng, nl = net.n_bus, len(self.gens), len(self.branches)
        self.nb, self.ng, self.nl = nb, ng, nl
        b = branch_susceptance(net)[self.branches]
        f, t = net.f_bus[self.branches], net.t_bus[self.branches]
        rows_l = np.arange(nl)
        cft = sp.csr_matrix((np.r_[np.ones(nl), -np.ones(nl)], (np.r_[rows_l, rows_l], np.r_[f, t])), shape=(nl, nb))
        bf = sp.diags(b) @ cft
        self.pfinj = -b * net.shift[self.branches]
        cg = sp.csr_matrix((np.ones(ng), (net.gen_bus[self.gens], np.arange(ng))), shape=(nb, ng))
        eye = sp.identity(nb, format="csr")
        nodal = sp.hstack([cg, eye, -eye, sp.csr_matrix((nb, nb)), -cft.T])
        flowdef = sp.hstack([sp.csr_matrix((nl, ng + 2 * nb)), -bf, sp.identity(nl)])
        a = sp.vstack([nodal, flowdef]).tocsc()
        self.o_pg, self.o_shed, self.o_curt, self.o_th, self.o_f = 0, ng, ng + nb, ng + 2 * nb, ng + 3 * nb
        ncol = ng + 3 * nb + nl
        inf = np.inf
        rate = net.rate_a_mva[self.branches] / net.base_mva
        self.rate = np.where(rate > 0, rate, inf)
        cost = np.zeros(ncol)
        cost[self.o_shed:self.o_shed + nb] = 1.0
        lo, hi = np.zeros(ncol), np.zeros(ncol)
        th_lo, th_hi = np.full(nb, -inf), np.full(nb, inf)
        types = bus_types(net)
        isl = types.island
        if len(types.ref):
            _, first = np.unique(isl[types.ref], return_index=True)
            th_lo[types.ref[first]] = th_hi[types.ref[first]] = 0.0
        lo[self.o_th:self.o_th + nb], hi[self.o_th:self.o_th + nb] = th_lo, th_hi
        lo[self.o_f:], hi[self.o_f:] = -self.rate, self.rate
        self.base_lo, self.base_hi = lo, hi
        row_lo = np.r_[np.zeros(nb), self.pfinj]
        import highspy

        from gat_hpc.studies.opf import check_call, new_highs

        h = new_highs()
        h.setOptionValue("presolve", "off")  # re-solved hour after hour from the previous basis
        lp = highspy.HighsLp()
        lp.num_col_, lp.num_row_ = ncol, nb + nl
        lp.col_cost_, lp.col_lower_, lp.col_upper_ = cost, lo, hi
        lp.row_lower_, lp.row_upper_ = row_lo, row_lo.copy()
        lp.a_matrix_.format_ = highspy.MatrixFormat.kColwise
        lp.a_matrix_.start_ = a.indptr.astype(np.int32)
        lp.a_matrix_.index_ = a.indices.astype(np.int32)
        lp.a_matrix_.value_ = a.data.astype(np.float64)
        lp.a_matrix_.num_col_, lp.a_matrix_.num_row_ = ncol, nb + nl
        check_call(h.passModel(lp), "passing the load-shedding LP to HiGHS")
        self.h = h
        self.cols = np.arange(ncol, dtype=np.int32)
        self.rows = np.arange(nb + nl, dtype=np.int32)
        self.solves = 0

    def solve(self, pmax_pu, load_pu, branch_up=None):
        """(shed MW, max |f| / rateA) for one hour.

        ``pmax_pu``: available Pmax per LP generator (0 when on outage), ``load_pu``: real load
        per bus, ``branch_up``: bool per LP branch (None: all up).
        """
        import highspy

        from gat_hpc.studies.opf import SolverError, check_call

        nb, ng = self.nb, self.ng
        lo, hi = self.base_lo.copy(), self.base_hi.copy()
        hi[:ng] = pmax_pu
        hi[self.o_shed:self.o_shed + nb] = np.maximum(load_pu, 0.0)
        hi[self.o_curt:self.o_curt + nb] = np.maximum(-load_pu, 0.0)
        row_lo = np.r_[load_pu, self.pfinj]
        row_hi = row_lo.copy()
        if branch_up is not None:
            down = ~np.asarray(branch_up, dtype=bool)
            lo[self.o_f:][down] = hi[self.o_f:][down] = 0.0
            row_lo[nb:][down], row_hi[nb:][down] = -np.inf, np.inf
        h = self.h
        check_call(h.changeColsBounds(len(self.cols), self.cols, lo, hi), "changing column bounds")
        check_call(h.changeRowsBounds(len(self.rows), self.rows, row_lo, row_hi), "changing row bounds")
        check_call(h.run(), "solving the load-shedding LP")
        self.solves += 1
        status = h.getModelStatus()
        if status != highspy.HighsModelStatus.kOptimal:
            raise SolverError(f"HiGHS: the load-shedding LP ended with status '{h.modelStatusToString(status)}'")
        x = np.asarray(h.getSolution().col_value)
        shed = float(x[self.o_shed:self.o_shed + nb].sum()) * self.net.base_mva
        flow = x[self.o_f:]
        util = float(np.max(np.abs(flow) / self.rate)) if self.nl else 0.0
        return max(shed, 0.0), util


class DCScreen:
    """PTDF flows of the proportional dispatch, and which hours can skip the LP.

    ``fleet_gens``: internal indices of the in-service generators with Pmax > 0 (the LP's
    generators); ``monitored``: branches with rateA > 0 in service.
    """

    def __init__(self, net, fleet_gens, fleet):
        from gat_hpc.pf.dc import make_bdc
        from gat_hpc.pf.sensitivity import lodf_columns, make_ptdf
        from gat_hpc.pf.topology import bus_types

        self.net = net
        live = net.branch_in_service()
        self.branches = np.flatnonzero(live)
        types = bus_types(net)
        self.enabled = types.n_islands == 1
        ptdf = make_ptdf(net)
        _, _, pbusinj, pfinj = make_bdc(net)
        self.ptdf = ptdf[self.branches]  # rows of live branches
        self.offset_mw = (pfinj[self.branches] - self.ptdf @ pbusinj) * net.base_mva
        self.hg = self.ptdf[:, net.gen_bus[fleet_gens]]  # nl x G
        rate = net.rate_a_mva[self.branches]
        self.inv_rate = np.where(rate > 0, 1.0 / np.where(rate > 0, rate, 1.0), 0.0)
        # LODF columns of the random branch units, in LP-branch numbering
        pos = np.full(net.n_branch, -1, dtype=np.int64)
        pos[self.branches] = np.arange(len(self.branches))
        self.unit_pos = pos[fleet.branch]
        if len(fleet.branch):
            cols, bridge = lodf_columns(net, fleet.branch)
            self.lodf_t = cols[self.branches].T  # units x nl
            self.bridge = bridge
        else:
            self.lodf_t = np.zeros((0, len(self.branches)))
            self.bridge = np.zeros(0, dtype=bool)

    def load_flows(self, loads_mw):
        """Flows (hours x nl, MW) of the loads alone, plus the phase-shifter offsets."""
        return self.offset_mw[None, :] - loads_mw @ self.ptdf.T


class Adequacy:
    """The Monte-Carlo adequacy study (``gat-hpc adequacy``); see the module docstring."""

    name = "adequacy"
    tables = {"sample_parts": ["scenario_id", "first_hour"], "hour_parts": ["first_scenario", "hour"]}

    # ---------------------------------------------------------- planning
    @staticmethod
    def plan_batch(config, n_hours, s_start, s_stop, batch):
        """Chunks of samples s_start..s_stop-1 x all hours (sample-major)."""
        cs, ch = config["chunk_samples"], config["chunk_hours"] or n_hours
        chunks = []
        for a in range(s_start, s_stop, cs):
            b = min(a + cs, s_stop)
            for h0 in range(0, n_hours, ch):
                chunks.append({"ranges": {"samples": [a, b], "hours": [h0, min(h0 + ch, n_hours)]},
                               "params": {"batch": batch}, "seed_spawn_key": [a, b]})
        return chunks

    @staticmethod
    def plan(config, n_hours):
        """The chunks to create the run with: everything, or the first batch with target_cov."""
        if config["method"] == "analytic":
            ch = config["chunk_hours"] or n_hours
            return [{"ranges": {"hours": [h0, min(h0 + ch, n_hours)]}} for h0 in range(0, n_hours, ch)]
        n = config["samples"]
        first = min(n, config["batch_samples"]) if config.get("target_cov") else n
        return Adequacy.plan_batch(config, n_hours, 0, first, 0)

    # ---------------------------------------------------------- context
    @staticmethod
    def prepare(net, rel, profile, config):
        """What every chunk needs; also the input checks of planning (InputError when bad)."""
        if config["method"] == "analytic" and config["network"] != "copperplate":
            raise InputError("--method analytic is exact for the copperplate model only; use --network copperplate")
        if getattr(profile, "kind", "") == "scenarios" and np.any(profile._label_has_gen):
            raise InputError(f"{profile.path}: the scenario table changes generators; adequacy takes load-only "
                             "scenario tables (generator availability comes from the reliability data)")
        rows = consecutive_hours(profile, config.get("hours"))
        fleet = build_fleet(net, rel, config["network"])
        if config["method"] == "sequential":
            check_sequential(fleet, net, rel)
        loads = bus_loads_mw(profile, rows, net)
        load_q = np.rint(loads.sum(axis=1) / QUANTUM_MW)
        ctx = {"net": net, "rel": rel, "profile": profile, "config": config, "rows": rows,
               "hours": np.asarray(profile.hours)[rows].astype(np.int64), "fleet": fleet,
               "load_q": load_q, "loads_mw": loads if config["network"] == "dc" else None}
        return ctx

    def context(self, rd):
        from gat_hpc.network.io import read_case

        net = read_case(rd.input_path("case"))
        rel = read_reliability(rd.input_path("reliability"), net)
        inputs = rd.manifest["inputs"]
        profile = open_profile(rd.input_path("profile") if "profile" in inputs else None, net)
        return self.prepare(net, rel, profile, rd.config)

    @staticmethod
    def _dc_parts(ctx):
        """The LP and the screen, built on first use in a process (dc mode)."""
        if "lp" not in ctx:
            net, fleet = ctx["net"], ctx["fleet"]
            work = net.copy()
            work.gen_status[fleet.gen_out] = False
            work.branch_status[fleet.branch_out] = False
            gens = np.flatnonzero(work.gen_status & (work.pmax > 0))
            screen = DCScreen(work, gens, fleet)
            lp = ShedLP(work, gens, screen.branches)
            # where each random unit sits among the LP's generators / branches
            gpos = np.full(net.n_gen, -1, dtype=np.int64)
            gpos[gens] = np.arange(len(gens))
            ctx.update(lp=lp, screen=screen, lp_gens=gens, unit_gen_pos=gpos[fleet.gen],
                       pmax_mw=work.pmax[gens] * net.base_mva)
        return ctx["lp"], ctx["screen"]

    # ---------------------------------------------------------- one chunk
    def run_chunk(self, ctx, spec):
        cfg = ctx["config"]
        t0, t1 = spec.ranges["hours"]
        t_start, cpu_start = time.perf_counter(), time.process_time()
        if cfg["method"] == "analytic":
            return self._analytic_chunk(ctx, t0, t1, t_start)
        s0, s1 = spec.ranges["samples"]
        if cfg.get("rng", "pcg64") == "philox":
            return self._philox_chunk(ctx, s0, s1, t0, t1, t_start, cpu_start)
        fleet = ctx["fleet"]
        n_s, n_h = s1 - s0, t1 - t0
        horizon = len(ctx["rows"])
        dc = cfg["network"] == "dc"
        lole = np.zeros(n_s, dtype=np.int64)
        eue_kwh = np.zeros(n_s)  # whole numbers: exact whatever the chunking
        thermal = np.zeros(n_s, dtype=np.int64)
        util_max = np.full(n_s, np.nan if not dc else 0.0)
        constrained = np.zeros(n_s, dtype=np.int64)
        lp_solves = np.zeros(n_s, dtype=np.int64)
        hour_lol = np.zeros(n_h, dtype=np.int64)
        hour_kwh = np.zeros(n_h)
        units = max(fleet.n_units, 1)
        hb = int(min(n_h, max(1, BLOCK_ELEMENTS // units)))
        sg = int(max(1, min(n_s, BLOCK_ELEMENTS // (units * hb))))
        total_q = fleet.total_q
        tables = byte_tables(fleet.cap_q)
        for b0 in range(t0, t1, hb):
            b1 = min(b0 + hb, t1)
            load_q = ctx["load_q"][b0:b1]
            block = {}
            if dc:
                lp, screen = self._dc_parts(ctx)
                loads = ctx["loads_mw"][b0:b1]
                block = {"loads": loads, "lflow": screen.load_flows(loads) if screen.enabled else None}
            for g0 in range(s0, s1, sg):
                g1 = min(g0 + sg, s1)
                down = outages(cfg["method"], cfg["seed"], range(g0, g1), fleet, b0, b1, horizon)
                flat = down.reshape((g1 - g0) * (b1 - b0), fleet.n_units)
                lost = lost_capacity_q(flat[:, :fleet.n_gen], tables).reshape(g1 - g0, b1 - b0)
                short_q = load_q[None, :] - (total_q - lost)
                if dc:
                    shed_mw, extra = self._dc_hours(ctx, block, down, short_q)
                    shed = np.rint(shed_mw / QUANTUM_MW)  # kWh: loss of load from 0.5 kW on
                    lol = shed > 0
                    i = slice(g0 - s0, g1 - s0)
                    thermal[i] += extra["overloaded"].sum(axis=1)
                    util_max[i] = np.maximum(util_max[i], np.nanmax(extra["util"], axis=1, initial=0.0))
                    constrained[i] += (shed > np.maximum(short_q, 0)).sum(axis=1)
                    lp_solves[i] += extra["lp"].sum(axis=1)
                else:
                    lol = short_q > 0
                    shed = np.where(lol, short_q, 0.0)
                i = slice(g0 - s0, g1 - s0)
                lole[i] += lol.sum(axis=1)
                eue_kwh[i] += shed.sum(axis=1)
                hour_lol[b0 - t0:b1 - t0] += lol.sum(axis=0)
                hour_kwh[b0 - t0:b1 - t0] += shed.sum(axis=0)
        return self._chunk_tables(ctx, s0, s1, t0, t1, (lole, eue_kwh, thermal, util_max, constrained, lp_solves),
                                  hour_lol, hour_kwh, t_start, cpu_start)

    @staticmethod
    def _chunk_tables(ctx, s0, s1, t0, t1, per_sample, hour_lol, hour_kwh, t_start, cpu_start, **extra):
        """The chunk's sample_parts and hour_parts tables and its metrics."""
        lole, eue_kwh, thermal, util_max, constrained, lp_solves = per_sample
        hours = ctx["hours"]
        n_s, n_h = s1 - s0, t1 - t0
        parts = pa.table({
            "scenario_id": pa.array(np.arange(s0, s1), pa.int64()),
            "first_hour": pa.array(np.full(n_s, hours[t0]), pa.int64()),
            "hours": pa.array(np.full(n_s, n_h), pa.int64()),
            "lole_h": pa.array(lole, pa.int64()), "unserved_kwh": pa.array(eue_kwh, pa.float64()),
            "thermal_violations": pa.array(thermal, pa.int64()),
            "max_flow_utilization": pa.array(util_max, pa.float64()),
            "constrained_hours": pa.array(constrained, pa.int64()),
            "lp_solves": pa.array(lp_solves, pa.int64()),
            "weight": pa.array(np.ones(n_s), pa.float64()),
        })
        hp = pa.table({"first_scenario": pa.array(np.full(n_h, s0), pa.int64()),
                       "hour": pa.array(hours[t0:t1], pa.int64()),
                       "weight": pa.array(np.full(n_h, float(n_s)), pa.float64()),
                       "lol": pa.array(hour_lol.astype(np.float64), pa.float64()),
                       "unserved_kwh": pa.array(hour_kwh, pa.float64())})
        secs = time.perf_counter() - t_start
        metrics = {"samples": n_s, "hours": n_h, "sample_hours": n_s * n_h,
                   "unit_hours": n_s * n_h * ctx["fleet"].n_units, "seconds": secs,
                   "cpu_s": time.process_time() - cpu_start, "lp_solves": int(lp_solves.sum()),
                   "sample_hours_per_s": n_s * n_h / secs if secs > 0 else None, **extra}
        return {"sample_parts": parts, "hour_parts": hp}, metrics

    def _philox_chunk(self, ctx, s0, s1, t0, t1, t_start, cpu_start):
        """Copperplate, non-sequential, unit states from Philox4x32-10 keyed by (seed, sample,
        hour, unit): :func:`gat_hpc.cuda.adequacy.capacity_check` on the GPU (``device = gpu``)
        or its numpy twin; both give the same tables, bit for bit. Unit u is row u of the case's
        gen table (capacity 0 when out of service), so a generator's states do not depend on
        which other generators can fail."""
        from gat_hpc.cuda.adequacy import capacity_check

        cfg, net = ctx["config"], ctx["net"]
        on = net.gen_status & (net.pmax > 0)
        cap = np.rint(np.where(on, net.pmax, 0.0) * net.base_mva / QUANTUM_MW) * QUANTUM_MW
        q = np.clip(ctx["rel"].gen_for, 0.0, 1.0)
        res = capacity_check(cap, q, ctx["load_q"][t0:t1] * QUANTUM_MW, s1 - s0, cfg["seed"], sample0=s0,
                             quantum_mw=QUANTUM_MW, device=cfg.get("device", "cpu"), hour0=t0)
        n_s = s1 - s0
        zeros = np.zeros(n_s, dtype=np.int64)
        per_sample = (res.lole_h, np.rint(res.eue_mwh / QUANTUM_MW), zeros, np.full(n_s, np.nan), zeros, zeros)
        return self._chunk_tables(ctx, s0, s1, t0, t1, per_sample, res.hour_lol, np.rint(res.hour_eue_mwh / QUANTUM_MW),
                                  t_start, cpu_start, device=cfg.get("device", "cpu"),
                                  device_s=res.timings.get("total"))

    def _dc_hours(self, ctx, block, down, short_q):
        """Shedding (MW) per sample-hour in dc mode; the screen first, the LP for the rest."""
        lp, screen = self._dc_parts(ctx)
        fleet = ctx["fleet"]
        n_s, n_h, _ = down.shape
        pmax = ctx["pmax_mw"]
        n_g = len(pmax)
        up = np.ones((n_s, n_h, n_g))
        up[:, :, ctx["unit_gen_pos"]] = ~down[:, :, :fleet.n_gen]
        br_down = down[:, :, fleet.n_gen:]  # random branch units
        n_out = br_down.sum(axis=2)
        avail = up @ pmax
        loads = block["loads"]
        load_tot = loads.sum(axis=1)
        shed = np.zeros((n_s, n_h))
        util = np.full((n_s, n_h), np.nan)
        overloaded = np.zeros((n_s, n_h), dtype=bool)
        need_lp = np.ones((n_s, n_h), dtype=bool)
        if screen.enabled:
            enough = short_q <= 0
            one = n_out == 1
            if br_down.shape[2]:
                unit = np.argmax(br_down, axis=2)  # the branch out, where exactly one is
                describable = (n_out == 0) | (one & ~screen.bridge[unit])
            else:
                unit = np.zeros((n_s, n_h), dtype=np.int64)
                describable = np.ones((n_s, n_h), dtype=bool)
            screenable = enough & describable
            si, hi = np.nonzero(screenable)
            if si.size:
                alpha = load_tot[hi] / np.where(avail[si, hi] > 0, avail[si, hi], 1.0)
                pg = up[si, hi] * pmax[None, :] * alpha[:, None]
                flow = pg @ screen.hg.T + block["lflow"][hi]
                single = one[si, hi]
                if np.any(single):
                    k = unit[si, hi][single]
                    pos = screen.unit_pos[k]
                    fk = flow[single, pos]
                    flow[single] += fk[:, None] * screen.lodf_t[k]
                u = np.max(np.abs(flow) * screen.inv_rate[None, :], axis=1) if flow.shape[1] else np.zeros(si.size)
                util[si, hi] = u
                over = u > 1.0 + SCREEN_TOL
                overloaded[si, hi] = over
                need_lp[si, hi] = over
        lp_hours = np.argwhere(need_lp)
        if len(lp_hours):
            base = ctx["net"].base_mva
            pmax_pu = pmax / base
            loads_pu = loads / base
            br_units = screen.unit_pos
            for s, t in lp_hours:
                br_up = None
                if len(br_units) and n_out[s, t]:
                    br_up = np.ones(lp.nl, dtype=bool)
                    br_up[br_units[br_down[s, t]]] = False
                shed[s, t], util[s, t] = lp.solve(pmax_pu * up[s, t], loads_pu[t], br_up)
        return shed, {"util": util, "overloaded": overloaded, "lp": need_lp}

    def _analytic_chunk(self, ctx, t0, t1, t_start):
        from gat_hpc.studies.copt import hourly_indices, outage_table

        fleet = ctx["fleet"]
        if "copt" not in ctx:
            step = ctx["config"].get("copt_step_mw")
            step_q = None if step is None else max(1, int(round(step / QUANTUM_MW)))
            ctx["copt"] = outage_table(fleet.cap_q, fleet.q[:fleet.n_gen], step_q)
        p, step, modelled = ctx["copt"]
        lolp, eue = hourly_indices(p, step, modelled + fleet.fixed_q, ctx["load_q"][t0:t1], QUANTUM_MW)
        hours = ctx["hours"]
        n_h = t1 - t0
        empty = pa.table({"scenario_id": pa.array([], pa.int64()), "first_hour": pa.array([], pa.int64()),
                          "hours": pa.array([], pa.int64()), "lole_h": pa.array([], pa.int64()),
                          "unserved_kwh": pa.array([], pa.float64()), "thermal_violations": pa.array([], pa.int64()),
                          "max_flow_utilization": pa.array([], pa.float64()),
                          "constrained_hours": pa.array([], pa.int64()), "lp_solves": pa.array([], pa.int64()),
                          "weight": pa.array([], pa.float64())})
        hp = pa.table({"first_scenario": pa.array(np.zeros(n_h, dtype=np.int64), pa.int64()),
                       "hour": pa.array(hours[t0:t1], pa.int64()), "weight": pa.array(np.ones(n_h), pa.float64()),
                       "lol": pa.array(lolp, pa.float64()), "unserved_kwh": pa.array(eue * 1000.0, pa.float64())})
        secs = time.perf_counter() - t_start
        return {"sample_parts": empty, "hour_parts": hp}, {"hours": n_h, "seconds": secs, "copt_entries": len(p)}

    # ---------------------------------------------------------- batches
    def extend(self, rd):
        """Append the next batch of chunks when target_cov is not reached yet; returns their ids.

        Runs on the root only, after every chunk planned so far is done.
        """
        from gat_hpc.runs.rundir import DONE
        from gat_hpc.runs.spec import ChunkSpec
        from gat_hpc.util.atomic import atomic_write_text

        cfg = rd.config
        if cfg["method"] == "analytic" or not cfg.get("target_cov"):
            return []
        states = rd.states()
        if any(s != DONE for s, _ in states.values()):
            return []
        planned = max(rd.read_spec(cid).ranges["samples"][1] for cid in rd.chunk_ids())
        eue, _ = per_sample_from_results(rd, states)
        cov = coefficient_of_variation(eue)
        if cov <= cfg["target_cov"] or planned >= cfg["samples"]:
            return []
        n_hours = int(cfg["n_hours"])
        batch = len(rd.manifest.get("batches", [])) + 1
        stop = min(cfg["samples"], planned + cfg["batch_samples"])
        new = self.plan_batch(cfg, n_hours, planned, stop, batch)
        first = rd.n_chunks
        for j, ch in enumerate(new):
            spec = ChunkSpec(run_id=rd.run_id, chunk_id=first + j, study=self.name, ranges=ch["ranges"],
                             params=ch["params"], seed_spawn_key=ch["seed_spawn_key"])
            atomic_write_text(os.path.join(rd.path, "chunks", f"{first + j}.json"), spec.to_json())
        rd.manifest["n_chunks"] = first + len(new)
        rd.manifest.setdefault("batches", []).append(
            {"batch": batch, "samples": [planned, stop], "chunks": [first, first + len(new)],
             "eue_cov_before": None if not np.isfinite(cov) else cov})
        rd.save_manifest()
        return list(range(first, first + len(new)))

    # ---------------------------------------------------------- reduce
    def extra_outputs(self, rd, paths, outdir):
        """reduce/adequacy.parquet (one row per sample, DESIGN schema) and reduce/hourly.parquet."""
        import pyarrow.parquet as pq

        out = {}
        if "sample_parts" in paths:
            t = pq.read_table(paths["sample_parts"])
            if t.num_rows:
                pq.write_table(per_sample_table(t), os.path.join(outdir, "adequacy.parquet"))
                out["adequacy"] = os.path.join(outdir, "adequacy.parquet")
        if "hour_parts" in paths:
            hp = pq.read_table(paths["hour_parts"])
            hour, inv = np.unique(hp["hour"].to_numpy(), return_inverse=True)
            w = np.bincount(inv, hp["weight"].to_numpy(), len(hour))
            lol = np.bincount(inv, hp["lol"].to_numpy(), len(hour))
            un = np.bincount(inv, hp["unserved_kwh"].to_numpy(), len(hour))
            pq.write_table(pa.table({"hour": pa.array(hour, pa.int64()), "lolp": pa.array(lol / w),
                                     "eue_mwh": pa.array(un / w / 1000.0), "samples": pa.array(w)}),
                           os.path.join(outdir, "hourly.parquet"))
            out["hourly"] = os.path.join(outdir, "hourly.parquet")
        return out

    def summarize(self, rd, paths):
        import pyarrow.parquet as pq

        cfg = rd.config
        summary = {"method": cfg["method"], "network": cfg["network"], "seed": cfg["seed"],
                   "target_cov": cfg.get("target_cov"), "quantum_mw": QUANTUM_MW}
        if cfg["method"] == "analytic":
            h = pq.read_table(paths["hourly"])
            n_h = h.num_rows
            lole = float(np.sum(h["lolp"].to_numpy()))
            eue = float(np.sum(h["eue_mwh"].to_numpy()))
            exact = lambda v: {"mean": v, "se": 0.0, "ci95": [v, v], "cov": 0.0}  # noqa: E731
            summary.update(samples=0, hours=n_h, lole_h_per_yr=exact(lole), eue_mwh_per_yr=exact(eue),
                           lolp=exact(lole / n_h), cov=0.0, exact=True)
            return summary
        if "adequacy" not in paths:
            return summary
        t = pq.read_table(paths["adequacy"])
        n_h = int(t["hours"][0].as_py()) if t.num_rows else 0
        lole = t["lole_h"].to_numpy().astype(float)
        eue = t["eue_mwh"].to_numpy()
        summary.update(samples=t.num_rows, hours=n_h, lole_h_per_yr=estimate(lole), eue_mwh_per_yr=estimate(eue),
                       lolp=estimate(lole / max(n_h, 1)), cov=finite_or_none(coefficient_of_variation(eue)))
        if cfg.get("target_cov"):
            cov = coefficient_of_variation(eue)
            summary["target_reached"] = bool(cov <= cfg["target_cov"])
        if cfg["network"] == "dc":
            summary["lp_solves"] = int(t["lp_solves"].to_numpy().sum())
            summary["constrained_hours_mean"] = float(t["constrained_hours"].to_numpy().mean())
            summary["thermal_violations_mean"] = float(t["thermal_violations"].to_numpy().mean())
            summary["max_flow_utilization"] = float(np.nanmax(t["max_flow_utilization"].to_numpy()))
        summary["samples_requested"] = cfg["samples"]
        return summary


# ---------------------------------------------------------------- statistics
def estimate(x):
    """Mean, standard error, 95% interval (normal) and coefficient of variation of the mean."""
    x = np.asarray(x, dtype=np.float64)
    n = len(x)
    mean = float(x.mean()) if n else float("nan")
    se = float(x.std(ddof=1) / np.sqrt(n)) if n > 1 else float("nan")
    cov = se / mean if n > 1 and mean > 0 else float("nan")
    # the indices are non-negative: the normal interval is clipped at 0
    return {"mean": mean, "se": finite_or_none(se), "ci95": [finite_or_none(max(mean - 1.96 * se, 0.0)),
                                                            finite_or_none(mean + 1.96 * se)],
            "cov": finite_or_none(cov)}


def coefficient_of_variation(x):
    """se(mean) / mean of ``x``; inf while the mean is 0 or fewer than two samples."""
    x = np.asarray(x, dtype=np.float64)
    if len(x) < 2 or x.mean() <= 0:
        return float("inf")
    return float(x.std(ddof=1) / np.sqrt(len(x)) / x.mean())


def finite_or_none(v):
    return float(v) if v is not None and np.isfinite(v) else None


def per_sample_table(parts):
    """Sum the (sample, hour block) rows of ``parts`` into one row per sample (DESIGN schema)."""
    sid, inv = np.unique(parts["scenario_id"].to_numpy(), return_inverse=True)
    n = len(sid)

    def total(col, dtype=np.float64):
        return np.bincount(inv, parts[col].to_numpy().astype(np.float64), n).astype(dtype)

    hours = total("hours", np.int64)
    util = parts["max_flow_utilization"].to_numpy(zero_copy_only=False)
    umax = np.full(n, -np.inf)
    np.maximum.at(umax, inv, np.where(np.isnan(util), -np.inf, util))
    umax[~np.isfinite(umax)] = np.nan  # copperplate: no flows (null in the table)
    lole = total("lole_h", np.int64)
    return pa.table({
        "scenario_id": pa.array(sid, pa.int64()), "lole_h": pa.array(lole, pa.int64()),
        "eue_mwh": pa.array(total("unserved_kwh") / 1000.0), "lolp": pa.array(lole / np.maximum(hours, 1)),
        "thermal_violations": pa.array(total("thermal_violations", np.int64), pa.int64()),
        "max_flow_utilization": pa.array(umax, from_pandas=True), "constrained_hours": pa.array(total("constrained_hours", np.int64)),
        "weight": pa.array(np.ones(n)), "hours": pa.array(hours, pa.int64()),
        "lp_solves": pa.array(total("lp_solves", np.int64), pa.int64()),
    })


def per_sample_from_results(rd, states):
    """(EUE per sample, sample ids) from the partitions of the done chunks."""
    import pyarrow.parquet as pq

    tables = []
    for cid, (_, res) in sorted(states.items()):
        for out in res.outputs:
            if out["table"] == "sample_parts":
                tables.append(pq.read_table(rd.resolve(out["path"]), columns=["scenario_id", "unserved_kwh"]))
    if not tables:
        return np.zeros(0), np.zeros(0, dtype=np.int64)
    t = pa.concat_tables(tables)
    sid, inv = np.unique(t["scenario_id"].to_numpy(), return_inverse=True)
    return np.bincount(inv, t["unserved_kwh"].to_numpy(), len(sid)) / 1000.0, sid
