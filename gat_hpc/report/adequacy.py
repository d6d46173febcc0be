"""Adequacy runs: convergence of the LOLE and EUE estimates, the per-sample EUE distribution,
and the hours of the profile with loss of load."""

from __future__ import annotations

import numpy as np

from gat_hpc.report.common import PALETTE, Fig, fmt_num, new_figure, no_data

Z95 = 1.96  # the interval of reduce/summary.json: mean +- 1.96 se, clipped at 0


def running_estimate(x):
    """Mean, standard error and 95% interval of the first n samples, for every n (vectorised).

    Sums of the samples and their squares are taken about the overall mean, so the variance
    keeps its precision after millions of samples. se is NaN for n = 1.
    """
    x = np.asarray(x, dtype=np.float64)
    n = np.arange(1, x.size + 1, dtype=np.float64)
    shift = x.mean() if x.size else 0.0
    d = x - shift
    s1 = np.cumsum(d)
    s2 = np.cumsum(d * d)
    mean = shift + s1 / n
    with np.errstate(invalid="ignore", divide="ignore"):
        var = np.maximum(s2 - s1 * s1 / n, 0.0) / (n - 1)
        se = np.sqrt(var / n)
    se[0:1] = np.nan
    lo = np.maximum(mean - Z95 * se, 0.0)
    hi = mean + Z95 * se
    return {"n": n.astype(np.int64), "mean": mean, "se": se, "lo": lo, "hi": hi}


def _per(run):
    h = run.summary.get("hours")
    return "yr" if h in (8760, 8784) else (f"{h} h" if h else "profile")


def convergence(run):
    title = "Convergence of the LOLE and EUE estimates"
    if not run.has("adequacy"):
        return no_data("convergence", title, "No per-sample table (reduce/adequacy.parquet): "
                       + ("the analytic method gives exact indices." if run.config.get("method") == "analytic"
                          else "no sample finished."))
    t = run.read("adequacy", columns=["scenario_id", "lole_h", "eue_mwh"]).sort_by("scenario_id")
    lole = running_estimate(t["lole_h"].to_numpy().astype(np.float64))
    eue = running_estimate(t["eue_mwh"].to_numpy())
    n = lole["n"]
    per = _per(run)
    fig, (a1, a2, a3) = new_figure(8.5, 7.4, nrows=3, ncols=1, sharex=True, height_ratios=[1, 1, 0.8])
    first = min(len(n) - 1, 9)  # the first few samples have very wide intervals: scale to the band after them
    for ax, est, label, unit, colour in ((a1, lole, "LOLE", f"h/{per}", PALETTE[0]),
                                         (a2, eue, "EUE", f"MWh/{per}", PALETTE[1])):
        ax.fill_between(n, est["lo"], est["hi"], color=colour, alpha=0.22, lw=0, label="95% interval")
        ax.plot(n, est["mean"], color=colour, lw=1.4, label="running mean")
        ax.axhline(est["mean"][-1], color="black", lw=0.7, ls="--", label=f"final mean ({n[-1]:,} samples)")
        ax.set_ylabel(f"{label} ({unit})")
        width = (est["hi"][-1] - est["lo"][-1]) / 2
        ax.set_title(f"{label} = {fmt_num(est['mean'][-1], 4)} ± {fmt_num(width, 3)} {unit} "
                     f"(95% CI {fmt_num(est['lo'][-1], 4)} – {fmt_num(est['hi'][-1], 4)})", loc="left")
        band = np.concatenate([est["lo"][first:], est["hi"][first:], est["mean"][first:]])
        band = band[np.isfinite(band)]
        if band.size and band.max() > band.min():
            pad = 0.06 * (band.max() - band.min())
            ax.set_ylim(max(0.0, band.min() - pad), band.max() + pad)
    # how fast the interval narrows: relative half-width against n, with the 1/sqrt(n) law through the end
    for est, label, colour in ((lole, "LOLE", PALETTE[0]), (eue, "EUE", PALETTE[1])):
        with np.errstate(invalid="ignore", divide="ignore"):
            rel = 100 * Z95 * est["se"] / est["mean"]
        a3.plot(n, rel, color=colour, lw=1.3, label=label)
    ref = rel[-1] * np.sqrt(n[-1] / n)
    a3.plot(n, ref, color="black", lw=0.8, ls=":", label="∝ 1/√n")
    a3.set_yscale("log")
    fin = np.concatenate([100 * Z95 * est["se"][first:] / est["mean"][first:] for est in (lole, eue)])
    fin = fin[np.isfinite(fin) & (fin > 0)]
    if fin.size:
        a3.set_ylim(fin.min() / 1.5, fin.max() * 1.5)
    a3.set_ylabel("95% CI half-width\n(% of the mean)")
    a3.legend(frameon=False, loc="upper right", ncol=3)
    from matplotlib.ticker import FuncFormatter

    plain_num = FuncFormatter(lambda v, _: f"{v:,.0f}" if v >= 1 else f"{v:g}")
    from matplotlib.ticker import LogLocator, NullFormatter

    a3.yaxis.set_major_locator(LogLocator(base=10, subs=(1.0, 2.0, 5.0)))
    a3.yaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
    a3.yaxis.set_minor_formatter(NullFormatter())
    if n[-1] >= 100:
        a3.set_xscale("log")
        a3.set_xlim(max(1, n[-1] / 1000), n[-1])
        a3.xaxis.set_major_formatter(plain_num)
    a3.set_xlabel("samples" + (" (log scale)" if n[-1] >= 100 else ""))
    a1.legend(loc="upper right", frameon=False, ncol=3)
    cap = (f"Running mean of the per-sample loss-of-load expectation (LOLE, hours with loss of load) and expected "
           f"unserved energy (EUE) over the first n of {n[-1]:,} samples, in sample order, with its 95% interval "
           "(mean ± 1.96 standard errors, clipped at 0); the last values are those of reduce/summary.json. Bottom: "
           "the interval's half-width relative to the mean, with the 1/√n law drawn through the final value.")
    nums = {"samples": int(n[-1]), "lole_mean": lole["mean"][-1], "lole_ci95": [lole["lo"][-1], lole["hi"][-1]],
            "eue_mean": eue["mean"][-1], "eue_ci95": [eue["lo"][-1], eue["hi"][-1]], "per": per}
    for est, key in ((lole, "lole"), (eue, "eue")):  # how fast the interval narrowed
        half = (est["hi"] - est["lo"]) / 2
        for k in (100, 1000):
            if n[-1] >= k:
                nums[f"{key}_ci_halfwidth_at_{k}"] = half[k - 1]
        nums[f"{key}_ci_halfwidth_final"] = half[-1]
    return Fig("convergence", title, cap, fig, {"n": n, "lole": lole, "eue": eue}, nums)


def eue_histogram(run):
    title = "Unserved energy per sample"
    if not run.has("adequacy"):
        return no_data("eue_histogram", title, "No per-sample table (reduce/adequacy.parquet).")
    eue = run.read("adequacy", columns=["eue_mwh"])["eue_mwh"].to_numpy()
    per = _per(run)
    zero = eue <= 0
    pos = eue[~zero]
    fig, ax = new_figure(8.0, 3.4)
    if pos.size:
        counts, edges, _ = ax.hist(pos, bins=min(60, max(10, int(np.sqrt(pos.size)))), color=PALETTE[1], alpha=0.85)
    else:
        counts, edges = np.zeros(0), np.zeros(0)
        ax.text(0.5, 0.5, "no sample has unserved energy", ha="center", va="center", transform=ax.transAxes)
    ax.set_xlabel(f"unserved energy of the sample (MWh/{per})")
    ax.set_ylabel("samples")
    if pos.size:
        ax.axvline(eue.mean(), color="black", lw=0.9, ls="--", label=f"mean over all samples {fmt_num(eue.mean())} MWh")
        ax.legend(frameon=False)
    ax.set_title(f"{title}: {int(zero.sum()):,} of {eue.size:,} samples ({100 * zero.mean():.1f}%) serve all load "
                 "(not shown)")
    cap = (f"Histogram of the unserved energy of the {pos.size:,} samples with loss of load; the "
           f"{int(zero.sum()):,} samples without any are left out (they would be one bar at 0). "
           f"Largest sample: {fmt_num(eue.max() if eue.size else None)} MWh.")
    nums = {"samples": int(eue.size), "samples_without_loss": int(zero.sum()),
            "eue_max": float(eue.max()) if eue.size else None,
            "eue_p95": float(np.percentile(eue, 95)) if eue.size else None}
    return Fig("eue_histogram", title, cap, fig, {"eue_mwh": eue, "counts": counts, "edges": edges}, nums)


def hourly(run):
    title = "Loss of load by hour of the profile"
    if not run.has("hourly"):
        return no_data("hourly", title, "No hourly table (reduce/hourly.parquet).")
    t = run.read("hourly", columns=["hour", "lolp", "eue_mwh"]).sort_by("hour")
    hour, lolp, eue = t["hour"].to_numpy(), t["lolp"].to_numpy(), t["eue_mwh"].to_numpy()
    at_risk = lolp > 0
    peak = int(hour[np.argmax(lolp)]) if hour.size else None
    head = (f"{int(at_risk.sum()):,} of {hour.size:,} hours have LOLP > 0"
            + (f"; highest {lolp.max():.3g} in hour {peak}" if at_risk.any() else ""))
    calendar = hour.size >= 24 * 7
    data = {"hour": hour, "lolp": lolp, "eue_mwh": eue}
    if calendar:
        # a long profile: day x hour-of-day map of LOLP (hour 0 = midnight of day 0), daily unserved energy below
        import matplotlib
        from matplotlib.colors import LogNorm, Normalize

        day, hod = hour // 24, hour % 24
        d0 = int(day.min())
        n_days = int(day.max()) - d0 + 1
        grid = np.full((24, n_days), np.nan)
        grid[hod, day - d0] = lolp
        daily = np.bincount(day - d0, eue, n_days)
        fig, (a1, a2) = new_figure(9.5, 5.2, nrows=2, ncols=1, sharex=True, height_ratios=[1.5, 1.0])
        cmap = matplotlib.colormaps["YlOrRd"].copy()
        cmap.set_bad("#f3f3f3")  # hours without loss of load (or not in the profile)
        pos = lolp[at_risk]
        norm = (LogNorm(vmin=pos.min(), vmax=pos.max()) if pos.size and pos.max() > 10 * pos.min()
                else Normalize(vmin=0, vmax=pos.max() if pos.size else 1))
        im = a1.imshow(np.ma.masked_where(~(grid > 0), grid), aspect="auto", cmap=cmap, norm=norm,
                       interpolation="nearest", origin="lower", extent=(d0 - 0.5, d0 + n_days - 0.5, -0.5, 23.5))
        a1.grid(False)
        a1.set_yticks([0, 6, 12, 18, 23])
        a1.set_ylabel("hour of the day")
        cb = fig.colorbar(im, ax=a1, pad=0.01, fraction=0.04)
        cb.set_label("LOLP (grey: 0)")
        a2.bar(np.arange(d0, d0 + n_days), daily, width=1.0, color=PALETTE[1])
        a2.set_ylabel("expected unserved\nenergy (MWh/day)")
        a2.set_xlabel("day of the profile")
        a2.set_ylim(bottom=0)
        a1.set_title(f"{title}: {head}", loc="left")
        data.update(grid=grid, daily_eue_mwh=daily)
    else:
        fig, (a1, a2) = new_figure(9.0, 4.6, nrows=2, ncols=1, sharex=True)
        a1.bar(hour, lolp, width=1.0, color=PALETTE[0])
        a2.bar(hour, eue, width=1.0, color=PALETTE[1])
        a1.set_ylabel("LOLP")
        a2.set_ylabel("expected unserved\nenergy (MWh)")
        a2.set_xlabel("hour of the profile")
        a1.set_ylim(bottom=0)
        a2.set_ylim(bottom=0)
        a1.set_title(f"{title}: {head}", loc="left")
    exact = run.config.get("method") == "analytic"
    how = ("exact (capacity outage probability table)." if exact else
           f"estimated over {fmt_num(run.summary.get('samples'))} samples (the fraction of samples short in that "
           "hour).")
    cap = (("Top: loss-of-load probability of every hour, by day (x) and hour of the day (y; profile hour 0 taken as "
            "midnight), on a log colour scale when it spans more than a decade. Bottom: expected unserved energy per "
            "day. " if calendar else "Loss-of-load probability of each hour and its expected unserved energy. ")
           + "Values are " + how)
    nums = {"hours": int(hour.size), "hours_with_lolp": int(at_risk.sum()),
            "peak_lolp": float(lolp.max()) if hour.size else None,
            "peak_lolp_hour": peak}
    return Fig("hourly", title, cap, fig, data, nums)


def figures(run, options):
    s = run.summary
    numbers = {"method": s.get("method"), "network": s.get("network"), "samples": s.get("samples"),
               "hours": s.get("hours")}
    for key in ("lole_h_per_yr", "eue_mwh_per_yr", "lolp"):
        v = s.get(key) or {}
        numbers[key] = {"mean": v.get("mean"), "ci95": v.get("ci95")}
    if run.config.get("method") == "analytic":  # exact indices: no samples to converge or to histogram
        return [hourly(run)], [], numbers
    return [convergence(run), eue_histogram(run), hourly(run)], [], numbers
