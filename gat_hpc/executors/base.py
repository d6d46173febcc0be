"""The executor interface."""

from __future__ import annotations

from collections import Counter


class Executor:
    """Runs chunks of a run directory. ``run`` returns a Counter of execute_chunk outcomes.

    ``is_root`` is False on the MPI ranks that are not rank 0: they take part in the work but
    leave reporting and reduce to rank 0.
    """

    name = "base"
    is_root = True

    def run(self, rd, chunk_ids, progress=None) -> Counter:
        raise NotImplementedError

    def broadcast(self, value):
        """Share a value decided on the root with every worker (identity outside MPI)."""
        return value

    def barrier(self):
        pass
