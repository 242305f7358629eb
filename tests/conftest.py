"""Shared fixtures, and the two tiers of the suite (CONTRIBUTING.md, "Tests").

- The **fast tier** (`pytest -m "not engine"`) runs in-process: units, the library on tiny models, the report
  on synthetic tables. Run it before every commit.
- The **engine tier** (`-m engine`) runs Snakemake, DVC or Slurm for real in subprocesses. Its expensive
  artifacts are built once per test run and shared by every worker of pytest-xdist: one cold Snakemake run of
  the smoke study (`smoke_run`) and one cold `dvc repro` of it (`dvc_run`). A test that changes a run works on a
  copy (`workflows.copy_run`); one that needs the smoke study's trained toy world, but does not test training,
  seeds its results tree with the cold run's artifact cache (`workflows.seed_artifacts`).

A test that uses an engine fixture without the `engine` marker is refused at collection, so the fast tier never
starts a study by accident.
"""

from __future__ import annotations

import collections
import os
import shutil
import threading
from pathlib import Path

import pytest
import torch
from filelock import FileLock

import workflows

REPO = Path(__file__).resolve().parents[1]
ENGINE_FIXTURES = {"smoke_run", "dvc_run", "await_dvc_run"}
FIRST_MODULES = ["test_engines.py", "test_slurm.py", "test_resume.py"]  # the longest work after the cold runs


def pytest_xdist_auto_num_workers(config):
    """`-n auto`: one worker more than cores. An engine test's worker mostly waits on its subprocesses (DVC runs
    its stages one at a time), so as many workers as cores would leave a core idle much of the run."""
    return (os.cpu_count() or 1) + 1


def pytest_collection_modifyitems(config, items):
    unmarked = [item.nodeid for item in items
                if ENGINE_FIXTURES & set(getattr(item, "fixturenames", ())) and not item.get_closest_marker("engine")]
    if unmarked:
        raise pytest.UsageError("these tests start a real engine run but are not marked `engine` "
                                f"(add `pytestmark = pytest.mark.engine`): {unmarked}")
    # The order pytest-xdist hands modules to workers in (`--no-loadscope-reorder`): the modules that start from the
    # cold runs first, longest first, so each of their workers begins as soon as the cold runs end, not after
    # a fast-tier module; then the rest, largest first (what xdist's own reordering does).
    sizes = collections.Counter(item.path for item in items)

    def rank(item) -> tuple[int, int]:
        name = item.path.name
        return (FIRST_MODULES.index(name), 0) if name in FIRST_MODULES else (len(FIRST_MODULES), -sizes[item.path])

    items.sort(key=rank)  # stable: a module's tests stay together and in order


def shared(tmp_path_factory, name: str, build) -> Path:
    """`build(folder)` run once per test run, whichever pytest-xdist worker (or thread) asks first; the others
    wait for it and get the same folder. Without xdist it is simply built. A failed build is not marked done,
    so the next one that asks tries again (and reports it)."""
    worker = os.environ.get("PYTEST_XDIST_WORKER")
    root = tmp_path_factory.getbasetemp().parent if worker else tmp_path_factory.getbasetemp()
    folder, done = root / f"shared-{name}", root / f"shared-{name}.done"
    with FileLock(str(root / f"shared-{name}.lock")):
        if not done.exists():
            shutil.rmtree(folder, ignore_errors=True)
            folder.mkdir(parents=True)
            build(folder)
            done.touch()
    return folder


@pytest.fixture(scope="session")
def repo() -> Path:
    return REPO


@pytest.fixture(scope="session")
def tiny_unet():
    from diffscale.toyworld.denoiser import build

    torch.manual_seed(0)
    return build(width=8, cross_attention_dim=16).eval()


def build_smoke_run(work: Path) -> None:
    shutil.copy(REPO / "config" / "smoke.yaml", work / "study.yaml")
    output = workflows.run(workflows.snakemake(work, "study.yaml"), work)
    (work / "engine.log").write_text(output)


def build_dvc_run(work: Path) -> None:
    workflows.init_dvc(work)
    output = workflows.run([workflows.BIN / "dvc", "repro"], work)
    (work / "engine.log").write_text(output)
    workflows.commit_baseline(work, "engine.log")


# Each cold run and the priority (`os.nice` increment) its jobs start with: the Snakemake run goes first, as
# the engine edits and most engine tests start from it; the DVC run is read only by the cold-run checks. The
# tests themselves come after both (`TESTS_NICE`).
COLD_RUNS = {"smoke-run": (build_smoke_run, 0), "dvc-run": (build_dvc_run, 3)}
TESTS_NICE = 15


@pytest.fixture(scope="session", autouse=True)
def cold_runs_started(request, tmp_path_factory):
    """Both cold runs start in the background as the session starts, if any selected test needs one, so that
    neither waits for a worker to reach its first engine test. Their threads only build (behind `shared`'s
    lock); the fixtures below wait for them. Priorities (`os.nice`) are per thread on Linux and passed on to
    the processes a thread starts: each cold run's thread takes its own, then the worker's thread lowers its
    priority, so the tests, and the engine runs they start, use what the cold runs leave of the cores."""
    if not any(ENGINE_FIXTURES & set(getattr(item, "fixturenames", ())) for item in request.session.items):
        yield
        return

    def build(name: str, builder, nice: int) -> None:
        os.nice(nice)
        shared(tmp_path_factory, name, builder)

    tmp_path_factory.getbasetemp()  # made here: made by two threads at once, it fails in one (FileExistsError)
    threads = [threading.Thread(target=build, args=(name, *run), daemon=True) for name, run in COLD_RUNS.items()]
    for thread in threads:
        thread.start()
    os.nice(TESTS_NICE)
    yield
    for thread in threads:
        thread.join()


@pytest.fixture(scope="session")
def smoke_run(tmp_path_factory) -> Path:
    """A folder with the smoke study (`study.yaml`) run to completion, cold, by Snakemake; its output is in
    `engine.log`. Shared: read it, or copy it with `workflows.copy_run` to change it."""
    return shared(tmp_path_factory, "smoke-run", build_smoke_run)


@pytest.fixture(scope="session")
def dvc_run(await_dvc_run) -> Path:
    """The smoke study (`params.yaml`) as a git + DVC project, reproduced cold by `dvc repro` and committed as
    the baseline; the output of `dvc repro` is in `engine.log` (ignored by git). Shared like `smoke_run`."""
    return await_dvc_run()


@pytest.fixture(scope="session")
def await_dvc_run(tmp_path_factory):
    """`dvc_run` when it is needed: a function that waits for it, for a fixture with work to do before (from any
    thread)."""
    return lambda: shared(tmp_path_factory, "dvc-run", build_dvc_run)
