"""Rolling DC-OPF runs: cost per hour, LMP spread per hour, binding constraints per hour."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from gat_hpc.report.common import PALETTE, Fig, Table, fmt_num, new_figure, no_data

KIND_LABELS = {"branch": "branch limit", "pmax": "at Pmax", "pmin": "at Pmin", "ramp_up": "ramp up",
               "ramp_down": "ramp down"}
KIND_COLOURS = {"branch": "#d6604d", "pmax": "#4393c3", "pmin": "#92c5de", "ramp_up": "#5aae61", "ramp_down": "#a6dba0"}


def _f64(col):
    return pc.fill_null(col.cast(pa.float64()), np.nan).to_numpy(zero_copy_only=False)


def cost(run):
    title = "Dispatch cost per hour"
    h = run.read("hours", columns=["hour", "cost_per_h", "load_mw"]).sort_by("hour")
    if h.num_rows == 0:
        return no_data("cost", title, "hours.parquet is empty.")
    hour, c, load = h["hour"].to_numpy(), _f64(h["cost_per_h"]), _f64(h["load_mw"])
    fig, ax = new_figure(9.0, 3.4)
    ax.plot(hour, c, color=PALETTE[0], lw=1.3, drawstyle="steps-mid", label="cost")
    ax.set_xlabel("hour of the profile")
    ax.set_ylabel(r"cost (\$/h)", color=PALETTE[0])
    ax2 = ax.twinx()
    ax2.plot(hour, load, color="#888888", lw=1.0, ls="--", drawstyle="steps-mid", label="demand")
    ax2.set_ylabel("demand (MW)", color="#666666")
    ax2.grid(False)
    ax2.spines["right"].set_visible(True)
    ax.set_title(f"{title}: total {fmt_num(float(np.nansum(c)))} \\$, "
                 f"mean {fmt_num(float(np.nanmean(c)))} \\$/h",
                 loc="left")
    cap = ("Cost of the optimal dispatch in each hour (case gencost; left axis) and the demand it serves "
           "(load plus shunt losses; dashed, right axis).")
    return Fig("cost", title, cap, fig, {"hour": hour, "cost_per_h": c, "load_mw": load},
               {"total_cost": float(np.nansum(c)), "mean_cost_per_h": float(np.nanmean(c))})


def lmp_spread(run):
    title = "Locational marginal prices per hour"
    h = run.read("hours", columns=["hour", "lmp_min", "lmp_max"]).sort_by("hour")
    if h.num_rows == 0:
        return no_data("lmp", title, "hours.parquet is empty.")
    hour, lo, hi = h["hour"].to_numpy(), _f64(h["lmp_min"]), _f64(h["lmp_max"])
    mean = None
    if run.has("lmp"):
        parts = [pa.table({"hour": b.column("hour"), "v": pa.array(_f64(b.column("lmp_per_mwh")), from_pandas=True)})
                 .group_by("hour").aggregate([("v", "sum"), ("v", "count")])
                 for b in run.batches("lmp", ["hour", "lmp_per_mwh"])]
        if parts:
            agg = pa.concat_tables(parts).group_by("hour").aggregate([("v_sum", "sum"), ("v_count", "sum")])
            agg = agg.sort_by("hour")
            m = dict(zip(agg["hour"].to_pylist(), (_f64(agg["v_sum_sum"]) / agg["v_count_sum"].to_numpy()).tolist()))
            mean = np.array([m.get(int(x), np.nan) for x in hour])
    fig, ax = new_figure(9.0, 3.4)
    ax.fill_between(hour, lo, hi, color=PALETTE[3], alpha=0.3, lw=0, step="mid", label="lowest – highest bus LMP")
    if mean is not None:
        ax.plot(hour, mean, color=PALETTE[3], lw=1.2, drawstyle="steps-mid", label="mean over buses")
    spread = hi - lo
    k = int(np.nanargmax(spread)) if np.isfinite(spread).any() else 0
    ax.set_xlabel("hour of the profile")
    ax.set_ylabel(r"LMP (\$/MWh)")
    ax.legend(frameon=False, loc="upper left")
    ax.set_title(f"{title}: {np.nanmin(lo):.2f} – {np.nanmax(hi):.2f} \\$/MWh; widest spread {spread[k]:.2f} \\$/MWh "
                 f"(hour {int(hour[k])})", loc="left")
    cap = ("Band: the lowest and highest LMP over the energised buses in each hour; line: their mean. A band of zero "
           "width means no branch limit binds (one system price).")
    return Fig("lmp", title, cap, fig, {"hour": hour, "lmp_min": lo, "lmp_max": hi, "lmp_mean": mean},
               {"lmp_min": float(np.nanmin(lo)), "lmp_max": float(np.nanmax(hi)), "spread_max": float(spread[k]),
                "spread_max_hour": int(hour[k])})


def binding(run):
    title = "Binding constraints per hour"
    hours = run.read("hours", columns=["hour"]).sort_by("hour")["hour"].to_numpy()
    kinds, counts = [], {}
    if run.has("binding"):
        t = run.read("binding", columns=["hour", "kind"])
        if t.num_rows:
            agg = t.group_by(["hour", "kind"]).aggregate([("hour", "count")])
            kinds = sorted(set(agg["kind"].to_pylist()), key=lambda k: list(KIND_COLOURS).index(k)
                           if k in KIND_COLOURS else 99)
            pos = np.searchsorted(hours, agg["hour"].to_numpy())
            for k in kinds:
                counts[k] = np.zeros(len(hours), dtype=np.int64)
            for p, k, c in zip(pos, agg["kind"].to_pylist(), agg["hour_count"].to_numpy()):
                counts[k][p] += c
    if not kinds:
        return no_data("binding", title, "No constraint binds in any hour (no congestion, no unit at a limit).")
    fig, ax = new_figure(9.0, 3.4)
    bottom = np.zeros(len(hours))
    for k in kinds:
        ax.bar(hours, counts[k], bottom=bottom, width=1.0, color=KIND_COLOURS.get(k, "#999999"),
               label=KIND_LABELS.get(k, k))
        bottom += counts[k]
    ax.set_xlabel("hour of the profile")
    ax.set_ylabel("binding constraints")
    ax.legend(frameon=False, ncol=len(kinds), loc="upper left", bbox_to_anchor=(0, 1.0))
    ax.set_ylim(0, bottom.max() * 1.25 + 0.5)
    totals = {k: int(counts[k].sum()) for k in kinds}
    congested = int(np.sum(counts.get("branch", np.zeros(1)) > 0))
    ax.set_title(f"{title} (" + ", ".join(f"{v:,} {KIND_LABELS.get(k, k)}" for k, v in totals.items())
                 + f" in all); {congested} of {len(hours)} hours congested", loc="left")
    cap = ("Number of constraints at their limit in each hour, by kind: branch flow limits (congestion), generators at "
           "Pmax or Pmin, ramp limits.")
    return Fig("binding", title, cap, fig, {"hour": hours, "counts": counts},
               {"binding_counts": totals, "congested_hours": congested})


def binding_table(run, limit=15):
    s = run.summary
    rows = [[b["branch_id"], b["hours"]] for b in (s.get("most_binding_branches") or [])[:limit]]
    cap = ("Branches whose flow limit binds in the most hours (reduce/summary.json)." if rows
           else "No branch limit binds in any hour.")
    return Table("binding_branches", "Most often binding branches", ["branch", "hours binding"], rows, cap,
                 {"branches": len(rows)})


def figures(run, options):
    s = run.summary
    numbers = {k: s.get(k) for k in ("hours", "horizon", "step", "total_cost", "mean_cost_per_h", "lmp_min", "lmp_max",
                                     "congested_hours", "binding_counts")}
    return [cost(run), lmp_spread(run), binding(run)], [binding_table(run)], numbers
