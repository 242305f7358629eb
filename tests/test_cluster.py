"""Which Slurm jobs a rerun cancels as a killed run's (`diffscale.cluster`), against stand-in `squeue`s. The real
kill -9 and rerun on a Slurm is tests/test_slurm.py's."""

from __future__ import annotations

import os
import sys
from pathlib import Path

from diffscale import cluster


def stand_in_squeue(folder: Path, rows: list[str], status: int = 0) -> None:
    """An `squeue` that prints `rows` (and records its arguments) and exits with `status`."""
    folder.mkdir(exist_ok=True)
    script = folder / "squeue"
    script.write_text(f"#!{sys.executable}\nimport sys\nopen({str(folder / 'args')!r}, 'w').write(' '.join(sys.argv[1:]))\n"
                      f"print({chr(10).join(rows)!r})\nsys.exit({status})\n")
    script.chmod(0o755)


def test_only_the_plugins_jobs_from_this_directory_are_orphans(tmp_path, monkeypatch):
    here, elsewhere = tmp_path / "work", tmp_path / "other"
    here.mkdir(), elsewhere.mkdir()
    stand_in_squeue(tmp_path / "bin", [f"11|{here}|rule_sample_wildcards_toy-w8__nosearch__toy-captions",
                                       f"12|{elsewhere}|rule_sample_wildcards_toy-w8__nosearch__toy-captions",
                                       f"13|{here}|a job of my own", f"14|{here}/|rule_aggregate"])
    monkeypatch.setenv("PATH", f"{tmp_path / 'bin'}{os.pathsep}{os.environ['PATH']}")
    assert cluster.orphaned_jobs(here) == {"11": "rule_sample_wildcards_toy-w8__nosearch__toy-captions",
                                           "14": "rule_aggregate"}
    asked = (tmp_path / "bin" / "args").read_text()
    assert "--me" in asked and "PENDING" in asked and "RUNNING" in asked  # only this user's jobs, only active ones


def test_without_an_answering_slurm_nothing_is_an_orphan(tmp_path, monkeypatch):
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))
    assert cluster.orphaned_jobs(tmp_path) == {} and cluster.cancel_orphaned_jobs(tmp_path) == {}
    stand_in_squeue(tmp_path / "bin", [f"11|{tmp_path}|rule_sample"], status=1)  # no controller: squeue fails
    monkeypatch.setenv("PATH", f"{tmp_path / 'bin'}{os.pathsep}{os.environ['PATH']}")
    assert cluster.orphaned_jobs(tmp_path) == {}
