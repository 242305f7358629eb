"""What the benchmarks that run the workflow share: the checkout, this environment's tools, timed commands."""

from __future__ import annotations

import os
import resource
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
ENV = os.environ | {"PATH": f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}"}


def timed(cmd: list[str], cwd: Path) -> float:
    """Wall seconds of a command that must succeed (the benchmark stops with its output if it fails)."""
    started = time.perf_counter()
    result = subprocess.run(list(map(str, cmd)), cwd=cwd, env=ENV, capture_output=True, text=True)
    if result.returncode:
        sys.exit(f"{' '.join(map(str, cmd))} failed:\n{result.stdout[-2000:]}\n{result.stderr[-4000:]}")
    return time.perf_counter() - started


def children_cpu_seconds() -> float:
    """User + system CPU-seconds of every finished child process (and theirs) so far."""
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime
