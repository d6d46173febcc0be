"""The ``gat-hpc`` command: argument parsing, dispatch, and error reporting.

Every command module registers its sub-parser with ``add_parser(subparsers)``
and sets ``func``. Errors the user can fix are reported as one line on stderr, followed by
one line naming the doc page of the command (:func:`hint`): exit 2 for bad input, 3 for
non-convergence; never a traceback for those.
"""

from __future__ import annotations

import argparse
import sys

from gat_hpc import __version__
from gat_hpc.errors import GatError, InputError

EPILOG = """examples:
  gat-hpc pf ac case118.m --out out/pf118
  gat-hpc pf dc case_ACTIVSg2000.m --out out/dc2000
  gat-hpc import case300.m --out case300.arrow
  gat-hpc pf ac case_ACTIVSg2000.m --profiles load.parquet --run-dir runs/year --executor process
  gat-hpc nminus1 dc case_ACTIVSg2000.m --profiles scenarios_ACTIVSg2000.m --run-dir runs/n1
  gat-hpc adequacy case118.m --reliability for.csv --profiles year.parquet --samples 1000 --run-dir runs/adq
  gat-hpc opf dc case118.m --profiles year.parquet --horizon 24 --run-dir runs/opf
  gat-hpc runs describe --run-dir runs/year
  gat-hpc report --run-dir runs/n1
  gat-hpc emit-sbatch pf ac case_ACTIVSg2000.m --profiles load.parquet --run-dir runs/year --submit

`gat-hpc COMMAND --help` for a command's options and examples. User guide: docs/guide.md;
every command and option: docs/reference.md. Exit codes: 0 success, 2 bad input, 3 no
convergence, 4 some chunks of a sweep failed.
"""


def build_parser():
    from gat_hpc.cli import adequacy, importcase, modulefile, nminus1, opf, pf, report, runs, slurm, synth, verify

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
    report.add_parser(sub)
    verify.add_parser(sub)
    return parser


#: the doc page of each command (the first word(s) of its path), named in the line after an error
DOC_PAGES = {
    ("pf",): "docs/formats.md",
    ("nminus1",): "docs/contingency.md",
    ("adequacy",): "docs/adequacy.md",
    ("opf",): "docs/opf.md",
    ("import",): "docs/formats.md",
    ("worker",): "docs/runs.md#commands",
    ("reduce",): "docs/runs.md#commands",
    ("runs",): "docs/runs.md#commands",
    ("emit-sbatch",): "docs/cluster.md#2-write-the-job-scripts-gat-hpc-emit-sbatch",
    ("record-jobs",): "docs/cluster.md#3-submit",
    ("emit-modulefile",): "docs/cluster.md#lmod-modulefile",
    ("synth",): "docs/distributed.md#synthetic-large-networks-gat-hpc-synth-tile",
    ("report",): "docs/guide.md#reports",
    ("verify",): "docs/runs.md#verify-an-hourly-ac-run",
}
GUIDE = "docs/guide.md"


def command_path(parser, args):
    """The sub-command names ``args`` was parsed with, e.g. ('emit-sbatch', 'nminus1')."""
    path = []
    while True:
        subs = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
        name = getattr(args, subs[0].dest, None) if subs else None
        if name is None or name not in subs[0].choices:
            return tuple(path)
        path.append(name)
        parser = subs[0].choices[name]


def doc_page(path, args=None, exc=None):
    """The page (with an anchor where one fits) that explains the command behind an error."""
    args = args if args is not None else argparse.Namespace()
    top = path[0] if path else None
    if getattr(args, "device", None) == "gpu":
        return "docs/guide.md#gpu-screening"
    if top == "pf":
        if getattr(args, "solver", None) == "petsc":
            return "docs/distributed.md"
        if getattr(args, "run_dir", None) or getattr(args, "profiles", None):
            return "docs/runs.md#hourly-ac-power-flow"
        if exc is not None and not isinstance(exc, InputError):
            return "docs/guide.md#first-power-flow"
    if top == "runs" and getattr(args, "executor", None) == "slurm":
        return "docs/cluster.md#5-resume-and-retry"
    for n in range(len(path), 0, -1):
        if path[:n] in DOC_PAGES:
            return DOC_PAGES[path[:n]]
    return GUIDE


def hint(parser, args, exc=None):
    """The line printed after an error: the doc page and the command's --help."""
    path = command_path(parser, args)
    command = " ".join(("gat-hpc", *path, "--help"))
    return f"gat-hpc: see {doc_page(path, args, exc)} and `{command}`"


def main(argv=None):
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return args.func(args) or 0
    except GatError as exc:
        print(f"gat-hpc: error: {exc}", file=sys.stderr)
        print(hint(parser, args, exc), file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print("gat-hpc: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        # the reader went away (`gat-hpc runs describe ... | head`): stop quietly, as a filter does
        import os

        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())  # so the interpreter's final flush does not fail again
        return 141


if __name__ == "__main__":
    sys.exit(main())
