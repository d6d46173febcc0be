"""The independent reference: PYPOWER (a Python port of MATPOWER) run on the raw case matrices.

PYPOWER's own Q-limit enforcement fails on current numpy (it indexes with float bus
numbers), so ``pypower_pf(..., q_limits=True)`` drives PYPOWER's Newton solver with
MATPOWER's outer loop (runpf with pf.enforce_q_lims = 1) written out here on the
MATPOWER matrices: violating generators are fixed at the limit and removed into the load,
their buses become PQ, and a slack bus that loses its role passes it to the first PV bus.
"""

import contextlib
import io

import numpy as np

from gat_hpc.network.matpower import parse_matpower

# MATPOWER column indices (0-based)
BUS_TYPE, PD, QD, VM, VA = 1, 2, 3, 7, 8
GEN_BUS, PG, QG, QMAX, QMIN, VG, GEN_STATUS = 0, 1, 2, 3, 4, 5, 7
PF, QF, PT, QT = 13, 14, 15, 16


def load_mpc(path):
    with open(path) as fh:
        return parse_matpower(fh.read(), path)


def _runpf(ppc, tol, max_it):
    from pypower.api import ppoption, runpf

    opt = ppoption(VERBOSE=0, OUT_ALL=0, PF_TOL=tol, PF_MAX_IT=max_it, ENFORCE_Q_LIMS=0)
    with contextlib.redirect_stdout(io.StringIO()):
        res, ok = runpf(ppc, opt)
    return res, bool(ok)


def _fill_unbounded_q(res, row):
    """Where PYPOWER's Q sharing gives NaN (a bus whose generators have unbounded Q range),
    share that bus's generator Q equally; the bus total comes from the branch flows."""
    bus, gen, br = res["bus"], res["gen"], res["branch"]
    nan = np.isnan(gen[:, QG]) & (gen[:, GEN_STATUS] > 0)
    if not nan.any():
        return
    nb = len(bus)
    f = np.array([row[int(b)] for b in br[:, 0]])
    t = np.array([row[int(b)] for b in br[:, 1]])
    live = br[:, 10] > 0
    q_inj = np.zeros(nb)
    np.add.at(q_inj, f[live], br[live, QF])
    np.add.at(q_inj, t[live], br[live, QT])
    q_inj -= bus[:, 5] * bus[:, VM] ** 2  # a shunt susceptance Bs (MVAr at 1 p.u.) supplies Bs V^2
    q_gen_bus = q_inj + bus[:, QD]
    g_row = np.array([row[int(b)] for b in gen[:, GEN_BUS]])
    on = gen[:, GEN_STATUS] > 0
    known = np.zeros(nb)
    np.add.at(known, g_row[on & ~nan], gen[on & ~nan, QG])
    count = np.bincount(g_row[nan], minlength=nb)
    gen[nan, QG] = (q_gen_bus - known)[g_row[nan]] / count[g_row[nan]]


def pypower_pf(path, q_limits=False, tol=1e-10, max_it=30):
    """Solve with PYPOWER; returns the result dict (bus, gen, branch in MATPOWER units) and success."""
    mpc = load_mpc(path)
    bus, gen, branch = mpc["bus"].copy(), mpc["gen"].copy(), mpc["branch"].copy()
    row = {int(b): i for i, b in enumerate(bus[:, 0])}
    gen_row = np.array([row[int(b)] for b in gen[:, GEN_BUS]])
    limited = np.zeros(len(gen), dtype=bool)
    fixed_q = np.zeros(len(gen))
    fixed_p = np.zeros(len(gen))
    for _ in range(100):
        ppc = {"version": "2", "baseMVA": mpc["baseMVA"], "bus": bus.copy(), "gen": gen.copy(), "branch": branch.copy()}
        res, ok = _runpf(ppc, tol, max_it)
        if ok:
            _fill_unbounded_q(res, row)
        if not ok or not q_limits:
            break
        rg = res["gen"]
        on = rg[:, GEN_STATUS] > 0
        over = on & (rg[:, QG] > rg[:, QMAX] + 5e-6)
        under = on & (rg[:, QG] < rg[:, QMIN] - 5e-6)
        hit = over | under
        if not hit.any():
            break
        fixed_q[over] = rg[over, QMAX]
        fixed_q[under] = rg[under, QMIN]
        bus, gen = res["bus"].copy(), rg.copy()
        fixed_p[hit] = rg[hit, PG]
        gen[hit, QG] = fixed_q[hit]
        gen[hit, GEN_STATUS] = 0
        np.subtract.at(bus[:, PD], gen_row[hit], gen[hit, PG])
        np.subtract.at(bus[:, QD], gen_row[hit], gen[hit, QG])
        bus[gen_row[hit], BUS_TYPE] = 1
        limited |= hit
        has_gen = np.zeros(len(bus), dtype=bool)
        has_gen[gen_row[gen[:, GEN_STATUS] > 0]] = True
        if not np.any((bus[:, BUS_TYPE] == 3) & has_gen):
            pv = np.flatnonzero((bus[:, BUS_TYPE] == 2) & has_gen)
            bus[pv[0], BUS_TYPE] = 3
    # put the limited generators back, at their limits
    gen = res["gen"]
    bus = res["bus"]
    gen[limited, QG] = fixed_q[limited]
    gen[limited, PG] = fixed_p[limited]
    gen[limited, GEN_STATUS] = 1
    np.add.at(bus[:, PD], gen_row[limited], gen[limited, PG])
    np.add.at(bus[:, QD], gen_row[limited], gen[limited, QG])
    res["limited"] = limited
    return res, ok
