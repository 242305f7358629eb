"""Slurm jobs that a killed Snakemake left running: cancelled when the workflow runs again in their directory.

A Snakemake run killed with -9 cannot cancel its cluster jobs; they keep running, and the next run, which does
not know them, submits the same nodes again, so each of those nodes runs twice at once. When a run starts (its
`onstart`, after it took the directory's lock, never in a dry run) every job of this user that the Slurm
plugin submitted from this directory belongs to a run that no longer exists: a live one would hold the lock.
They are cancelled (Slurm stops their job steps; diffscale's outputs are written whole or not at all) and waited
for, so that none of them writes while the new run's jobs do.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from pathlib import Path

# The plugin puts `rule_<rule>[_wildcards_<...>]` in every job's comment; its job name is the run's id.
PLUGIN_COMMENT = "rule_"
ACTIVE = "PENDING,RUNNING,CONFIGURING,COMPLETING,SUSPENDED,REQUEUED,RESIZING"


def squeue(*args: str) -> list[list[str]]:
    """Rows of `squeue --me --noheader` with `|`-separated fields; none if Slurm does not answer."""
    if shutil.which("squeue") is None:
        return []
    try:
        result = subprocess.run(["squeue", "--me", "--noheader", *args], capture_output=True, text=True, timeout=60)
    except (OSError, subprocess.TimeoutExpired):
        return []
    return [line.split("|") for line in result.stdout.splitlines() if line.strip()] if result.returncode == 0 else []


def orphaned_jobs(workdir: Path) -> dict[str, str]:
    """Slurm job id -> comment of this user's active plugin jobs whose working directory is `workdir`."""
    here = os.path.realpath(workdir)
    return {job: comment for job, directory, comment in squeue(f"--states={ACTIVE}", "--format=%i|%Z|%k")
            if comment.startswith(PLUGIN_COMMENT) and os.path.realpath(directory) == here}


def cancel_orphaned_jobs(workdir: Path, wait_seconds: float = 300.0) -> dict[str, str]:
    """Cancel the jobs `orphaned_jobs` finds and wait until Slurm lists none of them as active; returns them."""
    jobs = orphaned_jobs(workdir)
    if not jobs:
        return {}
    subprocess.run(["scancel", *jobs], capture_output=True, text=True, timeout=60)
    deadline = time.monotonic() + wait_seconds
    while time.monotonic() < deadline and set(jobs) & set(orphaned_jobs(workdir)):
        time.sleep(2)
    return jobs
