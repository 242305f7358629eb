"""The artifact cache: a trained component is keyed by what decides its bytes, not by the study that asked."""

from __future__ import annotations

import json
from pathlib import Path

from diffscale.cache import ArtifactCache
from diffscale.cli import NodeJob
from diffscale.dag import Plan
from diffscale.manifest import write_manifest


def plan(study: str, params: dict, data: str) -> Plan:
    """The plan of a toy component of `study` that reads one input file with content `data`."""
    source = Path("results") / study / "toyworld" / "dataset.npz"
    source.parent.mkdir(parents=True, exist_ok=True)
    source.write_text(data)
    return Plan("toy-judge", ("toy", "judge"), {"study": study, "seed": 0, "toyworld": {"judge": params}},
                code="c0de", inputs=(str(source),))


def build(job: NodeJob, trained: list[str]) -> Path:
    final = job.paths.root / "toyworld" / "judge"

    def train() -> None:
        trained.append(job.plan.study["study"])
        final.mkdir(parents=True)
        (final / "weights.json").write_text(json.dumps(job.plan.study["toyworld"]))
        write_manifest(final)

    job.build(final, train)
    return final


def test_a_study_with_the_same_parameters_and_inputs_restores_another_studys_artifact(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    trained: list[str] = []
    first = build(NodeJob(plan("default", {"steps": 10}, "images")), trained)
    second = build(NodeJob(plan("toy-flow", {"steps": 10}, "images")), trained)
    assert trained == ["default"]  # the second study's input lies elsewhere but has the same content
    assert (second / "weights.json").read_bytes() == (first / "weights.json").read_bytes()
    log = [json.loads(line) for line in Path("results/.cache/computed.jsonl").read_text().splitlines()]
    assert [entry["kind"] for entry in log] == ["artifact"]


def test_other_parameters_or_input_contents_build_again(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    trained: list[str] = []
    build(NodeJob(plan("default", {"steps": 10}, "images")), trained)
    build(NodeJob(plan("more-steps", {"steps": 20}, "images")), trained)
    build(NodeJob(plan("other-data", {"steps": 10}, "other images")), trained)
    assert trained == ["default", "more-steps", "other-data"]


def outputs_of(root: Path, headline: str) -> dict[str, Path]:
    """A report-like node's outputs: a folder with a subfolder, and a text file."""
    (root / "report" / "figures").mkdir(parents=True)
    (root / "report" / "index.html").write_text("<html>")
    (root / "report" / "figures" / "a.png").write_bytes(b"\x89PNG")
    (root / "headline.json").write_text(headline)
    return {"report": root / "report", "headline": root / "headline.json"}


def test_a_nodes_outputs_are_restored_whole_and_a_corrupt_entry_is_not(tmp_path):
    cache = ArtifactCache(tmp_path / "cache")
    made = outputs_of(tmp_path / "made", '{"fid": 1}')
    assert not cache.restore_outputs("k" * 64, made)
    cache.store_outputs("k" * 64, made, "report")
    elsewhere = {role: tmp_path / "elsewhere" / path.name for role, path in made.items()}
    assert cache.restore_outputs("k" * 64, elsewhere)
    assert (elsewhere["headline"].read_text() == '{"fid": 1}'
            and (elsewhere["report"] / "figures" / "a.png").read_bytes() == b"\x89PNG"
            and sorted(p.name for p in elsewhere["report"].rglob("*")) == ["a.png", "figures", "index.html"])
    log = [json.loads(line) for line in (tmp_path / "cache" / "computed.jsonl").read_text().splitlines()]
    assert [(entry["kind"], entry["cell"]) for entry in log] == [("report", "report")]
    # One changed byte in the entry: it is dropped, and the caller makes the outputs again.
    entry = next((tmp_path / "cache" / "outputs").glob("*/*"))
    (entry / "headline").write_text('{"fid": 2}')
    assert not cache.restore_outputs("k" * 64, elsewhere) and not entry.exists()
