"""Atomic outputs: a file or directory that exists is complete.

Everything is written beside its destination under a temporary name and renamed into place at the end,
so an interrupted job leaves no half-written cell that looks complete. A directory gets its integrity
manifest (`diffscale.manifest`) just before the rename. Staging names carry the host and process that
made them, so a later job removes the ones a killed job left behind, and never a live job's.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import tempfile
from pathlib import Path

from diffscale.manifest import write_manifest


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def staging_prefix(name: str) -> str:
    return f".{name}.partial-{socket.gethostname()}-{os.getpid()}-"


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's live process
        return True
    return True


def remove_abandoned(folder: Path, name: str) -> list[Path]:
    """Staging files and directories of `name` in `folder` whose process (on this host) is gone."""
    removed = []
    host = socket.gethostname()
    for path in Path(folder).glob(f".{name}.partial-{host}-*"):
        pid = path.name[len(f".{name}.partial-{host}-"):].split("-", 1)[0]
        if pid.isdigit() and not _alive(int(pid)):
            shutil.rmtree(path, ignore_errors=True) if path.is_dir() else path.unlink(missing_ok=True)
            removed.append(path)
    return removed


@contextlib.contextmanager
def atomic_directory(final: Path, manifest: bool = True):
    final = Path(final)
    final.parent.mkdir(parents=True, exist_ok=True)
    remove_abandoned(final.parent, final.name)
    staging = Path(tempfile.mkdtemp(prefix=staging_prefix(final.name), dir=final.parent))
    os.chmod(staging, 0o777 & ~_umask())  # mkdtemp makes it private; outputs are for everyone the umask allows
    try:
        yield staging
        if manifest:
            write_manifest(staging)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    if final.exists():
        shutil.rmtree(final)
    os.replace(staging, final)


def write_text(path: Path, text: str) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    remove_abandoned(path.parent, path.name)
    fd, staging = tempfile.mkstemp(prefix=staging_prefix(path.name), dir=path.parent)
    os.chmod(staging, 0o666 & ~_umask())
    try:
        with os.fdopen(fd, "w") as handle:
            handle.write(text)
        os.replace(staging, path)
    except BaseException:
        Path(staging).unlink(missing_ok=True)
        raise
