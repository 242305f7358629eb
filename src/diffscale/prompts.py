"""Prompt sets: JSON lines of {"id", "prompt", ...}, the unit a cell's images are paired on."""

from __future__ import annotations

import json
from pathlib import Path

from diffscale.atomic import write_text


def write(path: Path, prompts: list[dict]) -> None:
    write_text(path, "".join(json.dumps(p, sort_keys=True) + "\n" for p in prompts))


def read(path: Path) -> list[dict]:
    return [json.loads(line) for line in Path(path).read_text().splitlines() if line.strip()]
