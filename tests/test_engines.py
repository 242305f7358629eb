"""Both engines run the smoke study end to end, agree on the cells, and compute only what an edit changes.

These tests run Snakemake and DVC for real on the smoke study (minutes on a laptop CPU). What an engine
*computed* is read from the cell cache's log (`results/.cache/computed.jsonl`), not from job names: a
job that reruns but finds its cells in the cache computes nothing.
"""

from __future__ import annotations

import json
import math
import re
import shutil
import sys
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml
from PIL import Image

import workflows
from diffscale.cells import Paths, expand
from diffscale.config import load
from diffscale.dag import nodes
from diffscale.estimate import nfe_per_image
from study_edits import set_key

PLAN = re.compile(r"--plan '?(results/[^\s']+?/plans/(?:snakemake|dvc)/[^\s']+\.json)")
# Both engines work on their copies at once (their runs are subprocesses), as two users on one machine would.
pytestmark = pytest.mark.engine


def executed(output: str) -> set[str]:
    """Names of the nodes whose jobs an engine ran, read from the plans their commands were given."""
    names = set()
    for path in PLAN.findall(output):
        parts = Path(path).parts
        engine = parts.index("plans") + 1
        family, member = parts[engine + 1], (parts[engine + 2] if parts[engine] == "snakemake" else Path(parts[-1]).stem)
        names.add(family if member == family else f"{family}@{member}")
    return names


def outcome(output: str, new: list[dict]) -> dict:
    """What an engine run did: its output, the nodes it ran, the cells it sampled and scored, and whether it drew a
    report rather than restoring one (`new` entries of the cache's log)."""
    return {"output": output, "nodes": executed(output),
            "sampled": {e["cell"] for e in new if e["kind"] == "samples"},
            "scored": {e["cell"] for e in new if e["kind"] == "scores"},
            "reported": any(e["kind"] == "report" for e in new)}


class Engine:
    """One engine on its own copy of a cold run of the smoke study: run it, edit the study, see what it computed."""

    def __init__(self, name: str, work: Path):
        self.name, self.work = name, work
        self.study = work / ("study.yaml" if name == "snakemake" else "params.yaml")

    def command(self) -> list:
        return [workflows.BIN / "dvc", "repro"] if self.name == "dvc" else workflows.snakemake(self.work, self.study.name)

    def computed(self) -> list[dict]:
        return workflows.computed(self.work)

    def share_cache(self, other: Engine) -> None:
        """Use `other`'s cell cache (and its log) instead of this copy's own."""
        cache = self.work / "results" / ".cache"
        shutil.rmtree(cache)
        cache.symlink_to(other.work / "results" / ".cache", target_is_directory=True)

    def run(self, command: list | None = None) -> dict:
        before = len(self.computed())
        output = workflows.run(command or self.command(), self.work)
        return outcome(output, self.computed()[before:])

    def apply(self, change) -> dict:
        """Make the edit and run: DVC runs an `Experiment` as one, on top of the workspace's earlier edits."""
        if self.name == "dvc" and isinstance(change, Experiment):
            return self.run([workflows.BIN / "dvc", "exp", "run", "-n", change.name, "-S", f"{change.key}={change.value}"])
        self.edit(change)
        return self.run()

    def edit(self, change) -> None:
        study = yaml.safe_load(self.study.read_text())
        change(study)
        self.study.write_text(yaml.safe_dump(study, sort_keys=False))


# -- the edits: each applied on top of the previous ones, with the cells it must compute ---------------


@dataclass(frozen=True)
class Experiment:
    """An edit that DVC makes as its users try a change, a named experiment (`dvc exp run -n NAME -S KEY=VALUE`):
    `dvc exp show`, `dvc metrics diff` and `dvc plots diff` are tested on them. Snakemake's study file gets the
    same edit."""

    name: str
    key: str
    value: object

    def __call__(self, study: dict) -> None:
        set_key(self.key, self.value)(study)


W8 = "toy-w8__ddim__steps{s}__cfg{g}__nosearch__toy-captions"
W16 = "toy-w16__ddim__steps{s}__cfg{g}__nosearch__toy-captions"
PAIRS = "toy-w16__ddim__steps4__cfg3__nosearch__toy-pairs"
SEARCH = {
    "random1": "toy-w16__ddim__steps4__cfg3__random+oracle+n1__toy-captions",
    "random2": "toy-w16__ddim__steps4__cfg3__random+oracle+n2__toy-captions",
    "paths": "toy-w16__ddim__steps4__cfg3__paths+ensemble+n2__toy-captions",
    "zero-order": "toy-w16__ddim__steps4__cfg3__zero-order+self-consistency+n3__toy-captions",
    "fk": "toy-w16__ddpm__steps4__cfg3__fk-steering+clip+n2__toy-captions",
    "ddpm": "toy-w16__ddpm__steps4__cfg3__nosearch__toy-captions",
}
ADDED_GUIDANCE = {f.format(s=s, g=2) for f in (W8, W16) for s in (2, 4)}
ADDED_STEPS = {f.format(s=3, g=g) for f in (W8, W16) for g in (2, 3)}
FLOW = {"toy-flow-w8__flow-euler__steps2__cfg3__nosearch__toy-captions",
        "toy-flow-w8__flow-euler__steps4__cfg3__nosearch__toy-captions",
        "toy-flow-w8__flow-euler__steps4__cfg3__paths+oracle+n2__toy-captions"}
# toy-w8's consistency-distilled student: re-distilled (and resampled) whenever its teacher changes.
STUDENT = {f"toy-w8-lcm__lcm__steps{s}__cfg3__nosearch__toy-captions" for s in (1, 2, 4)}
ALL = ({f.format(s=s, g=3) for f in (W8, W16) for s in (2, 4)} | {PAIRS} | set(SEARCH.values()) | FLOW | STUDENT)


# Three sequences of edits, each applied on a copy of the cold run, every edit on top of the previous ones of its
# sequence; the sequences (of both engines) run at once. DVC runs its stages one at a time, so its longest
# sequence is the module's critical path: the rescoring edits have one of their own.
EDITS = [
    # (what, edit, cells sampled, cells scored)
    ("add a guidance value", set_key("grids.0.guidance", [2.0, 3.0]), ADDED_GUIDANCE, ADDED_GUIDANCE),
    ("add a step count", set_key("grids.0.steps", [2, 3, 4]), ADDED_STEPS, ADDED_STEPS),
    ("change one model's width", set_key("models.toy-w8.width", 16),
     {W8.format(s=s, g=g) for s in (2, 3, 4) for g in (2, 3)} | STUDENT,
     {W8.format(s=s, g=g) for s in (2, 3, 4) for g in (2, 3)} | STUDENT),
    # The second sequence starts again from the cold run's study.
    ("change an FK-steering option", set_key("search.fk-steering.lambda", 5.0), {SEARCH["fk"]}, {SEARCH["fk"]}),
    ("change a verifier option", set_key("verifiers.self-consistency.level", 0.25), {SEARCH["zero-order"]},
     {SEARCH["zero-order"]}),
    ("change a report option (report only)", set_key("report.reference_steps", 2), set(), set()),
    ("change nothing", lambda study: None, set(), set()),
    # The third too; DVC runs its edits as experiments.
    ("change scoring.bootstrap (rescoring only)", Experiment("more-bootstrap", "scoring.bootstrap", 25), set(), ALL),
    # The toy CLIP: its verifiers' search cells resample (the paths ensemble, FK with CLIP, the
    # self-consistency backbone), and every cell rescores (CLIPScore reads it).
    ("change a toy-world training option", Experiment("longer-clip", "toyworld.clip.steps", 25),
     {SEARCH["paths"], SEARCH["fk"], SEARCH["zero-order"]}, ALL),
]
SEQUENCES = (EDITS[:3], EDITS[3:7], EDITS[7:])


@pytest.fixture(scope="module")
def smoke_params(repo):
    return load(repo / "config" / "smoke.yaml")


def cold(run: Path) -> dict:
    """What a shared cold run (from an empty cache) ran and computed."""
    return outcome((run / "engine.log").read_text(), workflows.computed(run))


@pytest.fixture(scope="module")
def engines(smoke_run, await_dvc_run, tmp_path_factory):
    """Both engines on copies of the Snakemake cold run: a second run, and each sequence of edits, with what each
    run computed. DVC's copies are of one DVC project made from it, as a Snakemake user starts with DVC
    (`diffscale dvc-yaml`, then `dvc repro`: every stage reruns and computes nothing; committed as the baseline).
    The sequences run at once. In each, Snakemake makes the edits on a copy of its cold run, then DVC makes them
    on a copy of the project, whose cell cache is Snakemake's copy's: both engines must rerun the same nodes,
    Snakemake must compute exactly the edit's cells and draw the report, DVC none of them (its cell keys are
    Snakemake's, and it finds the report made from the same tables). DVC computing every cell on its own is the
    cold `dvc repro`'s check. "engine" is the copy that ran the last sequence (its study: the cold one, edited
    by it; on DVC, as experiments)."""
    def dvc_project() -> tuple[Path, dict]:
        work = workflows.copy_run(smoke_run, tmp_path_factory.mktemp("dvc-project") / "work")
        workflows.init_dvc(work, work / "study.yaml")
        made = Engine("dvc", work).run()
        workflows.commit_baseline(work, "engine.log", "study.yaml", ".snakemake/")
        return work, made

    def sequence(edits: list, again: bool) -> dict:
        """The edits on copies of the cold run and of the DVC project; first a second run of each copy if `again`."""
        def runs(engine: Engine) -> list[dict]:
            return ([engine.run()] if again else []) + [engine.apply(change) for _, change, *_ in edits]

        snakemake = Engine("snakemake", workflows.copy_run(smoke_run, tmp_path_factory.mktemp("snakemake") / "work"))
        snakemake_runs = runs(snakemake)
        dvc = Engine("dvc", workflows.copy_run(project.result()[0], tmp_path_factory.mktemp("dvc") / "work"))
        dvc.share_cache(snakemake)
        return {"snakemake": snakemake, "dvc": dvc, "runs": {"snakemake": snakemake_runs, "dvc": runs(dvc)}}

    with ThreadPoolExecutor(len(SEQUENCES) + 1) as pool:
        project = pool.submit(dvc_project)
        sequences = list(pool.map(sequence, SEQUENCES, [True] + [False] * (len(SEQUENCES) - 1)))
    dvc_run = await_dvc_run()
    return {name: {"engine": sequences[-1][name], "cold": cold(run), "again": sequences[0]["runs"][name][0],
                   "edits": [r for i, done in enumerate(sequences) for r in done["runs"][name][i == 0:]],
                   "metrics_cold": (run / "results/smoke/metrics.csv").read_bytes(), "cold_run": run}
            for name, run in (("snakemake", smoke_run), ("dvc", dvc_run))} | {"dvc_project": project.result()[1]}


def test_each_engine_runs_every_node_once(engines, smoke_params):
    expected = {n.name for n in nodes(smoke_params, Paths.of(smoke_params))}
    for name in ("snakemake", "dvc"):
        assert engines[name]["cold"]["nodes"] == expected, name
        assert engines[name]["cold"]["sampled"] == engines[name]["cold"]["scored"] == {c.id for c in expand(smoke_params)}
        assert engines[name]["cold"]["reported"], name


def test_a_second_run_computes_nothing(engines):
    assert "Nothing to be done" in engines["snakemake"]["again"]["output"]
    assert engines["dvc"]["again"]["nodes"] == set()  # DVC runs its `plan` stage only (it writes every plan)
    assert re.findall(r"Running stage '([^']+)'", engines["dvc"]["again"]["output"]) == ["plan"]
    for name in ("snakemake", "dvc"):
        assert engines[name]["again"]["sampled"] == engines[name]["again"]["scored"] == set()


@pytest.mark.parametrize("index", range(len(EDITS)), ids=[e[0] for e in EDITS])
def test_an_edit_computes_exactly_its_cells_on_both_engines(engines, index):
    what, _, sampled, scored = EDITS[index]
    run = engines["snakemake"]["edits"][index]
    assert run["sampled"] == sampled, f"snakemake, {what}: sampled"
    assert run["scored"] == scored, f"snakemake, {what}: scored"
    # Every edit but "nothing" changes the report's tables or parameters: Snakemake draws it again.
    assert run["reported"] == (what != "change nothing"), f"snakemake, {what}: report"
    # DVC, after Snakemake on the same cell cache: the same nodes, and every cell they need already computed, the
    # report (made from equal tables and parameters) included.
    dvc = engines["dvc"]["edits"][index]
    assert dvc["sampled"] == dvc["scored"] == set() and not dvc["reported"], what
    assert engines["snakemake"]["edits"][index]["nodes"] == dvc["nodes"], what
    if what.startswith("change a report option"):
        assert engines["dvc"]["edits"][index]["nodes"] == {"report"}
    if what == "change nothing":
        assert "Nothing to be done" in engines["snakemake"]["edits"][index]["output"]


def test_both_engines_write_the_same_bytes(engines, smoke_params):
    """Same study, same machine: the same images and the same metrics.csv, whichever engine ran it (each cold run
    computed every cell on its own)."""
    first, second = (engines[n]["cold_run"] for n in ("snakemake", "dvc"))
    assert engines["snakemake"]["metrics_cold"] == engines["dvc"]["metrics_cold"]
    edited = [engines[n]["engine"].work / "results/smoke/metrics.csv" for n in ("snakemake", "dvc")]
    assert edited[0].read_bytes() == edited[1].read_bytes()
    for cell in expand(smoke_params):
        for png in sorted((first / Paths.of(smoke_params).samples(cell) / "images").iterdir()):
            assert png.read_bytes() == (second / Paths.of(smoke_params).samples(cell) / "images" / png.name).read_bytes()


def test_snakemake_then_dvc_on_one_checkout_computes_no_cell(engines, smoke_params):
    made = engines["dvc_project"]  # DVC's first `dvc repro` on Snakemake's cold run
    assert made["nodes"] == {n.name for n in nodes(smoke_params, Paths.of(smoke_params))}
    assert made["sampled"] == made["scored"] == set() and not made["reported"]


def test_results_made_with_other_parameters_are_not_taken_as_current(engines, repo):
    """The DVC checkout holds results of the edited study; Snakemake with the original study must not take
    them as current: it reruns what differs (from the cache) and writes the original study's metrics."""
    work = engines["dvc"]["engine"].work
    original = work / "original.yaml"
    shutil.copy(repo / "config" / "smoke.yaml", original)
    output = workflows.run(workflows.snakemake(work, original.name), work)
    assert "Nothing to be done" not in output
    assert (work / "results/smoke/metrics.csv").read_bytes() == engines["snakemake"]["metrics_cold"]


def test_a_dry_run_with_another_study_writes_only_new_plans(engines, repo):
    """A dry run of another study writes its plans (new files, named by their hash) and touches nothing else."""
    work = engines["snakemake"]["engine"].work
    before = {p: p.read_bytes() for p in (work / "results").rglob("*") if p.is_file()}
    times = {p: p.stat().st_mtime_ns for p in before if "plans" not in p.parts}
    other = work / "other.yaml"
    study = yaml.safe_load((repo / "config" / "smoke.yaml").read_text())
    study["seed"] = 1
    other.write_text(yaml.safe_dump(study))
    plan = workflows.run(workflows.snakemake(work, other.name, "-n"), work)
    assert "sample" in plan  # a new seed: everything would be sampled again ...
    after = {p for p in (work / "results").rglob("*") if p.is_file()}
    assert all(p.read_bytes() == content for p, content in before.items())  # ... but no file changed,
    assert {p: p.stat().st_mtime_ns for p in times} == times
    new = after - set(before)
    assert new and all(p.relative_to(work / "results/smoke/plans/snakemake") and p.suffix == ".json" for p in new)


def test_dvc_exp_show_carries_the_headline_metrics(engines):
    work = engines["dvc"]["engine"].work
    shown = json.loads(workflows.run([workflows.BIN / "dvc", "exp", "show", "--json"], work))
    rows = {}
    for commit in shown:
        for exp in [commit] + [e for e in commit.get("experiments") or [] for e in e.get("revs", [])]:
            rows[exp.get("name") or exp["rev"]] = exp
    assert {"more-bootstrap", "longer-clip"} <= set(rows)
    # The project is a clone of the repository, its .gitignore included: the baseline commit and every
    # experiment hold their headline metrics, not only the workspace.
    baseline = [row for row in shown if row["rev"] != "workspace"]
    assert len(baseline) == 1
    for row in baseline + [rows["more-bootstrap"], rows["longer-clip"]]:
        assert row["data"]["metrics"]["results/smoke/headline.json"]["data"]["toy-captions"]
    metrics = rows["longer-clip"]["data"]["metrics"]["results/smoke/headline.json"]["data"]
    assert set(metrics) == {"toy-captions", "toy-pairs"}
    fid = metrics["toy-captions"]["fid_at_ddim_4_steps"]
    assert set(fid) == {"toy-w8", "toy-w16"} and all(v > 0 for v in fid.values())
    assert set(metrics["toy-captions"]["search_gain_caption_probability"]) == {"random", "zero-order", "paths", "fk-steering"}
    counted = metrics["toy-captions"]["crossovers"]["caption_probability"]  # the primary metric's crossovers
    assert counted["crossovers"] == len(metrics["toy-captions"]["crossover_budgets"]) >= counted["beyond_noise"]
    params = rows["longer-clip"]["data"]["params"]["params.yaml"]["data"]
    assert params["toyworld"]["clip"]["steps"] == 25 and params["scoring"]["bootstrap"] == 25


def changed(diff: dict) -> set[str]:
    """The headline numbers whose value differs in a `dvc metrics diff --all --json`, leaving out the counts of
    crossovers beyond noise: those are read from paired CIs, which the number of resamples moves."""
    return {key for key, value in diff.get("results/smoke/headline.json", {}).items()
            if value["diff"] and not key.endswith(".beyond_noise")}


def test_dvc_metrics_and_plots_diff_compare_two_experiments(engines, tmp_path):
    work = engines["dvc"]["engine"].work

    def diff(old, new):
        return json.loads(workflows.run([workflows.BIN / "dvc", "metrics", "diff", old, new, "--all", "--json"], work))

    # More bootstrap resamples change confidence intervals (and the beyond-noise counts read from them) only, no
    # headline number; a longer-trained toy CLIP changes what it scores (CLIPScore) and the searches it guides.
    assert diff("HEAD", "more-bootstrap")["results/smoke/headline.json"] and changed(diff("HEAD", "more-bootstrap")) == set()
    assert "toy-pairs.clip_score_at_ddim_4_steps.toy-w16" in changed(diff("more-bootstrap", "longer-clip"))
    out = tmp_path / "plots"
    workflows.run([workflows.BIN / "dvc", "plots", "diff", "more-bootstrap", "longer-clip", "-o", out], work)
    html = (out / "index.html").read_text()
    assert "toy-captions: joint frontier" in html and "toy-captions: caption probability vs sampling cost" in html
    # Offline (the clone's .dvc/config names the page that carries vega inline, not DVC's CDN links), each plot
    # once (only the top-level definitions draw), every point coloured by its model.
    assert "cdn.jsdelivr" not in html and "vega-embed 6.18.2" in html
    drawn = re.findall(r"vegaEmbed\('#([^']+)'", html)
    assert len(drawn) == len(set(drawn)) == len(yaml.safe_load((work / "dvc.yaml").read_text())["plots"])
    assert html.count('"field": "model"') == len(drawn)


@pytest.mark.parametrize("engine", ["snakemake", "dvc"])
def test_outputs_are_sane(engine, engines, repo):
    work = engines[engine]["engine"].work
    params = load(repo / "config" / "smoke.yaml")
    for cell in expand(params):
        samples = work / Paths.of(params).samples(cell)
        records = [json.loads(line) for line in (samples / "records.jsonl").read_text().splitlines()]
        ledger = json.loads((samples / "ledger.json").read_text())
        assert len(records) == ledger["n_images"] == params["prompt_sets"][cell.prompt_set]["size"]
        # NFEs as counted equal the registries' formulas (a CFG pair counts 2 at every step).
        assert ledger["nfe_per_image"] == ledger["nfe_per_image_expected"] == nfe_per_image(params, cell)
        assert (ledger["verifier_images"] > 0) == (cell.search != "none")
        assert ledger["gflops_per_nfe"] > 0
        pixels = np.stack([np.asarray(Image.open(samples / r["file"])) for r in records])
        assert pixels.shape[1:] == (32, 32, 3)
        assert pixels.std(axis=(1, 2, 3)).min() > 1.0, "a blank image"
    table = pd.read_csv(work / "results" / "smoke" / "metrics.csv")
    assert table["value"].map(math.isfinite).all()
    assert (table["ci_low"] <= table["value"] + 1e-9).all() and (table["value"] <= table["ci_high"] + 1e-9).all()
    assert {"fid", "kid", "clip_score", "compositional_accuracy", "oracle_confidence"} <= set(table["metric"])
    assert "seconds_per_image" not in table and "seconds_per_image" in pd.read_csv(work / "results/smoke/timings.csv")
    # Every toy model's counted training FLOPs reach the tidy table; its wall seconds only training.csv.
    training = pd.read_csv(work / "results" / "smoke" / "training.csv").set_index("model")
    assert (training["training_flops_source"] == "counted").all() and (training["training_seconds"] > 0).all()
    assert (training["training_flops"] > 0).all()
    assert table.groupby("model")["training_flops"].first().to_dict() == pytest.approx(training["training_flops"].to_dict(), rel=1e-5)
    assert "training_seconds" not in table
    html = (work / "reports" / "smoke" / "index.html").read_text()
    assert "<img" in html and "Training compute" in html


def test_hand_counted_nfes_of_the_smoke_searches(smoke_params):
    """The registries' formulas against a count by hand: 4 DDIM steps with CFG is 8 NFEs per trajectory."""
    by_search = {c.search: c for c in expand(smoke_params) if c.search != "none"}
    assert nfe_per_image(smoke_params, by_search["random"]) in (8, 16)
    assert nfe_per_image(smoke_params, by_search["zero-order"]) == 3 * 8
    assert nfe_per_image(smoke_params, by_search["fk-steering"]) == 2 * 8
    # paths, budget 2, 2 copies, start 0.5 of 4 steps -> s0 = 2; rounds (1, 3), (2, 4): 2 x 2 + 2 x 2 x (2 + 2)
    assert nfe_per_image(smoke_params, by_search["paths"]) == 2 * (2 * 2 + 2 * 2 * (2 + 2))


def test_search_with_one_candidate_is_the_no_search_cell_and_more_candidates_do_better(engines, smoke_params):
    paths = Paths.of(smoke_params)
    work = engines["snakemake"]["engine"].work
    searched = {c.budget: c for c in expand(smoke_params) if c.search == "random"}
    plain = replace(searched[1], search="none", verifier="none", budget=0)
    for png in sorted((work / paths.samples(plain) / "images").iterdir()):
        assert png.read_bytes() == (work / paths.samples(searched[1]) / "images" / png.name).read_bytes()

    def verifier_scores(cell):
        records = (work / paths.samples(cell) / "records.jsonl").read_text().splitlines()
        return np.array([json.loads(r)["verifier_scores"][cell.verifier] for r in records])

    one, two = verifier_scores(searched[1]), verifier_scores(searched[2])
    assert (two >= one).all() and (two > one).any()  # nested candidates: the anytime curve only rises


def test_workflow_lints_clean(repo):
    output = workflows.run([sys.executable, "-m", "snakemake", "--lint", "-s", workflows.SNAKEFILE, "-d", repo], repo)
    assert "Congratulations, your workflow is in a good condition!" in output


def test_slurm_profile_dry_run_requests_gpus_only_for_gpu_studies(repo, tmp_path):
    study = yaml.safe_load((repo / "config" / "smoke.yaml").read_text()) | {"device": "auto"}
    (tmp_path / "gpu.yaml").write_text(yaml.safe_dump(study))
    dry = [sys.executable, "-m", "snakemake", "-n", "-s", workflows.SNAKEFILE, "-d", tmp_path,
           "--profile", repo / "workflow" / "profiles" / "slurm"]
    cpu_plan = workflows.run(dry + ["--configfile", repo / "config" / "smoke.yaml"], tmp_path)
    gpu_plan = workflows.run(dry + ["--configfile", tmp_path / "gpu.yaml"], tmp_path)
    assert "gpu=1" not in cpu_plan
    assert re.search(r"rule sample:(?:(?!\nrule )[\s\S])*gpu=1", gpu_plan)
    assert not re.search(r"rule model:(?:(?!\nrule )[\s\S])*gpu=1", gpu_plan)
