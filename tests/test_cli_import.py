"""`gat-hpc import`: grid.arrow and RAW conversions give the same power flow as the .m case."""

import os
import subprocess
import sys

import numpy as np
import pyarrow.parquet as pq

from tests.conftest import case_path

GAT = os.path.join(os.path.dirname(sys.executable), "gat-hpc")


def run(*args):
    return subprocess.run([GAT, *map(str, args)], capture_output=True, text=True, timeout=300)


def tables(out):
    return pq.read_table(out / "buses.parquet"), pq.read_table(out / "flows.parquet")


def test_import_to_arrow_and_raw_then_solve(tmp_path):
    ref_out = tmp_path / "ref"
    assert run("pf", "ac", case_path("case14"), "--out", ref_out, "--quiet").returncode == 0
    rb, rf = tables(ref_out)
    for target in ("case14.arrow", "case14.raw"):
        conv = tmp_path / target
        r = run("import", case_path("case14"), "--out", conv)
        assert r.returncode == 0, r.stderr
        assert "14 buses, 5 generators, 20 branches" in r.stderr
        out = tmp_path / ("pf-" + target)
        r = run("pf", "ac", conv, "--out", out, "--quiet")
        assert r.returncode == 0, r.stderr
        b, f = tables(out)
        assert np.allclose(b["vm_pu"].to_numpy(), rb["vm_pu"].to_numpy(), atol=1e-9, rtol=0), target
        assert np.allclose(b["va_deg"].to_numpy(), rb["va_deg"].to_numpy(), atol=1e-7, rtol=0), target
        # RAW lists lines before transformers: join flows on the end buses
        key = lambda t: {(a, c): p for a, c, p in zip(t["from_bus"].to_pylist(), t["to_bus"].to_pylist(), t["p_from_mw"].to_pylist())}
        kr, kc = key(rf), key(f)
        assert kr.keys() == kc.keys()
        assert max(abs(kr[k] - kc[k]) for k in kr) < 1e-6, target


def test_import_bad_input(tmp_path):
    r = run("import", tmp_path / "nope.m", "--out", tmp_path / "x.arrow")
    assert r.returncode == 2 and "nope.m: no such file" in r.stderr
    assert not (tmp_path / "x.arrow").exists()
    bad = tmp_path / "case.xyz"
    bad.write_text("hello")
    r = run("import", bad, "--out", tmp_path / "y.arrow")
    assert r.returncode == 2 and "unknown case format" in r.stderr
