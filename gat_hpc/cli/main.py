"""The ``gat-hpc`` command: argument parsing, dispatch, and error reporting.

Every command module registers its sub-parser with ``add_parser(subparsers)``
and sets ``func``. Errors the user can fix are reported as one line on stderr:
exit 2 for bad input, 3 for non-convergence; never a traceback for those.
"""

from __future__ import annotations

import argparse
import sys

from gat_hpc import __version__
from gat_hpc.errors import GatError

EPILOG = """examples:
  gat-hpc pf ac case118.m --out out/pf118
  gat-hpc pf dc case_ACTIVSg2000.m --out out/dc2000
  gat-hpc import case300.m --out case300.arrow
  gat-hpc pf ac case_ACTIVSg2000.m --profiles load.parquet --run-dir runs/year --executor process
  gat-hpc nminus1 dc case_ACTIVSg2000.m --profiles scenarios_ACTIVSg2000.m --run-dir runs/n1
  gat-hpc runs describe --run-dir runs/year
  gat-hpc emit-sbatch pf ac case_ACTIVSg2000.m --profiles load.parquet --run-dir runs/year --submit
"""


def build_parser():
    from gat_hpc.cli import adequacy, importcase, modulefile, nminus1, opf, pf, runs, slurm, synth

    parser = argparse.ArgumentParser(
        prog="gat-hpc", description="Power-grid studies from a laptop to a Slurm cluster.",
        epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--version", action="version", version=f"gat-hpc {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True
    pf.add_parser(sub)
    nminus1.add_parser(sub)
    adequacy.add_parser(sub)
    opf.add_parser(sub)
    importcase.add_parser(sub)
    runs.add_parser(sub)
    slurm.add_parser(sub)
    modulefile.add_parser(sub)
    synth.add_parser(sub)
    return parser


def main(argv=None):
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return args.func(args) or 0
    except GatError as exc:
        print(f"gat-hpc: error: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print("gat-hpc: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
