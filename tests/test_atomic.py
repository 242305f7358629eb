"""An interrupted job leaves no half-written output that looks complete."""

from __future__ import annotations

import pytest

from diffscale.atomic import atomic_directory, write_text


def test_directory_appears_only_when_complete(tmp_path):
    final = tmp_path / "cell"
    with pytest.raises(KeyboardInterrupt):
        with atomic_directory(final) as staging:
            (staging / "00000.png").write_bytes(b"half")
            raise KeyboardInterrupt
    assert not final.exists()
    assert list(tmp_path.iterdir()) == []


def test_directory_replaces_a_previous_version(tmp_path):
    final = tmp_path / "cell"
    final.mkdir()
    (final / "stale.txt").write_text("old")
    with atomic_directory(final) as staging:
        (staging / "new.txt").write_text("new")
    assert sorted(p.name for p in final.iterdir()) == ["diffscale-manifest.json", "new.txt"]


def test_text_file_is_written_whole(tmp_path):
    path = tmp_path / "scores.json"
    write_text(path, "{}")
    assert path.read_text() == "{}"
    assert [p.name for p in tmp_path.iterdir()] == ["scores.json"]


def test_outputs_get_ordinary_permissions(tmp_path):
    """Staging names come from mkdtemp/mkstemp (private); the finished output follows the umask."""
    import os

    mask = os.umask(0o022)
    try:
        with atomic_directory(tmp_path / "cell") as staging:
            (staging / "a").write_text("x")
        write_text(tmp_path / "scores.json", "{}")
    finally:
        os.umask(mask)
    assert (tmp_path / "cell").stat().st_mode & 0o777 == 0o755
    assert (tmp_path / "scores.json").stat().st_mode & 0o777 == 0o644


def test_a_killed_jobs_staging_is_removed_and_a_live_ones_kept(tmp_path):
    import os
    import subprocess
    import sys

    from diffscale.atomic import staging_prefix

    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    pid = int(dead.stdout)
    mine = staging_prefix("cell")
    abandoned = tmp_path / mine.replace(f"-{os.getpid()}-", f"-{pid}-") / "x"
    abandoned.mkdir(parents=True)
    live = tmp_path / f"{mine}keep"
    live.mkdir()
    with atomic_directory(tmp_path / "cell") as staging:
        (staging / "a").write_text("x")
    assert not abandoned.parent.exists()
    assert live.exists()
