"""AC power flow of one MATPOWER case with the peer tools (pandapower, lightsim2grid).

Runs inside .venv-peers/ (the peers need numpy >= 1.26; the project's venv keeps
numpy 1.24), started by benchmarks/acpf.py, which owns the gat-hpc side and the
table. Every tool starts from the voltages in START (npz: vm in p.u., va in
radians, one per bus in the case's bus order), stops at the same max mismatch
TOL (p.u. on the case's baseMVA) and hands back its voltages in the case's bus
order, so the driver can compare solutions bus by bus.

How the case reaches each tool:
- The .m file is parsed here into a PYPOWER case dict (``read_case``: the numeric
  baseMVA/bus/gen/branch matrices; names and costs are not needed). pandapower's
  own ``from_mpc`` reads .m files only through the extra package
  matpowercaseframes; we do what it does after parsing (tap 0 -> 1) and also
  renumber the buses to their row positions 0..n-1, so that every tool's bus i
  is the case's i-th bus.
- pandapower: ``from_ppc(ppc, f_hz=60)``, then ``runpp(algorithm='nr',
  numba=True, lightsim2grid=False)`` (pandapower would otherwise hand its Newton
  to lightsim2grid when installed) with ``init_vm_pu`` / ``init_va_degree`` arrays
  in bus order. Its ``tolerance_mva`` is compared with the p.u. mismatch, see
  ``pandapower_tolerance``.
- lightsim2grid: an LSGrid built from the same case dict by lightsim2grid's own
  MATPOWER importer (``lightsim2grid.network.init_from_matpower``), Newton-Raphson
  with KLU (``AlgorithmType.NR_KLU``, its default), ``ac_pf(V0, max_iter, tol)``.
  Building it from the pandapower net (``init_from_pandapower``) is not possible
  here: from_ppc turns every branch between two voltage levels with tap 0 or 1
  into a pandapower ``impedance`` element, which lightsim2grid rejects, and the
  MATPOWER importer keeps the case's own branch model. ``ac_pf`` takes its
  tolerance in MVA, see ``lightsim_tolerance``.

Timing (best of REPEAT after one warm-up run; file parsing and the ppc -> net
conversion are reported separately and not counted):
- pandapower total: the ``runpp`` call (ppc/Ybus build, Newton, results);
  solve-only: the time spent inside pandapower's ``newtonpf`` (wrapped with a timer).
- lightsim2grid total: building the LSGrid from the case dict + ``ac_pf``;
  solve-only: ``ac_pf`` alone (which assembles its Ybus/Sbus and runs Newton).

Output (npz): per tool ``<tool>_vm``, ``<tool>_va`` (radians, NaN where a tool
leaves a bus out) and ``meta``, a JSON string with versions, convergence,
iterations, timings (seconds) and notes.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
import time
import warnings

import numpy as np

# MATPOWER column indices (0-based)
BUS_I, BUS_TYPE, VM, VA = 0, 1, 7, 8
GEN_BUS = 0
F_BUS, T_BUS, TAP = 0, 1, 8

_MATRIX = r"mpc\.{name}\s*=\s*\[(?P<body>.*?)\]\s*;"


def _matrix(text, name, path):
    m = re.search(_MATRIX.format(name=name), text, re.S)
    if not m:
        raise SystemExit(f"peer_acpf: {path}: no 'mpc.{name} = [...];' matrix found")
    rows = [r.split() for r in re.split(r"[;\n]", m.group("body")) if r.strip()]
    width = max(len(r) for r in rows)
    out = np.zeros((len(rows), width))
    for i, r in enumerate(rows):
        out[i, :len(r)] = [float(x) for x in r]
    return out


def read_case(path):
    """Parse a MATPOWER version-2 .m case into a PYPOWER case dict (numeric tables only)."""
    with open(path, encoding="utf-8", errors="replace") as f:
        text = re.sub(r"%[^\n]*", "", f.read())  # comments
    m = re.search(r"mpc\.baseMVA\s*=\s*([-+0-9.eE]+)\s*;", text)
    if not m:
        raise SystemExit(f"peer_acpf: {path}: no 'mpc.baseMVA = ...;' found")
    return {"version": "2", "baseMVA": float(m.group(1)), "bus": _matrix(text, "bus", path),
            "gen": _matrix(text, "gen", path), "branch": _matrix(text, "branch", path)}


def to_positions(ppc):
    """Renumber buses to their row positions 0..n-1 (in place); returns the case's bus ids."""
    ids = ppc["bus"][:, BUS_I].astype(np.int64)
    order = np.argsort(ids)

    def pos(col):
        return order[np.searchsorted(ids, col.astype(np.int64), sorter=order)]

    ppc["gen"][:, GEN_BUS] = pos(ppc["gen"][:, GEN_BUS])
    ppc["branch"][:, F_BUS] = pos(ppc["branch"][:, F_BUS])
    ppc["branch"][:, T_BUS] = pos(ppc["branch"][:, T_BUS])
    ppc["bus"][:, BUS_I] = np.arange(len(ids))
    ppc["branch"][ppc["branch"][:, TAP] == 0, TAP] = 1  # as pandapower's from_mpc does
    return ids


def pandapower_tolerance(tol_pu):
    """The ``tolerance_mva`` that makes pandapower stop at ``tol_pu``.

    pandapower's newtonpf tests ``max|F| < tolerance_mva`` with F in p.u. of
    net.sn_mva, although the option is named (and documented) in MVA; so the
    p.u. value goes in unchanged. ``_pandapower_mismatch`` checks the mismatch
    actually reached after each solve.
    """
    return tol_pu


def _pandapower_mismatch(net):
    """Max |P, Q mismatch| in p.u. of pandapower's own model at its solution."""
    it = (net._ppc or {}).get("internal", {})
    if "V" not in it:
        return float("nan")
    V, ybus, sbus = it["V"], it["Ybus"], it["Sbus"]
    mis = V * np.conj(ybus @ V) - sbus
    pvpq = np.concatenate([it["pv"], it["pq"]])
    f = np.concatenate([mis[pvpq].real, mis[it["pq"]].imag])
    return float(np.max(np.abs(f))) if f.size else 0.0


def _best(runs, key):
    return min(r[key] for r in runs)


def run_pandapower(net, vm0, va0, tol, max_iter, repeat):
    """Solve with pandapower's runpp (NR, numba); returns (vm, va, info)."""
    import pandapower as pp
    from pandapower.pf import run_newton_raphson_pf as nr_module

    inner = nr_module.newtonpf
    spent = []

    def timed_newtonpf(*args, **kwargs):
        t0 = time.perf_counter()
        try:
            return inner(*args, **kwargs)
        finally:
            spent.append(time.perf_counter() - t0)

    nr_module.newtonpf = timed_newtonpf
    runs = []
    try:
        for k in range(repeat + 1):  # run 0 warms numba up and is not counted
            spent.clear()
            t0 = time.perf_counter()
            try:
                pp.runpp(net, algorithm="nr", numba=True, lightsim2grid=False,
                         init_vm_pu=vm0.copy(), init_va_degree=np.degrees(va0),
                         tolerance_mva=pandapower_tolerance(tol), max_iteration=max_iter,
                         calculate_voltage_angles=True, enforce_q_lims=False,
                         voltage_depend_loads=False)
                converged = bool(net.converged)
            except pp.LoadflowNotConverged:
                converged = False
            total = time.perf_counter() - t0
            if k:
                runs.append(dict(total=total, solve=sum(spent)))
    finally:
        nr_module.newtonpf = inner
    info = dict(converged=converged, iterations=int(net._ppc.get("iterations", -1)),
                total_s=_best(runs, "total"), solve_s=_best(runs, "solve"),
                mismatch_pu=_pandapower_mismatch(net))
    if not converged:
        nan = np.full(len(net.bus), np.nan)
        return nan, nan, info
    res = net.res_bus.loc[net.bus.index]
    return res["vm_pu"].to_numpy(float), np.radians(res["va_degree"].to_numpy(float)), info


def lightsim_tolerance(tol_pu, sn_mva):
    """The ``tol`` argument that makes lightsim2grid's ``ac_pf`` stop at ``tol_pu``.

    ``ac_pf`` divides its tolerance by sn_mva before comparing it with the p.u.
    mismatch (measured: on case_ACTIVSg2000, tol=1.03e-7 stops at a mismatch
    of 1.02e-9 p.u., tol=1.02e-7 takes one more step), so it takes MVA.
    ``_lightsim_mismatch`` checks the mismatch actually reached.
    """
    return tol_pu * sn_mva


def _lightsim_mismatch(model):
    """Max |P, Q mismatch| in p.u. of lightsim2grid's own model at its solution."""
    ybus, sbus, V = model.get_Ybus_solver(), model.get_Sbus_solver(), model.get_V_solver()
    pv, pq = model.get_pv_solver(), model.get_pq_solver()
    mis = V * np.conj(ybus @ V) - sbus
    f = np.concatenate([mis[np.concatenate([pv, pq])].real, mis[pq].imag])
    return float(np.max(np.abs(f))) if f.size else 0.0


def run_lightsim2grid(ppc, vm0, va0, tol, max_iter, repeat):
    """Solve with a lightsim2grid LSGrid (Newton-Raphson + KLU); returns (vm, va, info)."""
    from lightsim2grid.algorithm import AlgorithmType
    from lightsim2grid.network import init_from_matpower

    V0 = vm0 * np.exp(1j * va0)
    runs = []
    for k in range(repeat + 1):  # run 0 is a warm-up, as for the other tools
        t0 = time.perf_counter()
        model = init_from_matpower(ppc)
        model.change_algorithm(AlgorithmType.NR_KLU)
        t1 = time.perf_counter()
        V = model.ac_pf(V0.copy(), max_iter, lightsim_tolerance(tol, model.get_sn_mva()))
        t2 = time.perf_counter()
        if k:
            runs.append(dict(total=t2 - t0, solve=t2 - t1))
    converged = V.size > 0
    info = dict(converged=bool(converged), iterations=int(model.get_algo().get_nb_iter()),
                total_s=_best(runs, "total"), solve_s=_best(runs, "solve"),
                mismatch_pu=_lightsim_mismatch(model) if converged else float("nan"),
                algorithm=str(model.get_algo_type()).split(".")[-1])
    if not converged:
        nan = np.full(len(vm0), np.nan)
        return nan, nan, info
    return np.abs(V), np.angle(V), info

TOOLS = ("pandapower", "lightsim2grid")


def _versions():
    from importlib.metadata import version

    return {name: version(name) for name in ("pandapower", "numba", "lightsim2grid", "numpy", "scipy")}


def _copy_case(ppc):
    return {k: (v.copy() if isinstance(v, np.ndarray) else v) for k, v in ppc.items()}


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("case", help="MATPOWER .m case file")
    ap.add_argument("--start", required=True, help="npz with vm (p.u.) and va (rad) per bus, case order")
    ap.add_argument("--out", required=True, help="output npz")
    ap.add_argument("--tol", type=float, default=1e-8, help="max mismatch, p.u. (default 1e-8)")
    ap.add_argument("--max-iter", type=int, default=30)
    ap.add_argument("--repeat", type=int, default=3, help="timed runs after one warm-up (best is kept)")
    ap.add_argument("--tools", default=",".join(TOOLS), help=f"comma-separated subset of {','.join(TOOLS)}")
    args = ap.parse_args(argv)
    tools = [t for t in args.tools.split(",") if t]
    unknown = set(tools) - set(TOOLS)
    if unknown:
        raise SystemExit(f"peer_acpf: unknown tool(s) {', '.join(sorted(unknown))}; expected {', '.join(TOOLS)}")
    warnings.simplefilter("ignore")  # the peers warn about deprecated modules and converter guesses
    import logging

    logging.disable(logging.WARNING)  # pandapower's converter logs each model change it makes

    t0 = time.perf_counter()
    ppc = read_case(args.case)
    t_parse = time.perf_counter() - t0
    case_ids = to_positions(ppc)
    start = np.load(args.start)
    vm0, va0 = np.asarray(start["vm"], float), np.asarray(start["va"], float)
    if len(vm0) != len(case_ids):
        raise SystemExit(f"peer_acpf: {args.start} has {len(vm0)} buses but {args.case} has {len(case_ids)}")

    meta = dict(case=args.case, tol_pu=args.tol, max_iter=args.max_iter, repeat=args.repeat,
                versions=_versions(), parse_s=t_parse, tools={})
    arrays = {}
    if "lightsim2grid" in tools:
        vm, va, info = run_lightsim2grid(_copy_case(ppc), vm0, va0, args.tol, args.max_iter, args.repeat)
        arrays.update(lightsim2grid_vm=vm, lightsim2grid_va=va)
        meta["tools"]["lightsim2grid"] = info
    if "pandapower" in tools:
        from pandapower.converter.pypower import from_ppc

        t0 = time.perf_counter()
        net = from_ppc(_copy_case(ppc), f_hz=60)
        t_conv = time.perf_counter() - t0
        vm, va, info = run_pandapower(net, vm0, va0, args.tol, args.max_iter, args.repeat)
        info["convert_s"] = t_conv
        info["elements"] = {k: int(len(net[k])) for k in ("line", "trafo", "impedance", "ext_grid", "gen", "sgen")}
        arrays.update(pandapower_vm=vm, pandapower_va=va)
        meta["tools"]["pandapower"] = info
    np.savez(args.out, meta=json.dumps(meta), **arrays)
    return 0


if __name__ == "__main__":
    sys.exit(main())
