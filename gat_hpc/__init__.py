"""gat-hpc: power-grid studies from a laptop to a Slurm supercomputer."""

__version__ = "0.1.0"
