"""The code version a job's results are keyed by: what can change its bytes, and nothing else."""

from __future__ import annotations

from diffscale import codeversion
from diffscale.dag import TRAIN_CODE

# Modules whose edits must not retrain the toy world (about an hour of CPU): they score, search, report
# or validate, but never run while a component trains.
NOT_TRAINING = ("diffscale.metrics", "diffscale.report", "diffscale.search", "diffscale.verifiers",
                "diffscale.sampling", "diffscale.config", "diffscale.dag", "diffscale.cache", "diffscale.cli")


def test_training_code_reaches_every_trainer_and_no_scoring_or_reporting_code():
    reached = codeversion.closure(*TRAIN_CODE)
    assert {"diffscale.toyworld.denoiser", "diffscale.toyworld.training", "diffscale.toyworld.clip"} <= set(reached)
    assert [name for name in reached if name.startswith(NOT_TRAINING)] == []


def test_a_docstring_edit_keeps_the_version_and_a_code_edit_changes_it(tmp_path, monkeypatch):
    package = tmp_path / "diffscale"
    package.mkdir()
    (package / "__init__.py").write_text("")
    (package / "helper.py").write_text("def f():\n    return 1\n")
    (package / "job.py").write_text('"""A job."""\nfrom diffscale.helper import f\n')
    monkeypatch.setattr(codeversion, "ROOT", package)
    monkeypatch.setattr(codeversion, "MEMO", tmp_path / "memo.json")
    monkeypatch.setattr(codeversion, "_memo", codeversion._Memo())
    version = codeversion.code_version.__wrapped__  # uncached: a job process computes it once, this test thrice
    before = version("diffscale.job")
    (package / "job.py").write_text('"""A job, documented at more length."""\nfrom diffscale.helper import f\n')
    assert version("diffscale.job") == before
    (package / "helper.py").write_text("def f():\n    return 20\n")  # reached through the import
    assert version("diffscale.job") != before
