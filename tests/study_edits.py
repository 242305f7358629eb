"""Edits of a study as the tests write them: `set_key("grids.0.steps", [2, 3])` sets a dotted key."""

from __future__ import annotations


def set_key(path: str, value):
    """A change that sets `path` (dots between keys, list indices as numbers) to `value` in a loaded study."""
    def change(study):
        *parents, last = path.split(".")
        target = study
        for part in parents:
            target = target[int(part)] if isinstance(target, list) else target[part]
        target[last] = value
    return change
