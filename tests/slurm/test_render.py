"""Rendered job scripts (golden files), quoting of hostile values, refused flags, settings precedence.

None of these needs a Slurm cluster: scripts are rendered, compared byte for byte with
tests/slurm/golden/ (after replacing the run directory, run id, checkout and version with
placeholders), and executed with stand-in `sbatch` and `gat-hpc` commands that record the
arguments they receive. Set GAT_HPC_UPDATE_GOLDEN=1 to rewrite the golden files deliberately.
"""

import json
import os
import re
import shlex
import subprocess

import pytest

from gat_hpc import __version__
from gat_hpc.errors import InputError
from gat_hpc.executors import slurm as slurm_exec
from gat_hpc.executors.slurm_settings import load_settings, time_seconds
from tests.slurm.common import ENV, REPO, gat

GOLDEN = os.path.join(os.path.dirname(os.path.abspath(__file__)), "golden")
CASE9 = os.path.join(REPO, "gat_hpc", "data", "case9.m")
UPDATE = os.environ.get("GAT_HPC_UPDATE_GOLDEN") == "1"
SITE = ["--partition", "debug", "--account", "grid-lab", "--qos", "normal", "--time", "00:30:00", "--mem", "2G",
        "--cpus-per-task", "2", "--modules", "openmpi/4.1 petsc/3.18 gat-hpc/0.1.0", "--venv", "/opt/gat-hpc/venv",
        "--extra-sbatch=--exclusive", "--extra-sbatch=--constraint=cpu"]


def csv_profile(path, hours=24):
    lines = ["hour,load_scale"] + [f"{h},{0.8 + 0.01 * h:.2f}" for h in range(hours)]
    path.write_text("\n".join(lines) + "\n")
    return path


def placeholders(text, run, run_id=None):
    if run_id:
        for n in (64, 12, 8):
            text = text.replace(run_id[:n], "@RUN_ID@")
    return text.replace(str(run), "@RUN@").replace(REPO, "@REPO@").replace(__version__, "@VERSION@")


def check_golden(name, text):
    path = os.path.join(GOLDEN, name)
    if UPDATE:
        os.makedirs(GOLDEN, exist_ok=True)
        with open(path, "w") as fh:
            fh.write(text)
    with open(path) as fh:
        assert text == fh.read(), f"{name} differs from tests/slurm/golden/{name} (GAT_HPC_UPDATE_GOLDEN=1 rewrites it)"


def test_array_reduce_submit_match_golden_files(tmp_path):
    prof = csv_profile(tmp_path / "p.csv")
    run = tmp_path / "golden run"
    r = gat("emit-sbatch", "pf", "ac", CASE9, "--profiles", prof, "--chunk-size", 3, "--run-dir", run,
            "--array-throttle", 3, "--chunks-per-task", 2, *SITE, cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert "8 chunks in 4 array task(s) of 2 chunk(s), at most 3 at once" in r.stdout
    run_id = json.loads((run / "run.json").read_text())["run_id"]
    for name in ("array.sbatch", "reduce.sbatch", "submit.sh"):
        check_golden(name, placeholders((run / name).read_text(), run, run_id))
    for name in ("array.sbatch", "reduce.sbatch"):
        flags = [line for line in (run / name).read_text().splitlines() if line.startswith("#SBATCH")]
        assert flags == sorted(flags) and len(flags) == len({f.split("=")[0] for f in flags})
    # the same study from `pf ac` reuses the run: emit-sbatch plans exactly as the sweep command does
    r = gat("pf", "ac", CASE9, "--profiles", prof, "--chunk-size", 3, "--run-dir", run, "--quiet")
    assert r.returncode == 0, r.stderr
    assert json.loads((run / "run.json").read_text())["run_id"] == run_id


def test_mpi_job_matches_golden_files(tmp_path):
    run = tmp_path / "pf70k"
    opts = ["-ksp_type", "preonly", "-pc_type", "lu", "-pc_factor_mat_solver_type", "mumps", "-snes_monitor"]
    base = ["emit-sbatch", "pf", "ac", CASE9, *opts, "--solver", "petsc", "--run-dir", run, "--ntasks", 4, *SITE]
    r = gat(*base, cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert not (run / "run.json").exists() and (run / "logs").is_dir()
    srun = (run / "mpi.sbatch").read_text()
    check_golden("mpi.sbatch", placeholders(srun, run))
    check_golden("submit-mpi.sh", placeholders((run / "submit.sh").read_text(), run))
    r = gat(*base, "--launcher", "mpirun", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    mpirun = (run / "mpi.sbatch").read_text()
    diff = [(a, b) for a, b in zip(srun.splitlines(), mpirun.splitlines()) if a != b]
    assert len(diff) == 1 and diff[0][1].startswith('exec mpirun -n "$SLURM_NTASKS" gat-hpc pf ac ')
    assert diff[0][0].startswith("exec srun --mpi=pmix --kill-on-bad-exit=1 gat-hpc pf ac ")
    # a stored partition travels to the job as an absolute path; a sweep or the serial solver refuses it
    r = gat(*base, "--partition-file", "p9.parquet", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert f"--partition-file {tmp_path / 'p9.parquet'} " in (run / "mpi.sbatch").read_text()
    r = gat("emit-sbatch", "pf", "ac", CASE9, "--run-dir", tmp_path / "s", "--partition-file", "p9.parquet", *SITE,
            cwd=tmp_path)
    assert r.returncode == 2 and "--partition-file belongs to one distributed power flow" in r.stderr


def stubs(tmp_path):
    """A bin/ folder with stand-ins for sbatch (prints job ids 101, 102, ...) and gat-hpc (records its argv)."""
    bin_ = tmp_path / "bin"
    bin_.mkdir()
    log = tmp_path / "calls.jsonl"
    for name, reply in (("sbatch", "n=$(( $(wc -l < \"$LOG\" 2>/dev/null || echo 0) + 101 )); echo \"$n;ci\""),
                        ("gat-hpc", ":")):
        (bin_ / name).write_text("#!/bin/bash\n"
                                 f"python3 -c 'import json,sys; print(json.dumps([\"{name}\"] + sys.argv[1:]))' \"$@\""
                                 " >> \"$LOG.tmp\"\n"
                                 f"{reply}\n"
                                 "cat \"$LOG.tmp\" >> \"$LOG\"; rm -f \"$LOG.tmp\"\n")
        (bin_ / name).chmod(0o755)
    env = dict(ENV, PATH=f"{bin_}:{ENV['PATH']}", LOG=str(log))
    return env, log


def calls(log):
    return [json.loads(line) for line in log.read_text().splitlines()]


def test_hostile_run_dir_and_job_name_stay_data(tmp_path):
    run = tmp_path / "it's a \"run\" $(touch pwned) `touch pwned2`; x"
    name = "gat '\"$(touch pwned3)\" ;# x"
    r = gat("emit-sbatch", "trivial", "--items", 2, "--run-dir", run, "--job-name", name, cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    text = (run / "array.sbatch").read_text()
    for script in ("array.sbatch", "reduce.sbatch", "submit.sh"):
        assert subprocess.run(["bash", "-n", run / script]).returncode == 0
    # sbatch reads #SBATCH values with shell-like quoting: each one parses back to the exact value
    values = dict(re.findall(r"^#SBATCH --([a-z-]+)=(.*)$", text, re.M))
    assert shlex.split(values["job-name"]) == [name] and shlex.split(values["chdir"]) == [str(run)]
    env, log = stubs(tmp_path)
    r = subprocess.run(["bash", run / "array.sbatch"], env=dict(env, SLURM_ARRAY_TASK_ID="1"), capture_output=True,
                       text=True, cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert calls(log) == [["gat-hpc", "worker", "--run-dir", str(run), "--chunks-per-task", "1"]]
    log.unlink()
    r = subprocess.run(["bash", run / "submit.sh", "--array=1"], env=env, capture_output=True, text=True, cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert r.stdout == "array job 101\nreduce job 102\n"
    assert calls(log) == [
        ["sbatch", "--parsable", "--array=1", f"{run}/array.sbatch"],
        ["sbatch", "--parsable", "--dependency=afterok:101", f"{run}/reduce.sbatch"],
        ["gat-hpc", "record-jobs", "--run-dir", str(run), "--array-job", "101", "--reduce-job", "102", "--",
         "--array=1"]]
    assert not any(p.name.startswith("pwned") for p in tmp_path.rglob("*"))


def test_record_jobs_appends_to_run_json(tmp_path):
    run = tmp_path / "run"
    assert gat("emit-sbatch", "trivial", "--items", 2, "--run-dir", run, cwd=tmp_path).returncode == 0
    r = gat("record-jobs", "--run-dir", run, "--array-job", "7", "--reduce-job", "8", "--", "--array=0")
    assert r.returncode == 0, r.stderr
    jobs = json.loads((run / "run.json").read_text())["jobs"]
    assert [(j["kind"], j["id"]) for j in jobs] == [("array", "7"), ("reduce", "8")]
    assert jobs[0]["tasks"] == "0" and jobs[1]["after"] == "7"
    r = gat("record-jobs", "--run-dir", run, "--array-job", "7; rm -rf /")
    assert r.returncode == 2 and "a Slurm job id is a number" in r.stderr


@pytest.mark.parametrize("args, message", [
    (["--time", "1:2:3:4"], "--time '1:2:3:4' (command line): not a Slurm time limit"),
    (["--time", "1-25"], "not a Slurm time limit"),
    (["--time", "0"], "not a Slurm time limit"),
    (["--mem", "4GB"], "--mem '4GB' (command line): memory per node is a positive whole number"),
    (["--mem", "0"], "memory per node"),
    (["--partition", "debug;rm"], "--partition 'debug;rm' (command line): letters, digits"),
    (["--account", "a b"], "letters, digits"),
    (["--cpus-per-task", "0"], "--cpus-per-task 0 (command line): must be at least 1"),
    (["--array-throttle", "0"], "--array-throttle 0 (command line): must be at least 1"),
    (["--chunks-per-task", "0"], "must be at least 1"),
    (["--modules", "openmpi $(id)"], "a module name holds"),
    (["--job-name", "two\nlines"], "control characters"),
    (["--extra-sbatch=--output=/tmp/x"], "gat-hpc sets --output itself"),
    (["--extra-sbatch=--time=5"], "gat-hpc sets --time itself; use --time instead"),
    (["--extra-sbatch=-N 2"], "write each extra flag in long form"),
    (["--extra-sbatch=--comment=a\nb"], "control characters"),
    (["--signal-seconds", "70000"], "at most 65535"),
    (["--srun-mpi", "pmix; id"], "an MPI plugin name"),
])
def test_invalid_settings_are_refused_with_one_line(tmp_path, args, message):
    run = tmp_path / "run"
    r = gat("emit-sbatch", "trivial", "--items", 4, "--run-dir", run, *args, cwd=tmp_path)
    assert r.returncode == 2, r.stderr
    assert message in r.stderr and r.stderr.count("\n") == 2, r.stderr  # the error, then the doc page
    assert r.stderr.splitlines()[1].startswith("gat-hpc: see docs/cluster.md"), r.stderr
    assert not run.exists()


def test_run_dir_with_a_newline_and_too_many_array_tasks_are_refused(tmp_path):
    r = gat("emit-sbatch", "trivial", "--items", 4, "--run-dir", tmp_path / "a\nb", cwd=tmp_path)
    assert r.returncode == 2 and "control characters" in r.stderr
    run = tmp_path / "run"
    env = dict(ENV, GAT_HPC_SLURM_MAX_ARRAY_SIZE="5")
    r = gat("emit-sbatch", "trivial", "--items", 12, "--run-dir", run, env=env, cwd=tmp_path)
    assert r.returncode == 2
    assert "12 chunks at 1 per task make 12 array tasks, more than this cluster's MaxArraySize 5; " \
           "use --chunks-per-task 3 or more" in r.stderr
    assert not run.exists()
    r = gat("emit-sbatch", "trivial", "--items", 12, "--run-dir", run, "--chunks-per-task", 3, env=env, cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert "#SBATCH --array=0-3\n" in (run / "array.sbatch").read_text()


def test_max_array_size_falls_back_to_slurms_default(monkeypatch, tmp_path):
    monkeypatch.setenv("PATH", str(tmp_path))  # no scontrol here
    monkeypatch.setenv("SLURM_CONF", str(tmp_path / "none.conf"))
    slurm_exec._MAX_ARRAY.clear()
    assert slurm_exec.max_array_size() == 1001
    slurm_exec._MAX_ARRAY.clear()


def test_settings_precedence_defaults_file_environment_command_line(tmp_path):
    (tmp_path / "gat-hpc.toml").write_text('[slurm]\ntime = "00:10:00"\npartition = "fromfile"\nmem = "1G"\n'
                                           'modules = ["openmpi", "petsc"]\n')
    env = {"GAT_HPC_SLURM_PARTITION": "fromenv", "GAT_HPC_SLURM_CPUS_PER_TASK": "3"}
    s, src = load_settings({"mem": "3G", "partition": None}, env=env, cwd=tmp_path)
    assert (s.time, s.partition, s.mem, s.cpus_per_task, s.modules, s.qos) == \
        ("00:10:00", "fromenv", "3G", 3, ("openmpi", "petsc"), None)
    assert src["time"].endswith("gat-hpc.toml [slurm]") and src["partition"] == "environment GAT_HPC_SLURM_PARTITION"
    assert src["mem"] == "command line" and "qos" not in src
    (tmp_path / "gat-hpc.toml").unlink()
    (tmp_path / "pyproject.toml").write_text('[project]\nname = "x"\n[tool.gat-hpc.slurm]\naccount = "lab"\n'
                                             'extra-sbatch = ["--exclusive"]\n')
    s, _ = load_settings({}, env={}, cwd=tmp_path)
    assert s.account == "lab" and s.extra_sbatch == ("--exclusive",) and s.time == "01:00:00"
    (tmp_path / "pyproject.toml").write_text('[tool.gat-hpc.slurm]\nwalltime = "1"\n')
    with pytest.raises(InputError, match="unknown setting 'walltime'"):
        load_settings({}, env={}, cwd=tmp_path)
    with pytest.raises(InputError, match="GAT_HPC_SLURM_CPUS_PER_TASK"):
        load_settings({}, env={"GAT_HPC_SLURM_CPUS_PER_TASK": "many"}, cwd=tmp_path / "..")
    # end to end: the file in the working folder reaches the script, the command line wins over it
    (tmp_path / "gat-hpc.toml").write_text('[slurm]\ntime = "00:10:00"\nqos = "short"\n')
    r = gat("emit-sbatch", "trivial", "--items", 2, "--run-dir", tmp_path / "run", "--qos", "long", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    text = (tmp_path / "run" / "array.sbatch").read_text()
    assert "#SBATCH --time=00:10:00\n" in text and "#SBATCH --qos=long\n" in text


def test_slurm_time_formats():
    assert time_seconds("30") == 1800 and time_seconds("30:15") == 1815 and time_seconds("2:00:00") == 7200
    assert time_seconds("1-12") == 129600 and time_seconds("1-0:30") == 88200 and time_seconds("2-1:2:3") == 176523
    assert time_seconds("1:60") is None and time_seconds("1:60:00") is None and time_seconds("x") is None


def test_array_spec_compresses_task_ids():
    assert slurm_exec.array_spec([0, 1, 2, 5, 7, 8], 4) == "0-2,5,7-8%4"
    assert slurm_exec.array_spec([3]) == "3"
