"""Partition the buses of a network across MPI ranks, keeping the lines between ranks few.

The graph has one vertex per energised bus and one edge per pair of buses joined by an
in-service branch. Methods:

- PETSc's ``MatPartitioning`` on that graph: ``ptscotch`` (the default where PETSc has
  PT-Scotch, as Debian's does), ``parmetis``, ``chaco`` or ``party`` where the installed
  PETSc was built with them. Chosen with ``-mat_partitioning_type``.
- ``rcm``, the fallback when PETSc has none of those: reverse Cuthill-McKee numbering of the
  graph (scipy), cut into equal consecutive pieces. RCM gives a banded numbering, so the
  consecutive pieces touch only through the band: more cut lines than PT-Scotch, but no
  external package. Computed identically on every rank, with no communication.
- ``natural``: consecutive pieces in case-file order (for comparison only).

Every rank passes the same network and gets the same answer: ``part[b]`` is the rank that
owns bus ``b`` (-1 for buses left out of the power flow).

PT-Scotch is randomised: its generator advances from one partitioning to the next, so the
second solve in a process used to get another partition than the first (on the 2-copy tiled
case_ACTIVSg70k: a 145-line cut first, 51 lines later). Its seed is now set and the
generator reset before every partitioning (``-gat_partition_seed``, default 0), so the same
network always gets the same partition and the same bits. The cut depends on the seed (that
network: 145 lines with seeds 0-1, 51 with 2-5, 137 with 6-7; case_ACTIVSg70k: 69 to 86);
``-gat_partition_tries K`` partitions with K seeds (seed, seed + 2, ...; consecutive seeds
pairs give the same partition) and keeps the smallest cut, at K times the partitioning time.
The default is 2 tries: about 45 ms more on 140,000 buses (2 ranks), and on that network the
solve took 755 ms instead of 902 ms with the 145-line cut of seed 0 alone. No further try is
made once a cut is at most one line per 10,000 energised buses (``-gat_partition_stop_cut C``
sets that number of lines): the interface of such a cut costs next to nothing (2 copies of
case_ACTIVSg70k tied at a compact border: 8-10 lines whatever the seed, 32 interface
unknowns, each rank's factorisations as fast as one copy's alone), so another try could only
add its 30 ms.
"""

from __future__ import annotations

import os

import numpy as np
import scipy.sparse as sp

from gat_hpc.errors import InputError

PETSC_METHODS = ("ptscotch", "parmetis", "chaco", "party")
OWN_METHODS = ("rcm", "natural")
DEFAULT_TRIES = 2  # PT-Scotch seeds tried (0 and 2): the 2-copy tiled case_ACTIVSg70k gets 51 lines, not 145


def bus_adjacency(net, live):
    """Symmetric 0/1 adjacency (CSR, no diagonal) between the buses ``live`` (ascending indices),
    numbered 0..len(live)-1 in that order, over in-service branches."""
    n = net.n_bus
    index = np.full(n, -1, dtype=np.int64)
    index[live] = np.arange(len(live))
    on = net.branch_in_service()
    f, t = index[net.f_bus[on]], index[net.t_bus[on]]
    keep = (f >= 0) & (t >= 0) & (f != t)
    f, t = f[keep], t[keep]
    m = len(live)
    adj = sp.coo_matrix((np.ones(2 * len(f)), (np.concatenate([f, t]), np.concatenate([t, f]))), shape=(m, m)).tocsr()
    adj.sum_duplicates()
    adj.data[:] = 1.0
    adj.sort_indices()
    return adj


def default_method(PETSc):
    """The first PETSc partitioner this PETSc was built with, else the RCM fallback."""
    for kind in ("ptscotch", "parmetis"):
        if PETSc.Sys.hasExternalPackage(kind):
            return kind
    return "rcm"


def partition_buses(net, live, comm, nparts=None, method=None):
    """Return (part, method): the owning rank of every bus (-1 outside ``live``) and the method used.

    ``comm``: the PETSc communicator the solve runs on (every rank calls this);
    ``nparts``: number of parts (default: the communicator's size); ``method``: one of
    ``PETSC_METHODS + OWN_METHODS`` (default: ``-mat_partitioning_type`` or :func:`default_method`).
    """
    from petsc4py import PETSc

    nparts = comm.getSize() if nparts is None else nparts
    opts = PETSc.Options()
    if method is None and opts.hasName("mat_partitioning_type"):
        method = opts.getString("mat_partitioning_type")
    method = method or default_method(PETSc)
    if method not in PETSC_METHODS + OWN_METHODS:
        raise InputError(f"-mat_partitioning_type {method}: expected one of "
                         f"{', '.join(PETSC_METHODS + OWN_METHODS)}")
    if method in PETSC_METHODS and not PETSc.Sys.hasExternalPackage(method):
        raise InputError(f"-mat_partitioning_type {method}: this PETSc was built without {method}; "
                         f"use {default_method(PETSc)} (or rcm, which needs no external package)")
    live = np.asarray(live, dtype=np.int64)
    part = np.full(net.n_bus, -1, dtype=np.int64)
    if nparts == 1 or len(live) == 0:
        part[live] = 0
        return part, method if nparts > 1 else "none"
    seed = opts.getInt("gat_partition_seed", 0)
    tries = opts.getInt("gat_partition_tries", DEFAULT_TRIES)
    if tries < 1 or seed < 0:
        raise InputError(f"-gat_partition_tries {tries} -gat_partition_seed {seed}: expected at least one try "
                         "and a seed >= 0")
    adj = bus_adjacency(net, live)
    if method == "natural":
        part[live] = _consecutive(len(live), nparts)
    elif method == "rcm":
        part[live] = rcm_partition(adj, nparts)
    else:
        if nparts != comm.getSize():
            raise ValueError("PETSc partitioners give one part per rank")
        stop = opts.getInt("gat_partition_stop_cut", len(live) // 10000)
        part[live] = petsc_partition(adj, comm, method, [seed + 2 * i for i in range(tries)], stop_cut=stop)
    return part, method


def _consecutive(m, nparts):
    """Part of each of m items cut into nparts consecutive pieces of (nearly) equal size."""
    return (np.arange(m, dtype=np.int64) * nparts) // max(m, 1)


def rcm_partition(adj, nparts):
    """Reverse Cuthill-McKee numbering cut into ``nparts`` consecutive equal pieces."""
    from scipy.sparse.csgraph import reverse_cuthill_mckee

    order = reverse_cuthill_mckee(adj, symmetric_mode=True)
    part = np.empty(adj.shape[0], dtype=np.int64)
    part[order] = _consecutive(adj.shape[0], nparts)
    return part


_SCOTCH_RANDOM = []  # the functions below, once found (a process keeps the libraries it loaded)


def _scotch_random():
    """(SCOTCH_randomSeed, SCOTCH_randomReset) of the PT-Scotch library this process has
    loaded (PETSc's), or None when there is none or it lacks them."""
    if not _SCOTCH_RANDOM:
        found = _find_scotch_random()
        if found is None:
            return None
        _SCOTCH_RANDOM.append(found)
    return _SCOTCH_RANDOM[0]


def _find_scotch_random():
    import ctypes
    import re

    try:
        with open("/proc/self/maps") as fh:
            paths = sorted(set(re.findall(r"/\S*libptscotch[-.0-9]*\.so[.0-9]*", fh.read())))
    except OSError:
        return None
    for path in paths:
        try:
            lib = ctypes.CDLL(path)
            seed, reset = lib.SCOTCH_randomSeed, lib.SCOTCH_randomReset
        except (OSError, AttributeError):
            continue
        seed.argtypes, seed.restype, reset.restype = [ctypes.c_long], None, None  # SCOTCH_Num: 32 or 64 bits
        return seed, reset
    return None


def _cut(adj, part, rows=None):
    """Edges of the symmetric graph ``adj`` whose ends are in different parts (``rows``: the row
    of each stored entry, when already known)."""
    rows = np.repeat(np.arange(adj.shape[0]), np.diff(adj.indptr)) if rows is None else rows
    return int(np.count_nonzero(part[rows] != part[adj.indices])) // 2


def petsc_partition(adj, comm, kind, seeds=(0,), stop_cut=-1):
    """PETSc MatPartitioning of the graph ``adj`` (replicated on every rank) into one part per rank.

    Each rank hands PETSc a consecutive block of the graph's rows; the parts come back per
    block and are gathered so that every rank holds all of them. For PT-Scotch the random
    generator is seeded and reset before each of ``seeds`` (same seeds, same partition); the
    partition with the smallest cut is kept (the first of equal ones), and the tries stop at
    the first cut of at most ``stop_cut`` edges.
    """
    from petsc4py import PETSc

    # PT-Scotch 7 starts a thread per core in every rank; ranks already fill the cores, and
    # unbound ranks (mpirun --bind-to none) with those threads took 2.4 s instead of 0.03 s
    # to split case_ACTIVSg70k on 2 cores. Its documented variable keeps it to one thread.
    os.environ.setdefault("SCOTCH_PTHREAD_NUMBER", "1")
    m = adj.shape[0]
    graph = PETSc.Mat().createAIJ(size=((PETSc.DECIDE, m), (PETSc.DECIDE, m)), comm=comm)
    graph.setUp()
    lo, hi = graph.getOwnershipRange()
    rows = adj[lo:hi]
    graph.setPreallocationCSR((rows.indptr.astype(PETSc.IntType), rows.indices.astype(PETSc.IntType), rows.data))
    graph.assemble()
    mp = PETSc.MatPartitioning().create(comm=comm)
    random = _scotch_random() if kind == "ptscotch" else None
    best = None
    try:
        mp.setAdjacency(graph)
        mp.setType(kind)
        mp.setFromOptions()
        seeds = seeds if random is not None else seeds[:1]  # without the generator a try is a repeat
        rows = np.repeat(np.arange(m), np.diff(adj.indptr)) if len(seeds) > 1 else None
        for seed in seeds:
            if random is not None:
                random[0](seed)
                random[1]()
            owned = PETSc.IS()
            try:
                mp.apply(owned)
                part = np.concatenate(comm.tompi4py().allgather(owned.getIndices().astype(np.int64)))
            finally:
                owned.destroy()
            cut = _cut(adj, part, rows) if len(seeds) > 1 else 0
            if best is None or cut < best[0]:
                best = (cut, part)
            if cut <= stop_cut:
                break
    finally:
        for obj in (mp, graph):
            obj.destroy()
    return best[1]


def edge_cut(net, part):
    """Number of in-service branches whose two ends are owned by different ranks."""
    on = net.branch_in_service()
    pf, pt = part[net.f_bus[on]], part[net.t_bus[on]]
    return int(np.count_nonzero((pf != pt) & (pf >= 0) & (pt >= 0)))


# ---------------------------------------------------------------- stored partitions
PARTITION_FORMAT = "gat-hpc partition 1"


def partition_fingerprint(net, live):
    """SHA-256 (hex) of what a partition is computed from: the ids of the energised buses and the
    bus ids at both ends of every in-service branch between them."""
    import hashlib

    live = np.asarray(live, dtype=np.int64)
    alive = np.zeros(net.n_bus, dtype=bool)
    alive[live] = True
    on = net.branch_in_service()
    f, t = net.f_bus[on], net.t_bus[on]
    keep = alive[f] & alive[t]
    h = hashlib.sha256()
    for a in (net.bus_id[live], net.bus_id[f[keep]], net.bus_id[t[keep]]):
        h.update(np.ascontiguousarray(a, dtype=np.int64).tobytes())
    return h.hexdigest()


def save_partition(path, net, live, part, method):
    """Write ``part`` (owner rank of every bus, -1 outside ``live``) to a Parquet file: one row per
    energised bus (bus_id, rank), with the network's fingerprint, the number of ranks, the
    method and the edge cut in the file's metadata. Atomic: a reader sees the old file or the new."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    from gat_hpc.util.atomic import atomic_path

    live = np.asarray(live, dtype=np.int64)
    ranks = int(np.max(part[live])) + 1 if len(live) else 1
    meta = {"format": PARTITION_FORMAT, "fingerprint": partition_fingerprint(net, live), "ranks": str(ranks),
            "method": method, "edge_cut": str(edge_cut(net, part)), "case": net.name}
    table = pa.table({"bus_id": pa.array(net.bus_id[live], type=pa.int64()),
                      "rank": pa.array(part[live], type=pa.int32())})
    table = table.replace_schema_metadata({k: str(v) for k, v in meta.items()})
    try:
        with atomic_path(path) as tmp:
            pq.write_table(table, tmp)
    except OSError as exc:
        raise InputError(f"--partition-file {path}: cannot write it ({exc})") from None


def load_partition(path, net, live, nparts):
    """The partition stored in ``path`` by :func:`save_partition`, as ``part`` (owner rank of every
    bus); InputError when the file is unreadable, not a partition, or made for another network
    or another number of ranks."""
    import pyarrow.parquet as pq

    live = np.asarray(live, dtype=np.int64)
    try:
        table = pq.read_table(path)
    except (OSError, ValueError) as exc:
        raise InputError(f"--partition-file {path}: cannot read it as a partition ({exc})") from None
    meta = {k.decode(): v.decode() for k, v in (table.schema.metadata or {}).items()}
    if meta.get("format") != PARTITION_FORMAT or set(table.column_names) != {"bus_id", "rank"}:
        raise InputError(f"--partition-file {path}: not a partition written by gat-hpc")
    if meta.get("fingerprint") != partition_fingerprint(net, live):
        raise InputError(f"--partition-file {path}: made for another network (other energised buses or "
                         f"in-service branches: {meta.get('case', '?')}); remove it or give another path")
    if meta.get("ranks") != str(nparts):
        raise InputError(f"--partition-file {path}: made for {meta.get('ranks')} ranks, this run has {nparts}; "
                         "give another path")
    ids = table.column("bus_id").to_numpy()
    ranks = table.column("rank").to_numpy().astype(np.int64)
    # written in the order of ``live`` (which the fingerprint covers): the same ids, the same order
    if not np.array_equal(ids, net.bus_id[live]) or np.any((ranks < 0) | (ranks >= nparts)):
        raise InputError(f"--partition-file {path}: its buses or ranks do not match its metadata")
    if not np.all(np.bincount(ranks, minlength=nparts)):
        raise InputError(f"--partition-file {path}: leaves a rank without buses")
    part = np.full(net.n_bus, -1, dtype=np.int64)
    part[live] = ranks
    return part
