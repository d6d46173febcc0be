"""Contingency runs: worst loading per hour x outage (heat-map), the most often overloaded
branches, and the top violations.

Loadings follow reduce/top_violations.parquet: an (hour, contingency) verified in AC counts with
its AC values, any other with its DC values. Tables of tens of millions of rows are streamed
in batches (two passes over contingencies.parquet, one over violations.parquet).
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from gat_hpc.report.common import Fig, Table, fmt_num, new_figure, no_data

CONT_COLUMNS = ["hour", "contingency_index", "contingency_label", "contingency_kind", "contingency_branch_id",
                "contingency_branch_id2", "contingency_gen_id", "max_loading_pct", "ac_verified", "ac_converged",
                "ac_max_loading_pct"]
KEY_SHIFT = 1 << 32
STRIP_NOTES = {"Pmin relaxed": "'Pmin relaxed', demand below the fleet's total Pmin, so units were dispatched below "
                               "their Pmin (dispatch_pmin_relaxed)",
               "demand unmet": "'demand unmet', the fleet could not cover the demand (unserved_by_dispatch_mw > 0)"}


def _f64(col):
    """A float column as numpy, nulls as NaN."""
    return pc.fill_null(col.cast(pa.float64()), np.nan).to_numpy(zero_copy_only=False)


def _effective(batch):
    """Worst loading of each row: AC where the AC re-solve converged, DC otherwise (NaN: islanding)."""
    ac_ok = pc.fill_null(batch.column("ac_converged"), False).to_numpy(zero_copy_only=False)
    return np.where(ac_ok, _f64(batch.column("ac_max_loading_pct")), _f64(batch.column("max_loading_pct")))


def outage_label(kind, label, b1, b2, g):
    if kind == "branch" and b1 is not None:
        return f"branch {b1}"
    if kind == "gen" and g is not None:
        return f"gen {g}"
    if kind == "pair" and b1 is not None and b2 is not None:
        return f"branches {b1} + {b2}"
    return f"set {label}"


def scan(run):
    """Pass 1 over contingencies.parquet: worst loading per contingency, hours, AC-verified keys."""
    if "contingency_scan" in run.cache:
        return run.cache["contingency_scan"]
    cols = [c for c in CONT_COLUMNS if c in run.columns("contingencies")]
    missing = set(CONT_COLUMNS) - set(cols)
    if missing:
        from gat_hpc.errors import InputError
        raise InputError(f"{run.table_path('contingencies')}: column(s) {', '.join(sorted(missing))} missing")
    flags = [c for c in ("dispatch_pmin_relaxed", "unserved_by_dispatch_mw") if c in run.columns("contingencies")]
    best_parts, hours, ac_keys, flag_parts = [], [], [], []
    n_rows = 0
    n_ac_failed = 0
    for b in run.batches("contingencies", cols + flags):
        eff = _effective(b)
        ci = b.column("contingency_index")
        best_parts.append(pa.table({"c": ci, "v": pa.array(eff, from_pandas=True)})
                          .group_by("c").aggregate([("v", "max")]))
        hours.append(np.unique(b.column("hour").to_numpy()))
        if flags:  # per-hour facts of the dispatch, the same in every row of an hour
            f = {"hour": b.column("hour")}
            if "dispatch_pmin_relaxed" in flags:
                f["relaxed"] = pc.fill_null(b.column("dispatch_pmin_relaxed"), False)
            if "unserved_by_dispatch_mw" in flags:
                f["unmet"] = pc.greater(pc.fill_null(b.column("unserved_by_dispatch_mw"), 0.0), 1e-6)
            flag_parts.append(pa.table(f).group_by("hour").aggregate([(k, "any") for k in f if k != "hour"]))
        acv = pc.fill_null(b.column("ac_verified"), False)
        if pc.any(acv).as_py():
            hb = b.column("hour").to_numpy()[acv.to_numpy(zero_copy_only=False)]
            cb = ci.to_numpy()[acv.to_numpy(zero_copy_only=False)]
            ac_keys.append(hb.astype(np.int64) * KEY_SHIFT + cb)
            conv = pc.fill_null(b.column("ac_converged"), False).to_numpy(zero_copy_only=False)
            n_ac_failed += int(np.sum(acv.to_numpy(zero_copy_only=False) & ~conv))
        n_rows += b.num_rows
    if best_parts:
        best = pa.concat_tables(best_parts).group_by("c").aggregate([("v_max", "max")])
        cidx = best["c"].to_numpy()
        cmax = _f64(best["v_max_max"])
    else:
        cidx, cmax = np.zeros(0, np.int64), np.zeros(0)
    all_hours = np.unique(np.concatenate(hours)) if hours else np.zeros(0, np.int64)
    hour_flags = {}
    if flag_parts:
        ft = pa.concat_tables(flag_parts)
        for k, name in (("relaxed", "Pmin relaxed"), ("unmet", "demand unmet")):
            if f"{k}_any" in ft.column_names:
                g = ft.group_by("hour").aggregate([(f"{k}_any", "any")])
                v = np.zeros(len(all_hours), dtype=bool)
                v[np.searchsorted(all_hours, g["hour"].to_numpy())] = g[f"{k}_any_any"].to_numpy(zero_copy_only=False)
                hour_flags[name] = v
    out = {"cidx": cidx, "cmax": cmax, "hours": all_hours, "hour_flags": hour_flags,
           "ac_keys": np.unique(np.concatenate(ac_keys)) if ac_keys else np.zeros(0, np.int64),
           "rows": n_rows, "ac_failed": n_ac_failed}
    run.cache["contingency_scan"] = out
    return out


def heatmap_data(run, top=40):
    """Matrix (top outages x hours) of the worst post-outage loading in % of the rating.

    Rows are the ``top`` outages with the highest loading over all hours (ties by index), highest
    first; NaN where the outage islands part of the network (not screened).
    """
    s = scan(run)
    finite = np.isfinite(s["cmax"])
    order = np.lexsort((s["cidx"][finite], -s["cmax"][finite]))
    chosen = s["cidx"][finite][order][:top]
    hours = s["hours"]
    matrix = np.full((len(chosen), len(hours)), np.nan)
    labels = [None] * len(chosen)
    if len(chosen):
        row_of = {int(c): i for i, c in enumerate(chosen)}
        want = pa.array(chosen, pa.int64())
        cols = CONT_COLUMNS
        for b in run.batches("contingencies", cols):
            mask = pc.is_in(b.column("contingency_index"), value_set=want)
            if not pc.any(mask).as_py():
                continue
            t = pa.Table.from_batches([b]).filter(mask)
            eff = _effective(t)
            ci = t["contingency_index"].to_numpy()
            r = np.array([row_of[int(c)] for c in ci], dtype=np.int64)
            matrix[r, np.searchsorted(hours, t["hour"].to_numpy())] = eff
            for i, row in zip(r, t.select(["contingency_kind", "contingency_label", "contingency_branch_id",
                                           "contingency_branch_id2", "contingency_gen_id"]).to_pylist()):
                if labels[i] is None:
                    labels[i] = outage_label(row["contingency_kind"], row["contingency_label"],
                                             row["contingency_branch_id"], row["contingency_branch_id2"],
                                             row["contingency_gen_id"])
    return {"matrix": matrix, "hours": hours, "contingency_index": chosen, "labels": labels,
            "hour_flags": s["hour_flags"],
            "outages": int(finite.sum()), "outages_islanding": int((~finite).sum())}


def heatmap(run, top=40):
    d = heatmap_data(run, top)
    title = "Worst post-outage loading per hour and outage"
    m = d["matrix"]
    if m.size == 0 or not np.isfinite(m).any():
        return no_data("heatmap", title, "No screened outage has a loading (every outage islands, or no rated branch).")
    if np.nanmax(m) <= 0:
        rating = run.config.get("rating", "rateA")
        return no_data("heatmap", title, f"Every post-outage loading is 0: no branch has a {rating} rating, so no "
                       "branch is monitored.")
    import matplotlib
    from matplotlib.colors import Normalize, TwoSlopeNorm

    thr = float(run.config.get("threshold_pct", 100.0))
    k, n_h = m.shape
    vmin, vmax = float(np.nanmin(m)), float(np.nanmax(m))
    strips = {name: v for name, v in d["hour_flags"].items() if v.any()}
    height = min(11.0, 1.9 + 0.2 * k + 0.25 * len(strips))
    if strips:
        fig, (sx, ax) = new_figure(9.5, height, nrows=2, ncols=1, sharex=True,
                                   height_ratios=[0.25 * len(strips) + 0.05, 0.2 * k])
    else:
        fig, ax = new_figure(9.5, height)
    hours = d["hours"]
    contiguous = n_h > 0 and np.all(np.diff(hours) == 1)
    # contiguous hours: x is the hour itself; otherwise the column index, labelled with its hour
    x0, x1 = (hours[0] - 0.5, hours[-1] + 0.5) if contiguous else (-0.5, n_h - 0.5)
    cmap = matplotlib.colormaps["RdYlBu_r"].copy()
    cmap.set_bad("#d9d9d9")
    norm = TwoSlopeNorm(vcenter=100.0, vmin=vmin, vmax=vmax) if vmin < 100.0 < vmax else \
        Normalize(vmin=vmin, vmax=vmax if vmax > vmin else vmin + 1)
    im = ax.imshow(np.ma.masked_invalid(m), aspect="auto", cmap=cmap, norm=norm, interpolation="nearest",
                   extent=(x0, x1, k - 0.5, -0.5))
    ax.grid(False)
    ax.set_yticks(np.arange(k), d["labels"])
    from matplotlib.ticker import FuncFormatter, MaxNLocator

    ax.xaxis.set_major_locator(MaxNLocator(nbins=14, integer=True))
    if not contiguous:
        ax.xaxis.set_major_formatter(FuncFormatter(lambda x, _: str(int(hours[int(round(x))]))
                                                   if 0 <= round(x) < n_h and abs(x - round(x)) < 1e-6 else ""))
    if strips:
        from matplotlib.colors import ListedColormap

        sm = np.array([v for v in strips.values()], dtype=float)
        sx.imshow(sm, aspect="auto", cmap=ListedColormap(["#f2f2f2", "#404040"]), vmin=0, vmax=1,
                  interpolation="nearest", extent=(x0, x1, len(strips) - 0.5, -0.5))
        sx.set_yticks(np.arange(len(strips)), [f"{n} ({int(v.sum())} h)" for n, v in strips.items()])
        sx.grid(False)
        sx.tick_params(axis="x", labelbottom=False, length=0)
        sx.tick_params(axis="y", labelsize=7.5)
        for sp in sx.spines.values():
            sp.set_visible(False)
    ax.set_xlabel("hour of the profile")
    ax.set_ylabel(f"outage (top {k} of {fmt_num(d['outages'])} by worst loading)")
    cb = fig.colorbar(im, ax=ax, pad=0.01, fraction=0.04, aspect=max(20, 3 * k // 2))
    cb.set_label("worst branch loading after the outage (% of rating)")
    if vmin < 100.0 < vmax:
        cb.ax.axhline(100.0, color="black", lw=0.8)
    i, j = np.unravel_index(np.nanargmax(m), m.shape)
    (sx if strips else ax).set_title(f"{title}: max {vmax:.1f}% ({d['labels'][i]} out, hour {int(hours[j])})")
    ax.tick_params(axis="y", labelsize=7.5 if k > 25 else 8.5)
    caption = (f"Each cell is the highest loading of any monitored branch after the outage in that hour (% of "
               f"{run.config.get('rating', 'rateA')}; AC value where the outage was re-solved in AC). Rows: the {k} "
               f"outages with the highest loading over all {fmt_num(n_h)} hours, worst at the top. Red is above 100%; "
               f"the violation threshold of the run is {thr:g}%. Grey: the outage islands part of the network "
               "(not screened)." + (" The dark marks above the map are hours whose dispatch was not the plain "
                                    "proportional one: " + "; ".join(STRIP_NOTES[n] for n in strips) + "."
                                    if strips else ""))
    nums = {"max_loading_pct": vmax, "max_outage": d["labels"][i],
            "max_contingency_index": int(d["contingency_index"][i]),
            "max_hour": int(hours[j]), "outages_shown": k, "outages_screened": d["outages"], "hours": n_h}
    return Fig("heatmap", "Worst loading per hour and outage", caption, fig, d, nums)


def overloaded_data(run):
    """Number of (hour, contingency) pairs in which each monitored branch is overloaded, most first,
    and how many of those found it above the threshold before the outage (``before``; zeros for
    runs made before violations.parquet had ``base_loading_pct``)."""
    s = scan(run)
    ac_keys = pa.array(s["ac_keys"], pa.int64())
    has_ac = len(s["ac_keys"]) > 0
    thr = float(run.config.get("threshold_pct", 100.0))
    parts = []
    cols = ["hour", "contingency_index", "monitored_branch_id", "source"]
    with_base = "base_loading_pct" in run.columns("violations")  # [] when there is no table
    batches = run.batches("violations", cols + (["base_loading_pct"] if with_base else [])) \
        if run.has("violations") else []
    for b in batches:
        src = b.column("source")
        if has_ac:
            key = pc.add(pc.multiply(b.column("hour").cast(pa.int64()), KEY_SHIFT), b.column("contingency_index"))
            keep = pc.equal(pc.is_in(key, value_set=ac_keys), pc.equal(src, "ac"))
        else:
            keep = pc.equal(src, "dc")
        t = pa.Table.from_batches([b]).filter(keep)
        if t.num_rows:
            pre = pc.fill_null(pc.greater(t["base_loading_pct"], thr), False) if with_base else \
                pa.array(np.zeros(t.num_rows, dtype=bool))
            t = pa.table({"monitored_branch_id": t["monitored_branch_id"], "pre": pre.cast(pa.int64())})
            parts.append(t.group_by("monitored_branch_id").aggregate([("pre", "count"), ("pre", "sum")]))
    if parts:
        agg = pa.concat_tables(parts).group_by("monitored_branch_id").aggregate(
            [("pre_count", "sum"), ("pre_sum", "sum")])
        ids, counts = agg["monitored_branch_id"].to_numpy(), agg["pre_count_sum"].to_numpy()
        before = agg["pre_sum_sum"].to_numpy()
    else:
        ids, counts, before = (np.zeros(0, np.int64) for _ in range(3))
    order = np.lexsort((ids, -counts))
    return {"branch_id": ids[order], "count": counts[order].astype(np.int64),
            "before": before[order].astype(np.int64)}


def overloaded(run, top=20):
    d = overloaded_data(run)
    title = "Most frequently overloaded branches"
    if len(d["branch_id"]) == 0:
        thr = float(run.config.get("threshold_pct", 100))
        return no_data("overloaded", title, f"No branch exceeds {thr:g}% of its rating "
                                            "after any outage in any hour.")
    n = min(top, len(d["branch_id"]))
    ids, counts, before = d["branch_id"][:n], d["count"][:n], d["before"][:n]
    fig, ax = new_figure(8.0, min(8.0, 1.5 + 0.24 * n))
    y = np.arange(n)
    ax.barh(y, counts, color="#d6604d", height=0.7, label="caused by the outage")
    if before.any():  # the part already above the threshold before the outage
        ax.barh(y, before, color="#f4a582", height=0.7, label="already overloaded before the outage")
        ax.legend(loc="lower right", fontsize=8)
    ax.set_yticks(y, [f"branch {int(b)}" for b in ids])
    ax.set_ylim(n - 0.5, -0.6)
    ax.grid(axis="y", visible=False)
    total_pairs = scan(run)["rows"]
    for yi, c in zip(y, counts):
        ax.text(c, yi, f" {int(c):,} ({100 * c / max(total_pairs, 1):.2g}%)", va="center", fontsize=8)
    from matplotlib.ticker import FuncFormatter

    log = counts.max() > 50 * max(counts.min(), 1)
    if log:  # one branch overloaded almost everywhere would flatten the others to nothing
        ax.set_xscale("log")
        ax.set_xlim(max(counts.min(), 1) * 0.7, counts.max() * 6)
    else:
        ax.set_xlim(0, counts.max() * 1.25)
    ax.xaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:,.0f}" if v >= 1 else f"{v:g}"))
    ax.set_xlabel("overloaded (hour, outage) pairs" + (" (log scale)" if log else ""))
    ax.set_title(f"{title}: {len(d['branch_id'])} branches overloaded at least once")
    thr = float(run.config.get("threshold_pct", 100.0))
    per = run.config.get("violations_per_contingency", 5)
    caption = (f"For each monitored branch, the number of (hour, outage) pairs, of {fmt_num(total_pairs)} screened, "
               f"after which its loading exceeds {thr:g}% of its rating; the {n} most frequent. Counts come from "
               f"violations.parquet, which keeps the {per} worst branches of each (hour, outage), so a branch that is "
               "rarely among the worst few can be under-counted. The lighter part of a bar counts the pairs in "
               "which the branch was already above the threshold before the outage, in the same hour "
               "(base_loading_pct): overloads of the base case, not of the outage.")
    nums = {"branches_overloaded": len(d["branch_id"]), "most_overloaded_branch": int(ids[0]),
            "most_overloaded_count": int(counts[0]), "most_overloaded_before": int(before[0])}
    return Fig("overloaded", "Most frequently overloaded branches", caption, fig, d, nums)


def top_table(run, limit=25):
    if not run.has("top_violations"):
        return Table("top_violations", "Top violations", [], [], "No violation table (reduce/top_violations.parquet).",
                     {"rows": 0})
    t = run.read("top_violations")
    rows = []
    for r in t.slice(0, limit).to_pylist():
        before = r.get("base_loading_pct")
        rows.append([r["hour"], r["contingency_label"], r["monitored_branch_id"], f"{r['flow_mw']:.2f}",
                     f"{r['limit_mw']:.2f}", f"{r['loading_pct']:.2f}", "-" if before is None else f"{before:.2f}",
                     "AC" if r.get("ac_verified") else "DC"])
    caption = (f"The {min(limit, t.num_rows)} worst (hour, outage, branch) rows of reduce/top_violations.parquet "
               f"({t.num_rows} rows kept by the run's --top), by loading.") if t.num_rows else \
        "No violation: reduce/top_violations.parquet is empty."
    nums = {"rows": t.num_rows}
    if t.num_rows:
        first = t.slice(0, 1).to_pylist()[0]
        nums.update(top_loading_pct=first["loading_pct"], top_hour=first["hour"],
                    top_contingency_label=first["contingency_label"], top_branch_id=first["monitored_branch_id"])
    return Table("top_violations", "Top violations",
                 ["hour", "outage (label)", "overloaded branch", "flow (MW)", "limit (MW)", "loading (%)",
                  "before outage (%)", "source"],
                 rows, caption, nums)


def figures(run, options):
    figs = [heatmap(run, options.get("top_outages", 40)), overloaded(run, options.get("top_branches", 20))]
    s = run.summary
    numbers = {k: s.get(k) for k in ("mode", "hours", "contingencies", "hour_contingency_rows", "violated_rows",
                                     "islanding_rows", "ac_verified_rows")}
    numbers["ac_not_converged_rows"] = scan(run)["ac_failed"]
    return figs, [top_table(run, options.get("table_rows", 25))], numbers
