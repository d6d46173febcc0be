"""Hourly load profiles (Parquet or CSV).

Accepted layouts (one of):
- ``hour, load_scale``: every load multiplied by ``load_scale`` in that hour;
- ``hour, load_mw``: system total in MW, spread over the buses in proportion to the case's
  loads (reactive load scaled by the same factor);
- ``hour, bus_id, p_mw[, q_mvar]``: per-bus loads in that hour; buses not listed keep the
  case's load, and without ``q_mvar`` a bus keeps its case power factor.

The structure (columns, integer hours, known bus ids) is checked when the profile is
read; a value that is not a finite number is reported when its hour is run, so one bad
hour fails its chunk and not the whole sweep.
"""

from __future__ import annotations

import os

import numpy as np

from gat_hpc.errors import InputError


def read_table(path):
    import pyarrow as pa
    import pyarrow.csv as pacsv
    import pyarrow.parquet as pq

    if not os.path.isfile(path):
        raise InputError(f"{path}: no such file")
    try:
        if path.lower().endswith(".csv"):
            return pacsv.read_csv(path)
        return pq.read_table(path)
    except (pa.ArrowInvalid, OSError) as exc:
        raise InputError(f"{path}: cannot read the profile table ({exc})") from None


class Profile:
    """A load profile bound to a network's buses."""

    def __init__(self, path, net):
        self.path = path
        t = read_table(path)
        cols = set(t.column_names)
        if "hour" not in cols:
            raise InputError(f"{path}: profile needs a column 'hour' (has: {', '.join(t.column_names)})")
        hour = t["hour"].to_numpy(zero_copy_only=False)
        if not np.issubdtype(hour.dtype, np.integer):
            if not np.all(np.isfinite(hour)) or np.any(hour != np.round(hour)):
                raise InputError(f"{path}: column 'hour' must hold integers")
            hour = hour.astype(np.int64)
        self.net = net
        self.case_load = net.bus_load()
        if "bus_id" in cols:
            if "p_mw" not in cols:
                raise InputError(f"{path}: a per-bus profile needs columns hour, bus_id, p_mw (and optionally q_mvar)")
            self.kind = "bus"
            bus = t["bus_id"].to_numpy(zero_copy_only=False).astype(np.int64)
            order = np.argsort(net.bus_id)
            pos = np.minimum(np.searchsorted(net.bus_id[order], bus), net.n_bus - 1)
            bad = net.bus_id[order][pos] != bus
            if np.any(bad):
                k = int(np.flatnonzero(bad)[0])
                raise InputError(f"{path}: row {k + 1} names bus {bus[k]}, which is not in the case")
            idx = order[pos]
            srt = np.lexsort((idx, hour))
            self._hour_rows = hour[srt]
            self._bus = idx[srt]
            self._p = t["p_mw"].to_numpy(zero_copy_only=False).astype(float)[srt]
            self._q = (t["q_mvar"].to_numpy(zero_copy_only=False).astype(float)[srt] if "q_mvar" in cols else None)
            self.hours, self._start = np.unique(self._hour_rows, return_index=True)
            self._stop = np.append(self._start[1:], len(self._hour_rows))
        elif "load_scale" in cols or "load_mw" in cols:
            self.kind = "scale" if "load_scale" in cols else "total"
            col = "load_scale" if self.kind == "scale" else "load_mw"
            vals = t[col].to_numpy(zero_copy_only=False).astype(float)
            self.hours, first, counts = np.unique(hour, return_index=True, return_counts=True)
            if np.any(counts > 1):
                raise InputError(f"{path}: hour {self.hours[counts > 1][0]} appears more than once")
            self._value = vals[first]
            total = float(self.case_load.real.sum()) * net.base_mva
            if self.kind == "total" and total <= 0:
                raise InputError(f"{path}: load_mw needs a case with positive total load to spread it")
            self._case_total_mw = total
        else:
            raise InputError(f"{path}: profile needs 'load_scale', 'load_mw', or 'bus_id' and 'p_mw' columns "
                             f"(has: {', '.join(t.column_names)})")

    def bus_load(self, k):
        """Complex load per bus (p.u.) in the profile's k-th hour (0-based index into ``hours``)."""
        h = int(self.hours[k])
        base = self.net.base_mva
        if self.kind in ("scale", "total"):
            v = self._value[k]
            factor = v if self.kind == "scale" else v / self._case_total_mw
            if not np.isfinite(factor) or factor < 0:
                col = "load_scale" if self.kind == "scale" else "load_mw"
                raise InputError(f"{self.path}: hour {h}: {col} = {v} is not a non-negative finite number")
            return self.case_load * factor
        s = slice(self._start[k], self._stop[k])
        bus, p = self._bus[s], self._p[s]
        if not np.all(np.isfinite(p)):
            raise InputError(f"{self.path}: hour {h}: p_mw of bus {self.net.bus_id[bus[~np.isfinite(p)][0]]} is not finite")
        load = self.case_load.copy()
        if self._q is not None:
            q = self._q[s]
            if not np.all(np.isfinite(q)):
                raise InputError(f"{self.path}: hour {h}: q_mvar of bus {self.net.bus_id[bus[~np.isfinite(q)][0]]} is not finite")
        else:
            old = self.case_load[bus]
            ratio = np.divide(old.imag, old.real, out=np.zeros(len(bus)), where=old.real != 0)
            q = p * ratio
        load[bus] = (p + 1j * q) / base
        return load

    def select(self, hours):
        """Indices of the profile hours within [a, b) (``hours`` = (a, b) or None for all)."""
        if hours is None:
            return np.arange(len(self.hours))
        a, b = hours
        return np.flatnonzero((self.hours >= a) & (self.hours < b))


def parse_hours(text):
    """'A:B' -> (A, B) half-open; None passes through."""
    if text is None:
        return None
    try:
        a, b = text.split(":")
        a, b = int(a), int(b)
    except ValueError:
        raise InputError(f"--hours must look like A:B (first hour, one past the last), got '{text}'") from None
    if b <= a:
        raise InputError(f"--hours {text}: the range is empty")
    return a, b
