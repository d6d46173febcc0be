"""The Lmod modulefile (loaded under real Lmod, prerequisites from dummy site modules) and the
Spack environment (parsed and checked; a real `spack concretize` needs a site with Spack)."""

import ast
import os
import subprocess

from gat_hpc import __version__
from gat_hpc.cli.modulefile import render_modulefile
from tests.conftest import need
from tests.slurm.common import GAT, REPO, VENV

LMOD_INIT = "/usr/share/lmod/lmod/init/bash"
MODULEFILES = os.path.join(REPO, "modulefiles", "gat-hpc")


def lmod(script):
    """Run ``script`` in a fresh non-login bash with Lmod initialised; returns the CompletedProcess."""
    need("lmod", os.path.isfile(LMOD_INIT), f"{LMOD_INIT} not found (apt-get install lmod; make test does)")
    env = {"HOME": os.environ.get("HOME", "/root"), "PATH": "/usr/bin:/bin", "LANG": "C.UTF-8"}
    return subprocess.run(["bash", "-c", f"source {LMOD_INIT}\nset -e\n{script}"], capture_output=True, text=True,
                          env=env, timeout=60)


def test_committed_modulefile_is_this_version_and_up_to_date():
    assert os.listdir(MODULEFILES) == [f"{__version__}.lua"], "one modulefile, named for gat_hpc.__version__"
    with open(os.path.join(MODULEFILES, f"{__version__}.lua")) as fh:
        text = fh.read()
    assert f'whatis("Version: {__version__}")' in text
    assert text == render_modulefile(checkout=True), "regenerate it: gat-hpc emit-modulefile --checkout"


def test_module_load_puts_gat_hpc_on_path():
    r = lmod(f"module use {REPO}/modulefiles\nmodule load gat-hpc\ngat-hpc --version\necho ROOT=$GAT_HPC_ROOT\n"
             "module unload gat-hpc\necho AFTER=${GAT_HPC_ROOT:-unset}\ncommand -v gat-hpc || echo gone")
    assert r.returncode == 0, r.stderr
    assert f"gat-hpc {__version__}\nROOT={REPO}\nAFTER=unset\ngone\n" == r.stdout


def test_prereq_and_depends_on_with_site_modules(tmp_path):
    site = tmp_path / "site"
    for name in ("dummy-mpi", "dummy-petsc"):
        (site / name).mkdir(parents=True)
        (site / name / "1.0.lua").write_text(f'setenv("{name.upper().replace("-", "_")}", "1.0")\n')
    r = subprocess.run([GAT, "emit-modulefile", "--prefix", VENV, "--prereq", "dummy-petsc", "--depends-on",
                        "dummy-mpi", "--out", tmp_path / "mods"], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    text = (tmp_path / "mods" / "gat-hpc" / f"{__version__}.lua").read_text()
    assert 'prereq("dummy-petsc")' in text and 'depends_on("dummy-mpi")' in text and f'local root = "{VENV}"' in text
    use = f"module use {site}\nmodule use {tmp_path / 'mods'}\n"
    r = lmod(use + "module load gat-hpc")
    assert r.returncode != 0 and "dummy-petsc" in r.stderr, r.stderr  # the prerequisite is not loaded
    r = lmod(use + "module load dummy-petsc gat-hpc\ngat-hpc --version\necho MPI=$DUMMY_MPI ROOT=$GAT_HPC_ROOT\n"
             "module unload gat-hpc\necho MPI_AFTER=${DUMMY_MPI:-unset} PETSC_AFTER=$DUMMY_PETSC")
    assert r.returncode == 0, r.stderr
    assert r.stdout == f"gat-hpc {__version__}\nMPI=1.0 ROOT={VENV}\nMPI_AFTER=unset PETSC_AFTER=1.0\n"


def test_lua_strings_are_quoted():
    from gat_hpc.cli.modulefile import lua_string
    assert lua_string('a"b\\c\nd') == '"a\\"b\\\\c\\nd"'
    text = render_modulefile(prefix='/opt/x") os.execute("id')
    assert 'local root = "/opt/x\\") os.execute(\\"id"' in text


# Packages the environment must hold, with why (spack package names).
SPACK_SPECS = {
    "python": "the interpreter",
    "py-numpy": "arrays", "py-scipy": "sparse LU fallback and sparse algebra",
    "openmpi": "MPI (sites usually replace it with their own as an external)",
    "py-mpi4py": "MPI executor and distributed solver",
    "hdf5": "parallel HDF5 for checkpoints", "py-h5py": "checkpoints from Python, with MPI-IO",
    "petsc": "distributed Newton (SNES on MPIAIJ) with MUMPS", "py-petsc4py": "PETSc from Python",
    "py-pyarrow": "Parquet outputs and grid.arrow", "py-jinja2": "Slurm job templates",
    "py-highspy": "DC-OPF (HiGHS)", "py-gat-hpc": "gat-hpc itself (recipe in spack/)",
}


def test_spack_environment_holds_the_stack():
    try:
        import yaml
    except ImportError:
        yaml = None
    need("slurm", yaml is not None, "PyYAML is missing (make test installs python3-yaml with the Slurm tools)")
    with open(os.path.join(REPO, "spack.yaml")) as fh:
        env = yaml.safe_load(fh)["spack"]
    specs = {s.split()[0].split("@")[0]: s for s in env["specs"]}
    assert set(specs) == set(SPACK_SPECS), set(specs) ^ set(SPACK_SPECS)
    for variant in ("+mpi", "+hdf5", "+mumps"):
        assert variant in specs["petsc"].split()
    assert "+mpi" in specs["hdf5"].split() and "+mpi" in specs["py-h5py"].split()
    assert env["concretizer"]["unify"] is True and "./spack" in env["repos"]
    assert env["develop"]["py-gat-hpc"]["spec"] == f"py-gat-hpc@={__version__}"
    recipe = os.path.join(REPO, "spack", "packages", "py-gat-hpc", "package.py")
    tree = ast.parse(open(recipe).read())
    cls = next(n for n in tree.body if isinstance(n, ast.ClassDef))
    assert cls.name == "PyGatHpc" and cls.bases[0].id == "PythonPackage"
    calls = [n for n in ast.walk(tree) if isinstance(n, ast.Call) and getattr(n.func, "id", "") in ("version",
                                                                                                     "depends_on")]
    versions = [c.args[0].value for c in calls if c.func.id == "version"]
    deps = {c.args[0].value.split()[0].split("@")[0] for c in calls if c.func.id == "depends_on"}
    assert versions == [__version__]
    assert deps - {"python", "py-setuptools", "py-pycuda"} <= set(SPACK_SPECS)
