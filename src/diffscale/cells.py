"""Expanding a study into cells and blocks; their ids and every output path.

A *cell* is the unit of results: its images, records, ledger and scores. A *block* is the unit of work:
the cells that share a model, a prompt set and a search algorithm (or none), sampled by one job that loads
the model once (with one process per cell, start-up and loading were most of a toy cell's wall time; the
cell cache makes a block's rerun compute only its new cells).

This is the only module that knows where files live. Snakemake, DVC and the tests all ask it, so the
two engines describe the same cells with the same paths.
"""

from __future__ import annotations

import itertools
import re
from dataclasses import asdict, dataclass
from pathlib import Path

from diffscale.evaldata import EVAL_INPUTS

_ID = re.compile(
    r"^(?P<model>[a-z0-9][a-z0-9.-]*)__(?P<sampler>[a-z0-9+-]+)__steps(?P<steps>\d+)__cfg(?P<guidance>[0-9.]+)"
    r"__(?P<search>nosearch|[a-z0-9-]+\+[a-z0-9-]+\+n\d+)__(?P<prompt_set>[a-z0-9-]+)$"
)
_SEARCH = re.compile(r"^(?P<search>[a-z0-9-]+)\+(?P<verifier>[a-z0-9-]+)\+n(?P<budget>\d+)$")


def _number(value: float) -> str:
    return f"{value:g}"


def _search_tag(search: str, verifier: str, budget: int) -> str:
    """`nosearch`, or `algorithm+verifier+nBUDGET`."""
    return "nosearch" if search == "none" else f"{search}+{verifier}+n{budget}"


@dataclass(frozen=True, order=True)
class Cell:
    """One (model, sampler, steps, guidance, search) configuration applied to one prompt set.

    A search cell also names the verifier that guides the search and its budget: the number of
    candidates, trajectories, paths or particles (see `diffscale.search`); no search is budget 0.
    """

    model: str
    sampler: str
    steps: int
    guidance: float
    prompt_set: str
    search: str = "none"
    verifier: str = "none"
    budget: int = 0

    @property
    def id(self) -> str:
        return (f"{self.model}__{self.sampler}__steps{self.steps}__cfg{_number(self.guidance)}"
                f"__{_search_tag(self.search, self.verifier, self.budget)}__{self.prompt_set}")

    @classmethod
    def from_id(cls, cell_id: str) -> Cell:
        match = _ID.match(cell_id)
        if not match:
            raise ValueError(f"not a cell id: {cell_id!r} (expected model__sampler__stepsN__cfgG__search__promptset)")
        fields = match.groupdict()
        search = _SEARCH.match(fields["search"])
        return cls(
            model=fields["model"],
            sampler=fields["sampler"],
            steps=int(fields["steps"]),
            guidance=float(fields["guidance"]),
            prompt_set=fields["prompt_set"],
            search=search["search"] if search else "none",
            verifier=search["verifier"] if search else "none",
            budget=int(search["budget"]) if search else 0,
        )

    @property
    def block(self) -> Block:
        return Block(self.model, self.prompt_set, self.search)

    @property
    def own_block(self) -> Block:
        """A block of this cell alone (`sampling.jobs: cell`), for cells that take hours each on real models."""
        return Block(self.model, self.prompt_set, self.search, self.id)

    def as_dict(self) -> dict:
        return asdict(self) | {"cell": self.id, "block": self.block.id}


@dataclass(frozen=True, order=True)
class Block:
    """The cells one job samples: one model, prompt set and search algorithm (or none); every sampler, step
    count, guidance scale, verifier and budget. A one-cell block (`sampling.jobs: cell`) is named by its cell."""

    model: str
    prompt_set: str
    search: str = "none"
    cell: str = ""  # only for one-cell blocks

    @property
    def id(self) -> str:
        return self.cell or f"{self.model}__{'nosearch' if self.search == 'none' else self.search}__{self.prompt_set}"


def expand(params: dict) -> list[Cell]:
    """Every cell of every grid, without duplicates, in a stable order.

    A grid with `search` also gets its no-search baselines: the same points without search, which
    are what a budget of one candidate reproduces image for image.
    """
    cells = set()
    for grid in params["grids"]:
        search = grid.get("search")
        for model, sampler, steps, guidance, prompt_set in itertools.product(
            grid["models"], grid["samplers"], grid["steps"], grid["guidance"], grid["prompt_sets"]
        ):
            plain = Cell(model, sampler, int(steps), float(guidance), prompt_set)
            cells.add(plain)
            if search:
                for algorithm, verifier, budget in itertools.product(search["algorithms"], search["verifiers"], search["budgets"]):
                    cells.add(Cell(model, sampler, int(steps), float(guidance), prompt_set, algorithm, verifier, int(budget)))
    return sorted(cells)


def blocks(params: dict) -> dict[Block, list[Cell]]:
    """The study's cells grouped into blocks (one job each), both in a stable order."""
    paths = Paths.of(params)
    grouped: dict[Block, list[Cell]] = {}
    for cell in expand(params):
        grouped.setdefault(paths.block_of(cell), []).append(cell)
    return dict(sorted(grouped.items()))


def toy_models(params: dict) -> list[str]:
    return [name for name, entry in params["models"].items() if entry["source"] == "toy"]


def uses_toyworld(params: dict) -> bool:
    """The toy oracle and CLIP score toy prompt sets; they exist only where the study uses the toy world."""
    return bool(toy_models(params)) or any(p["kind"].startswith("toy-") for p in params["prompt_sets"].values())


@dataclass(frozen=True)
class Paths:
    """Where a study's artifacts live, relative to the working directory."""

    study: str
    results_root: str = "results"
    reports_root: str = "reports"
    cell_jobs: bool = False  # `sampling.jobs: cell`: one job (and one output directory) per cell

    @classmethod
    def of(cls, params: dict) -> Paths:
        return cls(params["study"], cell_jobs=params.get("sampling", {}).get("jobs") == "cell")

    def block_of(self, cell: Cell) -> Block:
        return cell.own_block if self.cell_jobs else cell.block

    @property
    def root(self) -> Path:
        return Path(self.results_root) / self.study

    @property
    def dataset(self) -> Path:
        """A folder: the arrays (`arrays.npz`) and their manifest, like every artifact of the DAG."""
        return self.root / "toyworld" / "dataset"

    @property
    def reference(self) -> Path:
        return self.root / "toyworld" / "reference"

    def component(self, name: str) -> Path:
        return self.root / "toyworld" / name

    def prompt_set(self, name: str) -> Path:
        return self.root / "prompts" / f"{name}.jsonl"

    def evaldata(self, input_name: str) -> Path:
        """A fetched evaluation input (FID statistics, Inception weights), under its published file name."""
        return self.root / "evaldata" / EVAL_INPUTS[input_name]["files"][0]["name"]

    def model(self, name: str) -> Path:
        return self.root / "models" / name

    def block_samples(self, block: Block | str) -> Path:
        return self.root / "samples" / (block if isinstance(block, str) else block.id)

    @property
    def scores_root(self) -> Path:
        return self.root / "scores"

    def block_scores(self, block: Block | str) -> Path:
        return self.scores_root / (block if isinstance(block, str) else block.id)

    def samples(self, cell: Cell) -> Path:
        return self.block_samples(self.block_of(cell)) / cell.id

    def scores(self, cell: Cell) -> Path:
        return self.block_scores(self.block_of(cell)) / f"{cell.id}.json"

    @property
    def metrics(self) -> Path:
        return self.root / "metrics.csv"

    @property
    def headline(self) -> Path:
        """The study's headline numbers, DVC's metrics file."""
        return self.root / "headline.json"

    @property
    def plots(self) -> Path:
        """The study's curves as CSV tables, DVC's plots."""
        return self.root / "plots"

    @property
    def timings(self) -> Path:
        return self.root / "timings.csv"

    @property
    def training(self) -> Path:
        """Each model's training compute: its ledger, or what its entry states (`report.tidy.training_table`)."""
        return self.root / "training.csv"

    @property
    def cache(self) -> Path:
        """The cell cache, shared by every study of the results tree (a cell's key says all it depends on)."""
        return Path(self.results_root) / ".cache"

    def snakemake_plan(self, family: str, key: str, digest: str) -> Path:
        """Snakemake's plans are named by their hash: a new plan is a new file, so no run's plan changes under it."""
        return self.root / "plans" / "snakemake" / family / (key or family) / f"{digest}.json"

    def made_with(self, node: str) -> Path:
        """The digest of the plan a node's outputs were last made from (written by its job, either engine)."""
        return self.root / "plans" / "made" / f"{node}.txt"

    def dvc_plan(self, family: str, key: str) -> Path:
        """DVC's plans have fixed names (dvc.yaml is static); DVC tracks their content."""
        return self.root / "plans" / "dvc" / family / f"{key or family}.json"

    @property
    def report_dir(self) -> Path:
        return Path(self.reports_root) / self.study

    @property
    def report(self) -> Path:
        return self.report_dir / "index.html"
