"""Integrity manifests: the sha256 of every file of an artifact, written last.

Every artifact the DAG produces (a toy component, a model folder, a sampled cell) carries one; its
content hash (the hash of the manifest's file table) is how the cell cache names what a cell was made
from, and `verify` is how a consumer checks, before use, that no file was truncated or changed.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

MANIFEST = "diffscale-manifest.json"
# A trained artifact's training ledger (`toyworld.training`): its FLOPs and its wall seconds, a measurement of
# the machine. The manifest verifies it like any file, but the content hash leaves it out, so that training
# again to the same weights gives the same name and the cells made from them stay cached.
LEDGER = "training-ledger.json"
SAMPLING_LEDGER = "ledger.json"  # a sampled cell's NFEs, FLOPs and wall seconds by phase
# Files that record how an artifact was made (wall seconds, the host) beside what it is: verified, but left out of
# the name of its content, so that the same images sampled twice (by two engines, on two runs) are scored once.
MEASUREMENTS = frozenset({LEDGER, SAMPLING_LEDGER})
# Files the engines add to a finished directory output (Snakemake's timestamp of a `directory()`).
ENGINE_FILES = frozenset({".snakemake_timestamp"})


class IntegrityError(RuntimeError):
    """An artifact whose files are not the ones its manifest records."""


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _files(folder: Path) -> list[Path]:
    return sorted(p for p in folder.rglob("*") if p.is_file() and p.name != MANIFEST and p.name not in ENGINE_FILES)


def write_manifest(folder: Path) -> dict[str, str]:
    """Hash every file under `folder` and write the manifest beside them (call it last)."""
    folder = Path(folder)
    files = {p.relative_to(folder).as_posix(): sha256_of(p) for p in _files(folder)}
    (folder / MANIFEST).write_text(json.dumps({"files": files}, indent=1, sort_keys=True) + "\n")
    return files


def read_manifest(folder: Path) -> dict[str, str]:
    path = Path(folder) / MANIFEST
    if not path.exists():
        raise IntegrityError(f"{folder}: no {MANIFEST}: the artifact is incomplete or was made without one; "
                             "delete it and rerun to rebuild it")
    return json.loads(path.read_text())["files"]


def verify(folder: Path) -> dict[str, str]:
    """Check every file against the manifest; raise naming the path and both hashes on the first mismatch."""
    folder = Path(folder)
    recorded = read_manifest(folder)
    present = {p.relative_to(folder).as_posix() for p in _files(folder)}
    for name in sorted(set(recorded) - present):
        raise IntegrityError(f"{folder / name}: missing (its manifest records sha256 {recorded[name]})")
    for name in sorted(present - set(recorded)):
        raise IntegrityError(f"{folder / name}: not in the manifest of {folder}; the artifact was changed after it was written")
    for name, expected in recorded.items():
        _check(folder / name, expected)
    return recorded


def _check(path: Path, expected: str) -> None:
    actual = sha256_of(path)
    if actual != expected:
        raise IntegrityError(f"{path}: sha256 {actual} but the manifest records {expected}; "
                             "the file is corrupt or was changed: delete the artifact and rerun")


def verified(folder: Path) -> Path:
    """`folder`, after checking it against its manifest (what a consumer calls before reading an artifact)."""
    verify(folder)
    return Path(folder)


def verify_tree(root: Path) -> tuple[int, list[str]]:
    """Check every artifact (folder with a manifest) under `root`: how many, and what is wrong with them."""
    checked, problems = 0, []
    for manifest in sorted(Path(root).rglob(MANIFEST)):
        checked += 1
        try:
            verify(manifest.parent)
        except IntegrityError as error:
            problems.append(str(error))
    return checked, problems


def verified_file(folder: Path, name: str) -> Path:
    """One file of an artifact, checked against the artifact's manifest (without hashing the rest of it)."""
    path = Path(folder) / name
    expected = read_manifest(folder).get(name)
    if expected is None:
        raise IntegrityError(f"{path}: not in the manifest of {folder}")
    _check(path, expected)
    return path


def content_hash(folder: Path) -> str:
    """A name for the artifact's content: the hash of its manifest's file table, without its `MEASUREMENTS`."""
    files = {name: digest for name, digest in read_manifest(folder).items() if name not in MEASUREMENTS}
    return hashlib.sha256(json.dumps(files, sort_keys=True).encode()).hexdigest()


def file_hash(path: Path) -> str:
    """A single-file artifact (dataset, prompt set) is named by its own hash."""
    return sha256_of(Path(path))
