"""Power-flow runs (hourly sweep, or one `gat-hpc pf --out DIR` folder): voltage magnitudes,
angle spread, branch loading.

An hourly sweep's loading figure shows each hour's highest loading (hours.parquet) and the
distribution of every rated branch's loading in every hour (flows.parquet's loading_pct; runs
made before that column existed get the distribution of apparent power |S| instead); a
`pf --out` folder shows the distribution of its one solution's branch loadings.
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from gat_hpc.report.common import PALETTE, Fig, fmt_num, new_figure, no_data
from gat_hpc.report.rundata import PF_FOLDER

BINS = 60


def _f64(col):
    return pc.fill_null(col.cast(pa.float64()), np.nan).to_numpy(zero_copy_only=False)


def _streamed_hist(run, table, column_fn, columns, lo=None, hi=None, bins=BINS):
    """Histogram of a derived column over a whole table, two streamed passes (range, then counts)."""
    if lo is None or hi is None:
        lo, hi, n = np.inf, -np.inf, 0
        for b in run.batches(table, columns):
            v = column_fn(b)
            v = v[np.isfinite(v)]
            if v.size:
                lo, hi = min(lo, float(v.min())), max(hi, float(v.max()))
                n += v.size
        if n == 0:
            return None
    if hi <= lo:
        hi = lo + max(abs(lo) * 1e-3, 1e-6)
    edges = np.linspace(lo, hi, bins + 1)
    counts = np.zeros(bins, dtype=np.int64)
    for b in run.batches(table, columns):
        v = column_fn(b)
        counts += np.histogram(v[np.isfinite(v)], bins=edges)[0]
    return {"counts": counts, "edges": edges, "values": int(counts.sum()), "min": lo, "max": hi}


def _energised_vm(b):
    vm = _f64(b.column("vm_pu"))
    return np.where(vm > 0, vm, np.nan)  # 0: de-energised bus


def voltage_histogram(run):
    title = "Voltage magnitudes"
    hourly = run.study != PF_FOLDER
    d = _streamed_hist(run, "buses", _energised_vm, ["vm_pu"])
    if d is None:
        return no_data("voltage", title, "No energised bus has a voltage (no hour converged).")
    fig, ax = new_figure(8.0, 3.4)
    ax.stairs(d["counts"], d["edges"], fill=True, color=PALETTE[0], alpha=0.85)
    ax.set_xlabel("voltage magnitude (p.u.)")
    ax.set_ylabel("bus-hours" if hourly else "buses")
    ax.set_title(f"{title}: {d['min']:.4f} – {d['max']:.4f} p.u. over {fmt_num(d['values'])} "
                 + ("bus-hours" if hourly else "energised buses"))
    cap = ("Histogram of the voltage magnitude of every energised bus" + (" in every converged hour" if hourly else "")
           + " (de-energised buses, at 0, are left out).")
    return Fig("voltage", title, cap, fig, d, {"vm_min_pu": d["min"], "vm_max_pu": d["max"], "values": d["values"]})


def angle_spread(run):
    title = "Voltage angles"
    if run.study == PF_FOLDER:
        d = _streamed_hist(run, "buses", lambda b: np.where(_f64(b.column("vm_pu")) > 0, _f64(b.column("va_deg")),
                                                            np.nan), ["vm_pu", "va_deg"])
        if d is None:
            return no_data("angles", title, "No energised bus.")
        fig, ax = new_figure(8.0, 3.4)
        ax.stairs(d["counts"], d["edges"], fill=True, color=PALETTE[2], alpha=0.85)
        ax.set_xlabel("voltage angle (degrees)")
        ax.set_ylabel("buses")
        ax.set_title(f"{title}: spread {d['max'] - d['min']:.2f}° ({d['min']:.2f}° to {d['max']:.2f}°)")
        return Fig("angles", title, "Histogram of the voltage angles of the energised buses.", fig, d,
                   {"va_min_deg": d["min"], "va_max_deg": d["max"], "spread_deg": d["max"] - d["min"]})
    parts = []
    for b in run.batches("buses", ["hour", "vm_pu", "va_deg"]):
        va = np.where(_f64(b.column("vm_pu")) > 0, _f64(b.column("va_deg")), np.nan)
        t = pa.table({"hour": b.column("hour"), "va": pa.array(va, from_pandas=True)})
        parts.append(t.group_by("hour").aggregate([("va", "min"), ("va", "max")]))
    if not parts:
        return no_data("angles", title, "The buses table is empty.")
    agg = pa.concat_tables(parts).group_by("hour").aggregate([("va_min", "min"), ("va_max", "max")]).sort_by("hour")
    hour, lo, hi = agg["hour"].to_numpy(), _f64(agg["va_min_min"]), _f64(agg["va_max_max"])
    spread = hi - lo
    if not np.isfinite(spread).any():
        return no_data("angles", title, "No hour converged.")
    fig, (a1, a2) = new_figure(9.0, 4.6, nrows=2, ncols=1, sharex=True, height_ratios=[1.4, 1.0])
    a1.fill_between(hour, lo, hi, color=PALETTE[2], alpha=0.3, lw=0)
    a1.plot(hour, hi, color=PALETTE[2], lw=1.0, label="highest angle")
    a1.plot(hour, lo, color="#1b7837", lw=1.0, ls="--", label="lowest angle")
    a1.set_ylabel("angle (degrees)")
    a1.legend(frameon=False, loc="upper right", ncol=2)
    a2.plot(hour, spread, color="black", lw=1.1)
    a2.set_ylabel("spread (degrees)")
    a2.set_xlabel("hour of the profile")
    k = int(np.nanargmax(spread))
    a1.set_title(f"{title} per hour: spread {np.nanmin(spread):.1f}° – {spread[k]:.1f}° "
                 f"(widest in hour {int(hour[k])})",
                 loc="left")
    cap = ("Top: the lowest and highest voltage angle over the energised buses in each hour (relative to the slack). "
           "Bottom: their difference, a measure of how hard the network is transferring power.")
    return Fig("angles", title, cap, fig, {"hour": hour, "va_min_deg": lo, "va_max_deg": hi, "spread_deg": spread},
               {"spread_max_deg": float(spread[k]), "spread_max_hour": int(hour[k]),
                "spread_min_deg": float(np.nanmin(spread))})


def _apparent_power(b):
    sf = np.hypot(_f64(b.column("p_from_mw")), _f64(b.column("q_from_mvar")))
    st = np.hypot(_f64(b.column("p_to_mw")), _f64(b.column("q_to_mvar")))
    return np.fmax(sf, st)


def loading(run):
    title = "Branch loading"
    cols = run.columns("flows")
    if "loading_pct" in cols and not run.has("hours"):  # a `pf --out` folder
        d = _streamed_hist(run, "flows", lambda b: _f64(b.column("loading_pct")), ["loading_pct"])
        if d is None:
            return no_data("loading", title, "No branch has a rating (rateA = 0 everywhere): loading is undefined.")
        fig, ax = new_figure(8.0, 3.4)
        ax.stairs(d["counts"], d["edges"], fill=True, color=PALETTE[1], alpha=0.85)
        if d["max"] >= 100:
            ax.axvline(100, color="#d62728", lw=1.0, ls="--", label="rating")
            ax.legend(frameon=False)
        ax.set_xlabel("loading, max(|S_from|, |S_to|) / rateA (%)")
        ax.set_ylabel("branches")
        ax.set_title(f"{title}: highest {d['max']:.1f}% of rateA over {fmt_num(d['values'])} rated branches")
        cap = "Histogram of branch loading (apparent power at the more loaded end over rateA) of the rated branches."
        return Fig("loading", title, cap, fig, d, {"max_loading_pct": d["max"], "rated_branches": d["values"]})
    h = run.read("hours", columns=["hour", "max_loading_pct", "overloaded_branches"]).sort_by("hour")
    hour, mx = h["hour"].to_numpy(), _f64(h["max_loading_pct"])
    rated = np.isfinite(mx).any()
    per_branch = "loading_pct" in cols and rated
    if per_branch:
        s = _streamed_hist(run, "flows", lambda b: _f64(b.column("loading_pct")), ["loading_pct"])
    else:
        s = _streamed_hist(run, "flows", _apparent_power, ["p_from_mw", "q_from_mvar", "p_to_mw", "q_to_mvar"])
    if rated:
        fig, (a1, a2) = new_figure(9.5, 3.6, nrows=1, ncols=2)
        a1.plot(hour, mx, color=PALETTE[1], lw=1.2, drawstyle="steps-mid")
        if np.nanmax(mx) >= 100:
            a1.axhline(100, color="#d62728", lw=1.0, ls="--", label="rating")
            a1.legend(frameon=False)
        a1.set_ylim(bottom=0)
        k = int(np.nanargmax(mx))
        a1.set_title(f"Most loaded branch per hour: max {mx[k]:.1f}% (hour {int(hour[k])})", loc="left")
        a1.set_xlabel("hour of the profile")
        a1.set_ylabel("highest branch loading (% of rateA)")
    else:
        fig, a2 = new_figure(8.0, 3.4)
    if s is not None:
        a2.stairs(s["counts"], s["edges"], fill=True, color=PALETTE[0], alpha=0.85)
        a2.set_yscale("log")
        if per_branch:
            if s["max"] >= 100:
                a2.axvline(100, color="#d62728", lw=1.0, ls="--")
            a2.set_title(f"Loading of every rated branch in every hour: up to {s['max']:.1f}%", loc="left")
        else:
            a2.set_title(f"Branch flows: |S| up to {s['max']:.0f} MVA"
                         + ("" if rated else " (the case has no branch ratings: loading is undefined)"), loc="left")
    a2.set_xlabel("loading, max(|S_from|, |S_to|) / rateA (%)" if per_branch
                  else "apparent power at the more loaded end, |S| (MVA)")
    a2.set_ylabel("branch-hours (log scale)")
    if per_branch:
        cap = ("Left: the highest loading of any rated branch in each hour (% of rateA, from hours.parquet). Right: "
               "histogram of every rated branch's loading in every converged hour (flows.parquet, loading_pct).")
    else:
        cap = (("Left: the highest loading of any rated branch in each hour (% of rateA, from hours.parquet). Right: "
                if rated else "") + "Histogram of every branch's apparent power in every converged hour"
               + (" (this run's flows table has no loading_pct column)." if rated else "."))
    nums = {"max_loading_pct": float(np.nanmax(mx)) if rated else None,
            "max_loading_hour": int(hour[int(np.nanargmax(mx))]) if rated else None,
            "overloaded_hours": int(np.sum(h["overloaded_branches"].to_numpy() > 0)),
            "max_apparent_power_mva": s["max"] if s and not per_branch else None}
    data = {"hour": hour, "max_loading_pct": mx, ("loading_hist" if per_branch else "apparent_power_hist"): s}
    return Fig("loading", title, cap, fig, data, nums)


def convergence_table(run):
    from gat_hpc.report.common import Table

    if run.study == PF_FOLDER:
        s = run.summary
        rows = [[k, fmt_num(s.get(k)) if not isinstance(s.get(k), (list, str)) else str(s.get(k))]
                for k in ("converged", "iterations", "max_p_mismatch_mw", "max_q_mismatch_mvar", "total_load_mw",
                          "total_gen_mw", "losses_mw", "init", "q_limits") if k in s]
        return Table("solve", "Solve", ["quantity", "value"], rows, "From summary.json of the power flow.",
                     {r[0]: s.get(r[0]) for r in rows})
    h = run.read("hours", columns=["hour", "converged", "iterations", "max_mismatch_mw", "losses_mw"]).sort_by("hour")
    conv = h["converged"].to_numpy(zero_copy_only=False).astype(bool)
    bad = h["hour"].to_numpy()[~conv]
    rows = [["hours", f"{h.num_rows:,}"], ["converged", f"{int(conv.sum()):,}"],
            ["not converged",
             ", ".join(map(str, bad[:30])) + (" ..." if bad.size > 30 else "") if bad.size else "none"],
            ["Newton iterations (mean / max)", f"{np.mean(h['iterations'].to_numpy()):.2f} / "
                                               f"{int(np.max(h['iterations'].to_numpy()))}"],
            ["losses (MW, min – max)",
             f"{np.nanmin(_f64(h['losses_mw'])):.2f} – {np.nanmax(_f64(h['losses_mw'])):.2f}"
             if conv.any() else "–"]]
    return Table("solve", "Convergence", ["quantity", "value"], rows, "From hours.parquet.",
                 {"hours": h.num_rows, "converged_hours": int(conv.sum()), "not_converged_hours": bad.tolist()[:50]})


def figures(run, options):
    s = run.summary
    if run.study == PF_FOLDER:
        numbers = {k: s.get(k) for k in ("converged", "iterations", "total_load_mw", "losses_mw")}
    else:
        numbers = {k: s.get(k) for k in ("hours", "converged_hours", "max_loading_pct", "max_loading_hour",
                                         "overloaded_hours")}
    return [voltage_histogram(run), angle_spread(run), loading(run)], [convergence_table(run)], numbers
