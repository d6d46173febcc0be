"""Rolling DC optimal power flow with HiGHS: dispatch, LMPs and binding constraints per hour.

The problem of one window of T consecutive hours (per-unit on base MVA, angles in radians;
the DC model and its signs are those of :mod:`gat_hpc.pf.dc`)::

    min  sum_t sum_g cost_g(Pg[g,t])
    s.t. Cg Pg[t] - Bbus theta[t] = Pd[t] + Gs + Pbusinj          nodal balance   (dual: LMP)
         -rateA - Pfinj <= Bf theta[t] <= rateA - Pfinj             branches with rateA > 0
         Pmin <= Pg[t] <= Pmax                                      in-service generators
         -R <= Pg[g,t] - Pg[g,t-1] <= R                             --ramp, R in p.u. per hour

is solved in its PTDF form (:class:`WindowModel`: generation variables only, one balance row
per island, branch rows added as they are violated), which has the same optimum and whose
duals give the same LMPs.

Costs come from the case's gencost: polynomial (model 2) of degree <= 2 -- linear costs give
an LP, quadratic ones a convex QP that HiGHS solves exactly (no linearisation) -- or
piecewise linear (model 1, convex), modelled by one cost variable y_g >= each segment. The
constant term is added to the reported cost. Cubic and higher polynomials are refused with
a message (convert them to piecewise linear). Angle-difference limits are not modelled (as
MATPOWER's DC OPF does for the +-360 degrees of the standard cases).

LMPs, in $/MWh: the change of the window's cost when one more MW of load is served at that
bus in that hour. Shadow prices of branch rows, generator bounds and ramp rows are reported
for the constraints that bind.

Rolling. The hours are cut into windows of ``horizon`` hours that start every ``step``
hours (default step = horizon). A window commits its first ``step`` hours; the next one
starts from the committed dispatch (its first hour ramps from the last committed hour), and
HiGHS restarts from the previous window's basis (the model of a window length is built
once per process; only loads and bounds change). With quadratic costs the QP starts from the
optimal vertex of a companion LP (same rows, linear part of the costs; it is the LP that is
warm-started), not from HiGHS's own starting point: see :meth:`WindowModel._build_highs`.
A chunk is a run of windows; its first window has no dispatch before it, so with ``--ramp``
the whole profile is one chunk by default.
"""

from __future__ import annotations

import os
import sys
import time
from dataclasses import dataclass

import numpy as np
import pyarrow as pa

from gat_hpc.errors import GatError, InputError

_BANNER_SILENCED = False
BIND_TOL_PU = 1e-7  # a constraint within this of its bound (p.u.) binds


# ---------------------------------------------------------------- HiGHS plumbing
def new_highs():
    """A silent HiGHS instance.

    highspy prints a banner on the first construction in a process, on the C stdout; that
    one construction runs with file descriptor 1 pointed at /dev/null so command output
    stays clean.
    """
    global _BANNER_SILENCED
    try:
        import highspy
    except ImportError:
        raise InputError("the HiGHS solver (Python package highspy) is not installed: pip install highspy") from None
    if _BANNER_SILENCED:
        h = highspy.Highs()
    else:
        sys.stdout.flush()
        saved, null = os.dup(1), os.open(os.devnull, os.O_WRONLY)
        os.dup2(null, 1)
        try:
            h = highspy.Highs()
        finally:
            os.dup2(saved, 1)
            os.close(saved)
            os.close(null)
        _BANNER_SILENCED = True
    h.setOptionValue("output_flag", False)
    # one thread: gat-hpc runs in parallel by chunks (processes, ranks), not inside a solve
    h.setOptionValue("threads", 1)
    return h


class SolverError(GatError):
    """HiGHS failed (an error status, numerical trouble, a limit): exit 3 like non-convergence."""

    exit_code = 3


def check_call(status, what):
    """Raise SolverError when a HiGHS call returned an error status."""
    import highspy

    if status == highspy.HighsStatus.kError:
        raise SolverError(f"HiGHS reported an error while {what}")
    return status


# ---------------------------------------------------------------- costs
@dataclass
class GenCosts:
    """Generator costs in MW units: poly cost c2 p^2 + c1 p + c0 ($/h), or piecewise linear.

    ``pwl``: for each generator with a piecewise-linear cost, (slopes $/MWh, intercepts $/h)
    of its segments (cost = max over segments of slope p + intercept); None for polynomial.
    """

    c2: np.ndarray
    c1: np.ndarray
    c0: np.ndarray
    pwl: list

    @property
    def quadratic(self):
        return bool(np.any(self.c2 > 0))

    def cost_mw(self, pg_mw, on):
        """Cost ($/h) of each generator at outputs ``pg_mw`` (gens x hours, MW); 0 where not ``on``."""
        pg = np.asarray(pg_mw, dtype=np.float64)
        out = self.c2[:, None] * pg ** 2 + self.c1[:, None] * pg + self.c0[:, None]
        for g, seg in enumerate(self.pwl):
            if seg is not None:
                m, b = seg
                out[g] = np.max(m[:, None] * pg[g][None, :] + b[:, None], axis=0)
        return np.where(on, out, 0.0)


def gen_costs(net):
    """Parse the case's gencost rows (MATPOWER layout) into :class:`GenCosts`; InputError when unusable."""
    where = net.source or net.name or "case"
    gc = net.gencost
    ng = net.n_gen
    if gc is None or len(gc) < ng:
        have = 0 if gc is None else len(gc)
        raise InputError(f"{where}: the DC-OPF needs generator costs: mpc.gencost has {have} rows for {ng} generators")
    gc = np.asarray(gc, dtype=np.float64)[:ng]
    c2, c1, c0 = np.zeros(ng), np.zeros(ng), np.zeros(ng)
    pwl = [None] * ng
    for g in range(ng):
        row = gc[g]
        model, n = int(row[0]), int(row[3]) if len(row) > 3 else 0
        gid = net.gen_id[g]
        if model == 2:
            coef = row[4:4 + n]
            if len(coef) < n:
                raise InputError(f"{where}: gencost row {g + 1} (gen {gid}) announces {n} coefficients but has {len(coef)}")
            coef = coef[::-1]  # c0, c1, c2, ...
            if len(coef) > 3 and np.any(coef[3:] != 0):
                raise InputError(f"{where}: gen {gid} has a polynomial cost of degree {len(coef) - 1}; the DC-OPF "
                                 "takes linear and quadratic costs: give a piecewise-linear cost (model 1) instead")
            c0[g] = coef[0] if len(coef) > 0 else 0.0
            c1[g] = coef[1] if len(coef) > 1 else 0.0
            c2[g] = coef[2] if len(coef) > 2 else 0.0
            if c2[g] < 0:
                raise InputError(f"{where}: gen {gid} has a negative quadratic cost coefficient ({c2[g]}): "
                                 "the cost must be convex")
        elif model == 1:
            pts = row[4:4 + 2 * n]
            if n < 2 or len(pts) < 2 * n:
                raise InputError(f"{where}: gencost row {g + 1} (gen {gid}) needs at least 2 complete (MW, $/h) points")
            x, f = pts[0::2], pts[1::2]
            if np.any(np.diff(x) <= 0):
                raise InputError(f"{where}: gen {gid}: the piecewise-linear cost points must have increasing MW")
            m = np.diff(f) / np.diff(x)
            if np.any(np.diff(m) < -1e-9 * np.maximum(1.0, np.abs(m[1:]))):
                raise InputError(f"{where}: gen {gid}: the piecewise-linear cost is not convex (slopes must not decrease)")
            pwl[g] = (m, f[:-1] - m * x[:-1])
        else:
            raise InputError(f"{where}: gencost row {g + 1} (gen {gid}) has model {row[0]:g}; "
                             "expected 1 (piecewise linear) or 2 (polynomial)")
    if not (np.all(np.isfinite(c2)) and np.all(np.isfinite(c1)) and np.all(np.isfinite(c0))):
        raise InputError(f"{where}: gencost holds a non-finite coefficient")
    return GenCosts(c2=c2, c1=c1, c0=c0, pwl=pwl)


def case_ramp_mw_per_h(case_path, net):
    """Hourly ramp limits (MW/h) from a MATPOWER case's gen table: 2 x RAMP_30, else 60 x RAMP_AGC.

    NaN where the case gives none (0) or the case is not a MATPOWER file.
    """
    out = np.full(net.n_gen, np.nan)
    if not str(case_path).lower().endswith(".m"):
        return out
    from gat_hpc.network.matpower import parse_matpower

    with open(case_path, encoding="utf-8", errors="replace") as fh:
        gen = parse_matpower(fh.read(), case_path)["gen"]
    if gen.shape[1] >= 19:
        r30, agc = gen[:, 18], gen[:, 16]
        out = np.where(r30 > 0, 2 * r30, np.where(agc > 0, 60 * agc, np.nan))
    return out


# ---------------------------------------------------------------- one window
@dataclass
class WindowResult:
    """A solved window: arrays gens x T, buses x T, branches x T (MW, $/MWh, $/h)."""

    pg_mw: np.ndarray
    lmp: np.ndarray
    flow_mw: np.ndarray
    branch_mu: np.ndarray     # shadow price of the branch limits ($/MWh), signed like the flow
    gen_mu: np.ndarray        # reduced cost of each Pg column ($/MWh)
    ramp_mu: np.ndarray       # shadow price of the ramp rows, gens x T (hour t vs t-1)
    cost_h: np.ndarray        # $/h per hour
    gen_cost: np.ndarray      # $/h per generator and hour
    objective: float
    seconds: float
    iterations: int


class WindowModel:
    """The OPF of T consecutive hours, built once; each solve changes loads and bounds only.

    PTDF form (no angle variables, so HiGHS's QP solver sees a strictly smaller problem):
    per hour t the columns are Pg (all case generators; off ones held at 0) and y (one per
    generator with a piecewise-linear cost); the rows are one power balance per island
    (sum of Pg = demand of the island) and the piecewise segments, then the ramp rows. Branch
    limits are rows ``PTDF[l] @ Cg Pg[t]`` within ``+-rateA`` shifted by the flow of the loads;
    they are added lazily: solve, compute every monitored flow, add the rows of the
    violated (branch, hour) pairs, re-solve from the current basis, until none is violated.
    Added rows stay in the model for later windows (they are true limits); with quadratic
    costs every round first re-solves the companion LP (``h_start``) and hot-starts the QP
    from its vertex. This is the same optimum as the B-theta form of the module docstring;
    the LMP of bus b is the balance dual of its island plus sum over branch rows of dual x
    PTDF[l, b], i.e. the nodal balance dual of the B-theta form.
    """

    MAX_ROUNDS = 50

    def __init__(self, net, costs, T, ramp_pu=None, ptdf=None):
        from gat_hpc.pf.dc import make_bdc
        from gat_hpc.pf.sensitivity import make_ptdf
        from gat_hpc.pf.topology import bus_types

        self.net, self.costs, self.T = net, costs, T
        nb, ng = net.n_bus, net.n_gen
        base = net.base_mva
        types = bus_types(net)
        isl = np.full(nb, -1, dtype=np.int64)
        live_bus = types.island >= 0
        _, isl[live_bus] = np.unique(types.island[live_bus], return_inverse=True)
        self.island, self.n_isl = isl, int(isl.max()) + 1 if live_bus.any() else 0
        self.dead = np.flatnonzero(~live_bus)
        self.gen_dead = isl[net.gen_bus] < 0
        _, _, pbusinj, pfinj = make_bdc(net)
        self.ptdf = make_ptdf(net) if ptdf is None else ptdf  # branches x buses, one slack per island
        self.f0 = pfinj - self.ptdf @ pbusinj  # flow offsets of the phase shifters
        self.hg = self.ptdf[:, net.gen_bus]  # flow per p.u. of each generator
        self.live = np.flatnonzero(net.branch_in_service())
        rate = net.rate_a_mva / base
        self.mon = np.flatnonzero(net.branch_in_service() & (net.rate_a_mva > 0))
        self.rate_pu = rate
        self.gs = net.bus_shunt().real
        self.pwl_gens = [g for g, sgm in enumerate(costs.pwl) if sgm is not None]
        n_y = len(self.pwl_gens)
        seg = [(j, g, m, b) for j, g in enumerate(self.pwl_gens) for m, b in zip(*costs.pwl[g])]
        n_seg = len(seg)
        self.per_col, self.n_y, self.o_y = ng + n_y, n_y, ng
        self.per_row, self.o_seg = self.n_isl + n_seg, self.n_isl
        pc, pr = self.per_col, self.per_row
        self.ncol = T * pc
        rows, cols, vals = [], [], []
        gen_isl = np.where(self.gen_dead, 0, isl[net.gen_bus])
        for t in range(T):
            live_g = np.flatnonzero(~self.gen_dead)
            rows += (t * pr + gen_isl[live_g]).tolist()
            cols += (t * pc + live_g).tolist()
            vals += [1.0] * len(live_g)
            for k, (j, g, m, _) in enumerate(seg):  # y_j - m base Pg_g >= b
                rows += [t * pr + self.o_seg + k] * 2
                cols += [t * pc + self.o_y + j, t * pc + g]
                vals += [1.0, -m * base]
        self.ramp_pu = np.full(ng, np.inf) if ramp_pu is None else np.asarray(ramp_pu, dtype=np.float64)
        self.ramp_gens = np.flatnonzero(np.isfinite(self.ramp_pu))
        nr = len(self.ramp_gens)
        self.n_ramp_rows = nr * (T - 1)
        r0 = T * pr
        for t in range(1, T):
            for j, g in enumerate(self.ramp_gens):
                rows += [r0 + (t - 1) * nr + j] * 2
                cols += [t * pc + g, (t - 1) * pc + g]
                vals += [1.0, -1.0]
        self.n_fixed_rows = r0 + self.n_ramp_rows
        import scipy.sparse as sp

        a = sp.csc_matrix((vals, (rows, cols)), shape=(self.n_fixed_rows, self.ncol))
        cost = np.zeros(self.ncol)
        for t in range(T):
            cost[t * pc:t * pc + ng] = costs.c1 * base
            cost[t * pc + self.o_y:(t + 1) * pc] = 1.0
            cost[t * pc + np.asarray(self.pwl_gens, dtype=np.int64)] = 0.0  # a pwl cost lives in its y
        self.cost = cost
        self.col_lo, self.col_hi = np.zeros(self.ncol), np.zeros(self.ncol)
        for t in range(T):
            self.col_lo[t * pc + self.o_y:(t + 1) * pc] = -np.inf
            self.col_hi[t * pc + self.o_y:(t + 1) * pc] = np.inf
        self.row_lo, self.row_hi = np.zeros(self.n_fixed_rows), np.zeros(self.n_fixed_rows)
        seg_b = np.array([sg[3] for sg in seg])
        for t in range(T):
            self.row_lo[t * pr + self.o_seg:(t + 1) * pr] = seg_b
            self.row_hi[t * pr + self.o_seg:(t + 1) * pr] = np.inf
        if self.n_ramp_rows:
            rr = np.tile(self.ramp_pu[self.ramp_gens], T - 1)
            self.row_lo[r0:], self.row_hi[r0:] = -rr, rr
        self.flow_rows = []  # (branch, hour offset) of each lazily added row, in row order
        self._build_highs(a)

    def _build_highs(self, a):
        import highspy

        lp = highspy.HighsLp()
        lp.num_col_, lp.num_row_ = self.ncol, a.shape[0]
        lp.col_cost_ = self.cost
        lp.col_lower_, lp.col_upper_ = self.col_lo, self.col_hi
        lp.row_lower_, lp.row_upper_ = self.row_lo, self.row_hi
        lp.a_matrix_.format_ = highspy.MatrixFormat.kColwise
        lp.a_matrix_.start_ = a.indptr.astype(np.int32)
        lp.a_matrix_.index_ = a.indices.astype(np.int32)
        lp.a_matrix_.value_ = a.data.astype(np.float64)
        lp.a_matrix_.num_col_, lp.a_matrix_.num_row_ = self.ncol, a.shape[0]
        h = new_highs()
        h.setOptionValue("presolve", "off")  # small models, re-solved from the previous basis
        check_call(h.passModel(lp), "passing the OPF model to HiGHS")
        self.h, self.h_start = h, None
        if self.costs.quadratic:
            ng, base = self.net.n_gen, self.net.base_mva
            q = np.zeros(self.ncol)
            for t in range(self.T):
                q[t * self.per_col:t * self.per_col + ng] = 2.0 * self.costs.c2 * base ** 2
            idx = np.flatnonzero(q > 0).astype(np.int32)
            # triangular CSC: one diagonal entry per quadratic column
            start = np.searchsorted(idx, np.arange(self.ncol + 1)).astype(np.int32)
            check_call(h.passHessian(self.ncol, len(idx), int(highspy.HessianFormat.kTriangular), start, idx, q[idx]),
                       "passing the quadratic costs to HiGHS")
            # The QP solver starts from a vertex. Left to itself it finds one with a cold,
            # presolved LP and then sets every start value of magnitude <= 1e-4 to zero
            # (0.01 MW here); the step that makes is never corrected, so the QP "optimum"
            # misses its balance rows by up to 1e-4 p.u. and HiGHS rejects it as a solve error
            # (a multi-hour window has more such values). So the vertex comes from a
            # companion LP with the same rows and bounds and the linear part of the costs,
            # warm-started window after window, and is handed over as a hot start, which
            # the QP solver takes as it is.
            h.setOptionValue("qp_allow_hot_start", True)
            s = new_highs()
            s.setOptionValue("presolve", "off")
            # the QP solver takes a start only if it is feasible to 1e-7: solve below that
            s.setOptionValue("primal_feasibility_tolerance", 1e-9)
            check_call(s.passModel(lp), "passing the OPF starting-point LP to HiGHS")
            self.h_start = s

    def _solvers(self):
        return [self.h] if self.h_start is None else [self.h, self.h_start]

    # -------------------------------------------------------------- solve
    def _flow_bounds(self, load_flow, pairs):
        """Row bounds of the branch rows ``pairs`` [(branch, t)]: +-rateA shifted by the loads' flow."""
        ls = np.array([load_flow[l, t] - self.f0[l] for l, t in pairs])
        r = self.rate_pu[[l for l, _ in pairs]]
        return ls - r, ls + r

    def _add_flow_rows(self, pairs, load_flow):
        pc = self.per_col
        starts, idx, vals = [], [], []
        for l, t in pairs:
            starts.append(len(idx))
            nz = np.flatnonzero(self.hg[l] != 0)
            idx.extend((t * pc + nz).tolist())
            vals.extend(self.hg[l, nz].tolist())
        lo, hi = self._flow_bounds(load_flow, pairs)
        for h in self._solvers():
            check_call(h.addRows(len(pairs), lo, hi, len(idx), np.asarray(starts, dtype=np.int32),
                                 np.asarray(idx, dtype=np.int32), np.asarray(vals, dtype=np.float64)),
                       "adding branch-limit rows")
        self.flow_rows.extend(pairs)

    def solve(self, load_pu, pmin_pu, pmax_pu, on, prev_pg_pu=None, hours=None):
        """Solve with loads (buses x T, p.u.), generator bounds and status (gens x T).

        ``prev_pg_pu``: the dispatch of the hour before the window (ramp-limited generators'
        first hour must stay within their ramp of it), or None. ``hours``: labels for messages.
        """
        net, T = self.net, self.T
        ng, base = net.n_gen, net.base_mva
        hours = np.arange(T) if hours is None else np.asarray(hours)
        lo, hi = self.col_lo.copy(), self.col_hi.copy()
        on = np.asarray(on, dtype=bool) & ~self.gen_dead[:, None]
        glo = np.where(on, pmin_pu, 0.0)
        ghi = np.where(on, pmax_pu, 0.0)
        if prev_pg_pu is not None and len(self.ramp_gens):
            r = self.ramp_gens
            glo[r, 0] = np.maximum(glo[r, 0], np.where(on[r, 0], prev_pg_pu[r] - self.ramp_pu[r], 0.0))
            ghi[r, 0] = np.minimum(ghi[r, 0], np.where(on[r, 0], prev_pg_pu[r] + self.ramp_pu[r], 0.0))
        self._precheck(load_pu, glo, ghi, hours, pmin_pu, pmax_pu)
        for t in range(T):
            lo[t * self.per_col:t * self.per_col + ng] = glo[:, t]
            hi[t * self.per_col:t * self.per_col + ng] = ghi[:, t]
        demand = load_pu + self.gs[:, None]
        demand[self.dead] = 0.0  # a de-energised bus is not served
        isl_demand = np.zeros((self.n_isl, T))
        np.add.at(isl_demand, self.island[self.island >= 0], demand[self.island >= 0])
        load_flow = self.ptdf @ demand  # flows of the loads alone, branches x T
        row_lo, row_hi = self.row_lo.copy(), self.row_hi.copy()
        for t in range(T):
            row_lo[t * self.per_row:t * self.per_row + self.n_isl] = isl_demand[:, t]
            row_hi[t * self.per_row:t * self.per_row + self.n_isl] = isl_demand[:, t]
        if self.flow_rows:
            flo, fhi = self._flow_bounds(load_flow, self.flow_rows)
            row_lo, row_hi = np.r_[row_lo, flo], np.r_[row_hi, fhi]
        h = self.h
        for hh in self._solvers():
            check_call(hh.changeColsBounds(self.ncol, np.arange(self.ncol, dtype=np.int32), lo, hi),
                       "changing generator bounds")
            check_call(hh.changeRowsBounds(len(row_lo), np.arange(len(row_lo), dtype=np.int32), row_lo, row_hi),
                       "changing loads")
        secs, iters = 0.0, 0
        mon = self.mon
        what = f"the OPF of hours {hours[0]}..{hours[-1]}"
        for _ in range(self.MAX_ROUNDS):
            t0 = time.perf_counter()
            if self.h_start is not None:  # a QP: start it from the companion LP's vertex
                iters += self._run(self.h_start, hours, f"the starting-point LP of {what}")
                check_call(h.setSolution(self.h_start.getSolution()), "passing the starting point to HiGHS")
                check_call(h.setBasis(self.h_start.getBasis()), "passing the starting basis to HiGHS")
            iters += self._run(h, hours, what)
            secs += time.perf_counter() - t0
            x = np.asarray(h.getSolution().col_value)
            pg = x[np.arange(T)[None, :] * self.per_col + np.arange(ng)[:, None]]
            flow = self.hg @ pg - load_flow + self.f0[:, None]
            if not len(mon):
                break
            excess = np.abs(flow[mon]) - self.rate_pu[mon, None]
            have = set(self.flow_rows)
            new = [(int(mon[i]), int(t)) for i, t in zip(*np.nonzero(excess > 1e-9))
                   if (int(mon[i]), int(t)) not in have]
            if not new:
                break
            self._add_flow_rows(new, load_flow)
        else:
            raise SolverError(f"the OPF of hours {hours[0]}..{hours[-1]} still violates branch limits after "
                              f"{self.MAX_ROUNDS} rounds of added constraints")
        sol = h.getSolution()
        y_row = np.asarray(sol.row_dual)
        y_col = np.asarray(sol.col_dual)
        lam = y_row[np.arange(T)[None, :] * self.per_row + np.arange(self.n_isl)[:, None]]  # islands x T
        lmp = np.full((net.n_bus, T), np.nan)
        live = self.island >= 0
        lmp[live] = lam[self.island[live]]
        branch_mu = np.zeros((net.n_branch, T))
        if self.flow_rows:
            fr = np.asarray(self.flow_rows)
            mu = y_row[self.n_fixed_rows:]
            branch_mu[fr[:, 0], fr[:, 1]] = mu
            for t in range(T):
                at = fr[:, 1] == t
                if np.any(at):
                    lmp[live, t] += self.ptdf[fr[at, 0]][:, live].T @ mu[at]
        lmp /= base
        branch_mu /= base
        gen_mu = y_col[np.arange(T)[None, :] * self.per_col + np.arange(ng)[:, None]] / base
        ramp_mu = np.zeros((ng, T))
        if self.n_ramp_rows:
            rd = y_row[T * self.per_row:self.n_fixed_rows].reshape(T - 1, len(self.ramp_gens)).T / base
            ramp_mu[self.ramp_gens, 1:] = rd
        pg_mw = pg * base
        gen_cost = self.costs.cost_mw(pg_mw, on)
        return WindowResult(pg_mw=pg_mw, lmp=lmp, flow_mw=flow * base, branch_mu=branch_mu, gen_mu=gen_mu,
                            ramp_mu=ramp_mu, cost_h=gen_cost.sum(axis=0), gen_cost=gen_cost,
                            objective=float(h.getInfo().objective_function_value), seconds=secs, iterations=iters)

    def _run(self, h, hours, what):
        """Run HiGHS on ``h``; the iterations it took. InputError when infeasible, SolverError
        (with HiGHS's model status) for an error or any other status than optimal."""
        import highspy

        status = h.run()
        model_status = h.getModelStatus()
        if status == highspy.HighsStatus.kError:
            raise SolverError(f"HiGHS reported an error while solving {what}: model status "
                              f"'{h.modelStatusToString(model_status)}'")
        if model_status in (highspy.HighsModelStatus.kInfeasible, highspy.HighsModelStatus.kUnboundedOrInfeasible):
            raise InputError(self._explain_infeasible(hours, h))
        if model_status != highspy.HighsModelStatus.kOptimal:
            raise SolverError(f"HiGHS could not solve {what}: model status '{h.modelStatusToString(model_status)}'")
        info = h.getInfo()
        return int(max(info.simplex_iteration_count, 0) + max(info.qp_iteration_count, 0))

    def _precheck(self, load_pu, glo, ghi, hours, pmin_pu, pmax_pu):
        """Name the obvious infeasibilities before asking HiGHS: demand outside [sum Pmin, sum Pmax]."""
        base = self.net.base_mva
        bad = np.flatnonzero(glo > ghi + 1e-12)
        if bad.size:
            g, t = np.unravel_index(bad[0], glo.shape)
            raise InputError(f"OPF infeasible in hour {hours[t]}: gen {self.net.gen_id[g]} cannot move from its "
                             f"previous output into [Pmin, Pmax] = [{pmin_pu[g, t] * base:g}, {pmax_pu[g, t] * base:g}] MW "
                             f"within its ramp limit of {self.ramp_pu[g] * base:g} MW/h")
        demand = np.where(self.island[:, None] >= 0, load_pu + self.gs[:, None], 0.0)
        gen_isl = np.where(self.gen_dead, -1, self.island[self.net.gen_bus])
        for i in range(self.n_isl):
            d = demand[self.island == i].sum(axis=0) * base
            top = ghi[gen_isl == i].sum(axis=0) * base
            bottom = glo[gen_isl == i].sum(axis=0) * base
            where = "" if self.n_isl == 1 else f" in island {i + 1}"
            over = np.flatnonzero(d > top + 1e-6)
            if over.size:
                t = over[0]
                raise InputError(f"OPF infeasible in hour {hours[t]}: demand {d[t]:.3f} MW (load + shunt losses){where} "
                                 f"exceeds the {top[t]:.3f} MW that the in-service generators can reach "
                                 "(total Pmax, within ramp limits)")
            under = np.flatnonzero(d < bottom - 1e-6)
            if under.size:
                t = under[0]
                raise InputError(f"OPF infeasible in hour {hours[t]}: demand {d[t]:.3f} MW{where} is below the "
                                 f"{bottom[t]:.3f} MW that the in-service generators must produce (total Pmin)")

    def describe_row(self, i, hours):
        net, T = self.net, self.T
        pr = self.per_row
        if i >= self.n_fixed_rows:
            b, t = self.flow_rows[i - self.n_fixed_rows]
            return (f"limit of branch {net.branch_id[b]} ({net.bus_id[net.f_bus[b]]}-{net.bus_id[net.t_bus[b]]}, "
                    f"rateA {net.rate_a_mva[b]:g} MW) in hour {hours[t]}")
        if i >= T * pr:
            k = i - T * pr
            t, j = 1 + k // len(self.ramp_gens), k % len(self.ramp_gens)
            g = self.ramp_gens[j]
            return f"ramp limit of gen {net.gen_id[g]} ({self.ramp_pu[g] * net.base_mva:g} MW/h) into hour {hours[t]}"
        t, r = divmod(i, pr)
        if r < self.n_isl:
            return f"power balance{'' if self.n_isl == 1 else f' of island {r + 1}'} in hour {hours[t]}"
        return f"piecewise cost segment in hour {hours[t]}"

    def describe_col(self, i, hours):
        net = self.net
        t, c = divmod(i, self.per_col)
        if c < net.n_gen:
            return f"output limits of gen {net.gen_id[c]} in hour {hours[t]}"
        return f"cost variable in hour {hours[t]}"

    def _explain_infeasible(self, hours, h=None):
        """Ask HiGHS (``h``, default the model's solver) for an irreducible infeasible subsystem
        and name its constraints."""
        import highspy

        h = self.h if h is None else h

        head = f"the DC-OPF of hours {hours[0]}..{hours[-1]} is infeasible"
        try:
            # the default (light) strategy may return an empty set; ask for an irreducible one
            h.setOptionValue("iis_strategy", int(highspy.IisStrategy.kIisStrategyIrreducible))
            status, iis = h.getIis()
            rows = list(iis.row_index_)
            cols = list(iis.col_index_)
        except Exception:  # an older highspy without IIS: say what we know
            return head + ": check branch limits (rateA) against the loads and generator limits"
        names = [self.describe_row(int(i), hours) for i in rows]
        names += [self.describe_col(int(i), hours) for i in cols if int(i) < self.ncol]
        branch_rows = [n for n in names if n.startswith("limit of branch")]
        shown = (branch_rows or names)[:6]
        if not shown:
            return head + ": check branch limits (rateA) against the loads and generator limits"
        more = f" (and {len(names) - len(shown)} more)" if len(names) > len(shown) else ""
        return head + ": these constraints cannot hold together: " + "; ".join(shown) + more


# ---------------------------------------------------------------- the study
class RollingOPF:
    """``gat-hpc opf dc``: rolling-horizon DC-OPF over a profile's hours (see the module docstring)."""

    name = "opf-dc"
    tables = {"hours": ["hour"], "dispatch": ["hour", "gen_id"], "lmp": ["hour", "bus_id"],
              "flows": ["hour", "branch_id"], "binding": ["hour", "kind", "element_id"]}

    @staticmethod
    def plan(config, n_hours):
        step = config["step"]
        ch = config["chunk_hours"] or n_hours
        ch = max(step, (ch // step) * step)  # chunks hold whole steps, so windows line up
        return [{"ranges": {"hours": [h0, min(h0 + ch, n_hours)]}} for h0 in range(0, n_hours, ch)]

    @staticmethod
    def prepare(net, profile, config, case_path):
        from gat_hpc.studies.adequacy import consecutive_hours

        costs = gen_costs(net)
        rows = consecutive_hours(profile, config.get("hours"))
        ramp = None
        if config.get("ramp"):
            ramp_mw = case_ramp_mw_per_h(case_path, net)
            pct = config.get("ramp_pct")
            if pct is not None:
                ramp_mw = np.where(np.isnan(ramp_mw), pct / 100.0 * np.abs(net.pmax) * net.base_mva, ramp_mw)
            ramp = np.where(np.isnan(ramp_mw), np.inf, ramp_mw / net.base_mva)
        lo = net.pmin > net.pmax
        if np.any(lo & net.gen_status):
            g = int(np.flatnonzero(lo & net.gen_status)[0])
            raise InputError(f"{net.source}: gen {net.gen_id[g]} has Pmin {net.pmin[g] * net.base_mva:g} MW above "
                             f"Pmax {net.pmax[g] * net.base_mva:g} MW")
        return {"net": net, "profile": profile, "config": config, "rows": rows,
                "hours": np.asarray(profile.hours)[rows].astype(np.int64), "costs": costs, "ramp_pu": ramp,
                "models": {}}

    @classmethod
    def check_capacity(cls, ctx, block=168):
        """InputError naming the first hour whose demand the in-service generators cannot meet."""
        net = ctx["net"]
        gs = net.bus_shunt().real.sum()
        base = net.base_mva
        n = len(ctx["rows"])
        for a in range(0, n, block):
            pos = np.arange(a, min(a + block, n))
            load, pmin, pmax, on = cls._hour_data(ctx, pos)
            demand = (load.sum(axis=0) + gs) * base
            top = np.where(on, pmax, 0.0).sum(axis=0) * base
            bottom = np.where(on, pmin, 0.0).sum(axis=0) * base
            for bad, what, hint in ((demand > top + 1e-6, "exceeds the total Pmax", ""),
                                    (demand < bottom - 1e-6, "is below the total Pmin",
                                     "; without unit commitment, --relax-pmin lets every unit go down to 0")):
                if np.any(bad):
                    t = int(np.flatnonzero(bad)[0])
                    limit = top[t] if "Pmax" in what else bottom[t]
                    raise InputError(f"{ctx['profile'].path}: the OPF is infeasible in hour {ctx['hours'][a + t]}: "
                                     f"demand {demand[t]:.3f} MW (load + shunt losses) {what} {limit:.3f} MW "
                                     f"of the in-service generators{hint}")

    def context(self, rd):
        from gat_hpc.network.io import read_case
        from gat_hpc.studies.adequacy import open_profile

        net = read_case(rd.input_path("case"))
        inputs = rd.manifest["inputs"]
        profile = open_profile(rd.input_path("profile") if "profile" in inputs else None, net)
        return self.prepare(net, profile, rd.config, rd.input_path("case"))

    @staticmethod
    def _model(ctx, T):
        m = ctx["models"].get(T)
        if m is None:
            if "ptdf" not in ctx:
                from gat_hpc.pf.sensitivity import make_ptdf

                ctx["ptdf"] = make_ptdf(ctx["net"])
            m = ctx["models"][T] = WindowModel(ctx["net"], ctx["costs"], T, ctx["ramp_pu"], ctx["ptdf"])
        return m

    @staticmethod
    def _hour_data(ctx, positions):
        """Loads (buses x T p.u.) and generator pmin, pmax, status (gens x T) of selected positions."""
        net, prof = ctx["net"], ctx["profile"]
        ks = ctx["rows"][positions]
        load = np.empty((net.n_bus, len(ks)))
        pmin = np.repeat(net.pmin[:, None], len(ks), axis=1)
        pmax = np.repeat(net.pmax[:, None], len(ks), axis=1)
        on = np.repeat(net.gen_status[:, None], len(ks), axis=1)
        for j, k in enumerate(ks):
            load[:, j] = prof.bus_load(int(k)).real
            changes = prof.gen_changes(int(k)) if hasattr(prof, "gen_changes") else None
            if changes is not None:
                pmin[:, j], pmax[:, j], on[:, j] = changes.pmin, changes.pmax, changes.status
        if ctx["config"].get("relax_pmin"):
            pmin = np.minimum(pmin, 0.0)  # no commitment decisions: any unit may go down to 0
        bad = ~np.isfinite(load)
        if np.any(bad):
            b, j = np.argwhere(bad)[0]
            raise InputError(f"{prof.path}: hour {prof.hours[ks[j]]}: the load of bus {net.bus_id[b]} is not finite")
        return load, pmin, pmax, on

    def run_chunk(self, ctx, spec):
        net, cfg = ctx["net"], ctx["config"]
        i0, i1 = spec.ranges["hours"]
        n_sel = len(ctx["rows"])
        H, S = cfg["horizon"], cfg["step"]
        hours_all = ctx["hours"]
        prev = None
        t_start = time.perf_counter()
        # fresh window models per chunk: their warm-start bases and the branch rows added so
        # far would otherwise carry one chunk's history into the next, and a chunk's (QP)
        # solution would depend, in its last digits, on which chunks its process ran before
        ctx["models"] = {}
        parts = {k: [] for k in ("hours", "dispatch", "lmp", "flows", "binding")}
        solves, iters, solve_s = 0, 0, 0.0
        for w in range(i0, i1, S):
            T = min(H, n_sel - w)
            commit = min(S, i1 - w, T)
            pos = np.arange(w, w + T)
            load, pmin, pmax, on = self._hour_data(ctx, pos)
            model = self._model(ctx, T)
            res = model.solve(load, pmin, pmax, on, prev if cfg.get("ramp") else None, hours_all[pos])
            solves += 1
            iters += res.iterations
            solve_s += res.seconds
            self._collect(parts, ctx, res, hours_all[pos[:commit]], load[:, :commit], pmin[:, :commit],
                          pmax[:, :commit], on[:, :commit], hours_all[w], model, prev if cfg.get("ramp") else None,
                          res.seconds)
            prev = res.pg_mw[:, commit - 1] / net.base_mva
        tables = {k: pa.concat_tables(v) if v else None for k, v in parts.items()}
        secs = time.perf_counter() - t_start
        metrics = {"hours": i1 - i0, "windows": solves, "iterations": iters, "solve_s": solve_s, "seconds": secs,
                   "solves_per_s": solves / solve_s if solve_s > 0 else None}
        return {k: v for k, v in tables.items() if v is not None}, metrics

    def _collect(self, parts, ctx, res, hours, load, pmin, pmax, on, window_start, model, prev, secs):
        net = ctx["net"]
        base = net.base_mva
        C = len(hours)
        ng, nb = net.n_gen, net.n_bus
        pg = res.pg_mw[:, :C]
        lmp = res.lmp[:, :C]
        flow = res.flow_mw[:, :C]
        live = model.live
        rate = net.rate_a_mva
        tol = BIND_TOL_PU * base
        # binding constraints
        kinds, ids, vals, lims, mus, hrs = [], [], [], [], [], []

        def add(kind, mask, elem_ids, value, limit, mu):
            g, t = np.nonzero(mask)
            kinds.extend([kind] * len(g))
            ids.extend(elem_ids[g].tolist())
            vals.extend(value[g, t].tolist())
            lims.extend(limit[g, t].tolist())
            mus.extend(mu[g, t].tolist())
            hrs.extend(hours[t].tolist())

        n_branch_bind = np.zeros(C, dtype=np.int64)
        if len(model.mon):
            m = model.mon
            r = np.repeat(rate[m][:, None], C, axis=1)
            at = np.abs(flow[m]) >= r - tol - 1e-6 * r
            add("branch", at, net.branch_id[m], flow[m], np.sign(flow[m]) * r, res.branch_mu[m, :C])
            n_branch_bind = at.sum(axis=0)
        on_c = on.astype(bool)
        up_lim = np.minimum(pmax * base, np.inf)
        at_max = on_c & (pg >= pmax * base - tol) & (pmax > pmin)
        # a unit resting at a Pmin of 0 is only listed when that bound has a price
        at_min = on_c & (pg <= pmin * base + tol) & (pmax > pmin) & ((pmin > 0) | (np.abs(res.gen_mu[:, :C]) > 1e-9))
        add("pmax", at_max, net.gen_id, pg, up_lim, res.gen_mu[:, :C])
        add("pmin", at_min, net.gen_id, pg, pmin * base, res.gen_mu[:, :C])
        if model.n_ramp_rows or (prev is not None and len(model.ramp_gens)):
            R = model.ramp_pu * base
            step_mw = np.diff(np.concatenate([(prev * base)[:, None] if prev is not None else pg[:, :1], pg], axis=1),
                              axis=1)
            lim = np.repeat(R[:, None], C, axis=1)
            up_r = on_c & np.isfinite(lim) & (step_mw >= lim - tol) & ~at_max
            dn_r = on_c & np.isfinite(lim) & (step_mw <= -lim + tol) & ~at_min
            if prev is None:
                up_r[:, 0] = dn_r[:, 0] = False
            mu = res.ramp_mu[:, :C].copy()
            if prev is not None:
                mu[:, 0] = res.gen_mu[:, 0]  # the first hour's ramp acts through the Pg bounds
            add("ramp_up", up_r, net.gen_id, step_mw, lim, mu)
            add("ramp_down", dn_r, net.gen_id, step_mw, -lim, mu)
        parts["binding"].append(pa.table({
            "hour": pa.array(hrs, pa.int64()), "kind": pa.array(kinds, pa.string()),
            "element_id": pa.array(ids, pa.int64()), "value_mw": pa.array(vals, pa.float64()),
            "limit_mw": pa.array(lims, pa.float64()), "shadow_price_per_mwh": pa.array(mus, pa.float64())}))
        demand = (load.sum(axis=0) + model.gs.sum()) * base
        parts["hours"].append(pa.table({
            "hour": pa.array(hours, pa.int64()), "window_start": pa.array(np.full(C, window_start), pa.int64()),
            "load_mw": pa.array(demand), "gen_mw": pa.array(pg.sum(axis=0)), "cost_per_h": pa.array(res.cost_h[:C]),
            "lmp_min": pa.array(np.nanmin(lmp, axis=0)), "lmp_max": pa.array(np.nanmax(lmp, axis=0)),
            "binding_branches": pa.array(n_branch_bind, pa.int64()),
            "window_solve_s": pa.array(np.full(C, secs))}))
        parts["dispatch"].append(pa.table({
            "hour": pa.array(np.repeat(hours, ng), pa.int64()), "gen_id": pa.array(np.tile(net.gen_id, C), pa.int64()),
            "bus_id": pa.array(np.tile(net.bus_id[net.gen_bus], C), pa.int64()),
            "pg_mw": pa.array(pg.T.ravel()), "cost_per_h": pa.array(res.gen_cost[:, :C].T.ravel())}))
        parts["lmp"].append(pa.table({
            "hour": pa.array(np.repeat(hours, nb), pa.int64()), "bus_id": pa.array(np.tile(net.bus_id, C), pa.int64()),
            "lmp_per_mwh": pa.array(lmp.T.ravel())}))
        nl = len(live)
        parts["flows"].append(pa.table({
            "hour": pa.array(np.repeat(hours, nl), pa.int64()),
            "branch_id": pa.array(np.tile(net.branch_id[live], C), pa.int64()),
            "flow_mw": pa.array(flow[live].T.ravel()),
            "limit_mw": pa.array(np.tile(np.where(rate[live] > 0, rate[live], np.inf), C)),
            "shadow_price_per_mwh": pa.array(res.branch_mu[live, :C].T.ravel())}))

    def summarize(self, rd, paths):
        import pyarrow.parquet as pq

        h = pq.read_table(paths["hours"])
        cost = h["cost_per_h"].to_numpy()
        out = {"hours": h.num_rows, "total_cost": float(cost.sum()), "mean_cost_per_h": float(cost.mean()),
               "horizon": rd.config["horizon"], "step": rd.config["step"], "ramp": bool(rd.config.get("ramp")),
               "lmp_min": float(np.nanmin(h["lmp_min"].to_numpy())), "lmp_max": float(np.nanmax(h["lmp_max"].to_numpy())),
               "congested_hours": int(np.sum(h["binding_branches"].to_numpy() > 0))}
        if "binding" in paths:
            b = pq.read_table(paths["binding"])
            kind = np.asarray(b["kind"].to_pylist(), dtype=object)
            ids = b["element_id"].to_numpy()
            br = ids[kind == "branch"]
            if br.size:
                u, c = np.unique(br, return_counts=True)
                order = np.argsort(-c, kind="stable")[:10]
                out["most_binding_branches"] = [{"branch_id": int(u[i]), "hours": int(c[i])} for i in order]
            out["binding_counts"] = {k: int(np.sum(kind == k)) for k in sorted(set(kind.tolist()))}
        return out
