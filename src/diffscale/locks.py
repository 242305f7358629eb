"""Resume after a crash with the same command: Snakemake's lock of a killed run is removed when its owner is gone.

Snakemake locks its working directory while it runs and removes the lock when it ends; a run killed with
SIGKILL (or a power loss) leaves the lock behind, and the next run stops with a `LockException` until
someone runs `snakemake --unlock`. The workflow records which process holds the lock once it has it
(`onstart`), and when a new run finds a lock whose owner is a process of this host that no longer exists,
it removes that lock, which is what `--unlock` does. A lock held by a live process, by another host, or
by an unknown owner is never touched: two runs in one directory still cannot run at once.
"""

from __future__ import annotations

import json
import os
import socket
from pathlib import Path

OWNER = "diffscale-lock-owner.json"


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def record_owner(workdir: Path) -> None:
    """Called once the run holds the lock: this process owns it."""
    folder = Path(workdir) / ".snakemake"
    folder.mkdir(exist_ok=True)
    (folder / OWNER).write_text(json.dumps({"host": socket.gethostname(), "pid": os.getpid()}))


def remove_stale_locks(workdir: Path) -> list[Path]:
    """Remove the locks of a dead owner on this host; returns what was removed (nothing in any other case)."""
    folder = Path(workdir) / ".snakemake"
    locks = sorted((folder / "locks").glob("*.lock")) if (folder / "locks").is_dir() else []
    owner_file = folder / OWNER
    if not locks or not owner_file.exists():
        return []
    try:
        owner = json.loads(owner_file.read_text())
    except ValueError:
        return []
    if owner.get("host") != socket.gethostname() or _alive(int(owner.get("pid", 0))):
        return []
    for lock in locks:
        lock.unlink(missing_ok=True)
    owner_file.unlink(missing_ok=True)
    return locks
