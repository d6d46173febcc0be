"""DC power flow: the linear B-theta model of MATPOWER's ``makeBdc`` / ``dcpf`` / ``rundcpf``.

Model and sign convention (everything per-unit on ``net.base_mva``, angles in radians).
For an in-service branch k from bus f to bus t with reactance x_k, off-nominal tap ratio
tau_k (1 where the case gives 0) and phase shift phi_k::

    b_k   = 1 / (x_k * tau_k)                      series susceptance seen by the DC model
    P_f,k = b_k * (theta_f - theta_t - phi_k)      flow leaving f towards t; P_t,k = -P_f,k

Resistance, line charging and shunt susceptance are ignored; the tap only scales b_k.
Written as matrices, with ``Cft = Cf - Ct`` (branch x bus, +1 at the from bus, -1 at the to
bus)::

    Bf      = diag(b) @ Cft            P_f     = Bf @ theta + Pfinj
    Pfinj   = -b * phi                 (a phase shifter looks like a fixed flow offset)
    Bbus    = Cft.T @ Bf               P_bus   = Bbus @ theta + Pbusinj   (net injection)
    Pbusinj = Cft.T @ Pfinj = Cf.T @ Pfinj - Ct.T @ Pfinj

so the angles solve ``Bbus @ theta = P_bus - Pbusinj`` with P_bus = generation - load -
shunt conductance G (shunts at 1 p.u. voltage), exactly as MATPOWER's ``rundcpf``.
Out-of-service branches, and branches touching an isolated (type 4) bus, get b_k = 0:
their rows of ``Bf`` and ``Pfinj`` are zero.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import numpy as np
import scipy.sparse as sp
from scipy.sparse.linalg import splu

from gat_hpc.errors import InputError
from gat_hpc.pf.topology import BusTypes, bus_types


def branch_susceptance(net, branch_mask=None):
    """DC series susceptance b_k = 1 / (x_k * tau_k) per branch, p.u.; 0 where not in service.

    ``branch_mask`` (bool per branch) further restricts the in-service set, as in
    :func:`gat_hpc.pf.topology.islands`. An in-service branch with x = 0 has no DC model
    (MATPOWER would divide by zero): InputError naming it.
    """
    on = net.branch_in_service()
    if branch_mask is not None:
        on = on & np.asarray(branch_mask, dtype=bool)
    zero_x = on & (net.x == 0)
    if np.any(zero_x):
        k = int(np.flatnonzero(zero_x)[0])
        where = net.source or net.name or "case"
        raise InputError(
            f"{where}: branch {net.branch_id[k]} ({net.bus_id[net.f_bus[k]]}-{net.bus_id[net.t_bus[k]]}) "
            "has zero reactance x; the DC power flow needs x != 0 on every in-service branch")
    tau = np.where(net.tap == 0, 1.0, net.tap)
    # divide only where in service so that x = 0 on an open branch raises no warning
    b = np.zeros(net.n_branch)
    np.divide(1.0, net.x * tau, out=b, where=on)
    return b


def incidence(net):
    """Branch-bus incidence ``Cft = Cf - Ct`` (n_branch x n_bus, CSR): +1 at f, -1 at t."""
    nl, nb = net.n_branch, net.n_bus
    rows = np.concatenate([np.arange(nl), np.arange(nl)])
    cols = np.concatenate([net.f_bus, net.t_bus])
    vals = np.concatenate([np.ones(nl), -np.ones(nl)])
    return sp.csr_matrix((vals, (rows, cols)), shape=(nl, nb))


def make_bdc(net, branch_mask=None):
    """The DC model matrices, as MATPOWER's ``makeBdc``; see the module docstring for signs.

    Returns ``(Bbus, Bf, Pbusinj, Pfinj)``:
    ``Bbus`` (n_bus x n_bus, CSC, p.u./rad), ``Bf`` (n_branch x n_bus, CSR, p.u./rad),
    ``Pbusinj`` (n_bus, p.u.) and ``Pfinj`` (n_branch, p.u.) such that
    ``P_from = Bf @ theta + Pfinj`` and ``P_bus = Bbus @ theta + Pbusinj``.
    ``branch_mask`` (bool per branch) takes further branches out of service.
    """
    b = branch_susceptance(net, branch_mask)
    cft = incidence(net)
    bf = sp.diags(b) @ cft
    bf.eliminate_zeros()  # open branches leave explicit zeros behind
    bbus = (cft.T @ bf).tocsc()
    bbus.eliminate_zeros()
    pfinj = -b * net.shift
    pbusinj = cft.T @ pfinj
    return bbus, bf.tocsr(), pbusinj, pfinj


def factor_reduced(bbus, keep, where="case"):
    """Factors of ``Bbus[keep][:, keep]`` (the angle equations of the non-slack buses).

    KLU where libklu loads (about twice as fast as SuperLU on these matrices), else scipy's
    SuperLU; either has ``solve(rhs)`` for one or many right-hand sides. ``None`` when
    ``keep`` is empty. A singular reduced matrix (an island that is held together only by
    reactances summing to zero) is an InputError.
    """
    from gat_hpc.errors import ConvergenceError
    from gat_hpc.pf import klu

    if len(keep) == 0:
        return None
    bred = bbus[keep][:, keep]
    if klu.available():
        try:
            return klu.KLUFactor(bred)
        except ConvergenceError as exc:
            raise InputError(f"{where}: the DC susceptance matrix is singular ({exc}); "
                             "check for branch reactances that cancel each other") from None
    try:
        return splu(bred.tocsc())
    except RuntimeError as exc:  # SuperLU reports "Factor is exactly singular"
        raise InputError(f"{where}: the DC susceptance matrix is singular ({exc}); "
                         "check for branch reactances that cancel each other") from None


@dataclass
class DCResult:
    """A solved DC power flow.

    ``va``: bus voltage angles, rad (0 for dead buses);
    ``p_from``: active power leaving the from bus, p.u. per branch (0 when out of service;
    the to-end flow is ``-p_from``); ``pg``: generator outputs, p.u., with the slack
    generators updated so that every island balances (0 for out-of-service generators); ``slack_gen``: the generator
    (internal index) that took each slack bus's change, in the order of ``types.ref``;
    ``slack_delta``: that change, p.u.; ``p_bus``: net bus injections (generation - load -
    shunt G) after the update, p.u.; ``types``: the bus roles used; ``timings``: seconds
    spent in ``build``, ``factor`` and ``solve``.
    """

    va: np.ndarray
    p_from: np.ndarray
    pg: np.ndarray
    slack_gen: np.ndarray
    slack_delta: np.ndarray
    p_bus: np.ndarray
    types: BusTypes
    base_mva: float
    timings: dict = field(default_factory=dict)

    @property
    def va_deg(self):
        """Bus voltage angles, degrees."""
        return np.rad2deg(self.va)

    @property
    def p_from_mw(self):
        """From-end branch flows, MW."""
        return self.p_from * self.base_mva

    @property
    def pg_mw(self):
        """Generator outputs after the slack update, MW."""
        return self.pg * self.base_mva


def bus_injection(net):
    """Scheduled net active injection per bus, p.u.: in-service generation - load - shunt G."""
    return net.bus_gen().real - net.bus_load().real - net.bus_shunt().real


def slack_generators(net, ref):
    """The first in-service generator (lowest row) at each bus of ``ref``, as MATPOWER's rundcpf."""
    on = np.flatnonzero(net.gen_status)
    buses, first = np.unique(net.gen_bus[on], return_index=True)
    # bus_types only makes a bus REF while it has an in-service generator, so every ref is found
    return on[first[np.searchsorted(buses, ref)]]


def solve_dc(net):
    """Solve the DC power flow of ``net`` (MATPOWER's ``rundcpf``); returns a :class:`DCResult`.

    The slack buses come from :func:`gat_hpc.pf.topology.bus_types` (one or more per island;
    an island with load or generation but no slack is an InputError). Their angles are held at
    the case's ``va``, the other energised buses' angles solve the reduced system
    ``Bbus[x, x] @ theta_x = P_x - Pbusinj_x - Bbus[x, ref] @ theta_ref``, and the first
    in-service generator at each slack bus takes up that bus's imbalance.
    """
    where = net.source or net.name or "case"
    t0 = time.perf_counter()
    types = bus_types(net)
    bbus, bf, pbusinj, pfinj = make_bdc(net)
    p_sched = bus_injection(net)
    rhs_all = p_sched - pbusinj
    ref = types.ref
    solve_idx = np.sort(np.concatenate([types.pv, types.pq]))
    va = np.zeros(net.n_bus)
    va[ref] = net.va[ref]
    t1 = time.perf_counter()
    lu = factor_reduced(bbus, solve_idx, where)
    t2 = time.perf_counter()
    if lu is not None:
        rhs = rhs_all[solve_idx] - bbus[solve_idx][:, ref] @ va[ref]
        va[solve_idx] = lu.solve(rhs)
    p_from = bf @ va + pfinj
    # a de-energised island carries no flow, even through a phase shifter
    dead = np.zeros(net.n_bus, dtype=bool)
    dead[types.dead] = True
    p_from[dead[net.f_bus] | dead[net.t_bus]] = 0.0
    # slack update: new Pg = old Pg + (injection the angles need - scheduled injection)
    slack_delta = bbus[ref] @ va - rhs_all[ref]
    slack_gen = slack_generators(net, ref)
    # out-of-service generators produce nothing (MATPOWER's runpf reports 0 for them too)
    pg = np.where(net.gen_status, net.pg, 0.0)
    np.add.at(pg, slack_gen, slack_delta)
    p_bus = p_sched.copy()
    p_bus[ref] += slack_delta
    p_bus[dead] = 0.0
    t3 = time.perf_counter()
    return DCResult(va=va, p_from=p_from, pg=pg, slack_gen=slack_gen, slack_delta=slack_delta,
                    p_bus=p_bus, types=types, base_mva=net.base_mva,
                    timings={"build": t1 - t0, "factor": t2 - t1, "solve": t3 - t2})
