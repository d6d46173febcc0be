# Spack recipe for gat-hpc (repository layout of Spack 0.2x; spack.yaml at the checkout root uses
# it through `repos: [./spack]` and builds the checkout itself through `develop:`).
from spack.package import *


class PyGatHpc(PythonPackage):
    """Power-grid studies (AC/DC power flow, N-1 screening, Monte-Carlo adequacy, DC-OPF) from a
    laptop to a Slurm cluster, with MPI, PETSc, Slurm job arrays and CUDA."""

    license("BSD-3-Clause")

    version("0.1.0")

    variant("gpu", default=False, description="GPU screening kernels (PyCUDA, needs CUDA)")

    depends_on("python@3.10:", type=("build", "run"))
    depends_on("py-setuptools@61:", type="build")

    with default_args(type=("build", "run")):
        depends_on("py-numpy@1.24:")
        depends_on("py-scipy@1.10:")
        depends_on("py-pyarrow@14:")
        depends_on("py-jinja2@3:")
        depends_on("py-highspy@1.7:")
        depends_on("py-mpi4py@3.1:")
        depends_on("py-petsc4py@3.18:")
        depends_on("py-h5py@3.7: +mpi")
        depends_on("py-pycuda", when="+gpu")

    # The distributed power flow factors with MUMPS; HDF5 checkpoints need PETSc's HDF5.
    depends_on("petsc +mpi +mumps +hdf5", type=("build", "link", "run"))
    depends_on("hdf5 +mpi", type=("build", "link", "run"))

    @run_after("install")
    def install_templates(self):
        # the Slurm job templates; gat-hpc looks for them in <prefix>/share/gat-hpc/slurm_templates
        install_tree(join_path(self.stage.source_path, "slurm_templates"),
                     join_path(self.prefix.share, "gat-hpc", "slurm_templates"))

    def setup_run_environment(self, env):
        env.set("GAT_HPC_ROOT", self.prefix)
        env.set("H5PY_ALWAYS_USE_MPI", "1")
