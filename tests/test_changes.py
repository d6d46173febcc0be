"""MATPOWER change tables: parsing, hourly scenarios (apply_changes/scale_load semantics), contingencies.

Expected values come from the files' text read with a plain line filter here, or are worked
out by hand from the case data typed into this file.
"""

import os
import re
import time

import numpy as np
import pytest

from conftest import case_path, matpower_data_dir
from gat_hpc.errors import InputError
from gat_hpc.network.changes import (ScenarioProfile, contingencies_all_branches, contingencies_from_csv,
                                     contingencies_from_table, parse_change_table, read_change_table,
                                     read_contingencies)
from gat_hpc.network.matpower import read_matpower

TABLES = ["scenarios_ACTIVSg2000", "scenarios_ACTIVSg200", "contab_ACTIVSg2000", "contab_ACTIVSg10k",
          "contab_ACTIVSg200"]


def data_file(name):
    return os.path.join(matpower_data_dir(), name + ".m")


def data_rows(path):
    """Token lists of the data rows: lines whose first non-blank character is a digit."""
    with open(path) as fh:
        return [line.split("%")[0].replace(";", " ").split() for line in fh if re.match(r"\s*\d", line)]


@pytest.fixture(scope="module")
def net2000():
    return read_matpower(case_path("case_ACTIVSg2000"))


@pytest.fixture(scope="module")
def scen2000(net2000):
    return ScenarioProfile(read_change_table(data_file("scenarios_ACTIVSg2000")), net2000)


# --------------------------------------------------------------------------- parsing
@pytest.mark.parametrize("name", TABLES)
def test_parse_package_tables(name):
    path = data_file(name)
    rows = data_rows(path)
    t0 = time.perf_counter()
    t = read_change_table(path)
    elapsed = time.perf_counter() - t0
    assert len(t) == len(rows)
    assert elapsed < 1.0, f"{name}: parsed in {elapsed:.2f} s"
    first, last = rows[0], rows[-1]
    assert t.label[0] == int(first[0]) and t.label[-1] == int(last[0])
    assert t.row[-1] == int(last[3]) and t.newval[-1] == float(last[6])
    labels = list(dict.fromkeys(int(r[0]) for r in rows))
    np.testing.assert_array_equal(t.labels, labels)
    assert np.all(t.stop - t.start >= 1) and t.stop[-1] == len(t)


def test_parse_layouts():
    text = """% leading comment
    define_constants;
    chgtab = [ 1 0 CT_TAREALOAD 2 -CT_LOAD_ALL_P CT_REP 10;  2, 0, CT_TBUS, 3, PD, CT_ADD, 1.5e1 % comment
      2 0 CT_TGEN 1 ...
         GEN_STATUS CT_REP 0
      3 0.5 CT_TBRCH 4 BR_STATUS CT_REP 0 ];
    """
    t = parse_change_table(text, "x.m")
    np.testing.assert_array_equal(t.label, [1, 2, 2, 3])
    np.testing.assert_array_equal(t.table, [8, 1, 2, 3])
    np.testing.assert_array_equal(t.col, [-4, 3, 8, 11])
    np.testing.assert_array_equal(t.newval, [10, 15, 0, 0])
    np.testing.assert_array_equal(t.line, [3, 3, 4, 6])
    np.testing.assert_array_equal(t.labels, [1, 2, 3])
    assert t.prob[3] == 0.5
    assert t.describe(0) == "CT_TAREALOAD 2 -CT_LOAD_ALL_P CT_REP 10"


@pytest.mark.parametrize("text, message", [
    ("chgtab = [\n 1 0 CT_TAREALOAD 1 CT_LOAD_ALL_Q CT_REP 5;\n];", r"x\.m:2: 'CT_LOAD_ALL_Q' is neither a number"),
    ("chgtab = [\n 1 0 CT_TBRCH 1 BR_STATUS CT_REP 0;\n 2 0 CT_TBRCH 2 BR_STATUS 0;\n];",
     r"x\.m:3: change-table row has 6 entries, expected 7"),
    ("chgtab = [\n 1 0 CT_TBRCH 1 BR_STATUS CT_REP 0;\n 2 0 CT_TBRCH 2 BR_STATUS CT_REP 0;\n",
     r"x\.m:1: the change table opened here is not closed .*truncated"),
    ("chgtab = [\n 1 0 CT_TBRCH 1 BR_STATUS CT_REP 0;\n 2 0 CT_TBRCH 2 BR_STATUS CT_REP 0;\n"
     " 1 0 CT_TBRCH 3 BR_STATUS CT_REP 0;\n];", r"x\.m:4: label 1 appears again after other labels \(first on line 2\)"),
    ("chgtab = [\n 1.5 0 CT_TBRCH 1 BR_STATUS CT_REP 0;\n];", r"x\.m:2: label, table, row, column and change type must be integers"),
    ("chgtab = [\n 1 0 CT_TBRCH 1 BR_STATUS CT_REP NaN;\n];", r"x\.m:2: .*not a finite number"),
    ("chgtab = [\n];", r"x\.m:1: the change table has no rows"),
    ("x = 3;\n", r"x\.m: no change table found"),
])
def test_parse_errors(text, message):
    with pytest.raises(InputError, match=message):
        parse_change_table(text, "x.m")


def test_missing_file(tmp_path):
    with pytest.raises(InputError, match="no such file"):
        read_change_table(tmp_path / "nope.m")
    with pytest.raises(InputError, match="no such file"):
        contingencies_from_csv(tmp_path / "nope.csv", read_matpower(case_path("case9")))


# --------------------------------------------------------------------------- scenarios_ACTIVSg2000
@pytest.mark.parametrize("hour", [1, 4321, 8784])
def test_activsg2000_area_totals(net2000, scen2000, hour):
    rows = [r for r in data_rows(data_file("scenarios_ACTIVSg2000")) if int(r[0]) == hour]
    assert len(rows) == 8 and all(r[2:6] == [r[2], r[3], "CT_LOAD_ALL_P", "CT_REP"] for r in rows)
    want = {int(r[3]): float(r[6]) for r in rows}
    k = int(np.flatnonzero(scen2000.hours == hour)[0])
    load = scen2000.bus_load(k) * net2000.base_mva
    case = net2000.bus_load() * net2000.base_mva
    for area, total in want.items():
        on = net2000.area == area
        assert abs(load.real[on].sum() - total) < 1e-9, (hour, area)
        # every bus of the area scaled by the same factor (new total / case total)
        factor = total / case.real[on].sum()
        np.testing.assert_allclose(load.real[on], case.real[on] * factor, rtol=1e-12, atol=1e-12)
    # CT_LOAD_ALL_P: reactive load untouched
    np.testing.assert_array_equal(load.imag, case.imag)
    assert scen2000.gen_changes(k) is None


def test_activsg2000_profile_interface(scen2000):
    assert scen2000.kind == "scenarios" and scen2000.path.endswith("scenarios_ACTIVSg2000.m")
    np.testing.assert_array_equal(scen2000.hours, np.arange(1, 8785))
    np.testing.assert_array_equal(scen2000.select((24, 48)), np.arange(23, 47))
    assert len(scen2000.select(None)) == 8784


def test_activsg200_needs_zones():
    net = read_matpower(case_path("case_ACTIVSg200"))
    path = data_file("scenarios_ACTIVSg200")
    with pytest.raises(InputError, match=r"CT_TAREALOAD 2 .*no bus of the case is in that area .*may refer to zones"):
        ScenarioProfile(path, net)
    prof = ScenarioProfile(path, net, areas=net.zone)
    want = {int(r[3]): float(r[6]) for r in data_rows(path) if r[0] == "1"}
    load = prof.bus_load(0).real * net.base_mva
    for zone, total in want.items():
        assert abs(load[net.zone == zone].sum() - total) < 1e-9


# --------------------------------------------------------------------------- hand-worked case14
# case14 loads (MW, MVAr) by bus number, from the case file
PD14 = {2: 21.7, 3: 94.2, 4: 47.8, 5: 7.6, 6: 11.2, 9: 29.5, 10: 9.0, 11: 3.5, 12: 6.1, 13: 13.5, 14: 14.9}
QD14 = {2: 12.7, 3: 19.0, 4: -3.9, 5: 1.6, 6: 7.5, 9: 16.6, 10: 5.8, 11: 1.8, 12: 1.6, 13: 5.8, 14: 5.0}

TABLE14 = """define_constants;
chgtab = [
    1  0  CT_TAREALOAD  1  CT_LOAD_ALL_PQ  CT_REL  1.1;
    1  0  CT_TAREALOAD  2  CT_LOAD_FIX_P   CT_ADD  23.5;
    1  0  CT_TLOAD      3  CT_LOAD_ALL_P   CT_REP  50;
    1  0  CT_TBUS       14 PD              CT_REP  20;
    1  0  CT_TBUS       4  QD              CT_ADD  2;
    1  0  CT_TGEN       2  GEN_STATUS      CT_REP  0;
    2  0  CT_TLOAD      0  CT_LOAD_ALL_PQ  CT_REP  518;
    2  0  CT_TGEN       1  PG              CT_REL  0.5;
    3  0  CT_TBUS       0  PD              CT_REL  2;
    3  0  CT_TAREALOAD  2  -CT_LOAD_ALL_P  CT_REP  76.5;
    4  0  CT_TAREABUS   2  QD              CT_REP  1;
];
"""


@pytest.fixture
def net14():
    net = read_matpower(case_path("case14"))
    net.area[:] = np.where(net.bus_id <= 7, 1, 2)  # area 1: buses 1-7, area 2: buses 8-14
    return net


def by_bus(d):
    v = np.zeros(14)
    for b, x in d.items():
        v[b - 1] = x
    return v


def test_hand_worked_case14(net14, tmp_path):
    case = net14.bus_load() * 100
    np.testing.assert_allclose(case.real, by_bus(PD14), atol=1e-12)
    np.testing.assert_allclose(case.imag, by_bus(QD14), atol=1e-12)
    path = tmp_path / "scen14.m"
    path.write_text(TABLE14)
    prof = ScenarioProfile(read_change_table(path), net14)
    np.testing.assert_array_equal(prof.hours, [1, 2, 3, 4])

    # hour 1: area 1 (buses 2-6) P and Q x 1.1; area 2 (buses 9-14, 76.5 MW) P to 76.5 + 23.5 = 100 MW,
    # Q kept; then bus 3 P = 50, bus 14 P = 20, bus 4 Q + 2
    p = {b: PD14[b] * 1.1 for b in (2, 3, 4, 5, 6)} | {b: PD14[b] * 100 / 76.5 for b in (9, 10, 11, 12, 13, 14)}
    q = {b: QD14[b] * 1.1 for b in (2, 3, 4, 5, 6)} | {b: QD14[b] for b in (9, 10, 11, 12, 13, 14)}
    p[3], p[14], q[4] = 50.0, 20.0, -3.9 * 1.1 + 2
    got = prof.bus_load(0) * 100
    np.testing.assert_allclose(got.real, by_bus(p), rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(got.imag, by_bus(q), rtol=1e-12, atol=1e-12)
    g = prof.gen_changes(0)
    np.testing.assert_array_equal(g.status, [True, False, True, True, True])
    np.testing.assert_allclose(g.pg * 100, [232.4, 40, 0, 0, 0])

    # hour 2: all loads to 518 MW (twice 259), reactive by the same factor; gen 1 PG halved
    got = prof.bus_load(1) * 100
    np.testing.assert_allclose(got.real, 2 * by_bus(PD14), rtol=1e-12)
    np.testing.assert_allclose(got.imag, 2 * by_bus(QD14), rtol=1e-12)
    g = prof.gen_changes(1)
    np.testing.assert_allclose(g.pg * 100, [116.2, 40, 0, 0, 0])
    assert g.status.all()

    # hour 3, in table order: every PD doubled, then area 2 back to 76.5 MW (factor 1/2)
    got = prof.bus_load(2) * 100
    want = by_bus(PD14) * np.where(np.arange(1, 15) <= 7, 2.0, 1.0)
    np.testing.assert_allclose(got.real, want, rtol=1e-12)
    np.testing.assert_array_equal(got.imag, case.imag)
    assert prof.gen_changes(2) is None

    # hour 4: QD of every area-2 bus (8-14, with or without load) set to 1 MVAr
    got = prof.bus_load(3) * 100
    np.testing.assert_array_equal(got.real, case.real)
    np.testing.assert_allclose(got.imag, np.where(np.arange(1, 15) >= 8, 1.0, by_bus(QD14)), atol=1e-12)


def scenario(tmp_path, net, rows):
    path = tmp_path / "s.m"
    path.write_text("chgtab = [\n" + "\n".join(rows) + "\n];\n")
    return ScenarioProfile(str(path), net)


def test_zero_load_area(tmp_path):
    net = read_matpower(case_path("case9"))
    net.area[:3] = 2  # buses 1-3 carry generators only: area 2 has no load
    prof = scenario(tmp_path, net, ["5 0 CT_TAREALOAD 2 CT_LOAD_ALL_P CT_REP 0;",
                                    "6 0 CT_TAREALOAD 2 CT_LOAD_ALL_P CT_REP 10;"])
    np.testing.assert_array_equal(prof.bus_load(0), net.bus_load())  # 0 MW of nothing: unchanged, as MATPOWER
    with pytest.raises(InputError, match=r"s\.m:3: hour 6: area 2 has no real load to scale, so its total cannot become 10 MW"):
        prof.bus_load(1)


@pytest.mark.parametrize("row, message", [
    ("1 0 CT_TAREALOAD 1 CT_LOAD_DIS_P CT_REP 100;", r"s\.m:2: hour 1: .*CT_LOAD_DIS_P.*dispatchable loads .* not modelled"),
    ("1 0 CT_TLOAD 1 CT_LOAD_DIS_PQ CT_REL 2;", r"dispatchable loads"),
    ("1 0 CT_TBRCH 3 BR_STATUS CT_REP 0;", r"hour 1: 'CT_TBRCH 3 BR_STATUS CT_REP 0': .*contingency table"),
    ("1 0 CT_TBUS 3 GS CT_REP 0;", r"PD and QD columns"),
    ("1 0 CT_TLOAD 10 CT_LOAD_ALL_P CT_REP 1;", r"bus row out of range: the case has 9 buses"),
    ("1 0 CT_TGEN 4 GEN_STATUS CT_REP 0;", r"generator row out of range: the case has 3 generators"),
    ("1 0 CT_TAREALOAD 7 CT_LOAD_ALL_P CT_REP 1;", r"CT_TAREALOAD 7 .*no bus of the case is in that area"),
    ("1 0 CT_TAREALOAD 1 CT_LOAD_ALL_P 4 1;", r"change type must be"),
    ("1 0 CT_TAREALOAD 1 9 CT_REP 1;", r"must be a load code"),
    ("0 0 CT_TAREALOAD 1 CT_LOAD_ALL_P CT_REP 1;", r"label 0 cannot be an hour"),
])
def test_scenario_errors(tmp_path, row, message):
    net = read_matpower(case_path("case9"))
    with pytest.raises(InputError, match=message):
        scenario(tmp_path, net, [row])


# --------------------------------------------------------------------------- contingencies
def test_contab_activsg2000(net2000):
    path = data_file("contab_ACTIVSg2000")
    c = contingencies_from_table(read_change_table(path), net2000)
    assert (c.kind == "branch").sum() == 3190 and (c.kind == "gen").sum() == 544 and len(c) == 3734
    for r, i in zip(data_rows(path), range(len(c))):
        assert c.labels[i] == int(r[0])
        if r[2] == "CT_TBRCH":
            assert c.branches[i].tolist() == [int(r[3]) - 1] and len(c.gens[i]) == 0
        else:
            assert r[2] == "CT_TGEN" and c.gens[i].tolist() == [int(r[3]) - 1] and len(c.branches[i]) == 0
    # generators out of service in the case keep their contingency, flagged
    gen_out = np.array([len(g) == 1 and not net2000.gen_status[g[0]] for g in c.gens])
    np.testing.assert_array_equal(c.already_out, gen_out)
    assert gen_out.sum() == (~net2000.gen_status).sum() == 112
    pos, idx = c.single_branch()
    assert len(pos) == 3190 and np.all(idx == np.array([c.branches[i][0] for i in pos]))


def test_contingency_multi_and_errors(tmp_path):
    net = read_matpower(case_path("case9"))
    net.branch_status[4] = False
    path = tmp_path / "c.m"
    path.write_text("chgtab = [\n 7 0 CT_TBRCH 2 BR_STATUS CT_REP 0;\n 7 0 CT_TGEN 3 GEN_STATUS CT_REP 0;\n"
                    " 9 0 CT_TBRCH 5 BR_STATUS CT_REP 0;\n 8 0 CT_TBRCH 1 BR_STATUS CT_REP 0;\n"
                    " 8 0 CT_TBRCH 9 BR_STATUS CT_REP 0;\n];\n")
    c = read_contingencies(str(path), net)
    assert c.labels.tolist() == [7, 9, 8]
    assert c.kind.tolist() == ["multi", "branch", "multi"]
    assert [b.tolist() for b in c.branches] == [[1], [4], [0, 8]]
    assert [g.tolist() for g in c.gens] == [[2], [], []]
    assert c.already_out.tolist() == [False, True, False]

    def bad(row, message):
        path.write_text("chgtab = [\n 1 0 CT_TBRCH 1 BR_STATUS CT_REP 0;\n" + row + "\n];\n")
        with pytest.raises(InputError, match=message):
            contingencies_from_table(str(path), net)

    bad(" 2 0 CT_TBRCH 10 BR_STATUS CT_REP 0;", r"c\.m:3: contingency label 2 names branch 10, the case has 9 branches")
    bad(" 2 0 CT_TGEN 4 GEN_STATUS CT_REP 0;", r"contingency label 2 names generator 4, the case has 3 generators")
    bad(" 2 0 CT_TBRCH 0 BR_STATUS CT_REP 0;", r"names branch 0, .*'all', is not an outage")
    bad(" 2 0 CT_TBRCH 3 RATE_A CT_REP 0;", r"c\.m:3: contingency label 2: 'CT_TBRCH 3 RATE_A CT_REP 0' is not an outage")
    bad(" 2 0 CT_TBRCH 3 BR_STATUS CT_REP 1;", r"is not an outage")


def test_contingencies_all_and_csv(tmp_path):
    net = read_matpower(case_path("case14"))
    net.branch_status[[2, 6]] = False
    c = contingencies_all_branches(net)
    assert len(c) == 18 and 3 not in c.labels and 7 not in c.labels
    assert all(len(b) == 1 and net.branch_id[b[0]] == lab for b, lab in zip(c.branches, c.labels))
    assert set(c.kind) == {"branch"} and not c.already_out.any()

    csv = tmp_path / "c.csv"
    csv.write_text("label,branch_id,gen_id\n5,1,\n2,,3\n5,7,\n3,4,\n5,,2\n")
    c = contingencies_from_csv(csv, net)
    assert c.labels.tolist() == [5, 2, 3]
    assert [b.tolist() for b in c.branches] == [[0, 6], [], [3]]
    assert [g.tolist() for g in c.gens] == [[1], [2], []]
    assert c.kind.tolist() == ["multi", "gen", "branch"]
    assert c.already_out.tolist() == [True, False, False]

    csv.write_text("label,branch_id\n1,3\n2,21\n")
    with pytest.raises(InputError, match=r"c\.csv:3: contingency label 2 names branch 21, the case has 20 branches"):
        contingencies_from_csv(csv, net)
    csv.write_text("label,branch_id,gen_id\n1,3,2\n")
    with pytest.raises(InputError, match=r"c\.csv:2: give exactly one of branch_id and gen_id"):
        contingencies_from_csv(csv, net)
    csv.write_text("id,branch\n1,3\n")
    with pytest.raises(InputError, match=r"needs columns 'label' and 'branch_id' and/or 'gen_id'"):
        contingencies_from_csv(csv, net)
