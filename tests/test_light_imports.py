"""What a job imports before it knows it has work: a block whose cells are all cached, and the aggregate job,
must not pay seconds for torch, diffusers, open_clip or torch-fidelity (every engine test reruns dozens of them)."""

from __future__ import annotations

import subprocess
import sys

import pytest

HEAVY = ("torch", "diffusers", "transformers", "open_clip", "torch_fidelity", "matplotlib")


@pytest.mark.parametrize("module", ["diffscale.cli", "diffscale.sampling.block", "diffscale.metrics.score",
                                    "diffscale.report.tidy", "diffscale.toyworld.build"])
def test_a_job_module_imports_no_heavy_library(module):
    code = f"import sys, {module}; print(' '.join(m for m in {HEAVY!r} if m in sys.modules))"
    loaded = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.split()
    assert loaded == [], f"importing {module} loads {loaded}: import them where they are used (diffscale.lazy)"
