"""``gat-hpc import CASE --out grid.arrow``: convert a case to GAT's grid.arrow folder (or .m/.raw)."""

from __future__ import annotations

import argparse
import sys


def add_parser(sub):
    p = sub.add_parser("import", help="convert a case file to a grid.arrow folder",
                       description="Read a MATPOWER .m, PSS/E .raw (v33) or grid.arrow case and write it "
                                   "as a grid.arrow folder (or, by the --out extension, .m or .raw).",
                       epilog="examples:\n  gat-hpc import case118.m --out case118.arrow\n"
                              "  gat-hpc import grid.arrow --out case.m",
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("case", help="input case: .m, .raw or grid.arrow folder")
    p.add_argument("--out", required=True, help="output: a folder (grid.arrow), or a .m / .raw file")
    p.add_argument("--quiet", action="store_true", help="print nothing on success")
    p.set_defaults(func=run)
    return p


def run(args):
    from gat_hpc.network.io import read_case

    net = read_case(args.case)
    out = args.out.rstrip("/")
    if out.endswith(".m"):
        from gat_hpc.network.matpower import write_matpower
        write_matpower(net, out)
    elif out.endswith(".raw"):
        from gat_hpc.network.psse import write_raw
        write_raw(net, out)
    else:
        from gat_hpc.network.arrow import write_grid_arrow
        write_grid_arrow(net, out)
    if not args.quiet:
        print(f"import: {net.name}: {net.n_bus} buses, {net.n_gen} generators, {net.n_branch} branches -> {out}",
              file=sys.stderr)
    return 0
