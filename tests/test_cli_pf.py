"""`gat-hpc pf` end to end: outputs, schemas, exit codes and messages for bad input."""

import json
import os
import re
import subprocess
import sys

import numpy as np
import pyarrow.parquet as pq

from tests.conftest import case_path
from tests.oracle import PF, VA, VM, pypower_pf

BUS_COLS = ["bus_id", "bus_name", "vm_pu", "va_deg", "bus_type", "p_mw", "q_mvar"]
FLOW_COLS = ["branch_id", "from_bus", "to_bus", "flow_mw", "p_from_mw", "q_from_mvar", "p_to_mw",
             "q_to_mvar", "loading_pct"]


def gat(*args):
    exe = os.path.join(os.path.dirname(sys.executable), "gat-hpc")
    return subprocess.run([exe, *map(str, args)], capture_output=True, text=True, timeout=300)


def test_pf_ac_writes_tables_matching_pypower(tmp_path):
    out = tmp_path / "pf"
    r = gat("pf", "ac", case_path("case118"), "--out", out, "--quiet")
    assert r.returncode == 0, r.stderr
    assert r.stderr == ""
    buses = pq.read_table(out / "buses.parquet")
    flows = pq.read_table(out / "flows.parquet")
    assert buses.column_names == BUS_COLS
    assert flows.column_names == FLOW_COLS
    ref, _ = pypower_pf(case_path("case118"))
    assert np.allclose(buses["vm_pu"].to_numpy(), ref["bus"][:, VM], atol=1e-6, rtol=0)
    assert np.allclose(buses["va_deg"].to_numpy(), ref["bus"][:, VA], atol=1e-4, rtol=0)
    assert np.allclose(flows["p_from_mw"].to_numpy(), ref["branch"][:, PF], atol=1e-3, rtol=0)
    assert buses["bus_id"].to_pylist() == [int(b) for b in ref["bus"][:, 0]]
    assert flows["branch_id"].to_pylist() == list(range(1, len(ref["branch"]) + 1))
    s = json.loads((out / "summary.json").read_text())
    assert s["converged"] is True and s["iterations"] >= 1
    assert s["max_p_mismatch_mw"] < 1e-6 and s["max_q_mismatch_mvar"] < 1e-6
    for k in ("read", "solve", "write"):
        assert s["timings_s"][k] > 0
    # generation = load + losses (MW balance of the solution)
    assert abs(s["total_gen_mw"] - s["total_load_mw"] - s["losses_mw"]) < 1e-6


def test_pf_ac_q_limits_flag(tmp_path):
    out = tmp_path / "pfq"
    r = gat("pf", "ac", case_path("case118"), "--out", out, "--q-limits", "--quiet")
    assert r.returncode == 0, r.stderr
    s = json.loads((out / "summary.json").read_text())
    ref, _ = pypower_pf(case_path("case118"), q_limits=True)
    assert sorted(s["q_limited_gen_ids"]) == sorted((np.flatnonzero(ref["limited"]) + 1).tolist())
    gens = pq.read_table(out / "generators.parquet")
    assert gens["q_limited"].to_numpy().sum() == len(s["q_limited_gen_ids"])


def _case9_text():
    with open(case_path("case9")) as fh:
        return fh.read()


def _write(tmp_path, name, text):
    p = tmp_path / name
    p.write_text(text)
    return p


def _edit_rows(text, table, fn):
    """Apply fn(list_of_float_rows) to mpc.<table> of a case text, return the new text."""
    start = text.index(f"mpc.{table} = [")
    end = text.index("];", start)
    rows = [r.strip().rstrip(";").split() for r in text[start:end].splitlines()[1:] if r.strip()]
    rows = fn(rows)
    body = "\n".join("\t" + "\t".join(r) + ";" for r in rows)
    return text[:start] + f"mpc.{table} = [\n{body}\n" + text[end:]


def _bad_cases(tmp_path):
    t = _case9_text()
    cut = t.index("mpc.branch = [") + 120
    yield "missing", tmp_path / "nope.m", 2, r"nope\.m: no such file"
    yield "truncated", _write(tmp_path, "trunc.m", t[:cut]), 2, r"trunc\.m:\d+: mpc\.branch is not closed"
    yield ("unknown bus", _write(tmp_path, "unknown.m", _edit_rows(t, "branch", lambda r: [["1", "99"] + r[0][2:]] + r[1:])),
           2, r"branch row 1 refers to unknown bus 99")
    yield ("no slack", _write(tmp_path, "noslack.m", _edit_rows(t, "bus", lambda r: [[r[0][0], "2"] + r[0][2:]] + r[1:])),
           2, r"no slack bus")
    yield ("gens out", _write(tmp_path, "gensout.m", _edit_rows(t, "gen", lambda r: [x[:7] + ["0"] + x[8:] for x in r])),
           2, r"every generator is out of service")
    # taking out branches 6-7 and 8-9 leaves buses 2, 7, 8 (generator 2 but no slack) on their own
    island = _edit_rows(t, "branch", lambda r: [x[:10] + (["0"] if (x[0], x[1]) in {("6", "7"), ("8", "9")} else [x[10]]) + x[11:] for x in r])
    yield "island", _write(tmp_path, "island.m", island), 2, r"2 islands and island 2 \(3 buses: 2, 7, 8\) has no slack bus"
    heavy = _edit_rows(t, "bus", lambda r: [x[:2] + [str(float(x[2]) * 12), str(float(x[3]) * 12)] + x[4:] for x in r])
    yield "diverges", _write(tmp_path, "heavy.m", heavy), 3, r"did not converge in \d+ iterations: max mismatch"
    yield "not a case", _write(tmp_path, "junk.m", "function x = y\nx = 3;\n"), 2, r"not a MATPOWER case: mpc\.baseMVA is missing"
    yield ("non-numeric", _write(tmp_path, "nan.m", t.replace("mpc.gen = [\n\t1\t72.3", "mpc.gen = [\n\t1\tabc")),
           2, r"nan\.m:\d+: mpc\.gen holds 'abc'")


def test_bad_input_exits_nonzero_with_one_clear_line_and_keeps_old_output(tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    (out / "keep.txt").write_text("earlier results")
    for label, path, code, pattern in _bad_cases(tmp_path):
        r = gat("pf", "ac", path, "--out", out, "--quiet")
        assert r.returncode == code, (label, r.returncode, r.stderr)
        lines = r.stderr.strip().splitlines()
        assert len(lines) == 2, (label, r.stderr)  # the error, then the doc page to read
        assert lines[0].startswith("gat-hpc: error: "), (label, r.stderr)
        assert lines[1].startswith("gat-hpc: see docs/") and "`gat-hpc pf --help`" in lines[1], (label, r.stderr)
        assert re.search(pattern, lines[0]), (label, lines[0])
        assert "Traceback" not in r.stderr
        # the earlier output is untouched and nothing half-written is left beside it
        assert sorted(os.listdir(out)) == ["keep.txt"], label
        assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith(".")) == [], label


def test_non_convergence_reports_mismatch_with_max_iter(tmp_path):
    r = gat("pf", "ac", case_path("case300"), "--out", tmp_path / "o", "--max-iter", "1", "--init", "flat")
    assert r.returncode == 3
    assert re.search(r"did not converge in 1 iterations: max mismatch [\d.e+-]+ MW/MVAr", r.stderr)
    assert not (tmp_path / "o").exists()


def test_help_has_examples():
    r = gat("pf", "--help")
    assert r.returncode == 0 and "examples:" in r.stdout and "--q-limits" in r.stdout


def test_pf_dc_writes_tables_matching_pypower_dc(tmp_path):
    import contextlib
    import io

    from pypower.api import ppoption, rundcpf

    from tests.oracle import load_mpc

    out = tmp_path / "dc"
    r = gat("pf", "dc", case_path("case300"), "--out", out, "--quiet")
    assert r.returncode == 0, r.stderr
    mpc = load_mpc(case_path("case300"))
    ppc = {"version": "2", "baseMVA": mpc["baseMVA"], "bus": mpc["bus"], "gen": mpc["gen"], "branch": mpc["branch"]}
    with contextlib.redirect_stdout(io.StringIO()):
        ref, ok = rundcpf(ppc, ppoption(VERBOSE=0, OUT_ALL=0))
    assert ok
    buses = pq.read_table(out / "buses.parquet")
    flows = pq.read_table(out / "flows.parquet")
    assert np.allclose(buses["va_deg"].to_numpy(), ref["bus"][:, VA], atol=1e-6, rtol=0)
    assert np.allclose(flows["p_from_mw"].to_numpy(), ref["branch"][:, PF], atol=1e-6, rtol=0)
    assert np.allclose(flows["p_to_mw"].to_numpy(), -ref["branch"][:, PF], atol=1e-6, rtol=0)
    s = json.loads((out / "summary.json").read_text())
    # lossless: generation = load + shunt conductance at 1 p.u.
    assert abs(s["total_gen_mw"] - s["total_load_mw"] - float(np.sum(mpc["bus"][:, 4]))) < 1e-6


def test_two_islands_each_with_a_slack_are_both_solved(tmp_path):
    t = _case9_text()
    t = _edit_rows(t, "branch", lambda r: [x[:10] + (["0"] if (x[0], x[1]) in {("6", "7"), ("8", "9")} else [x[10]]) + x[11:] for x in r])
    t = _edit_rows(t, "bus", lambda r: [x if x[0] != "2" else [x[0], "3"] + x[2:] for x in r])
    case = _write(tmp_path, "two_islands.m", t)
    out = tmp_path / "o"
    r = gat("pf", "ac", case, "--out", out, "--quiet")
    assert r.returncode == 0, r.stderr
    s = json.loads((out / "summary.json").read_text())
    assert s["islands"] == 2 and sorted(s["slack_bus_ids"]) == [1, 2]
    ref, ok = pypower_pf(str(case))
    assert ok
    buses = pq.read_table(out / "buses.parquet")
    assert np.allclose(buses["vm_pu"].to_numpy(), ref["bus"][:, VM], atol=1e-6, rtol=0)
    assert np.allclose(buses["va_deg"].to_numpy(), ref["bus"][:, VA], atol=1e-4, rtol=0)


def test_distributed_solver_options_need_solver_petsc(tmp_path):
    r = gat("pf", "ac", case_path("case9"), "--out", tmp_path / "o", "--partition-file", tmp_path / "p.parquet")
    assert r.returncode == 2 and "--partition-file: options of the distributed solver; add --solver petsc" in r.stderr
    r = gat("pf", "ac", case_path("case9"), "--out", tmp_path / "o", "--checkpoint-every", "2")
    assert r.returncode == 2 and "--checkpoint-every" in r.stderr
    assert not (tmp_path / "o").exists() and not (tmp_path / "p.parquet").exists()
