"""How generation follows an hourly load: proportional re-dispatch within limits, or the slack.

``proportional``: every in-service generator's output is scaled in proportion to its case
dispatch so that total generation meets total demand (load + shunt conductance losses in DC);
a generator that would leave [min(Pmin, case Pg), max(Pmax, case Pg)] is held at the bound and the remainder is shared by
the others (repeated until nothing moves). When demand is below what the units can go down
to (light hours: the sum of their Pmin), Pmin is relaxed to 0 for that hour — units below
Pmin are in effect decommitted — so generation still meets demand; ``pmin_relaxed`` tells
which hours. When demand exceeds the total Pmax the generators sit at Pmax and the shortfall
is returned (``unmet``), so it is never silently absorbed by the slack.
``slack``: the case dispatch is kept and the slack takes the whole difference.
"""

from __future__ import annotations

import numpy as np

DISPATCH_CHOICES = ("proportional", "slack")


def pmin_relaxed(pg0, pmin, pmax, on, demand):
    """Hours (bool per demand value) whose demand is below the fleet's lower bounds."""
    lo = np.where(on, np.minimum(np.minimum(pmin, pmax), pg0), 0.0).sum()
    return np.atleast_1d(np.asarray(demand, dtype=float)) < lo - 1e-9


def proportional_dispatch(pg0, pmin, pmax, on, demand, max_rounds=50):
    """Generator outputs (n_gen x H, p.u.) meeting ``demand`` (H,) where the limits allow.

    ``pg0``: case dispatch (the shares), ``on``: in-service mask. Returns (pg, shortfall) where
    shortfall (H,) = demand - sum(pg), nonzero only when the limits bind for the whole fleet.
    """
    demand = np.atleast_1d(np.asarray(demand, dtype=float))
    h = demand.size
    # the case's own dispatch always counts as feasible: a unit the case runs below Pmin (or
    # not at all) is not pushed up to Pmin, nor one above Pmax pulled down
    lo = np.where(on, np.minimum(np.minimum(pmin, pmax), pg0), 0.0)[:, None] * np.ones(h)
    lo[:, pmin_relaxed(pg0, pmin, pmax, on, demand)] = 0.0
    hi = np.where(on, np.maximum(pmax, pg0), 0.0)[:, None] * np.ones(h)
    share = np.where(on, np.maximum(pg0, 0.0), 0.0)
    if share.sum() <= 0:  # no dispatch to scale by: share by capacity instead
        share = np.where(on, np.maximum(pmax, 0.0), 0.0)
    share = share[:, None] * np.ones(h)
    pg = np.clip(share, lo, hi)
    fixed = np.zeros_like(pg, dtype=bool)
    for _ in range(max_rounds):
        free = ~fixed & (share > 0)
        need = demand - pg.sum(axis=0)
        free_share = (share * free).sum(axis=0)
        active = (np.abs(need) > 1e-12) & (free_share > 0)
        if not np.any(active):
            break
        step = np.where(active, need / np.where(free_share > 0, free_share, 1.0), 0.0)
        trial = np.where(free, pg + share * step[None, :], pg)
        over, under = trial > hi, trial < lo
        pg = np.clip(trial, lo, hi)
        moved = (over | under) & free
        if not np.any(moved):
            break
        fixed |= moved
    return pg, demand - pg.sum(axis=0)


def hourly_dispatch(net, mode, demand):
    """Per-hour generator outputs (n_gen x H, p.u.) and the demand left to the slack (H,)."""
    on = net.gen_status
    demand = np.atleast_1d(np.asarray(demand, dtype=float))
    if mode == "slack":
        pg = np.where(on, net.pg, 0.0)[:, None] * np.ones(demand.size)
        return pg, demand - pg.sum(axis=0)
    if mode == "proportional":
        return proportional_dispatch(net.pg, net.pmin, net.pmax, on, demand)
    from gat_hpc.errors import InputError

    raise InputError(f"unknown --dispatch '{mode}' (expected one of {', '.join(DISPATCH_CHOICES)})")
