"""The version of the code a job runs: a hash of the diffscale modules it can reach.

A job's entry module (e.g. `diffscale.sampling.block`) and every diffscale module it imports, directly,
through a package or through `lazy_import("diffscale....")`, found by reading their source, not by
importing them (building the DAG stays light). Each module counts by its syntax tree without docstrings,
so a comment, a docstring or a reformatting does not invalidate results, while any change to what the
code does does. Third-party libraries count by their versions, in the cell cache key.

Parsing every module costs a few tenths of a second, which every Snakemake invocation would pay, so each
module's digest and imports are remembered in the user's cache directory under its size and mtime.
"""

from __future__ import annotations

import ast
import functools
import hashlib
import json
import os
import tempfile
from pathlib import Path

PACKAGE = "diffscale"
ROOT = Path(__file__).resolve().parent
MEMO = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "diffscale" / "codeversion.json"


def module_file(name: str) -> Path | None:
    """The source of a diffscale module or package, or None if there is none."""
    parts = name.split(".")
    if parts[0] != PACKAGE:
        return None
    base = ROOT.joinpath(*parts[1:])
    for candidate in (base.with_suffix(".py"), base / "__init__.py"):
        if candidate.is_file():
            return candidate
    return None


def _parents(name: str) -> list[str]:
    """Importing a.b.c runs a/__init__ and a/b/__init__ too."""
    parts = name.split(".")
    return [".".join(parts[:i]) for i in range(1, len(parts))]


def _imports(name: str, tree: ast.Module) -> set[str]:
    """diffscale modules that `name` imports (including `lazy_import` targets and submodules named in `from`)."""
    found = set()
    package = name if module_file(name).name == "__init__.py" else name.rpartition(".")[0]
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join(anchor + ([base] if base else []))
            found.add(base)
            found |= {f"{base}.{alias.name}" for alias in node.names}
        elif (isinstance(node, ast.Call) and getattr(node.func, "id", None) == "lazy_import" and node.args
              and isinstance(node.args[0], ast.Constant) and isinstance(node.args[0].value, str)):
            found.add(node.args[0].value)
    return {m for m in found if module_file(m) is not None}


def _without_docstrings(tree: ast.Module) -> ast.Module:
    for node in ast.walk(tree):
        body = getattr(node, "body", None)
        if isinstance(body, list) and body and isinstance(body[0], ast.Expr) and isinstance(
                getattr(body[0], "value", None), ast.Constant) and isinstance(body[0].value.value, str):
            node.body = body[1:] or [ast.Pass()]
    return tree


class _Memo:
    """Digest and imports of each module, remembered under (size, mtime) across processes."""

    def __init__(self):
        try:
            self.entries = json.loads(MEMO.read_text())
        except (OSError, ValueError):
            self.entries = {}
        self.changed = False

    def info(self, name: str) -> dict:
        path = module_file(name)
        stat = path.stat()
        stamp = [stat.st_size, stat.st_mtime_ns]
        entry = self.entries.get(str(path))
        if entry is None or entry["stamp"] != stamp:
            tree = ast.parse(path.read_text(), filename=str(path))
            imports = sorted(_imports(name, tree))
            digest = hashlib.sha256(ast.dump(_without_docstrings(tree)).encode()).hexdigest()
            entry = self.entries[str(path)] = {"stamp": stamp, "digest": digest, "imports": imports}
            self.changed = True
        return entry

    def save(self) -> None:
        if not self.changed:
            return
        try:
            MEMO.parent.mkdir(parents=True, exist_ok=True)
            fd, staging = tempfile.mkstemp(dir=MEMO.parent, prefix=".codeversion-")
            with os.fdopen(fd, "w") as handle:
                json.dump(self.entries, handle)
            os.replace(staging, MEMO)
        except OSError:  # a read-only home only costs the parsing again
            pass
        self.changed = False


_memo = _Memo()


def imported_modules(name: str) -> set[str]:
    return set(_memo.info(name)["imports"])


def closure(*entries: str) -> list[str]:
    """Every diffscale module reachable from the entries, sorted."""
    seen, todo = set(), list(entries)
    while todo:
        name = todo.pop()
        if name in seen or module_file(name) is None:
            continue
        seen.add(name)
        todo += _parents(name) + sorted(imported_modules(name))
    return sorted(seen)


@functools.cache
def code_version(*entries: str) -> str:
    """A short hash of the code the entries can run."""
    digest = hashlib.sha256()
    for name in closure(*entries):
        digest.update(f"{name}:{_memo.info(name)['digest']}\n".encode())
    _memo.save()
    return digest.hexdigest()[:16]
