"""Heavy libraries imported on first use.

Building the DAG (Snakemake's parse, `diffscale validate`, `diffscale dvc-yaml`) reads every plug-in
registry but runs no model, so the plug-in modules name torch, diffusers and friends through
`lazy_import`: the import happens when an attribute is first read, inside a job. The standard library's
`importlib.util.LazyLoader` would import a dotted name's parents (torch itself) at once, hence this proxy.
"""

from __future__ import annotations

import importlib
from types import ModuleType


class LazyModule:
    """Stands for the module `name`; the first attribute read imports it."""

    def __init__(self, name: str):
        self._name = name
        self._module: ModuleType | None = None

    def __getattr__(self, attribute: str):
        if self._module is None:
            self._module = importlib.import_module(self._name)
        return getattr(self._module, attribute)

    def __repr__(self) -> str:
        state = "loaded" if self._module is not None else "not loaded yet"
        return f"<lazy module {self._name!r} ({state})>"


def lazy_import(name: str) -> LazyModule:
    return LazyModule(name)
