-- gat-hpc 0.1.0: Lmod modulefile, written by `gat-hpc emit-modulefile`; regenerate it rather than edit.
help([[
gat-hpc 0.1.0: power-grid studies (AC/DC power flow, contingency screening, adequacy,
DC-OPF) from a laptop to a Slurm cluster. Puts `gat-hpc` on PATH and sets GAT_HPC_ROOT.
]])
whatis("Name: gat-hpc")
whatis("Version: 0.1.0")
whatis("Description: power-grid studies with MPI, PETSc, Slurm job arrays and CUDA")
-- A source checkout: this file is <checkout>/modulefiles/gat-hpc/0.1.0.lua, gat-hpc lives in <checkout>/.venv.
local root = myFileName():match("^(.*)/modulefiles/gat%-hpc/[^/]*$")
local prefix = pathJoin(root, ".venv")
setenv("GAT_HPC_ROOT", root)
prepend_path("PATH", pathJoin(prefix, "bin"))
-- h5py builds that hold both a serial and an MPI variant pick MPI only when told (srun sets no OMPI_* size).
setenv("H5PY_ALWAYS_USE_MPI", "1")
