"""The cell cache: a cell's samples and scores, stored once under a key of everything that decides their bytes.

A block job asks the cache for each of its cells and computes only those it lacks, so an edit to a study
recomputes exactly the cells whose inputs changed, whichever engine runs it (both engines delete a
job's declared outputs before running it; the cache is not one of them). Keys are sha256 hashes of a
canonical JSON of the inputs (see `sampling.block.cell_key` and `metrics.score.score_key`).

Entries are written beside the cache under a temporary name and renamed into place, so a half-written
entry is never read, and two jobs writing the same entry at once leave one whole copy. A sampled cell
carries an integrity manifest that is checked on every reuse; a corrupt entry is recomputed. Every
computation is appended to `computed.jsonl`, so a person (or a test) can see what a run really computed.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import tempfile
import time
from collections.abc import Callable
from importlib import metadata
from pathlib import Path

from diffscale.atomic import atomic_directory, remove_abandoned, staging_prefix, write_text
from diffscale.manifest import IntegrityError, verify, write_manifest

log = logging.getLogger(__name__)


def library_versions(*names: str) -> dict[str, str]:
    """Versions of the third-party libraries that compute a cell (their arithmetic decides its bytes)."""
    return {name: metadata.version(name) for name in names}


def link_tree(source: Path, destination: Path) -> None:
    """Hard-link every file of `source` into `destination` (a copy across filesystems)."""
    for path in sorted(source.rglob("*")):
        target = destination / path.relative_to(source)
        if path.is_dir():
            target.mkdir(parents=True, exist_ok=True)
            continue
        target.parent.mkdir(parents=True, exist_ok=True)
        try:
            os.link(path, target)
        except OSError:
            shutil.copy2(path, target)


class CellCache:
    def __init__(self, root: Path | str):
        self.root = Path(root)

    def _entry(self, kind: str, key: str) -> Path:
        return self.root / kind / key[:2] / key

    def _staging(self) -> Path:
        """A fresh entry being written; those of killed jobs are removed on the way."""
        staging = self.root / "staging"
        staging.mkdir(parents=True, exist_ok=True)
        remove_abandoned(staging, "entry")
        return Path(tempfile.mkdtemp(prefix=staging_prefix("entry"), dir=staging))

    def _publish(self, staging: Path, entry: Path) -> None:
        entry.parent.mkdir(parents=True, exist_ok=True)
        try:
            os.rename(staging, entry)
        except OSError:  # another job published the same entry first: keep theirs
            shutil.rmtree(staging, ignore_errors=True)
            if not entry.exists():
                raise

    def record(self, kind: str, cell: str, key: str) -> None:
        """One line per computation (an append of a short line is atomic), for people and tests."""
        self.root.mkdir(parents=True, exist_ok=True)
        line = json.dumps({"kind": kind, "cell": cell, "key": key, "time": round(time.time(), 3)}) + "\n"
        with open(self.root / "computed.jsonl", "a") as handle:
            handle.write(line)

    def has_samples(self, key: str) -> bool:
        return self._entry("samples", key).exists()

    def samples(self, cell: str, key: str, compute: Callable[[Path], None]) -> tuple[Path, bool]:
        """The cached samples of `key`, computing them into a fresh directory with `compute` if absent or
        corrupt. Returns the entry and whether it was computed now."""
        entry = self._entry("samples", key)
        if entry.exists():
            try:
                verify(entry)
                return entry, False
            except IntegrityError as error:
                log.warning("cache entry of %s is corrupt (%s); computing it again", cell, error)
                shutil.rmtree(entry, ignore_errors=True)
        staging = self._staging()
        try:
            compute(staging)
            write_manifest(staging)
            self._publish(staging, entry)
        except BaseException:
            shutil.rmtree(staging, ignore_errors=True)
            raise
        self.record("samples", cell, key)
        return entry, True

    def scores(self, cell: str, key: str, compute: Callable[[Path], list[dict]],
               kind: str = "scores") -> tuple[list[dict], Path, bool]:
        """The cached score rows of `key` and their entry, computing them with `compute(entry)` if absent.

        `compute` may write files beside the rows into the entry it is given (the per-image values and
        features that paired comparisons read); returns the rows, the entry and whether it was computed now.
        `kind` names the computation in the log: a cell's "scores", or a block's "reference" (no cell's scores).
        """
        entry = self._entry("scores", key)
        if (entry / "scores.json").exists():
            return json.loads((entry / "scores.json").read_text()), entry, False
        staging = self._staging()
        try:
            rows = compute(staging)
            (staging / "scores.json").write_text(json.dumps(rows, indent=2, sort_keys=True))
            self._publish(staging, entry)
        except BaseException:
            shutil.rmtree(staging, ignore_errors=True)
            raise
        self.record(kind, cell, key)
        return rows, entry, True


class ArtifactCache(CellCache):
    """Trained and fetched artifacts (toy components, models) under a key of their plan and inputs, so that
    an engine that finds no record of its own (DVC after Snakemake, or the other way round) trains nothing
    again."""

    def _intact(self, kind: str, key: str, what: str) -> Path | None:
        """The entry of `key`, if there is one and it matches its manifest (a corrupt one is removed)."""
        entry = self._entry(kind, key)
        if not entry.exists():
            return None
        try:
            verify(entry)
        except IntegrityError as error:
            log.warning("cached %s is corrupt (%s); making it again", what, error)
            shutil.rmtree(entry, ignore_errors=True)
            return None
        return entry

    def restore(self, key: str, final: Path) -> bool:
        """Put the cached artifact of `key` at `final` (atomically); False if there is none (or it is corrupt)."""
        entry = self._intact("artifacts", key, f"artifact {final}")
        if entry is None:
            return False
        with atomic_directory(final, manifest=False) as staging:
            link_tree(entry, staging)
        return True

    def store(self, key: str, final: Path, name: str) -> None:
        """Keep a copy (hard links) of the artifact just built at `final`."""
        staging = self._staging()
        link_tree(final, staging)
        self._publish(staging, self._entry("artifacts", key))
        self.record("artifact", name, key)

    def restore_outputs(self, key: str, outputs: dict[str, Path]) -> bool:
        """Put a node's cached outputs of `key` (role -> folder or text file) in place, each atomically; False if
        there are none (or they are corrupt)."""
        entry = self._intact("outputs", key, f"output {sorted(map(str, outputs.values()))}")
        if entry is None:
            return False
        for role, final in outputs.items():
            if (entry / role).is_dir():
                with atomic_directory(final, manifest=False) as staging:
                    link_tree(entry / role, staging)
            else:
                write_text(final, (entry / role).read_text())
        return True

    def store_outputs(self, key: str, outputs: dict[str, Path], name: str) -> None:
        """Keep a copy (hard links) of a node's outputs just made, under `key`, and log it as computed (kind `name`)."""
        staging = self._staging()
        try:
            for role, final in outputs.items():
                if Path(final).is_dir():
                    link_tree(final, staging / role)
                else:
                    shutil.copyfile(final, staging / role)
            write_manifest(staging)
            self._publish(staging, self._entry("outputs", key))
        except BaseException:
            shutil.rmtree(staging, ignore_errors=True)
            raise
        self.record(name, name, key)


def key_of(parts: dict) -> str:
    """sha256 of the canonical JSON of a cell's inputs."""
    return hashlib.sha256(json.dumps(parts, sort_keys=True, separators=(",", ":")).encode()).hexdigest()
