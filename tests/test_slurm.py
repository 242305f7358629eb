"""The Slurm profile (`workflow/profiles/slurm`) on a real Slurm, with the site settings of its README only.

The tests that submit jobs need a reachable Slurm (`sinfo` answers): `.ci/slurm.sh start` (as root) makes a
single-node one without accounting and `.ci/slurm.sh stop` ends it; without one they are skipped. They run
the smoke study through the profile in a temporary directory, next to a local run (`--cores 2`) of the same
study, and check that

- every job Snakemake does not run locally was submitted with sbatch and ran inside that Slurm job (the
  SLURM_JOB_ID its command saw is the id sbatch returned), and no local job was submitted;
- a job that fails (on purpose, after writing part of its output) is reported as failed by Slurm with
  that output removed, and a rerun completes the study;
- `metrics.csv` and every sampled image of the completed study are byte-identical to the local run's;
- after a kill -9 of Snakemake while its Slurm job runs (the stand-in holds it), the rerun cancels that job
  before submitting the node once itself;
- in a GPU study (the smoke study with `device: auto`) the sbatch calls, and the job steps inside the jobs,
  ask for a GPU for sampling and scoring jobs only (no GPU is needed: the stand-ins below take the
  request off before it reaches this Slurm).

What a job saw and what was submitted are observed through stand-ins put first on PATH (the jobs inherit
it, `sbatch --export=ALL`): `diffscale` notes SLURM_JOB_ID in the job's log and runs the real CLI (or fails
on purpose, or holds its job until cancelled); `sbatch` (called by the plugin) and `srun` (called by its job step inside each job) record
each call and run the real command.
The dry-run checks of the GPU requests run without Slurm.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shlex
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
import yaml

import workflows
from diffscale.cells import Paths, expand
from diffscale.config import load

pytestmark = pytest.mark.engine
REPO = Path(__file__).resolve().parents[1]
PROFILE = REPO / "workflow" / "profiles" / "slurm"
SNAKEFILE = REPO / "workflow" / "Snakefile"
SMOKE = REPO / "config" / "smoke.yaml"
BIN = str(Path(sys.executable).parent)
RUN_TIMEOUT = int(os.environ.get("DIFFSCALE_TEST_SLURM_TIMEOUT", "2400"))  # seconds per Snakemake run
GPU_RULES = re.compile(r"^(sample|search|score)(_|$)")  # the families that ask for a GPU (diffscale.dag)


def slurm_unreachable() -> str | None:
    """Why no Slurm can be used here, or None."""
    if shutil.which("sinfo") is None or shutil.which("sbatch") is None:
        return "no `sinfo`/`sbatch` on PATH"
    try:
        result = subprocess.run(["sinfo", "-h", "-o", "%P %a"], capture_output=True, text=True, timeout=60)
    except (OSError, subprocess.TimeoutExpired) as error:
        return f"`sinfo` failed: {error}"
    if result.returncode != 0 or not result.stdout.strip():
        return f"`sinfo` failed: {(result.stderr.strip().splitlines() or ['no partition'])[-1]}"
    return None


UNREACHABLE = slurm_unreachable()
needs_slurm = pytest.mark.skipif(
    UNREACHABLE is not None,
    reason=f"no Slurm reachable ({UNREACHABLE}): run `.ci/slurm.sh start` (as root) first, `.ci/slurm.sh stop` after")


def slurm_config() -> dict[str, str]:
    out = subprocess.run(["scontrol", "show", "config"], capture_output=True, text=True, timeout=60).stdout
    return dict(re.findall(r"^(\w+)\s*=\s*(.*?)\s*$", out, re.M))


def site_settings() -> dict[str, str]:
    """The README's site settings as the caller set them; the partition defaults to the cluster's default."""
    env = {k: v for k, v in os.environ.items() if k.startswith("DIFFSCALE_SLURM_")}
    if "DIFFSCALE_SLURM_PARTITION" not in env and UNREACHABLE is None:
        partitions = subprocess.run(["sinfo", "-h", "-o", "%P"], capture_output=True, text=True).stdout.split()
        default = [p.rstrip("*") for p in partitions if p.endswith("*")]
        if default:
            env["DIFFSCALE_SLURM_PARTITION"] = default[0]
    return env


# -- Snakemake's log: the jobs it ran, where, and the Slurm ids it got --------------------------------------

JOB_HEADER = re.compile(r"^(localrule|rule) (\S+):$")
SUBMITTED = re.compile(r"^Job (\d+) has been submitted with SLURM jobid (\d+)")
RUN_ID = re.compile(r"SLURM run ID: (\S+)")


def jobs_of(log: str) -> list[dict]:
    """One entry per job block Snakemake printed: rule, local or not, and its indented fields."""
    jobs, current = [], None
    for line in log.splitlines():
        header = JOB_HEADER.match(line)
        if header:
            current = {"local": header[1] == "localrule", "rule": header[2]}
            jobs.append(current)
        elif current is not None and line.startswith("    ") and ": " in line:
            key, value = line.strip().split(": ", 1)
            current.setdefault(key, value)
        else:
            current = None
    return jobs


def resources_of(job: dict) -> dict[str, str]:
    return dict(item.split("=", 1) for item in job.get("resources", "").split(", ") if "=" in item)


def job_log(job: dict) -> str | None:
    """The rule's own log (the first one named; the plugin may append its Slurm log)."""
    return job["log"].split(", ")[0] if "log" in job else None


# -- running Snakemake ------------------------------------------------------------------------------------

STAND_INS = {
    "diffscale": '''
import os, sys
from pathlib import Path
args = sys.argv[1:]
# The rule sends stderr to the job's log: note there which Slurm job (if any) runs this command.
print(f"diffscale-stand-in: SLURM_JOB_ID={os.environ.get('SLURM_JOB_ID', '')}", file=sys.stderr, flush=True)
hold = os.environ.get("DIFFSCALE_TEST_HOLD_BLOCK")
if hold and "sample" in args and args[args.index("sample") + 1:][:2] == ["--block", hold]:
    import time
    marker = Path(os.environ["DIFFSCALE_TEST_HOLD_MARKER"])
    marker.write_text(os.environ.get("SLURM_JOB_ID", ""))  # held inside its Slurm job until cancelled
    time.sleep(600)
    marker.with_name(marker.name + "-continued").touch()
fail = os.environ.get("DIFFSCALE_TEST_FAIL_BLOCK")
if fail and "sample" in args and args[args.index("sample") + 1:][:2] == ["--block", fail]:
    partial = Path(os.environ["DIFFSCALE_TEST_FAIL_OUTPUT"])
    partial.mkdir(parents=True, exist_ok=True)
    (partial / "half-written.png").write_bytes(b"not an image")
    print(f"diffscale-stand-in: failing on purpose after writing {partial}", file=sys.stderr, flush=True)
    sys.exit(3)
os.execv(REAL, [REAL, *args])
''',
    # sbatch is called by the plugin; srun by the plugin's job step inside each job, with the same request.
    **{name: f'''
import json, os, re, sys
args = sys.argv[1:]
if os.environ.get("DIFFSCALE_TEST_{name.upper()}_LOG"):
    with open(os.environ["DIFFSCALE_TEST_{name.upper()}_LOG"], "a") as log:
        log.write(json.dumps(args) + "\\n")
if os.environ.get("DIFFSCALE_TEST_STRIP_GPUS"):  # this Slurm has no GPU: keep the request out of its way
    args = [a for a in args if not re.match(r"--(gpus|gres)=", a)]
os.execv(REAL, [REAL, *args])
''' for name in ("sbatch", "srun")},
}


def stand_ins(folder: Path) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for name, body in STAND_INS.items():
        real = shutil.which(name, path=BIN + os.pathsep + os.environ.get("PATH", ""))
        assert real, f"no {name} on PATH"
        script = folder / name
        script.write_text(f"#!{sys.executable}\nREAL = {real!r}\n{body}")
        script.chmod(0o755)
    return folder


class Run:
    """One Snakemake run: its command, output and exit status."""

    def __init__(self, args: list[str], work: Path, env: dict, name: str, accounting: bool = True):
        self.work, self.name = work, name
        self.log_path = work.parent / f"{name}.log"
        self.cmd = [sys.executable, "-m", "snakemake", "-s", str(SNAKEFILE), "-d", str(work), *args]
        started = time.monotonic()
        self.returncode, self.output = self._run(env, accounting)
        self.seconds = time.monotonic() - started

    def _run(self, env: dict, accounting: bool) -> tuple[int, str]:
        lines: list[str] = []
        abort = threading.Event()
        reason = []
        with open(self.log_path, "w") as log:
            proc = subprocess.Popen(self.cmd, cwd=self.work, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                    text=True, start_new_session=True)

            def read():
                for line in proc.stdout:
                    lines.append(line)
                    log.write(line)
                    log.flush()
                    # Plugin 2.8.0 falls back to sacct when `scontrol show config` times out; without
                    # accounting sacct fails and the run's jobs are dropped: it would wait forever.
                    if not accounting and "Falling back to 'sacct' for status queries" in line:
                        reason.append("the plugin fell back to sacct on a cluster without accounting (a run that "
                                      "would never end; see workflow/profiles/slurm/README.md)")
                        abort.set()

            reader = threading.Thread(target=read, daemon=True)
            reader.start()
            deadline = time.monotonic() + RUN_TIMEOUT
            while proc.poll() is None and not abort.is_set() and time.monotonic() < deadline:
                time.sleep(1)
            if proc.poll() is None:
                reason = reason or [f"no end after {RUN_TIMEOUT} s"]
                self._stop(proc, "".join(lines))
                reader.join(timeout=30)
                pytest.fail(f"{self.name}: {reason[0]}; stopped it and cancelled its jobs. "
                            f"Log: {self.log_path}\n{''.join(lines)[-4000:]}")
            reader.join(timeout=60)
        return proc.returncode, "".join(lines)

    @staticmethod
    def _stop(proc: subprocess.Popen, output: str) -> None:
        proc.send_signal(signal.SIGINT)  # Snakemake cancels the Slurm jobs it knows of
        try:
            proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
        for run_id in RUN_ID.findall(output):  # and those it lost track of: every job is named by the run id
            subprocess.run(["scancel", "--name", run_id], capture_output=True)

    def check(self, ok: bool = True) -> Run:
        assert (self.returncode == 0) == ok, (
            f"{self.name}: exit status {self.returncode}; log {self.log_path}\n{self.output[-5000:]}")
        return self

    @property
    def jobs(self) -> list[dict]:
        return jobs_of(self.output)

    @property
    def submitted(self) -> dict[str, str]:
        """Snakemake job id -> Slurm job id."""
        return {m[1]: m[2] for m in map(SUBMITTED.match, self.output.splitlines()) if m}

    @property
    def run_id(self) -> str:
        ids = RUN_ID.findall(self.output)
        assert len(ids) == 1, f"{self.name}: expected one 'SLURM run ID' line, got {ids}"
        return ids[0]


def squeue_states(run_id: str) -> dict[str, tuple[str, str]]:
    """Slurm job id -> (state, comment) of a run's jobs, from squeue (which keeps finished jobs for
    MinJobAge seconds; no accounting needed). The plugin names every job by the run id and puts
    `rule_<rule>_wildcards_<wildcards>` in its comment."""
    out = subprocess.run(["squeue", "--noheader", "--states=all", "--name", run_id, "--format=%i|%T|%k"],
                         capture_output=True, text=True, timeout=60).stdout
    return {i: (state, comment) for i, state, comment in (line.split("|", 2) for line in out.splitlines() if line)}


def sbatch_calls(path: Path) -> list[list[str]]:
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


def option(call: list[str], *names: str) -> str | None:
    """The value of an sbatch option in a recorded call (`--name value`, `--name=value`, `-p value`)."""
    for i, arg in enumerate(call):
        for name in names:
            if arg == name and i + 1 < len(call):
                return call[i + 1]
            if arg.startswith(name + "="):
                return arg.split("=", 1)[1]
    return None


def gpu_request(call: list[str]) -> str | None:
    return next((arg for arg in call if re.match(r"--(gpus|gres)=", arg)), None)


def digests(root: Path) -> dict[str, str]:
    """sha256 of metrics.csv and of every sampled image, by path."""
    study = root / "results" / "smoke"
    files = [study / "metrics.csv", *sorted((study / "samples").glob("**/images/*.png"))]
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest() for p in files if p.is_file()}


def logs_of(run: Run) -> dict[str, str]:
    """The text of the rule logs of the jobs a run printed, read right after it."""
    paths = {job_log(j) for j in run.jobs if job_log(j)}
    return {path: (run.work / path).read_text() for path in paths if (run.work / path).exists()}


def gpu_study(folder: Path) -> Path:
    study = yaml.safe_load(SMOKE.read_text())
    study["device"] = "auto"
    path = folder / "smoke-gpu.yaml"
    path.write_text(yaml.safe_dump(study, sort_keys=False))
    return path


def base_env(extra: dict | None = None) -> dict:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DIFFSCALE_SLURM_", "DIFFSCALE_TEST_"))}
    return env | {"PATH": BIN + os.pathsep + os.environ.get("PATH", "")} | (extra or {})


# -- dry runs: what the profile asks for, without Slurm -----------------------------------------------------

def dry_run(tmp: Path, study: Path, site: dict[str, str]) -> list[dict]:
    work = tmp / "dry"
    work.mkdir(exist_ok=True)
    run = Run(["--profile", str(PROFILE), "--configfile", str(study), "--dry-run"], work, base_env(site), "dry-run")
    return [job for job in run.check().jobs if job["rule"] not in ("all", "plan")]


def test_dry_run_gpu_requests_only_for_sampling_and_scoring(tmp_path):
    jobs = dry_run(tmp_path, gpu_study(tmp_path), {"DIFFSCALE_SLURM_PARTITION": "cpu-part"})
    assert {j["rule"] for j in jobs if GPU_RULES.match(j["rule"])} >= {"sample"}
    for job in jobs:
        resources = resources_of(job)
        wants_gpu = bool(GPU_RULES.match(job["rule"]))
        assert resources.get("gpu", "0") == ("1" if wants_gpu else "0"), (job["rule"], resources)
        if not job["local"]:  # a local job is never submitted: Snakemake does not even evaluate its partition
            assert resources.get("slurm_partition") == "cpu-part", (job["rule"], resources)
        assert int(resources["mem_mb"]) <= 4000 and int(resources["runtime"]) <= 120, (job["rule"], resources)
    cpu_study = dry_run(tmp_path, SMOKE, {})
    assert all(resources_of(j).get("gpu", "0") == "0" for j in cpu_study)
    assert not any("slurm_partition" in resources_of(j) for j in cpu_study)  # unset: the cluster's default


@pytest.mark.parametrize("syntax, expected", [
    ("gpus:a100", {"gpu": "1", "gpu_model": "a100"}),
    ("gres", {"gpu": "0", "gres": "gpu:1"}),
    ("gres:a100", {"gpu": "0", "gres": "gpu:a100:1"}),
])
def test_dry_run_gpu_site_settings(tmp_path, syntax, expected):
    site = {"DIFFSCALE_SLURM_PARTITION": "cpu", "DIFFSCALE_SLURM_GPU_PARTITION": "gpu", "DIFFSCALE_SLURM_GPU": syntax}
    for job in dry_run(tmp_path, gpu_study(tmp_path), site):
        resources = resources_of(job)
        if GPU_RULES.match(job["rule"]):
            assert {k: resources.get(k) for k in expected} == expected, (job["rule"], resources)
            assert resources["slurm_partition"] == "gpu"
        else:
            assert resources.get("gpu", "0") == "0" and "gres" not in resources and "gpu_model" not in resources
            assert resources["slurm_partition"] == "cpu"


# -- real runs ------------------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def slurm_runs(smoke_run, tmp_path_factory):
    """The smoke study through the profile: a first run in which one sampling job fails on purpose, then
    the rerun that completes it. Every job of the study is submitted; the trained artifacts and the cells of
    every block but the failing one come from the local cold run's caches (their jobs restore them, the
    subject here is the submission, not the arithmetic); the failing block's cells are sampled and scored
    inside Slurm jobs."""
    root = tmp_path_factory.mktemp("slurm")
    work = root / "work"
    work.mkdir()
    bin_dir = stand_ins(root / "bin")
    site = site_settings()
    accounting = slurm_config().get("AccountingStorageType", "") != "accounting_storage/none"
    dry = Run(["--configfile", str(SMOKE), "--dry-run"], work, base_env(), "plan-of-the-study").check()
    blocks = sorted(j["wildcards"].removeprefix("key=") for j in dry.jobs if j["rule"] == "sample")
    assert blocks, "the smoke study has no `sample` job"
    failing = blocks[-1]
    params = load(SMOKE)
    computed_here = {c.id for c in expand(params) if Paths.of(params).block_of(c).id == failing}
    workflows.seed_artifacts(smoke_run, work, cells=lambda cell: cell not in computed_here and cell != failing)
    failing_output = next(j["output"] for j in dry.jobs if j["rule"] == "sample" and j["wildcards"] == f"key={failing}")
    env = base_env(site) | {
        "PATH": f"{bin_dir}{os.pathsep}{BIN}{os.pathsep}{os.environ.get('PATH', '')}",
        "DIFFSCALE_TEST_SBATCH_LOG": str(root / "sbatch.jsonl"),
    }
    command = ["--profile", str(PROFILE), "--configfile", str(SMOKE)]
    first = Run(command, work, env | {"DIFFSCALE_TEST_FAIL_BLOCK": failing,
                                      "DIFFSCALE_TEST_FAIL_OUTPUT": str(work / failing_output)},
                "slurm-with-a-failure", accounting)
    runs = [(first, logs_of(first), squeue_states(first.run_id) if first.submitted else {})]
    partial_left = (work / failing_output).exists()
    second = Run(command, work, env, "slurm-rerun", accounting).check()
    runs.append((second, logs_of(second), squeue_states(second.run_id)))
    after = Run([*command, "--dry-run"], work, env, "slurm-dry-run-after").check().output
    return {"root": root, "work": work, "site": site, "failing": failing, "failing_output": failing_output,
            "partial_left": partial_left, "runs": runs, "digests": digests(work), "computed_here": computed_here,
            "sampled": {e["cell"] for e in workflows.computed(work) if e["kind"] == "samples"},
            "nothing_left": "Nothing to be done" in after,
            "sbatch": sbatch_calls(root / "sbatch.jsonl"), "accounting": accounting, "env": env}


@needs_slurm
def test_failed_job_is_reported_and_its_output_removed(slurm_runs):
    (first, first_logs, states), (second, _, _) = slurm_runs["runs"]
    first.check(ok=False)
    failing, output = slurm_runs["failing"], slurm_runs["failing_output"]
    # One failed job, reported when it fails and again in Snakemake's closing summary (message None there).
    errors = re.findall(r"^Error in rule (\S+):\n    message: (.*)\n    jobid: (\d+)$", first.output, re.M)
    assert {(rule, jobid) for rule, _, jobid in errors} == {("sample", errors[0][2])}, errors
    slurm_id = re.search(r"SLURM-job '(\d+)' failed, SLURM status is: '(\w+)'", errors[0][1])
    assert slurm_id and slurm_id[2] == "FAILED", errors
    assert states.get(slurm_id[1], ("",))[0] in ("FAILED", ""), states.get(slurm_id[1])
    stand_in = f"diffscale-stand-in: failing on purpose after writing {slurm_runs['work'] / output}"
    assert stand_in in "".join(first_logs.values())
    # The Snakemake inside the Slurm job removes the output when the command fails (its log is the Slurm
    # log, kept for failed jobs); the workflow's Snakemake does it when a job dies without cleaning up.
    slurm_log = re.search(r"^Error in rule sample:\n(?:    .*\n)*?    log: .*, (\S+/slurm_logs/\S+\.log)",
                          first.output, re.M)
    assert slurm_log, "no Slurm log named for the failed job"
    removal = rf"Removing output files of failed job sample since they might be corrupted:\n{re.escape(output)}\n"
    assert re.search(removal, first.output + Path(slurm_log[1]).read_text()), "nobody removed the failed job's output"
    assert not slurm_runs["partial_left"], f"{output} was left after the failure"
    second.check()
    assert any(j["rule"] == "sample" and j.get("wildcards") == f"key={failing}" for j in second.jobs)
    assert slurm_runs["nothing_left"], "the rerun did not complete the study"


@needs_slurm
def test_every_cluster_job_ran_under_slurm_and_no_local_job_was_submitted(slurm_runs):
    submitted_total = 0
    for run, logs, states in slurm_runs["runs"]:
        submitted = run.submitted
        submitted_total += len(submitted)
        remote = [j for j in run.jobs if not j["local"] and j["rule"] != "all"]
        local = [j for j in run.jobs if j["local"]]
        assert remote and local, f"{run.name}: no cluster job or no local job"
        assert set(submitted) == {j["jobid"] for j in remote}, f"{run.name}: submitted jobs are not the cluster jobs"
        for job in remote:
            slurm_id = submitted[job["jobid"]]
            seen = re.findall(r"diffscale-stand-in: SLURM_JOB_ID=(\S*)", logs.get(job_log(job), ""))
            assert seen == [slurm_id], (f"{run.name}: {job['rule']} {job.get('wildcards', '')} saw SLURM_JOB_ID "
                                        f"{seen}, sbatch gave {slurm_id}")
            if slurm_id in states:  # squeue keeps a finished job for MinJobAge seconds only
                wildcards = job.get("wildcards", "").removeprefix("key=")
                assert states[slurm_id][1] == f"rule_{job['rule']}" + (f"_wildcards_{wildcards}" * bool(wildcards))
                assert states[slurm_id][0] in ("COMPLETED", "FAILED")
        for job in local:
            seen = re.findall(r"diffscale-stand-in: SLURM_JOB_ID=(\S*)", logs.get(job_log(job), ""))
            assert seen in ([], [""]), f"{run.name}: local job {job['rule']} ran inside Slurm job {seen}"
        assert not ({j["rule"] for j in local} & {j["rule"] for j in remote})
    calls = slurm_runs["sbatch"]
    assert len(calls) == submitted_total
    partition = slurm_runs["site"].get("DIFFSCALE_SLURM_PARTITION")
    for call in calls:
        assert gpu_request(call) is None, call  # device: cpu
        assert option(call, "-p", "--partition") == partition, call
        assert option(call, "--mem") is not None and option(call, "-t", "--time") is not None, call
        assert int(option(call, "--mem")) <= 4000, call  # what the study's jobs use, not 32 GB


@needs_slurm
def test_outputs_are_byte_identical_to_a_local_run(slurm_runs, smoke_run):
    local = digests(smoke_run)
    assert "results/smoke/metrics.csv" in local and len(local) > 10, sorted(local)[:5]
    assert slurm_runs["digests"] == local
    assert slurm_runs["sampled"] == slurm_runs["computed_here"]  # the failing block's cells, sampled under Slurm


@needs_slurm
def test_gpu_study_requests_gpus_for_sampling_and_scoring_only(slurm_runs):
    """The GPU study on the completed smoke run: its sampling and scoring jobs rerun (their plans read
    `device`); one trained component is rerun too, so that a CPU job is submitted beside them."""
    root, work = slurm_runs["root"], slurm_runs["work"]
    study = gpu_study(root)
    dry = Run(["--configfile", str(study), "--dry-run"], work, base_env(), "gpu-plan").check()
    block = f"key={slurm_runs['failing']}"
    score = next(j for j in dry.jobs if j["rule"].startswith("score") and j["wildcards"] == block)
    log, steps = root / "sbatch-gpu.jsonl", root / "srun-gpu.jsonl"
    env = slurm_runs["env"] | {"DIFFSCALE_TEST_SBATCH_LOG": str(log), "DIFFSCALE_TEST_SRUN_LOG": str(steps),
                               "DIFFSCALE_TEST_STRIP_GPUS": "1"}
    command = ["--profile", str(PROFILE), "--configfile", str(study), "--forcerun", "toy_oracle", "--", score["output"]]
    run = Run(command, work, env, "slurm-gpu-study", slurm_runs["accounting"]).check()
    calls = sbatch_calls(log)
    rules = {option(call, "--comment").removeprefix("rule_").split("_wildcards_")[0]: call for call in calls}
    assert "toy_oracle" in rules and "sample" in rules and any(r.startswith("score") for r in rules), sorted(rules)
    for rule, call in rules.items():
        if GPU_RULES.match(rule):
            assert gpu_request(call) == "--gpus=1", (rule, shlex.join(call))
        else:
            assert gpu_request(call) is None, (rule, shlex.join(call))
    assert len(calls) == len(run.submitted)
    # The job step inside each job (srun, from the plugin's jobstep executor) asks for the same GPU.
    step_rules = {re.search(r"--target-jobs (\w+):", " ".join(call))[1]: call for call in sbatch_calls(steps)}
    assert set(step_rules) == set(rules), (sorted(step_rules), sorted(rules))
    for rule, call in step_rules.items():
        assert gpu_request(call) == ("--gpus=1" if GPU_RULES.match(rule) else None), (rule, shlex.join(call))


@needs_slurm
def test_a_rerun_cancels_the_slurm_jobs_of_a_killed_run(slurm_runs):
    """kill -9 of Snakemake while one of its Slurm jobs runs: Slurm keeps that job running. The rerun cancels it
    (and waits for it to end) before submitting its own, so the node does not run twice at once; the rerun's own
    job completes it."""
    root, work, block = slurm_runs["root"], slurm_runs["work"], slurm_runs["failing"]
    marker = root / "held"
    command = ["--profile", str(PROFILE), "--configfile", str(SMOKE), "--forcerun", "sample", "--",
               slurm_runs["failing_output"]]
    env = slurm_runs["env"] | {"DIFFSCALE_TEST_HOLD_BLOCK": block, "DIFFSCALE_TEST_HOLD_MARKER": str(marker)}
    log = root / "killed-run.log"
    with open(log, "w") as out:
        killed = subprocess.Popen([sys.executable, "-m", "snakemake", "-s", str(SNAKEFILE), "-d", str(work), *command],
                                  cwd=work, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
        deadline = time.monotonic() + RUN_TIMEOUT
        while not marker.exists() and killed.poll() is None and time.monotonic() < deadline:
            time.sleep(1)
        os.killpg(killed.pid, signal.SIGKILL)
        killed.wait()
    assert marker.exists(), f"the held job never started:\n{log.read_text()[-3000:]}"
    (run_id,) = RUN_ID.findall(log.read_text())
    comment = f"rule_sample_wildcards_{block}"
    orphans = {job: state for job, (state, note) in squeue_states(run_id).items() if note == comment}
    assert list(orphans.values()) == ["RUNNING"] and list(orphans) == [marker.read_text()], orphans  # it outlived Snakemake
    (orphan,) = orphans

    rerun = Run(command, work, slurm_runs["env"], "slurm-rerun-after-kill", slurm_runs["accounting"]).check()
    assert f"diffscale: cancelled Slurm job {orphan} ({comment}), left running by a killed run" in rerun.output
    assert squeue_states(run_id).get(orphan, ("CANCELLED",))[0] == "CANCELLED"
    assert not marker.with_name("held-continued").exists()  # stopped inside its sleep: it never sampled
    resubmitted = [j for j in rerun.jobs if j["rule"] == "sample"]
    assert len(resubmitted) == 1 and resubmitted[0]["jobid"] in rerun.submitted  # once, by the rerun, under Slurm
