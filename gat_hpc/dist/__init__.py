"""Distributed AC power flow over MPI ranks (mpi4py + petsc4py).

- ``partition``: buses to ranks (PETSc MatPartitioning with PT-Scotch; RCM fallback);
- ``layout``: renumbering, ownership, ghosts and each rank's Ybus rows;
- ``equations``: residual and Jacobian rows of the owned buses, vectorised;
- ``schur``: the default linear solve (Schur complement on the rank interfaces, KLU per rank);
- ``snes``: ``solve_ac_dist``, Newton as a PETSc SNES with MATPOWER's Q-limit loop;
- ``checkpoint``: solver state in parallel HDF5, restarts;
- ``command``: ``gat-hpc pf ac CASE --solver petsc`` under mpirun;
- ``synth``: ``gat-hpc synth tile``, K tied copies of a case for scaling studies.
"""
