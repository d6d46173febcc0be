"""Slurm executor: job scripts rendered from ``slurm_templates/``, submission, job states.

A sweep becomes two jobs: an array whose task ``t`` runs ``gat-hpc worker`` on chunks
``t*M .. t*M+M-1`` (M = chunks per task), and a reduce job that depends on the array with
``afterok``, so it runs only when every task succeeded. A single command that needs MPI
ranks (the distributed power flow, or a whole sweep with the MPI executor) becomes one MPI
job. The scripts go into the run directory with ``slurm.json`` (the settings they were
rendered with); submitted job ids are recorded in ``run.json`` (``jobs``).

Near the time limit Slurm sends USR1 to the batch shell (``--signal=B:USR1@N``), which passes
it on to the worker: :func:`install_usr1_handler` turns it into :class:`TimeLimitNear` inside
the running chunk, which is then recorded as failed (never half-written: every file is
written atomically) and run again by ``runs retry-failed --executor slurm``.
"""

from __future__ import annotations

import fcntl
import json
import os
import re
import shlex
import signal
import subprocess
import sys
import time
from collections import Counter

from gat_hpc import __version__
from gat_hpc.errors import GatError, InputError
from gat_hpc.executors.base import Executor
from gat_hpc.executors.slurm_settings import SlurmSettings, parse_extra_flag
from gat_hpc.util.atomic import atomic_write_text

DEFAULT_MAX_ARRAY_SIZE = 1001  # Slurm's default MaxArraySize
SETTINGS_FILE = "slurm.json"
ACTIVE_STATES = {"PENDING", "RUNNING", "CONFIGURING", "COMPLETING", "REQUEUED", "REQUEUE_HOLD", "REQUEUE_FED",
                 "RESIZING", "SUSPENDED", "SIGNALING", "STAGE_OUT", "SPECIAL_EXIT", "STOPPED"}
NEVER_RUNS = "DependencyNeverSatisfied"


class TimeLimitNear(GatError):
    """USR1 arrived: Slurm's time limit is near, the chunk is abandoned and recorded as failed."""

    exit_code = 4


def install_usr1_handler():
    """Make USR1 raise TimeLimitNear in the main thread (a worker between or inside chunks)."""
    def handler(signum, frame):
        raise TimeLimitNear("SIGUSR1: the Slurm time limit is near; the chunk was abandoned cleanly "
                            "and runs again with `gat-hpc runs retry-failed --executor slurm`")
    signal.signal(signal.SIGUSR1, handler)


# ---------------------------------------------------------------- templates
def template_dir():
    """slurm_templates/: $GAT_HPC_TEMPLATES, the source checkout, or <prefix>/share/gat-hpc/slurm_templates."""
    pkg = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    candidates = [os.environ.get("GAT_HPC_TEMPLATES") or "", os.path.join(pkg, "slurm_templates"),
                  os.path.join(pkg, "..", "..", "..", "share", "gat-hpc", "slurm_templates"),
                  os.path.join(sys.prefix, "share", "gat-hpc", "slurm_templates")]
    for c in candidates:
        if c and os.path.isfile(os.path.join(c, "array.sbatch.j2")):
            return os.path.abspath(c)
    raise InputError("the Slurm job templates (slurm_templates/*.sbatch.j2) were not found; set GAT_HPC_TEMPLATES "
                     "to their folder")


def sbatch_flag(pair):
    """('--time', '01:00:00') -> '--time=01:00:00', the value quoted as sbatch reads #SBATCH lines."""
    flag, value = pair
    return flag if value is None else f"{flag}={shlex.quote(str(value))}"


def render(name, **context):
    import jinja2

    env = jinja2.Environment(loader=jinja2.FileSystemLoader(template_dir()), undefined=jinja2.StrictUndefined,
                             keep_trailing_newline=True, trim_blocks=True, lstrip_blocks=True, autoescape=False)
    env.filters["q"] = lambda v: shlex.quote(str(v))
    env.filters["sbatch_flag"] = sbatch_flag
    return env.get_template(name).render(version=__version__, **context)


# ---------------------------------------------------------------- sbatch flags
def array_spec(tasks, throttle=None):
    """Task ids -> Slurm's --array text: [0,1,2,5] -> '0-2,5' (with '%K' when throttled)."""
    tasks = sorted(set(tasks))
    parts, start = [], None
    for i, t in enumerate(tasks):
        if start is None:
            start = t
        if i + 1 == len(tasks) or tasks[i + 1] != t + 1:
            parts.append(str(start) if start == t else f"{start}-{t}")
            start = None
    return ",".join(parts) + (f"%{throttle}" if throttle else "")


def common_flags(s, job_name):
    flags = {"--job-name": job_name, "--time": s.time, "--cpus-per-task": s.cpus_per_task}
    for name in ("partition", "account", "qos", "mem"):
        if getattr(s, name) is not None:
            flags["--" + name] = getattr(s, name)
    for item in s.extra_sbatch:
        flag, value = parse_extra_flag(item, "slurm settings")
        flags[flag] = value
    return flags


def sorted_flags(flags):
    return sorted(flags.items())


def check_array_size(n_tasks, s, chunks, where):
    """Array indices run 0..n_tasks-1 and must stay below MaxArraySize."""
    limit = s.max_array_size or max_array_size()
    if n_tasks > limit:
        need = -(-chunks // limit)
        raise InputError(f"{where}: {chunks} chunks at {s.chunks_per_task} per task make {n_tasks} array tasks, "
                         f"more than this cluster's MaxArraySize {limit}; use --chunks-per-task {need} or more "
                         "(or a larger --chunk-size)")
    return limit


_MAX_ARRAY = {}


def max_array_size():
    """MaxArraySize from `scontrol show config`, or Slurm's default 1001 when it cannot be asked."""
    conf = os.environ.get("SLURM_CONF", "")
    if conf not in _MAX_ARRAY:
        value = DEFAULT_MAX_ARRAY_SIZE
        try:
            out = subprocess.run(["scontrol", "show", "config"], capture_output=True, text=True, timeout=15).stdout
            m = re.search(r"^MaxArraySize\s*=\s*(\d+)", out, re.M)
            if m:
                value = int(m.group(1))
        except (OSError, subprocess.TimeoutExpired):
            pass
        _MAX_ARRAY[conf] = value
    return _MAX_ARRAY[conf]


# ---------------------------------------------------------------- writing the scripts
def default_job_name(study, run_id):
    return f"gat-{study}-{run_id[:8]}" if run_id else f"gat-{study}"


def check_run_path(path):
    if re.search(r"[\x00-\x1f\x7f]", path):
        raise InputError(f"--run-dir {path!r}: control characters (newline, tab, ...) cannot go into a job script")


def write_array_scripts(rd, s):
    """RUN/array.sbatch, RUN/reduce.sbatch, RUN/submit.sh and RUN/slurm.json of a chunked run."""
    check_run_path(rd.path)
    n_tasks = -(-rd.n_chunks // s.chunks_per_task)
    check_array_size(n_tasks, s, rd.n_chunks, rd.path)
    name = s.job_name or default_job_name(rd.study, rd.run_id)
    ctx = dict(study=rd.study, run_id=rd.run_id, n_chunks=rd.n_chunks, n_tasks=n_tasks,
               chunks_per_task=s.chunks_per_task, run_dir=rd.path, modules=list(s.modules), venv=s.venv,
               signal_seconds=s.signal_seconds)
    flags = common_flags(s, name)
    flags.update({"--array": array_spec(range(n_tasks), s.array_throttle), "--chdir": rd.path,
                  "--output": "logs/%A_%a.out", "--open-mode": "append", "--requeue": None})
    if s.signal_seconds:
        flags["--signal"] = f"B:USR1@{s.signal_seconds}"
    files = {"array.sbatch": render("array.sbatch.j2", sbatch=sorted_flags(flags), **ctx)}
    flags = common_flags(s, name + "-reduce")
    flags.update({"--chdir": rd.path, "--output": "logs/reduce_%j.out", "--cpus-per-task": 1})
    files["reduce.sbatch"] = render("reduce.sbatch.j2", sbatch=sorted_flags(flags), **ctx)
    files["submit.sh"] = render("submit.sh.j2", mode="array", **ctx)
    _write(rd.path, files, s, mode="array", n_tasks=n_tasks)
    return files


def write_mpi_scripts(path, s, command, description, study, run_id=None):
    """RUN/mpi.sbatch and RUN/submit.sh: ``command`` (argv after the launcher) on s.ntasks MPI ranks."""
    check_run_path(path)
    name = s.job_name or default_job_name(study, run_id)
    flags = common_flags(s, name)
    flags.update({"--chdir": path, "--output": "logs/mpi_%j.out", "--ntasks": s.ntasks})
    ctx = dict(study=study, run_id=run_id or "", run_dir=path, modules=list(s.modules), venv=s.venv,
               description=description, ntasks=s.ntasks, launcher=s.launcher, srun_mpi=s.srun_mpi,
               command=list(command))
    files = {"mpi.sbatch": render("mpi.sbatch.j2", sbatch=sorted_flags(flags), **ctx),
             "submit.sh": render("submit.sh.j2", mode="mpi", **ctx)}
    _write(path, files, s, mode="mpi")
    return files


def _write(path, files, s, **extra):
    os.makedirs(os.path.join(path, "logs"), exist_ok=True)
    for name, text in files.items():
        full = os.path.join(path, name)
        atomic_write_text(full, text)
        os.chmod(full, 0o755 if name.endswith(".sh") or name.endswith(".sbatch") else 0o644)
    doc = {"gat_hpc_version": __version__, "settings": s.to_json(), "scripts": sorted(files), **extra}
    atomic_write_text(os.path.join(path, SETTINGS_FILE), json.dumps(doc, indent=1, sort_keys=True) + "\n")


def read_script_settings(path):
    """(settings, document) saved by emit-sbatch in RUN/slurm.json."""
    p = os.path.join(path, SETTINGS_FILE)
    try:
        with open(p) as fh:
            doc = json.load(fh)
    except FileNotFoundError:
        raise InputError(f"{path}: no Slurm job scripts here; run `gat-hpc emit-sbatch <study> ... --run-dir {path}` "
                         "first") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise InputError(f"{p}: malformed ({exc})") from None
    if not isinstance(doc, dict):
        raise InputError(f"{p}: malformed (expected a JSON object)")
    return SlurmSettings.from_json(doc.get("settings"), p), doc


# ---------------------------------------------------------------- submitting
def _slurm(cmd, timeout=60):
    try:
        return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
    except FileNotFoundError:
        raise InputError(f"{cmd[0]} not found: Slurm's commands are not on PATH (load the site's slurm module?)") from None
    except subprocess.TimeoutExpired:
        raise GatError(f"`{' '.join(cmd[:3])} ...` did not answer in {timeout} s: is slurmctld reachable?") from None


def sbatch(args, script):
    """Submit ``script`` with ``args``; returns the job id."""
    r = _slurm(["sbatch", "--parsable", *args, script])
    if r.returncode != 0:
        msg = (r.stderr.strip().splitlines() or ["no message"])[-1]
        raise GatError(f"sbatch {os.path.basename(script)} failed: {msg}")
    return r.stdout.strip().split(";")[0]


def record_jobs(path, entries):
    """Append job records to run.json's ``jobs`` (or jobs.json next to a plain MPI job), under a lock."""
    manifest = os.path.join(path, "run.json")
    target = manifest if os.path.isfile(manifest) else os.path.join(path, "jobs.json")
    os.makedirs(os.path.join(path, "locks"), exist_ok=True)
    fd = os.open(os.path.join(path, "locks", "jobs.lock"), os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        if target == manifest:
            from gat_hpc.runs.rundir import RunDir

            rd = RunDir.open(path)  # re-read under the lock: another submit may have added jobs
            rd.manifest.setdefault("jobs", []).extend(entries)
            rd.save_manifest()
        else:
            jobs = []
            if os.path.isfile(target):
                with open(target) as fh:
                    jobs = json.load(fh)
            atomic_write_text(target, json.dumps(jobs + list(entries), indent=1, sort_keys=True) + "\n")
    finally:
        os.close(fd)


class SlurmExecutor(Executor):
    """Runs a run directory's chunks as Slurm array tasks, from the scripts emit-sbatch wrote."""

    name = "slurm"

    def __init__(self, path):
        self.path = os.path.abspath(path)
        self.settings, self.doc = read_script_settings(self.path)

    def tasks_for(self, chunk_ids):
        return sorted({cid // self.settings.chunks_per_task for cid in chunk_ids})

    def submit(self, rd, chunk_ids=None, reduce=True, extra_args=()):
        """Submit the array (all tasks, or those holding ``chunk_ids``) and its afterok reduce; returns the records."""
        mode = self.doc.get("mode")
        now = time.time()
        if mode == "mpi":
            jid = sbatch(list(extra_args), os.path.join(self.path, "mpi.sbatch"))
            entries = [{"id": jid, "kind": "mpi", "script": "mpi.sbatch", "submitted": now}]
            record_jobs(self.path, entries)
            return entries
        args = list(extra_args)
        tasks = None
        if chunk_ids is not None:
            tasks = self.tasks_for(chunk_ids)
            check_array_size(max(tasks) + 1, self.settings, rd.n_chunks, rd.path)
            args.insert(0, "--array=" + array_spec(tasks, self.settings.array_throttle))
        aid = sbatch(args, os.path.join(self.path, "array.sbatch"))
        entries = [{"id": aid, "kind": "array", "script": "array.sbatch", "submitted": now,
                    "tasks": array_spec(tasks) if tasks is not None else "all",
                    "chunks_per_task": self.settings.chunks_per_task}]
        try:
            if reduce:
                rid = sbatch([f"--dependency=afterok:{aid}"], os.path.join(self.path, "reduce.sbatch"))
                entries.append({"id": rid, "kind": "reduce", "script": "reduce.sbatch", "submitted": now,
                                "after": aid})
        finally:
            record_jobs(self.path, entries)  # the array is queued whatever became of the reduce
        return entries

    def run(self, rd, chunk_ids, progress=None):
        """Submit the chunks' tasks, wait for them to leave the queue, count the chunks' outcomes."""
        from gat_hpc.runs.rundir import DONE, FAILED

        entries = self.submit(rd, chunk_ids, reduce=False)
        wait_for([e["id"] for e in entries])
        out = Counter()
        for cid in chunk_ids:
            state, _ = rd.state(cid)
            out["ok" if state == DONE else "failed" if state == FAILED else state] += 1
            if progress:
                progress.advance()
        return out


# ---------------------------------------------------------------- job states
_FIELD = re.compile(r"(\w+)=(.*?)(?= \w+=|$)")


def _count_tasks(spec):
    """Number of array tasks in '4-11%4', '3,5-7' or '12'."""
    n = 0
    for part in spec.split("%")[0].split(","):
        if "-" in part:
            a, b = part.split("-", 1)
            n += int(b.split(":")[0]) - int(a) + 1
        elif part.strip().isdigit():
            n += 1
    return n


def job_states(job_id):
    """Slurm's view of one job (all tasks of an array): {'states': {STATE: n}, 'reasons': [...], 'source': ...}.

    `scontrol show job` knows pending, running and recently finished jobs (for MinJobAge);
    older ones come from the job completion log through `sacct -c` (without a database, array
    tasks are logged under their own raw ids, so only the job's own id is found there).
    Returns None when Slurm's commands are not installed.
    """
    try:
        r = subprocess.run(["scontrol", "show", "job", "-o", str(job_id)], capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired):
        return None
    states, reasons = Counter(), []
    if r.returncode == 0 and r.stdout.strip():
        for line in r.stdout.strip().splitlines():
            f = dict(_FIELD.findall(line.strip()))
            state = f.get("JobState", "UNKNOWN")
            task = f.get("ArrayTaskId")
            states[state] += _count_tasks(task) if task and not task.isdigit() else 1
            if state in ACTIVE_STATES and f.get("Reason", "None") != "None":
                reasons.append(f["Reason"])
        return {"states": dict(states), "reasons": sorted(set(reasons)), "source": "scontrol"}
    try:
        r = subprocess.run(["sacct", "-c", "-n", "-P", "-j", str(job_id), "-o", "JobID,State,ExitCode"],
                           capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired):
        r = None
    if r is not None and r.returncode == 0:
        for line in r.stdout.splitlines():
            parts = line.split("|")
            if len(parts) >= 2 and parts[0].split("_")[0] == str(job_id):
                states[parts[1].split()[0] if parts[1] else "UNKNOWN"] += 1
        if states:
            return {"states": dict(states), "reasons": [], "source": "sacct -c"}
    return {"states": {}, "reasons": [], "source": "gone (finished and no longer known to Slurm)"}


def is_active(info):
    """True while some task of the job may still run (a job that can never start does not count)."""
    if not info:
        return False
    active = sum(n for s, n in info["states"].items() if s in ACTIVE_STATES)
    return active > 0 and info["reasons"] != [NEVER_RUNS]


def describe_jobs(jobs):
    """Each recorded job with Slurm's current view of it (None when Slurm's tools are absent)."""
    out = []
    for job in jobs or []:
        info = job_states(job.get("id"))
        if info is None:
            return None
        out.append({**job, "slurm": info})
    return out


def wait_for(job_ids, timeout=None, poll=1.0):
    """Block until none of the jobs has a task that may still run; returns their final views."""
    start = time.monotonic()
    while True:
        infos = {j: job_states(j) for j in job_ids}
        if not any(is_active(i) for i in infos.values()):
            return infos
        if timeout is not None and time.monotonic() - start > timeout:
            raise GatError(f"jobs {', '.join(map(str, job_ids))} still queued or running after {timeout:.0f} s")
        time.sleep(poll)


def cancel(job_id):
    _slurm(["scancel", str(job_id)])
