"""Read any supported case: MATPOWER ``.m``, PSS/E RAW v33 ``.raw``, GAT ``grid.arrow`` folder."""

from __future__ import annotations

import os

from gat_hpc.errors import InputError


def case_format(path):
    """'matpower', 'psse' or 'arrow' from the path (folder -> arrow), else InputError."""
    path = os.fspath(path)
    if os.path.isdir(path):
        return "arrow"
    ext = os.path.splitext(path)[1].lower()
    if ext == ".m":
        return "matpower"
    if ext == ".raw":
        return "psse"
    if path.rstrip("/").endswith(".arrow"):
        return "arrow"
    if not os.path.exists(path):
        raise InputError(f"{path}: no such file")
    raise InputError(f"{path}: unknown case format '{ext}'; expected a MATPOWER .m file, "
                     "a PSS/E .raw file (v33) or a grid.arrow folder")


def read_case(path):
    """Read a case file or folder into a :class:`~gat_hpc.network.model.Network`."""
    fmt = case_format(path)
    if fmt == "matpower":
        from gat_hpc.network.matpower import read_matpower
        return read_matpower(path)
    if fmt == "psse":
        from gat_hpc.network.psse import read_raw
        return read_raw(path)
    from gat_hpc.network.arrow import read_grid_arrow
    return read_grid_arrow(path)
