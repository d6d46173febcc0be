"""Figure records, the house style, and the figures every run gets: chunk timeline, throughput,
failures and retries.

Figures are drawn on :class:`matplotlib.figure.Figure` objects with the Agg canvas (no pyplot
state, no display). Every figure function returns a :class:`Fig` whose ``data`` holds the
arrays it plotted, so tests compare them with the run's tables, and whose ``numbers`` are the
key values shown (they go to report.json).
"""

from __future__ import annotations

import sys
from dataclasses import dataclass, field

import matplotlib

if "matplotlib.pyplot" not in sys.modules:  # never switch the backend of someone's pyplot session
    matplotlib.use("Agg")

import numpy as np  # noqa: E402
from matplotlib.backends.backend_agg import FigureCanvasAgg  # noqa: E402
from matplotlib.collections import PolyCollection  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402

STYLE = {
    "figure.dpi": 100, "savefig.dpi": 110, "font.size": 9.5, "axes.titlesize": 10.5, "axes.titleweight": "bold",
    "axes.labelsize": 9.5, "xtick.labelsize": 8.5, "ytick.labelsize": 8.5, "legend.fontsize": 8.5,
    "axes.spines.top": False, "axes.spines.right": False, "axes.grid": True, "grid.alpha": 0.3,
    "grid.linewidth": 0.6, "figure.constrained_layout.use": True, "image.interpolation": "nearest",
}
FAILED_COLOUR = "#d62728"
PALETTE = ["#1f77b4", "#ff7f0e", "#2ca02c", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f", "#bcbd22", "#17becf",
           "#aec7e8", "#ffbb78", "#98df8a", "#c5b0d5", "#c49c94", "#f7b6d2", "#dbdb8d", "#9edae5"]
MAX_LANE_LABELS = 40


@dataclass
class Fig:
    """One figure: file stem, title, caption, the matplotlib Figure, the data it plotted, key numbers."""

    name: str
    title: str
    caption: str
    figure: object
    data: dict = field(default_factory=dict)
    numbers: dict = field(default_factory=dict)


@dataclass
class Table:
    """One HTML table: column names, rows of plain values, a caption and key numbers."""

    name: str
    title: str
    columns: list
    rows: list
    caption: str = ""
    numbers: dict = field(default_factory=dict)


def new_figure(width=8.0, height=4.0, **subplots):
    """A Figure on the Agg canvas (no pyplot) and its axes."""
    fig = Figure(figsize=(width, height))
    FigureCanvasAgg(fig)
    axes = fig.subplots(**subplots) if subplots.get("nrows", 1) * subplots.get("ncols", 1) > 1 else fig.add_subplot()
    return fig, axes


def no_data(name, title, why, width=8.0, height=2.2):
    """A figure that says why there is nothing to plot (an empty table is a result, not an error)."""
    fig, ax = new_figure(width, height)
    ax.set_axis_off()
    ax.text(0.5, 0.5, why, ha="center", va="center", wrap=True, fontsize=10, color="#555555", transform=ax.transAxes)
    ax.set_title(title)
    return Fig(name, title, why, fig, {}, {})


def fmt_num(v, digits=4):
    """A number for titles and tables: significant digits, thousands separators for large ones."""
    if v is None:
        return "–"
    if isinstance(v, (bool, np.bool_)):
        return "yes" if v else "no"
    if isinstance(v, (int, np.integer)):
        return f"{int(v):,}"
    v = float(v)
    if not np.isfinite(v):
        return "–"
    if v == 0:
        return "0"
    if abs(v) >= 10 ** digits:
        return f"{v:,.0f}"
    return f"{v:.{digits}g}"


def fmt_seconds(v):
    """A duration for titles: ms below a second, minutes and hours when long."""
    if v is None or not np.isfinite(v):
        return "–"
    v = float(v)
    if v < 1:
        return f"{v * 1000:.3g} ms"
    if v < 120:
        return f"{v:.3g} s"
    if v < 7200:
        return f"{v / 60:.3g} min"
    return f"{v / 3600:.3g} h"


def plain(v):
    """A JSON-able value (numpy scalars and arrays to Python, non-finite floats to None)."""
    if isinstance(v, dict):
        return {str(k): plain(x) for k, x in v.items()}
    if isinstance(v, (list, tuple)):
        return [plain(x) for x in v]
    if isinstance(v, np.ndarray):
        return [plain(x) for x in v.tolist()]
    if isinstance(v, (bool, np.bool_)):
        return bool(v)
    if isinstance(v, (int, np.integer)):
        return int(v)
    if isinstance(v, (float, np.floating)):
        return float(v) if np.isfinite(v) else None
    return v


# ---------------------------------------------------------------- workers and lanes
def assign_lanes(ch):
    """(lane per chunk, lane labels, host per lane).

    MPI ranks and pool workers keep their identity (host and rank, or host and process id).
    When processes do not repeat (a Slurm array: one process per task) or there are too many of
    them to show, chunks are packed per host into the fewest lanes that never overlap, so the
    number of lanes is the concurrency that was reached.
    """
    n = ch.n
    if n == 0:
        return np.zeros(0, dtype=np.int64), [], []
    by_rank = bool(np.all(ch.rank >= 0))
    ident = ch.rank if by_rank else ch.pid
    keys = list(zip(ch.host.tolist(), ident.tolist()))
    distinct = len(set(keys))
    one_per_process = distinct == n and n > 8
    if not by_rank and (one_per_process or distinct > 64 or set(ch.executor.tolist()) == {"slurm"}):
        return _pack_lanes(ch)
    first = {}
    for i in np.argsort(ch.start, kind="stable"):
        first.setdefault(keys[i], ch.start[i])
    order = sorted(first, key=lambda k: (k[0], k[1] if by_rank else first[k]))
    index = {k: j for j, k in enumerate(order)}
    lanes = np.array([index[k] for k in keys], dtype=np.int64)
    labels, hosts, seen = [], [], {}
    for host, ident_ in order:
        seen[host] = seen.get(host, 0) + 1
        labels.append(f"{host} rank {ident_}" if by_rank else f"{host} worker {seen[host]}")
        hosts.append(host)
    return lanes, labels, hosts


def _pack_lanes(ch):
    import heapq

    lanes = np.zeros(ch.n, dtype=np.int64)
    labels, hosts = [], []
    for host in sorted(set(ch.host.tolist())):
        idx = np.flatnonzero(ch.host == host)
        idx = idx[np.argsort(ch.start[idx], kind="stable")]
        free, n_lanes, base = [], 0, len(labels)
        for i in idx:
            if free and free[0][0] <= ch.start[i]:
                _, lane = heapq.heappop(free)
            else:
                lane, n_lanes = n_lanes, n_lanes + 1
            lanes[i] = base + lane
            heapq.heappush(free, (ch.end[i], lane))
        labels += [f"{host} slot {k + 1}" for k in range(n_lanes)]
        hosts += [host] * n_lanes
    return lanes, labels, hosts


# ---------------------------------------------------------------- the figures of every run
def run_numbers(ch):
    """Counts and rates of a run's chunks (report.json and the HTML header)."""
    ok = ch.status == "ok"
    span = float(ch.end.max() - ch.start.min()) if ch.n else 0.0
    secs = ch.end - ch.start
    return {
        "chunks_planned": ch.n_chunks, "chunks_with_result": ch.n, "chunks_ok": int(ok.sum()),
        "chunks_failed": int((ch.status == "failed").sum()), "chunks_missing": len(ch.missing),
        "chunks_unreadable": len(ch.unreadable), "chunks_retried": int((ch.attempt > 1).sum()),
        "wall_s": span, "chunks_per_s": (int(ok.sum()) / span) if span > 0 else None,
        "rows_per_s": (float(ch.rows[ok].sum()) / span) if span > 0 else None, "rows": int(ch.rows[ok].sum()),
        "chunk_s_mean": float(secs.mean()) if ch.n else None, "chunk_s_max": float(secs.max()) if ch.n else None,
        "hosts": sorted(set(ch.host.tolist())), "executors": sorted(set(ch.executor.tolist())),
    }


def timeline(run):
    """One bar per chunk from its start to its end, one lane per worker, coloured by host (or worker)."""
    ch = run.chunks()
    title = "Chunk timeline"
    if ch.n == 0:
        return no_data("timeline", title, "No chunk has a result file: nothing ran yet.")
    t0 = float(ch.start.min())
    s, e = ch.start - t0, ch.end - t0
    lanes, labels, lane_hosts = assign_lanes(ch)
    n_lanes = len(labels)
    hosts = sorted(set(lane_hosts))
    if len(hosts) > 1:
        colour_of = {h: PALETTE[i % len(PALETTE)] for i, h in enumerate(hosts)}
        faces = np.array([colour_of[h] for h in ch.host], dtype=object)
        legend = [(colour_of[h], h) for h in hosts[:12]]
    else:
        lane_colour = np.array([PALETTE[i % len(PALETTE)] for i in range(n_lanes)], dtype=object)
        faces = lane_colour[lanes]
        legend = []
    failed = ch.status == "failed"
    retried = (ch.attempt > 1) & ~failed
    faces = np.where(failed, FAILED_COLOUR, faces)
    h = 0.8 if n_lanes > 1 else 0.6
    y0 = lanes - h / 2
    verts = np.stack([np.column_stack([s, y0]), np.column_stack([s, y0 + h]),
                      np.column_stack([e, y0 + h]), np.column_stack([e, y0])], axis=1)
    height = min(9.0, 1.6 + 0.22 * min(n_lanes, MAX_LANE_LABELS)) if n_lanes <= MAX_LANE_LABELS else 6.0
    fig, ax = new_figure(9.0, max(2.4, height))
    # few chunks per lane: thin white edges separate back-to-back chunks; many: edges in the bar's colour keep
    # very short chunks visible (about one pixel)
    sparse = ch.n <= 150 * max(n_lanes, 1)
    edges = np.where(retried, "black", "white" if sparse else faces)
    coll = PolyCollection(verts, facecolors=list(faces), edgecolors=list(edges),
                          linewidths=np.where(retried, 1.0, 0.6 if sparse else 0.4))
    ax.add_collection(coll)
    span = float(e.max()) if ch.n else 1.0
    ax.set_xlim(-0.01 * span, span * 1.01 if span > 0 else 1.0)
    ax.set_ylim(n_lanes - 0.5, -0.5)
    if n_lanes <= MAX_LANE_LABELS:
        ax.set_yticks(np.arange(n_lanes), labels)
    else:
        ax.set_yticks([])
        ax.set_ylabel(f"{n_lanes} worker lanes")
    ax.grid(axis="y", visible=False)
    ax.set_xlabel("time since the first chunk started (s)")
    ax.set_title(f"Chunk timeline: {fmt_num(ch.n)} chunks, {n_lanes} worker lane{'s' * (n_lanes != 1)}, "
                 f"{len(hosts)} host{'s' * (len(hosts) != 1)}, {fmt_seconds(span)} wall")
    from matplotlib.patches import Patch

    handles = [Patch(facecolor=c, label=lbl) for c, lbl in legend]
    if failed.any():
        handles.append(Patch(facecolor=FAILED_COLOUR, label=f"failed ({int(failed.sum())})"))
    if retried.any():
        handles.append(Patch(facecolor="white", edgecolor="black", label=f"ok after retry ({int(retried.sum())})"))
    if handles:
        ax.legend(handles=handles, loc="upper left", bbox_to_anchor=(1.0, 1.0), frameon=False)
    caption = ("One bar per chunk (its latest attempt), from start to end, on the worker that ran it "
               "(MPI rank or pool process; Slurm array tasks are packed per host into the fewest lanes that never "
               "overlap). " + ("Colours are hosts. " if len(hosts) > 1 else "Colours are workers. ")
               + "Red bars failed; black outlines succeeded after a retry.")
    data = {"chunk_id": ch.chunk_id, "start_s": s, "end_s": e, "lane": lanes, "lane_labels": labels,
            "bars": len(coll.get_paths())}
    return Fig("timeline", "Chunk timeline", caption, fig, data,
               {"bars": ch.n, "lanes": n_lanes, "wall_s": span, "failed": int(failed.sum()),
                "retried": int(retried.sum())})


def throughput(run):
    """Chunks completed against time, with the mean rates, and the distribution of chunk durations."""
    ch = run.chunks()
    if ch.n == 0:
        return no_data("throughput", "Throughput", "No chunk has a result file: nothing ran yet.")
    nums = run_numbers(ch)
    t0 = float(ch.start.min())
    ok = ch.status == "ok"
    t_done = np.sort(ch.end[ok] - t0)
    done = np.arange(1, t_done.size + 1)
    dur = (ch.end - ch.start)[ok]
    fig, (a1, a2) = new_figure(9.5, 3.4, nrows=1, ncols=2, width_ratios=[1.4, 1.0])
    if t_done.size:
        a1.step(np.concatenate([[0.0], t_done]), np.concatenate([[0], done]), where="post", color=PALETTE[0], lw=1.6)
    a1.set_xlabel("time since the first chunk started (s)")
    a1.set_ylabel("chunks completed")
    a1.set_ylim(0, max(ch.n_chunks, 1) * 1.03)
    a1.axhline(ch.n_chunks, color="#888888", lw=0.8, ls="--")
    rate = nums["chunks_per_s"]
    rows = nums["rows_per_s"]
    a1.set_title(f"Throughput: {fmt_num(rate, 3)} chunks/s, {fmt_num(rows, 3)} rows/s", loc="left", fontsize=10)
    if dur.size:
        positive = dur[dur > 0]
        if positive.size and positive.max() / max(positive.min(), 1e-12) > 50:
            bins = np.geomspace(positive.min(), positive.max(), 40)
            a2.set_xscale("log")
        else:
            bins = 40
        a2.hist(dur, bins=bins, color=PALETTE[0], alpha=0.85)
    a2.set_xlabel("chunk duration (s)")
    a2.set_ylabel("chunks")
    a2.set_title(f"Chunk time: mean {fmt_seconds(nums['chunk_s_mean'])}, max {fmt_seconds(nums['chunk_s_max'])}",
                 loc="left", fontsize=10)
    caption = (f"Left: chunks finished over the run's wall time ({fmt_seconds(nums['wall_s'])} from the first start to "
               f"the last end; the dashed line is the {fmt_num(ch.n_chunks)} chunks planned). Right: how long the "
               f"successful chunks took. Rows are the table rows the chunks wrote ({fmt_num(nums['rows'])} in all).")
    keys = ("chunks_per_s", "rows_per_s", "wall_s", "chunk_s_mean", "chunk_s_max", "rows")
    return Fig("throughput", "Throughput", caption, fig, {"t_done_s": t_done, "completed": done, "chunk_s": dur},
               {k: nums[k] for k in keys})


def failures_table(run, limit=50):
    """Failed, missing, unreadable and retried chunks (with the error's first line)."""
    ch = run.chunks()
    rows = []
    for i in np.flatnonzero((ch.status != "ok") | (ch.attempt > 1)):
        rows.append([int(ch.chunk_id[i]), ch.status[i] if ch.status[i] != "ok" else "ok after retry",
                     int(ch.attempt[i]), ch.host[i], ch.executor[i], f"{ch.end[i] - ch.start[i]:.3f}", ch.error[i]])
    rows += [[c, "result unreadable", "", "", "", "", ""] for c in ch.unreadable]
    rows += [[c, "missing (no result)", "", "", "", "", ""] for c in ch.missing]
    rows.sort(key=lambda r: r[0])
    n = len(rows)
    nums = run_numbers(ch)
    if n == 0:
        caption = f"All {fmt_num(ch.n_chunks)} chunks succeeded at their first attempt."
    else:
        caption = (f"{nums['chunks_failed']} failed, {nums['chunks_missing']} missing, {nums['chunks_unreadable']} "
                   f"unreadable, {nums['chunks_retried']} retried (attempt > 1) of {fmt_num(ch.n_chunks)} chunks."
                   + (f" First {limit} shown." if n > limit else ""))
    return Table("failures", "Failures and retries",
                 ["chunk", "status", "attempt", "host", "executor", "seconds", "error"], rows[:limit], caption,
                 {k: nums[k] for k in ("chunks_planned", "chunks_ok", "chunks_failed", "chunks_missing",
                                       "chunks_unreadable", "chunks_retried")})


def run_figures(run):
    return [timeline(run), throughput(run)], [failures_table(run)]
