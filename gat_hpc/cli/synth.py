"""``gat-hpc synth tile CASE --copies K --ties T --seed S --out BIG.arrow``: synthetic large networks."""

from __future__ import annotations

import argparse
import sys

EXAMPLES = """examples:
  gat-hpc synth tile case_ACTIVSg70k.m --copies 2 --ties 50 --seed 1 --out tiled-140k.arrow
  gat-hpc synth tile case_ACTIVSg70k.m --copies 15 --ties 20 --seed 1 --out tiled-1m.arrow

The tiled network's power flow is exactly K copies of the base case's (the ties carry no
current at the solution); construction in docs/distributed.md.
"""


def add_parser(sub):
    p = sub.add_parser("synth", help="build synthetic networks for scaling studies",
                       description="Build synthetic networks from real cases.", epilog=EXAMPLES,
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    kinds = p.add_subparsers(dest="kind", metavar="KIND")
    kinds.required = True
    t = kinds.add_parser("tile", help="K copies of a case joined by T tie lines per neighbouring pair",
                         description="K copies of CASE on a grid, each neighbouring pair joined by T tie lines "
                                     "between the same bus of both copies; every copy keeps its own slack.",
                         epilog=EXAMPLES, formatter_class=argparse.RawDescriptionHelpFormatter)
    t.add_argument("case", help="base case: MATPOWER .m, PSS/E .raw or grid.arrow folder")
    t.add_argument("--copies", type=int, required=True, metavar="K", help="number of copies")
    t.add_argument("--ties", type=int, required=True, metavar="T", help="tie lines per neighbouring pair of copies")
    t.add_argument("--seed", type=int, default=0, metavar="S", help="seed of the tie-bus draw (default 0)")
    t.add_argument("--tie-buses", choices=("random", "cluster"), default="random",
                   help="where the ties of a pair attach: random (default), buses drawn over the whole case; "
                        "cluster, the T buses nearest to one drawn bus (a compact border, as between real areas)")
    t.add_argument("--out", required=True, help="output: a grid.arrow folder (or a .m file)")
    t.add_argument("--quiet", action="store_true", help="print nothing on success")
    t.set_defaults(func=run_tile)
    return p


def run_tile(args):
    from gat_hpc.dist.synth import neighbour_pairs, tile
    from gat_hpc.network.io import read_case

    net = read_case(args.case)
    big = tile(net, args.copies, args.ties, seed=args.seed, tie_buses=args.tie_buses)
    out = args.out.rstrip("/")
    if out.endswith(".m"):
        from gat_hpc.network.matpower import write_matpower
        write_matpower(big, out)
    else:
        from gat_hpc.network.arrow import write_grid_arrow
        write_grid_arrow(big, out)
    if not args.quiet:
        print(f"synth tile: {args.copies} x {net.name} with {args.ties} ties on each of "
              f"{len(neighbour_pairs(args.copies))} neighbouring pairs: {big.n_bus} buses, {big.n_branch} branches "
              f"-> {out}", file=sys.stderr)
    return 0
