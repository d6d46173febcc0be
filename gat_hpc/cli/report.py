"""``gat-hpc report --run-dir RUN [--out DIR] [--format html|png]``: figures and an HTML page of a run."""

from __future__ import annotations

import argparse
import sys
import time

from gat_hpc.cli.argtypes import positive_int

EXAMPLES = """examples:
  gat-hpc report --run-dir runs/n1                    # RUN/report/report.html + PNGs + report.json
  gat-hpc report --run-dir runs/adq --out reports/adq --format png
  gat-hpc report --run-dir runs/n1 --top-outages 60 --top-branches 30
  gat-hpc report --run-dir out/pf118                  # a `gat-hpc pf ac ... --out DIR` folder

Figures by study: contingency (heat-map of the worst loading per hour x outage, most often
overloaded branches, top violations), adequacy (LOLE/EUE running means with 95% intervals,
per-sample EUE, hourly LOLP), pf-hourly (voltages, angle spread, loading), opf-dc (cost, LMP
spread, binding constraints); every run: chunk timeline, throughput, failures and retries.
Only the run directory's files are read (run.json, results/, reduce/), so a run copied from a
cluster can be reported on a laptop. The run must be reduced (`gat-hpc reduce`).
"""


def add_parser(sub):
    p = sub.add_parser("report", help="figures and a self-contained HTML page of a finished run",
                       description="Draw a reduced run's figures (matplotlib, PNG) and write them with one "
                                   "self-contained HTML page (figures embedded, no external files) and report.json "
                                   "(the figures and the key numbers shown). The output folder is written whole or "
                                   "not at all.",
                       epilog=EXAMPLES, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--run-dir", required=True, help="a reduced run directory, or a `gat-hpc pf --out` folder")
    p.add_argument("--out", default=None, help="output folder (default RUN/report); replaced whole")
    p.add_argument("--format", choices=("html", "png"), default="html",
                   help="html: report.html with the PNGs and report.json (default); png: the PNGs and report.json")
    p.add_argument("--top-outages", type=positive_int, default=40,
                   help="contingency: outages (rows) in the heat-map, by worst loading (default 40)")
    p.add_argument("--top-branches", type=positive_int, default=20,
                   help="contingency: branches in the overload bar chart (default 20)")
    p.add_argument("--table-rows", type=positive_int, default=25,
                   help="contingency: rows of the top-violations table (default 25)")
    p.add_argument("--quiet", action="store_true", help="no summary line on stderr")
    p.set_defaults(func=run)
    return p


def run(args):
    from gat_hpc.report import make_report

    t0 = time.perf_counter()
    rep = make_report(args.run_dir, out=args.out, fmt=args.format,
                      options={"top_outages": args.top_outages, "top_branches": args.top_branches,
                               "table_rows": args.table_rows})
    if not args.quiet:
        what = "report.html, " if args.format == "html" else ""
        nf, nt = len(rep.figures), len(rep.tables)
        print(f"report: {rep.run.study}: {nf} figure{'s' * (nf != 1)}, {nt} table{'s' * (nt != 1)} -> {rep.out}/ "
              f"({what}{nf} PNG, report.json) in {time.perf_counter() - t0:.1f} s", file=sys.stderr)
    return 0
