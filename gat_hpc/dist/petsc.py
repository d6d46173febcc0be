"""PETSc start-up for the distributed solver: command-line options, external packages, clean-up.

PETSc reads its options (``-snes_monitor``, ``-ksp_type gmres``, ``-pc_type lu``,
``-pc_factor_mat_solver_type mumps``, ``-mat_partitioning_type``, ``-log_view`` ...) from the
command line given to ``petsc4py.init``. The gat-hpc command line mixes them with its own
``--options``; :func:`split_petsc_options` sets the PETSc ones aside so argparse never sees
them, and :func:`init_petsc` hands them to PETSc.
"""

from __future__ import annotations

import os
import re
import sys

from gat_hpc.errors import InputError

# -snes_monitor, -ksp_type, -mat_mumps_icntl_7, -log_view ...: one dash, a word, an underscore
_PETSC_OPTION = re.compile(r"^-[A-Za-z][A-Za-z0-9]*_[A-Za-z0-9_]*$")
_PETSC_FLAGS = {"-info", "-log_view", "-malloc_debug", "-malloc_dump"}
_NUMBER = re.compile(r"^-?[0-9.]+([eE][-+]?[0-9]+)?$")

# -pc_factor_mat_solver_type NAME -> the external package PETSc was configured with
_FACTOR_PACKAGES = {"klu": "suitesparse", "umfpack": "suitesparse", "cholmod": "suitesparse",
                    "mumps": "mumps", "superlu": "superlu", "superlu_dist": "superlu_dist",
                    "mkl_pardiso": "mkl_pardiso", "mkl_cpardiso": "mkl_cpardiso", "pastix": "pastix",
                    "strumpack": "strumpack", "cusparse": "cuda"}
_SERIAL_ONLY = {"petsc", "klu", "umfpack", "cholmod", "superlu", "mkl_pardiso", "cusparse"}


def split_petsc_options(argv):
    """Split ``argv`` into (PETSc options, the rest), keeping order within each.

    A PETSc option is a single-dash word with an underscore (``-snes_monitor``) or one of a few
    flags (``-info``); the token after it is its value unless it looks like an option itself
    (a negative number is a value). Put PETSc options after the case file: ``-snes_monitor
    case.m`` would take ``case.m`` as the option's value, as PETSc itself would.
    """
    petsc, rest = [], []
    i = 0
    while i < len(argv):
        tok = argv[i]
        if tok == "--":
            rest.extend(argv[i:])
            break
        if _PETSC_OPTION.match(tok) or tok in _PETSC_FLAGS:
            petsc.append(tok)
            if i + 1 < len(argv) and (not argv[i + 1].startswith("-") or _NUMBER.match(argv[i + 1])):
                petsc.append(argv[i + 1])
                i += 1
        else:
            rest.append(tok)
        i += 1
    return petsc, rest


def accept_petsc_options(parser):
    """Make ``parser`` (an argparse sub-parser) set PETSc options aside into ``args.petsc_options``."""
    plain = parser.parse_known_args

    def parse_known_args(args=None, namespace=None):
        args = list(sys.argv[1:] if args is None else args)
        petsc, rest = split_petsc_options(args)
        ns, extras = plain(rest, namespace)
        if petsc and getattr(ns, "solver", "petsc") != "petsc":
            parser.error(f"PETSc options ({' '.join(petsc)}) need --solver petsc")
        ns.petsc_options = getattr(ns, "petsc_options", []) + petsc
        return ns, extras

    parser.parse_known_args = parse_known_args
    return parser


def init_petsc(options=None):
    """Initialise petsc4py with ``options`` (PETSc command-line words; ``sys.argv`` when None).

    The first call decides PETSc's start-up options (``-log_view``, ``-malloc_debug``); if
    PETSc was imported earlier the options are added to its database instead.
    Returns the ``PETSc`` module.
    """
    import petsc4py

    argv = list(sys.argv) if options is None else [sys.argv[0] if sys.argv else "gat-hpc"] + list(options)
    if "petsc4py.PETSc" not in sys.modules:
        petsc4py.init(argv)
        from petsc4py import PETSc
    else:
        from petsc4py import PETSc

        if argv[1:]:
            PETSc.Options().insertString(" ".join(argv[1:]))
    return PETSc


def factor_solver_type(PETSc):
    """The ``-pc_factor_mat_solver_type`` given on the command line, or None."""
    opts = PETSc.Options()
    return opts.getString("pc_factor_mat_solver_type", None) if opts.hasName("pc_factor_mat_solver_type") else None


def check_factor_package(PETSc, name, n_ranks):
    """Raise InputError unless PETSc can factor with ``name`` on ``n_ranks`` ranks."""
    if name is None:
        return
    package = _FACTOR_PACKAGES.get(name)
    if name != "petsc" and package is None:
        package = name
    if package and not PETSc.Sys.hasExternalPackage(package):
        have = sorted(n for n, p in _FACTOR_PACKAGES.items() if PETSc.Sys.hasExternalPackage(p))
        raise InputError(
            f"-pc_factor_mat_solver_type {name}: this PETSc ({_petsc_version(PETSc)}) was built without "
            f"{package}; available here: petsc{''.join(', ' + h for h in have)} "
            "(or drop -pc_type to use gat-hpc's default solver)")
    if n_ranks > 1 and name in _SERIAL_ONLY:
        raise InputError(f"-pc_factor_mat_solver_type {name} factors on one rank only; with {n_ranks} ranks "
                         "use mumps (or drop -pc_type for gat-hpc's default solver)")
    if name == "superlu_dist" and _debian_petsc_318(PETSc) and not os.environ.get("GAT_HPC_ALLOW_SUPERLU_DIST"):
        raise InputError(
            "-pc_factor_mat_solver_type superlu_dist: Debian 12's PETSc 3.18 build solves correctly but then "
            "aborts in MPI_Finalize (corrupted double-linked list), so every rank would exit with an error; "
            "use mumps (set GAT_HPC_ALLOW_SUPERLU_DIST=1 to try it anyway)")


def _petsc_version(PETSc):
    return "PETSc " + ".".join(str(v) for v in PETSc.Sys.getVersion())


def _debian_petsc_318(PETSc):
    import petsc4py

    return PETSc.Sys.getVersion()[:2] == (3, 18) and "/usr/lib/petscdir/" in os.path.realpath(petsc4py.__file__)


def destroy(*objects):
    """Destroy PETSc objects now (collectively), so that nothing is left for the exit-time
    garbage collection, which raised MPI_ERR_TRUNCATE after MUMPS solves (PLATFORM.md D)."""
    for obj in objects:
        if obj is not None:
            obj.destroy()


def one_blas_thread_per_rank():
    """Run dense BLAS on one thread in each rank, unless the user chose (OPENBLAS_NUM_THREADS,
    OMP_NUM_THREADS): the ranks already fill the cores. scipy's wheel bundles an OpenBLAS that
    starts a thread per core in every process; two ranks on two cores with those threads spent
    three times as long in the interface factorisation as with one thread each."""
    import ctypes
    import re

    if os.environ.get("OPENBLAS_NUM_THREADS") or os.environ.get("OMP_NUM_THREADS"):
        return
    os.environ["OPENBLAS_NUM_THREADS"] = "1"  # for libraries loaded from now on
    try:
        with open("/proc/self/maps") as fh:
            paths = set(re.findall(r"/\S*openblas\S*\.so[.0-9]*", fh.read()))
    except OSError:
        return
    for path in paths:
        try:
            lib = ctypes.CDLL(path)
        except OSError:
            continue
        for name in ("openblas_set_num_threads", "scipy_openblas_set_num_threads"):
            fn = getattr(lib, name, None)
            if fn is not None:
                fn.argtypes = [ctypes.c_int]
                fn(1)
