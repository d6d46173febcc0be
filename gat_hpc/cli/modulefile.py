"""``gat-hpc emit-modulefile``: the Lmod modulefile ``modulefiles/gat-hpc/<version>.lua``.

``--prefix P`` writes a module for an installation in P (a venv, a pip ``--prefix`` or a Spack
prefix: ``P/bin/gat-hpc``); ``--checkout`` writes the one kept in the source tree, which
finds its checkout from its own path and uses the checkout's ``.venv``. MPI, PETSc and HDF5
come from the site's modules: ``--prereq NAME`` makes loading gat-hpc fail until NAME is loaded
(the user picks the build), ``--depends-on NAME`` loads NAME along with gat-hpc.
"""

from __future__ import annotations

import argparse
import os
import re
import sys

from gat_hpc import __version__
from gat_hpc.errors import InputError
from gat_hpc.util.atomic import atomic_write_text

_MODULE = re.compile(r"^[A-Za-z0-9_.+@:/-]+$")


def lua_string(text):
    """A Lua double-quoted string literal holding ``text`` exactly."""
    out = []
    for ch in str(text):
        if ch in '"\\':
            out.append("\\" + ch)
        elif ch == "\n":
            out.append("\\n")
        elif ord(ch) < 32 or ord(ch) == 127:
            out.append(f"\\{ord(ch):03d}")
        else:
            out.append(ch)
    return '"' + "".join(out) + '"'


def render_modulefile(prefix=None, checkout=False, prereq=(), depends_on=()):
    import jinja2

    from gat_hpc.executors.slurm import template_dir

    for m in (*prereq, *depends_on):
        if not _MODULE.match(m):
            raise InputError(f"module name {m!r}: letters, digits and _ . + @ : / - only")
    env = jinja2.Environment(loader=jinja2.FileSystemLoader(template_dir()), undefined=jinja2.StrictUndefined,
                             keep_trailing_newline=True, trim_blocks=True, lstrip_blocks=True, autoescape=False)
    env.filters["lua"] = lua_string
    return env.get_template("modulefile.lua.j2").render(version=__version__, prefix=prefix, checkout=checkout,
                                                        prereq=list(prereq), depends_on=list(depends_on))


def add_parser(sub):
    p = sub.add_parser("emit-modulefile", help="write the Lmod modulefile gat-hpc/<version>.lua",
                       description=__doc__.split("\n\n", 1)[1],
                       epilog="examples:\n  gat-hpc emit-modulefile --prefix /opt/gat-hpc/0.1.0 --prereq openmpi "
                              "--prereq petsc --out /opt/modulefiles\n"
                              "  gat-hpc emit-modulefile --checkout            # modulefiles/ of this checkout",
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    where = p.add_mutually_exclusive_group(required=True)
    where.add_argument("--prefix", help="installation prefix holding bin/gat-hpc (a venv, or a Spack prefix)")
    where.add_argument("--checkout", action="store_true", help="the module kept in a source checkout (uses its .venv)")
    p.add_argument("--prereq", action="append", default=[], metavar="MODULE",
                   help="a module that must be loaded first (repeatable), e.g. openmpi, petsc, hdf5")
    p.add_argument("--depends-on", action="append", default=[], metavar="MODULE",
                   help="a module loaded together with gat-hpc (repeatable)")
    p.add_argument("--out", default="modulefiles", help="modulefile tree (default ./modulefiles); '-' prints it")
    p.set_defaults(func=cmd_emit_modulefile)


def cmd_emit_modulefile(args):
    prefix = os.path.abspath(args.prefix) if args.prefix else None
    if prefix is not None and not os.path.exists(os.path.join(prefix, "bin", "gat-hpc")):
        print(f"emit-modulefile: warning: {prefix}/bin/gat-hpc does not exist (yet)", file=sys.stderr)
    text = render_modulefile(prefix, args.checkout, args.prereq, args.depends_on)
    if args.out == "-":
        sys.stdout.write(text)
        return 0
    path = os.path.join(args.out, "gat-hpc", f"{__version__}.lua")
    os.makedirs(os.path.dirname(path), exist_ok=True)
    atomic_write_text(path, text)
    os.chmod(path, 0o644)
    print(path)
    return 0
