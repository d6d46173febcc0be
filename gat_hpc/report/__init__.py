"""``gat-hpc report``: figures and one self-contained HTML page from a finished run directory.

Reads only the run directory's files (run.json, results/*.json, reduce/*.parquet,
reduce/summary.json; see :mod:`gat_hpc.report.rundata`), so reports can be made anywhere the
run directory is copied to. Figures per study:

- contingency: worst loading per hour x outage (heat-map), most often overloaded branches,
  table of the top violations;
- adequacy: running LOLE / EUE means with their 95% interval, per-sample EUE histogram,
  hourly LOLP and expected unserved energy;
- pf-hourly (and a `gat-hpc pf --out DIR` folder): voltage magnitudes, angle spread, loading;
- opf-dc: cost, LMP spread and binding constraints per hour;
- every run: chunk timeline, throughput, failures and retries.

The output folder (report.html, <figure>.png, report.json) is built under a temporary name
next to it and renamed into place: a failure leaves the previous report, or nothing.
"""

from __future__ import annotations

import io
import json
import os
import time
from dataclasses import dataclass, field

from gat_hpc.errors import InputError

FORMATS = ("html", "png")
REPORT_SCHEMA = 1
DEFAULT_OPTIONS = {"top_outages": 40, "top_branches": 20, "table_rows": 25}


@dataclass
class Report:
    """What was drawn: figures (with their data), tables, key numbers, and where it was written."""

    run: object
    figures: list
    tables: list
    numbers: dict
    notes: list = field(default_factory=list)
    out: str | None = None
    manifest: dict = field(default_factory=dict)  # the content of report.json


def study_module(study):
    from gat_hpc.report.rundata import PF_FOLDER

    if study == "contingency":
        from gat_hpc.report import contingency as m
    elif study == "adequacy":
        from gat_hpc.report import adequacy as m
    elif study in ("pf-hourly", PF_FOLDER):
        from gat_hpc.report import powerflow as m
    elif study == "opf-dc":
        from gat_hpc.report import opf as m
    else:
        m = None
    return m


def collect(run, options=None):
    """Draw every figure of ``run`` (a RunData); returns a Report (nothing written)."""
    import matplotlib

    from gat_hpc.report.common import STYLE, run_figures, run_numbers

    opts = dict(DEFAULT_OPTIONS, **(options or {}))
    figs, tables, numbers, notes = [], [], {}, []
    with matplotlib.rc_context(STYLE):
        mod = study_module(run.study)
        if mod is not None:
            f, t, n = mod.figures(run, opts)
            figs += f
            tables += t
            numbers.update(n)
        elif run.study != "trivial":
            notes.append(f"No study figures for study '{run.study}': only the run's chunk figures are drawn.")
        if run.is_run:
            f, t = run_figures(run)
            figs += f
            tables += t
            ch = run.chunks()
            rn = run_numbers(ch)
            numbers.update({"chunks": f"{rn['chunks_ok']:,} ok of {rn['chunks_planned']:,}"
                            + (f", {rn['chunks_failed']} failed" if rn["chunks_failed"] else "")
                            + (f", {rn['chunks_missing']} missing" if rn["chunks_missing"] else "")
                            + (f", {rn['chunks_retried']} retried" if rn["chunks_retried"] else ""),
                            "wall_s": rn["wall_s"], "chunks_per_s": rn["chunks_per_s"], "rows_per_s": rn["rows_per_s"],
                            "hosts": rn["hosts"], "executors": rn["executors"]})
            if run.summary.get("partial"):
                notes.append(f"Partial reduce: {run.summary.get('chunks_done')} of {run.summary.get('chunks')} chunks "
                             "are in the tables (gat-hpc reduce --partial).")
            from gat_hpc import __version__

            made_by = run.manifest.get("gat_hpc_version")
            if made_by and made_by != __version__:
                notes.append(f"The run was made by gat-hpc {made_by}; this report by {__version__}.")
    return Report(run, figs, tables, numbers, notes)


def render_png(fig):
    buf = io.BytesIO()
    fig.figure.savefig(buf, format="png", metadata={"Software": None})
    return buf.getvalue()


def check_out(out, run_path):
    """Refuse an output folder that is not ours to replace (the run itself, or a folder of other files)."""
    out = os.path.abspath(out)
    real, run_real = os.path.realpath(out), os.path.realpath(run_path)
    if real == run_real or run_real.startswith(real.rstrip(os.sep) + os.sep):
        raise InputError(f"--out {out}: is the run directory or one of its parents; give a folder of its own "
                         "(default RUN/report)")
    if os.path.exists(out):
        if not os.path.isdir(out):
            raise InputError(f"--out {out}: exists and is not a folder")
        entries = os.listdir(out)
        if entries and "report.json" not in entries:
            raise InputError(f"--out {out}: exists and holds other files (no report.json); the report replaces its "
                             "folder whole, so give a new or an earlier report's folder")
    return out


def make_report(run_dir, out=None, fmt="html", options=None, keep_figures=False):
    """Read the run, draw the figures, write ``out`` (default RUN/report) atomically; returns the Report."""
    from gat_hpc.report.common import plain
    from gat_hpc.report.rundata import RunData
    from gat_hpc.util.atomic import atomic_dir

    if fmt not in FORMATS:
        raise InputError(f"--format {fmt}: expected one of {', '.join(FORMATS)}")
    t0 = time.perf_counter()
    run = RunData.open(run_dir)
    out = check_out(out or os.path.join(run.path, "report"), run.path)
    rep = collect(run, options)
    pngs = {}
    for f in rep.figures:
        pngs[f.name] = render_png(f)
        if not keep_figures:
            f.figure = None
    from gat_hpc import __version__

    manifest = {
        "schema": REPORT_SCHEMA, "generated_by": f"gat-hpc {__version__}", "created": time.time(),
        "run_dir": run.path, "study": run.study, "run_id": run.manifest.get("run_id"),
        "run_gat_hpc_version": run.manifest.get("gat_hpc_version"), "format": fmt,
        "html": "report.html" if fmt == "html" else None, "notes": rep.notes,
        "numbers": plain(rep.numbers),
        "figures": [{"name": f.name, "file": f"{f.name}.png", "title": f.title, "caption": f.caption,
                     "bytes": len(pngs[f.name]), "numbers": plain(f.numbers)} for f in rep.figures],
        "tables": [{"name": t.name, "title": t.title, "caption": t.caption, "rows_shown": len(t.rows),
                    "numbers": plain(t.numbers)} for t in rep.tables],
    }
    try:
        with atomic_dir(out) as tmp:
            for name, data in pngs.items():
                with open(os.path.join(tmp, f"{name}.png"), "wb") as fh:
                    fh.write(data)
            if fmt == "html":
                from gat_hpc.report.html import page

                with open(os.path.join(tmp, "report.html"), "w", encoding="utf-8") as fh:
                    fh.write(page(run, rep.figures, pngs, rep.tables, rep.numbers, rep.notes))
            manifest["seconds"] = time.perf_counter() - t0
            with open(os.path.join(tmp, "report.json"), "w", encoding="utf-8") as fh:
                json.dump(manifest, fh, indent=1, sort_keys=True, allow_nan=False)
                fh.write("\n")
    except OSError as exc:
        raise InputError(f"--out {out}: cannot write the report ({exc.strerror or exc})") from None
    rep.out = out
    rep.manifest = manifest
    return rep
