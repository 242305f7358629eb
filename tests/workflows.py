"""Running the engines as a user does, for the engine tier: the commands, a DVC project, and copies of a run.

Every engine test builds its commands here, so they all run the same Snakefile, the same executables (the
test interpreter's own `bin/`, first on PATH) and fail with the tail of the engine's output.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
SNAKEFILE = REPO / "workflow" / "Snakefile"
BIN = Path(sys.executable).parent
ENV = os.environ | {"PATH": f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}"}


def run(cmd, cwd: Path, env: dict | None = None) -> str:
    """Run a command to success; its stdout and stderr together."""
    result = subprocess.run(list(map(str, cmd)), cwd=cwd, env=env or ENV, capture_output=True, text=True)
    assert result.returncode == 0, f"{' '.join(map(str, cmd))} failed:\n{result.stdout[-3000:]}\n{result.stderr[-5000:]}"
    return result.stdout + result.stderr


def snakemake(work: Path, study: str | Path, *extra: str) -> list[str]:
    """Snakemake on the study file `study` in `work`, as the README runs it (two cores)."""
    return [sys.executable, "-m", "snakemake", "-s", str(SNAKEFILE), "-d", str(work), "--configfile", str(work / study),
            "--cores", "2", "--printshellcmds", *extra]


def init_dvc(work: Path, study: Path = REPO / "config" / "smoke.yaml") -> None:
    """`work` as a user's DVC project: a clone of this repository as shipped (its .gitignore, .dvcignore and DVC
    config; files already in `work` are kept), with `study` as its params.yaml and the dvc.yaml generated for it."""
    run(["git", "clone", "-q", "--no-checkout", REPO, work / ".clone"], work)
    (work / ".clone" / ".git").rename(work / ".git")
    (work / ".clone").rmdir()
    run(["git", "checkout", "-q", "-f", "HEAD"], work)
    shutil.copy(study, work / "params.yaml")
    run(["git", "config", "user.email", "ci@example.com"], work)
    run(["git", "config", "user.name", "ci"], work)
    run([BIN / "diffscale", "dvc-yaml"], work)


def commit_baseline(work: Path, *untracked: str) -> None:
    """Commit a DVC project's state as its baseline (what experiments start from), leaving `untracked` out."""
    (work / ".git" / "info" / "exclude").write_text("".join(f"{name}\n" for name in untracked))
    run(["git", "add", "-A"], work)
    run(["git", "commit", "-qm", "baseline"], work)


def copy_run(source: Path, destination: Path) -> Path:
    """A copy of a finished run to change (`cp -a`: times, and the cell cache's hard links, are kept)."""
    run(["cp", "-a", source, destination], source.parent)
    return destination


def computed(work: Path) -> list[dict]:
    """What a results tree's cache computed, in order (`results/.cache/computed.jsonl`)."""
    log = work / "results" / ".cache" / "computed.jsonl"
    return [json.loads(line) for line in log.read_text().splitlines()] if log.exists() else []


def seed_artifacts(source: Path, work: Path, keep=lambda name: True, cells=lambda cell: False) -> list[str]:
    """Copy the trained artifacts (toy world, ladder, students) of the run in `source` into the artifact cache of
    `work`, for tests whose subject is not training: their jobs restore instead of training again. `keep(name)`
    chooses by artifact name; returns the names copied. `cells(cell)` chooses cells whose samples and scores
    come too (none by default), for tests whose subject is not sampling either: a block job whose inputs are
    unchanged restores its cells (a block's scoring reference counts as a cell named by the block)."""
    names = []
    for entry in computed(source):
        if entry["kind"] == "report":
            continue  # never seeded: the runs that seed make their own
        kind = "artifacts" if entry["kind"] == "artifact" else "samples" if entry["kind"] == "samples" else "scores"
        if (keep if kind == "artifacts" else cells)(entry["cell"]):
            relative = Path("results/.cache") / kind / entry["key"][:2] / entry["key"]
            (work / relative).parent.mkdir(parents=True, exist_ok=True)
            run(["cp", "-a", source / relative, work / relative], work)
            names.append(entry["cell"])
    return names
