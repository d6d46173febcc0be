"""Checkpoints of the distributed Newton solve in parallel HDF5, and restarts from them.

A checkpoint holds what the solve needs to continue: every bus's |V| and θ, the Newton
iteration reached, the mismatch there, and the Q-limit loop's state. Every rank writes its
own buses as one contiguous slab of each dataset (collective MPI-IO through h5py's
``driver='mpio'``); a restart reads the whole file on every rank, so it may use another
number of ranks or another partition.

File layout (HDF5)::

    attrs: format = "gat-hpc-pf-checkpoint", version = 1, gat_hpc_version, case (fingerprint
           of the network), n_bus, iteration (Newton iterations in all), round_iteration
           (iterations in the current Q-limit round), q_round, norm_f_pu, ranks,
           slab_starts (first row of each rank's slab), slab_sha256 (per slab, over its
           bus/vm/va bytes), state_sha256 (over the Q-limit datasets)
    bus    int64 (n_live)   bus index (0-based, case order) of each row
    vm_pu  float64 (n_live), va_rad float64 (n_live)
    role   int8 (n_bus): 0 PQ, 1 PV, 2 slack, -1 out; bus_type int64 (n_bus): types after Q limits
    q_fixed uint8, pg_spec, qg_spec float64 (n_gen): generators held at a Q limit, set-points p.u.

The file is written under a temporary name and renamed when complete, so a crash while
writing leaves the previous checkpoint. Reading checks the format, that the network is the
same, and every checksum; a damaged file is refused with a message saying so. When h5py has
no MPI support (``H5PY_ALWAYS_USE_MPI=1`` makes Debian's h5py load its MPI build), rank 0
gathers the slabs and writes the same file alone.
"""

from __future__ import annotations

import hashlib
import os

import numpy as np

from gat_hpc import __version__
from gat_hpc.errors import InputError

FORMAT = "gat-hpc-pf-checkpoint"
VERSION = 1


def network_fingerprint(net):
    """SHA-256 over what fixes the power-flow equations' shape: buses, branches, generators."""
    h = hashlib.sha256()
    for arr in (net.bus_id, net.bus_type, net.f_bus, net.t_bus, net.branch_status, net.gen_bus, net.gen_status,
                net.r, net.x, net.b):
        h.update(np.ascontiguousarray(arr).tobytes())
    return h.hexdigest()


def _slab_digest(bus, vm, va):
    h = hashlib.sha256()
    for arr in (bus, vm, va):
        h.update(np.ascontiguousarray(arr).tobytes())
    return h.hexdigest()


def _state_arrays(net, q):
    role = np.full(net.n_bus, -1, dtype=np.int8)
    role[q.types.pq] = 0
    role[q.types.pv] = 1
    role[q.types.ref] = 2
    return {"role": role, "bus_type": np.asarray(q.bus_type, dtype=np.int64),
            "q_fixed": q.q_fixed.astype(np.uint8), "pg_spec": np.asarray(q.pg_spec, dtype=np.float64),
            "qg_spec": np.asarray(q.qg_spec, dtype=np.float64)}


def _state_digest(arrays):
    h = hashlib.sha256()
    for key in sorted(arrays):
        h.update(key.encode())
        h.update(np.ascontiguousarray(arrays[key]).tobytes())
    return h.hexdigest()


def _h5py():
    try:
        import h5py
    except ImportError as exc:
        raise InputError(f"checkpoints need h5py, which does not import here ({exc})") from None
    return h5py


class Checkpointer:
    """Writes a checkpoint to ``path`` every ``every`` Newton iterations (collective: every rank calls
    :meth:`maybe_write` at every iteration). ``comm`` is the mpi4py communicator of the solve."""

    def __init__(self, path, every, net, comm):
        if every < 1:
            raise InputError("--checkpoint-every must be at least 1")
        self.path = os.path.abspath(path)
        self.every = every
        self.net = net
        self.comm = comm
        self.fingerprint = network_fingerprint(net)
        self.written = []  # iterations checkpointed

    def maybe_write(self, round_iteration, q, eq, norm_f):
        """Checkpoint if the total iteration count is a multiple of ``every``."""
        iteration = q.iterations + round_iteration
        if iteration % self.every:
            return False
        layout = eq.layout
        v = eq.owned_voltage()
        self.write(layout, layout.owned, np.abs(v), np.angle(v), q, iteration, round_iteration, norm_f)
        self.written.append(iteration)
        return True

    def write(self, layout, owned, vm, va, q, iteration, round_iteration, norm_f):
        comm = self.comm
        h5py = _h5py()
        owned = np.asarray(owned, dtype=np.int64)
        vm, va = np.asarray(vm, dtype=np.float64), np.asarray(va, dtype=np.float64)
        digests = comm.allgather(_slab_digest(owned, vm, va))
        state = _state_arrays(self.net, q)
        attrs = dict(format=FORMAT, version=VERSION, gat_hpc_version=__version__, case=self.fingerprint,
                     n_bus=self.net.n_bus, iteration=int(iteration), round_iteration=int(round_iteration),
                     q_round=int(q.rounds), norm_f_pu=float(norm_f), ranks=comm.Get_size(),
                     slab_starts=np.asarray(layout.starts, dtype=np.int64), slab_sha256=np.array(digests, dtype="S64"),
                     state_sha256=_state_digest(state))
        tmp = f"{self.path}.tmp"
        if comm.Get_rank() == 0:
            os.makedirs(os.path.dirname(self.path), exist_ok=True)
        comm.Barrier()
        lo, hi, n = layout.lo, layout.hi, layout.n_live
        if h5py.get_config().mpi:
            with h5py.File(tmp, "w", driver="mpio", comm=comm) as fh:
                _fill(fh, attrs, state, n, lambda name, arr: hi > lo and fh[name].__setitem__(slice(lo, hi), arr),
                      owned, vm, va, comm.Get_rank() == 0)
        else:  # serial h5py: gather the slabs on rank 0
            parts = comm.gather((owned, vm, va), root=0)
            if comm.Get_rank() == 0:
                cat = [np.concatenate([p[k] for p in parts]) for k in range(3)]
                with h5py.File(tmp, "w") as fh:
                    _fill(fh, attrs, state, n, lambda name, arr: fh[name].__setitem__(slice(0, n), arr),
                          *cat, True)
        if comm.Get_rank() == 0:
            with open(tmp, "rb+") as fh:
                os.fsync(fh.fileno())
            os.replace(tmp, self.path)
        comm.Barrier()


def _fill(fh, attrs, state, n, put, owned, vm, va, root):
    """Create the datasets (collectively) and write this rank's slab; rank 0 writes the state."""
    for key, value in attrs.items():
        fh.attrs[key] = value
    for name, dtype in (("bus", np.int64), ("vm_pu", np.float64), ("va_rad", np.float64)):
        fh.create_dataset(name, shape=(n,), dtype=dtype)
    for key, arr in state.items():
        fh.create_dataset(key, shape=arr.shape, dtype=arr.dtype)
    put("bus", owned)
    put("vm_pu", vm)
    put("va_rad", va)
    if root:
        for key, arr in state.items():
            if arr.size:
                fh[key][...] = arr


def read_checkpoint(path, net, comm):
    """Read and check the checkpoint ``path`` written for ``net``; returns a
    :class:`~gat_hpc.dist.snes.Restart`. Raises InputError (the same on every rank) for a
    missing, damaged or foreign file."""
    from gat_hpc.dist.collective import agree

    return agree(comm, _read, path, net)


def _read(path, net):
    from gat_hpc.dist.snes import QState, Restart
    from gat_hpc.pf.topology import BusTypes, bus_types

    h5py = _h5py()
    if not os.path.exists(path):
        raise InputError(f"checkpoint {path} does not exist")
    where = f"checkpoint {path}"
    try:
        fh = h5py.File(path, "r")
    except OSError as exc:
        raise InputError(f"{where} is not a readable HDF5 file ({exc}); it is damaged or not a checkpoint: "
                         "delete it and solve again without --restart") from None
    try:
        with fh:
            if fh.attrs.get("format") != FORMAT:
                raise InputError(f"{where} is not a gat-hpc power-flow checkpoint")
            if int(fh.attrs.get("version", -1)) != VERSION:
                raise InputError(f"{where} has version {fh.attrs.get('version')}; this gat-hpc reads version {VERSION}")
            if fh.attrs.get("case") != network_fingerprint(net) or int(fh.attrs["n_bus"]) != net.n_bus:
                raise InputError(f"{where} was written for another network (different buses, branches or "
                                 "generators); restart with the case it was written for")
            bus, vm, va = fh["bus"][...], fh["vm_pu"][...], fh["va_rad"][...]
            state = {k: fh[k][...] for k in ("role", "bus_type", "q_fixed", "pg_spec", "qg_spec")}
            starts = fh.attrs["slab_starts"]
            digests = [d.decode() if isinstance(d, bytes) else str(d) for d in fh.attrs["slab_sha256"]]
            for r in range(len(starts) - 1):
                a, b = int(starts[r]), int(starts[r + 1])
                if _slab_digest(bus[a:b], vm[a:b], va[a:b]) != digests[r]:
                    raise InputError(f"{where} is damaged: the voltages written by rank {r} (rows {a}..{b - 1}) "
                                     "fail their SHA-256 check; delete it and solve again without --restart")
            if _state_digest(state) != fh.attrs["state_sha256"]:
                raise InputError(f"{where} is damaged: the Q-limit state fails its SHA-256 check; "
                                 "delete it and solve again without --restart")
            iteration = int(fh.attrs["iteration"])
            round_iteration = int(fh.attrs["round_iteration"])
            rounds = int(fh.attrs["q_round"])
            norm_f = float(fh.attrs["norm_f_pu"])
    except (KeyError, OSError, ValueError) as exc:
        raise InputError(f"{where} is damaged or incomplete ({exc}); delete it and solve again without --restart") from None
    if np.any((bus < 0) | (bus >= net.n_bus)) or len(np.unique(bus)) != len(bus) or not np.all(np.isfinite(vm)) \
            or not np.all(np.isfinite(va)):
        raise InputError(f"{where} holds bus indices or voltages that cannot be right; delete it")
    base = bus_types(net)
    role = state["role"]
    types = BusTypes(ref=np.flatnonzero(role == 2), pv=np.flatnonzero(role == 1), pq=np.flatnonzero(role == 0),
                     dead=base.dead, island=base.island)
    if not np.array_equal(np.flatnonzero(role < 0), base.dead):
        raise InputError(f"{where} leaves out other buses than the network does; it belongs to another case")
    V = np.zeros(net.n_bus, dtype=complex)
    V[bus] = vm * np.exp(1j * va)
    q = QState(types=types, bus_type=state["bus_type"], pg_spec=state["pg_spec"], qg_spec=state["qg_spec"],
               q_fixed=state["q_fixed"].astype(bool), rounds=rounds, iterations=iteration - round_iteration)
    return Restart(V=V, q=q, round_iterations=round_iteration, norm_f=norm_f)
