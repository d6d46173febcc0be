"""Slurm job settings: one typed record, read with a fixed precedence and validated.

Precedence, lowest first: the defaults below < the config file < the environment < the
command line. The config file is ``--config FILE``, else ``gat-hpc.toml`` in the current
folder (table ``[slurm]``), else ``pyproject.toml`` there (table ``[tool.gat-hpc.slurm]``).
Environment variables are ``GAT_HPC_SLURM_<FIELD>`` (``GAT_HPC_SLURM_CPUS_PER_TASK=4``);
lists are written space-separated there (``GAT_HPC_SLURM_MODULES="openmpi petsc"``,
``GAT_HPC_SLURM_EXTRA_SBATCH="--exclusive --nodes=1"``). A value never reaches a shell
unvalidated: every field has a checker, and an error names the value, where it came from
and what would be accepted.
"""

from __future__ import annotations

import os
import re
import shlex
from dataclasses import dataclass, fields, replace

from gat_hpc.errors import InputError

ENV_PREFIX = "GAT_HPC_SLURM_"
CONFIG_FILE = "gat-hpc.toml"

# sbatch flags that gat-hpc writes itself; --extra-sbatch may not set them (they have settings
# of their own, or the scripts depend on them).
MANAGED_FLAGS = {
    "account": "--account", "array": None, "chdir": None, "cpus-per-task": "--cpus-per-task",
    "dependency": None, "error": None, "job-name": "--job-name", "mem": "--mem", "ntasks": "--ntasks",
    "open-mode": None, "output": None, "parsable": None, "partition": "--partition", "qos": "--qos",
    "requeue": None, "signal": "--signal-seconds", "time": "--time", "workdir": None, "wrap": None,
}


@dataclass(frozen=True)
class SlurmSettings:
    """What the job scripts ask Slurm for, and how they set up the environment on the node."""

    partition: str | None = None        # --partition (comma list allowed)
    account: str | None = None          # --account
    qos: str | None = None              # --qos
    time: str = "01:00:00"              # --time per array task / reduce / MPI job
    mem: str | None = None              # --mem per node, e.g. 4G
    cpus_per_task: int = 1              # --cpus-per-task
    ntasks: int = 1                     # --ntasks of the MPI job (MPI ranks)
    array_throttle: int | None = None   # %K: at most K array tasks at once
    chunks_per_task: int = 1            # chunks run by one array task
    modules: tuple = ()                 # `module load` these before running gat-hpc
    venv: str | None = None             # virtual environment to activate (its bin/activate)
    extra_sbatch: tuple = ()            # more sbatch flags, each "--flag" or "--flag=value"
    job_name: str | None = None         # default gat-<study>-<run id prefix>
    launcher: str = "srun"              # MPI jobs: srun (PMIx) or mpirun
    srun_mpi: str = "pmix"              # srun --mpi=<this>
    signal_seconds: int = 60            # USR1 this many seconds before the time limit (0: none)
    max_array_size: int | None = None   # instead of asking `scontrol show config`

    def to_json(self):
        d = {f.name: getattr(self, f.name) for f in fields(self)}
        d["modules"], d["extra_sbatch"] = list(self.modules), list(self.extra_sbatch)
        return d

    @classmethod
    def from_json(cls, d, where):
        if not isinstance(d, dict):
            raise InputError(f"{where}: Slurm settings must be a JSON object")
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(d) - known)
        if unknown:
            raise InputError(f"{where}: unknown Slurm setting(s): {', '.join(unknown)}")
        values = {k: _convert(k, v, where) for k, v in d.items() if v is not None}
        return validate(replace(cls(), **values), {k: where for k in values})


# ---------------------------------------------------------------- checkers
_TIME_FORMS = (
    re.compile(r"^(?P<m>\d+)$"),
    re.compile(r"^(?P<m>\d+):(?P<s>\d{1,2})$"),
    re.compile(r"^(?P<h>\d+):(?P<m>\d{1,2}):(?P<s>\d{1,2})$"),
    re.compile(r"^(?P<d>\d+)-(?P<h>\d{1,2})$"),
    re.compile(r"^(?P<d>\d+)-(?P<h>\d{1,2}):(?P<m>\d{1,2})$"),
    re.compile(r"^(?P<d>\d+)-(?P<h>\d{1,2}):(?P<m>\d{1,2}):(?P<s>\d{1,2})$"),
)
_NAME = re.compile(r"^[A-Za-z0-9_.+-]+(,[A-Za-z0-9_.+-]+)*$")
_MODULE = re.compile(r"^[A-Za-z0-9_.+@:/-]+$")
_FLAG = re.compile(r"^--([a-z][a-z0-9-]*)(=(.*))?$", re.S)
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


def time_seconds(text):
    """Seconds of a Slurm time limit (minutes, MM:SS, HH:MM:SS, D-HH, D-HH:MM, D-HH:MM:SS); None when malformed."""
    for form in _TIME_FORMS:
        m = form.match(text)
        if not m:
            continue
        g = {k: int(v) for k, v in m.groupdict().items() if v is not None}
        if g.get("s", 0) > 59 or ("h" in g and g.get("m", 0) > 59) or ("d" in g and g.get("h", 0) > 23):
            return None
        return ((g.get("d", 0) * 24 + g.get("h", 0)) * 60 + g.get("m", 0)) * 60 + g.get("s", 0)
    return None


def _fail(name, value, source, expected):
    flag = "--" + name.replace("_", "-")
    raise InputError(f"{flag} {value!r} ({source}): {expected}")


def _check_text(name, value, source):
    if _CONTROL.search(value):
        _fail(name, value, source, "control characters (newline, tab, ...) cannot go into a job script")


def validate(s, sources):
    """Check every field of ``s``; ``sources`` says where each non-default value came from."""
    def src(name):
        return sources.get(name, "default")

    if s.time.upper() not in ("UNLIMITED", "INFINITE"):
        secs = time_seconds(s.time)
        if secs is None or secs == 0:
            _fail("time", s.time, src("time"), "not a Slurm time limit; use minutes, MM:SS, HH:MM:SS, D-HH, "
                                               "D-HH:MM or D-HH:MM:SS (for example 02:00:00), more than zero")
    if s.mem is not None and not re.match(r"^[1-9]\d*[KMGT]?$", s.mem):
        _fail("mem", s.mem, src("mem"), "memory per node is a positive whole number with an optional unit "
                                        "K, M, G or T (megabytes without one), for example 4G or 3500M")
    for name in ("partition", "account", "qos"):
        v = getattr(s, name)
        if v is not None and not _NAME.match(v):
            _fail(name, v, src(name), "letters, digits and _ . + - only (a comma-separated list for partitions)")
    for name, low in (("cpus_per_task", 1), ("ntasks", 1), ("chunks_per_task", 1), ("signal_seconds", 0)):
        v = getattr(s, name)
        if v < low:
            _fail(name, v, src(name), f"must be at least {low}")
    if s.signal_seconds > 65535:
        _fail("signal_seconds", s.signal_seconds, src("signal_seconds"), "Slurm allows at most 65535 seconds")
    for name in ("array_throttle", "max_array_size"):
        v = getattr(s, name)
        if v is not None and v < 1:
            _fail(name, v, src(name), "must be at least 1")
    for m in s.modules:
        if not _MODULE.match(m):
            _fail("modules", m, src("modules"), "a module name holds letters, digits and _ . + @ : / - only")
    if s.venv is not None:
        _check_text("venv", s.venv, src("venv"))
        if not os.path.isabs(s.venv):
            _fail("venv", s.venv, src("venv"), "give an absolute path (the job may start in another folder)")
    if s.job_name is not None:
        _check_text("job_name", s.job_name, src("job_name"))
        if not s.job_name.strip():
            _fail("job_name", s.job_name, src("job_name"), "must not be empty")
    if s.launcher not in ("srun", "mpirun"):
        _fail("launcher", s.launcher, src("launcher"), "choose srun or mpirun")
    if not re.match(r"^[a-z0-9_]+$", s.srun_mpi):
        _fail("srun_mpi", s.srun_mpi, src("srun_mpi"), "an MPI plugin name such as pmix, pmix_v4 or pmi2")
    for item in s.extra_sbatch:
        parse_extra_flag(item, src("extra_sbatch"))
    return s


def parse_extra_flag(item, source="command line"):
    """'--flag' or '--flag=value' -> (flag, value or None); refuses flags gat-hpc sets itself."""
    m = _FLAG.match(item)
    if not m:
        _fail("extra_sbatch", item, source, "write each extra flag in long form, --flag or --flag=value "
                                            "(for example --extra-sbatch=--exclusive --extra-sbatch=--nodes=1)")
    flag, value = m.group(1), m.group(3)
    if flag in MANAGED_FLAGS:
        own = MANAGED_FLAGS[flag]
        hint = f"use {own} instead" if own else "the job scripts depend on it"
        _fail("extra_sbatch", item, source, f"gat-hpc sets --{flag} itself; {hint}")
    if value is not None:
        _check_text("extra_sbatch", value, source)
    return "--" + flag, value


# ---------------------------------------------------------------- reading
_INT_FIELDS = {"cpus_per_task", "ntasks", "array_throttle", "chunks_per_task", "signal_seconds", "max_array_size"}
_LIST_FIELDS = {"modules": "words", "extra_sbatch": "shell words"}


def _convert(name, value, source):
    """A value from a file, the environment or the command line, as the field's type."""
    if name in _INT_FIELDS:
        if isinstance(value, bool):
            _fail(name, value, source, "must be a whole number")
        if isinstance(value, int):
            return value
        try:
            return int(str(value).strip())
        except ValueError:
            _fail(name, value, source, "must be a whole number")
    if name in _LIST_FIELDS:
        if isinstance(value, (list, tuple)):
            if not all(isinstance(v, str) for v in value):
                _fail(name, value, source, "must be a list of strings")
            items = list(value)
        elif isinstance(value, str):
            try:
                items = shlex.split(value) if name == "extra_sbatch" else value.replace(",", " ").split()
            except ValueError as exc:
                _fail(name, value, source, f"cannot be split into {_LIST_FIELDS[name]} ({exc})")
        else:
            _fail(name, value, source, "must be a string or a list of strings")
        return tuple(items)
    if not isinstance(value, str):
        _fail(name, value, source, "must be a string")
    return value


def _read_toml(path):
    try:
        import tomllib
    except ModuleNotFoundError:  # Python 3.10
        import tomli as tomllib
    try:
        with open(path, "rb") as fh:
            return tomllib.load(fh)
    except OSError as exc:
        raise InputError(f"{path}: cannot read the config file ({exc.strerror})") from None
    except tomllib.TOMLDecodeError as exc:
        raise InputError(f"{path}: not valid TOML ({exc})") from None


def config_file_table(config_path=None, cwd=None):
    """(path, table) of the Slurm settings in the config file, or (None, {}) when there is none."""
    cwd = cwd or os.getcwd()
    if config_path is not None:
        data = _read_toml(config_path)
        table, label = data.get("slurm"), "[slurm]"
        if table is None:
            table, label = data.get("tool", {}).get("gat-hpc", {}).get("slurm"), "[tool.gat-hpc.slurm]"
        if table is None:
            raise InputError(f"{config_path}: no [slurm] or [tool.gat-hpc.slurm] table")
        path = config_path
    elif os.path.isfile(os.path.join(cwd, CONFIG_FILE)):
        path = os.path.join(cwd, CONFIG_FILE)
        table, label = _read_toml(path).get("slurm", {}), "[slurm]"
    elif os.path.isfile(os.path.join(cwd, "pyproject.toml")):
        path = os.path.join(cwd, "pyproject.toml")
        table = _read_toml(path).get("tool", {}).get("gat-hpc", {}).get("slurm")
        if table is None:
            return None, {}
        label = "[tool.gat-hpc.slurm]"
    else:
        return None, {}
    if not isinstance(table, dict):
        raise InputError(f"{path}: {label} must be a table")
    return f"{path} {label}", table


def load_settings(cli=None, env=None, config_path=None, cwd=None):
    """Settings from defaults < config file < environment < ``cli`` ({field: value}, None = not given).

    Returns (settings, sources): sources maps each field that is not a default to where it came from.
    """
    env = os.environ if env is None else env
    names = [f.name for f in fields(SlurmSettings)]
    values, sources = {}, {}
    where, table = config_file_table(config_path, cwd)
    for key, value in table.items():
        name = key.replace("-", "_")
        if name not in names:
            raise InputError(f"{where}: unknown setting '{key}' (known: {', '.join(names)})")
        values[name], sources[name] = _convert(name, value, where), where
    for name in names:
        var = ENV_PREFIX + name.upper()
        if env.get(var, "") != "":
            values[name], sources[name] = _convert(name, env[var], f"environment {var}"), f"environment {var}"
    for name, value in (cli or {}).items():
        if value is None or (isinstance(value, (list, tuple)) and not value):
            continue
        values[name], sources[name] = _convert(name, value, "command line"), "command line"
    if values.get("venv") and not _CONTROL.search(values["venv"]):
        values["venv"] = os.path.abspath(os.path.expanduser(values["venv"]))
    settings = replace(SlurmSettings(), **values)
    return validate(settings, sources), sources


def add_settings_arguments(p):
    """The sbatch options of ``emit-sbatch``; each defaults to None so the precedence can tell it was not given."""
    g = p.add_argument_group("Slurm settings (defaults < gat-hpc.toml [slurm] < GAT_HPC_SLURM_* < these options)")
    g.add_argument("--config", help="settings file (TOML with a [slurm] table; default ./gat-hpc.toml, "
                                    "or [tool.gat-hpc.slurm] in ./pyproject.toml)")
    g.add_argument("--partition", help="partition(s) to run in")
    g.add_argument("--account", help="account to charge")
    g.add_argument("--qos", help="quality of service")
    g.add_argument("--time", help="time limit of each task, e.g. 30, 02:00:00 or 1-12 (default 01:00:00)")
    g.add_argument("--mem", help="memory per node, e.g. 4G (default: the site's)")
    g.add_argument("--cpus-per-task", type=int, help="CPUs per array task or MPI rank (default 1)")
    g.add_argument("--ntasks", type=int, help="MPI ranks of an MPI job (default 1)")
    g.add_argument("--array-throttle", type=int, metavar="K", help="run at most K array tasks at once")
    g.add_argument("--chunks-per-task", type=int, metavar="M", help="chunks per array task (default 1)")
    g.add_argument("--modules", help="modules to load in the job, space-separated, e.g. \"openmpi petsc gat-hpc\"")
    g.add_argument("--venv", help="virtual environment to activate in the job (absolute path)")
    g.add_argument("--extra-sbatch", action="append", metavar="--FLAG=VALUE",
                   help="another sbatch flag, written --extra-sbatch=--flag=value (repeatable)")
    g.add_argument("--job-name", help="job name (default gat-<study>-<run id prefix>)")
    g.add_argument("--launcher", choices=("srun", "mpirun"), help="MPI jobs: start ranks with srun (default) or mpirun")
    g.add_argument("--srun-mpi", help="srun --mpi plugin (default pmix; Debian's OpenMPI 4.1 needs pmix)")
    g.add_argument("--signal-seconds", type=int, help="send USR1 this many seconds before the time limit "
                                                      "(default 60; 0 sends none)")
    return g


def cli_values(args):
    """The settings given on the command line (None where not given)."""
    names = {f.name for f in fields(SlurmSettings)}
    return {k: v for k, v in vars(args).items() if k in names}
