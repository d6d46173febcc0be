"""Capacity outage probability table (COPT): exact copperplate adequacy indices by convolution.

Two-state units with capacity ``c_u`` and forced outage rate ``q_u`` fail independently; the
probability that exactly ``k * step`` MW are on outage is built one unit at a time::

    P_0 = [1],    P_u[k] = (1 - q_u) * P_{u-1}[k] + q_u * P_{u-1}[k - c_u / step]

with ``step`` the greatest common divisor of the (integer, quantised) capacities, so the table
has ``sum(c_u) / step + 1`` entries. For an hour with load ``L`` and installed capacity ``C``
(random units plus units that never fail) the loss-of-load rule is *available strictly below
load*, i.e. outage ``k * step > C - L``::

    LOLP_h = sum_{k * step > C - L} P[k]
    EUE_h  = sum_{k * step > C - L} P[k] * (L - C + k * step)     (MWh, hours of one hour)

and LOLE = sum_h LOLP_h, EUE = sum_h EUE_h over the profile's hours. The sequential
(Markov) sampler starts every unit from this same stationary distribution, so both Monte-Carlo
methods estimate exactly these values; the tests use this module as their reference.

Everything is in integer quanta (1 kW by default, see :mod:`gat_hpc.studies.adequacy`), so
the comparison with the load is exact and ties are served.
"""

from __future__ import annotations

import numpy as np

from gat_hpc.errors import InputError

MAX_TABLE = 50_000_000  # entries; beyond that the user must give a coarser --copt-step


def outage_table(cap_q, q, step=None):
    """(P, step, modelled_q): P[k] = probability that k * step quanta are on outage.

    ``cap_q``: integer capacities in quanta (int64 or integer-valued floats), ``q``: forced
    outage rates in [0, 1]. ``step`` (quanta) defaults to the gcd of the capacities; a
    coarser step rounds every capacity to the nearest multiple of it (an approximation the
    caller asked for). ``modelled_q`` is the total capacity of all the units as the table
    sees them (equal to ``sum(cap_q)`` with the exact step).
    """
    cap = np.asarray(np.rint(cap_q), dtype=np.int64)
    q = np.asarray(q, dtype=np.float64)
    if cap.shape != q.shape:
        raise InputError(f"give one outage rate per unit ({cap.size}), got {q.size}")
    live = (cap > 0) & (q > 0)
    sure = float(cap[~live].sum())  # units that never fail count in full
    cap, q = cap[live], q[live]
    if cap.size == 0:
        return np.ones(1), 1, sure
    if step is None:
        step = int(np.gcd.reduce(cap))
    else:
        step = int(step)
        if step < 1:
            raise InputError("the COPT step must be at least one quantum")
        cap = np.maximum(np.rint(cap / step).astype(np.int64), 1) * step
    units = cap // step
    size = int(units.sum()) + 1
    if size > MAX_TABLE:
        raise InputError(f"the capacity outage table would have {size:,} entries (step {step} quanta); "
                         f"give a coarser --copt-step-mw so that it stays below {MAX_TABLE:,}")
    p = np.zeros(size)
    p[0] = 1.0
    top = 0  # highest reachable index so far: each unit only touches p[:top + c + 1]
    for c, qu in zip(units.tolist(), q.tolist()):
        shifted = p[:top + 1].copy()
        p[:top + 1] *= 1.0 - qu
        p[c:top + c + 1] += qu * shifted
        top += c
    return p, step, sure + float(cap.sum())


def hourly_indices(p, step, total_q, load_q, quantum_mw):
    """Per-hour LOLP and expected unserved energy (MWh) from an outage table.

    ``total_q``: installed capacity in quanta (random units + units that never fail, the
    always-out ones excluded); ``load_q``: load per hour in quanta. Returns (lolp, eue_mwh),
    arrays over hours.
    """
    load_q = np.asarray(load_q, dtype=np.float64)
    k = np.arange(len(p), dtype=np.float64)
    # tails from the top: t0[j] = sum_{k >= j} P[k], t1[j] = sum_{k >= j} k P[k]
    t0 = np.append(np.cumsum(p[::-1])[::-1], 0.0)
    t1 = np.append(np.cumsum((k * p)[::-1])[::-1], 0.0)
    margin = total_q - load_q  # an outage above this margin loses load
    # first outage index that loses load: the smallest k with k * step > margin
    first = np.clip(np.floor(margin / step).astype(np.int64) + 1, 0, len(p))
    lolp = t0[first]
    eue_q = (load_q - total_q) * t0[first] + step * t1[first]
    return np.minimum(lolp, 1.0), np.maximum(eue_q, 0.0) * quantum_mw


def exact_indices(cap_q, q, fixed_q, load_q, quantum_mw, step=None):
    """(LOLE h, EUE MWh, LOLP) totals over the hours of ``load_q``; see the module docstring.

    ``cap_q``, ``q``: the units that may fail (quanta, rates); ``fixed_q``: capacity that never
    fails (quanta); ``load_q``: load per hour (quanta).
    """
    p, step, modelled = outage_table(cap_q, q, step)
    lolp_h, eue_h = hourly_indices(p, step, modelled + float(fixed_q), load_q, quantum_mw)
    lole = float(lolp_h.sum())
    return lole, float(eue_h.sum()), lole / max(len(load_q), 1)
