"""Cells: readable ids that round-trip, one list for every engine, paths only from `Paths`."""

from __future__ import annotations

import shutil
from pathlib import Path

from diffscale.cells import Cell, Paths, expand
from diffscale.config import load
from diffscale.dag import missing_inputs, nodes


def test_cell_id_round_trips_including_odd_characters():
    cell = Cell("toy-w8", "dpmsolver++", 20, 7.5, "toy-captions")
    assert cell.id == "toy-w8__dpmsolver++__steps20__cfg7.5__nosearch__toy-captions"
    assert Cell.from_id(cell.id) == cell
    searched = Cell("toy-w8", "ddpm", 5, 2.0, "toy-captions", "fk-steering", "self-consistency", 8)
    assert searched.id == "toy-w8__ddpm__steps5__cfg2__fk-steering+self-consistency+n8__toy-captions"
    assert searched.block.id == "toy-w8__fk-steering__toy-captions"
    assert searched.own_block.id == searched.id
    assert Cell.from_id(searched.id) == searched


def test_expand_is_the_deduplicated_product_of_the_grids(repo):
    params = load(repo / "config" / "smoke.yaml")
    cells = expand(params)
    # size-vs-steps, compositional, the DDPM baseline of FK steering, flow at 2 and 4, the LCM student at 1, 2, 4
    plain = 2 * 2 + 1 + 1 + 2 + 3
    searched = 2 + 1 + 1 + 1 + 1  # random at budgets 1 and 2, paths, zero-order, FK steering, paths on flow
    assert len(cells) == len({c.id for c in cells}) == plain + searched
    assert sum(c.search != "none" for c in cells) == searched
    assert cells == sorted(cells)
    params["grids"].append(params["grids"][0])
    assert expand(params) == cells


def test_unknown_block_is_a_params_error(repo, capsys):
    from diffscale import cli

    assert cli.main(["--params", str(repo / "config" / "smoke.yaml"), "sample", "--block", "nope"]) == 2
    assert "`diffscale sample --block nope` is no node of study 'smoke'" in capsys.readouterr().err


def test_paths_are_scoped_by_study_and_grouped_by_block():
    paths = Paths("smoke")
    cell = Cell("toy-w8", "ddim", 4, 3.0, "toy-captions")
    assert cell.block.id == "toy-w8__nosearch__toy-captions"
    assert str(paths.samples(cell)) == f"results/smoke/samples/{cell.block.id}/{cell.id}"
    assert str(paths.scores(cell)) == f"results/smoke/scores/{cell.block.id}/{cell.id}.json"
    assert str(paths.report) == "reports/smoke/index.html"


def test_blocks_group_cells_that_share_model_prompts_and_search(repo):
    from diffscale.cells import blocks

    params = load(repo / "config" / "smoke.yaml")
    grouped = blocks(params)
    assert sum(len(c) for c in grouped.values()) == len(expand(params))
    for block, cells in grouped.items():
        assert {c.block for c in cells} == {block}
        assert len({(c.sampler, c.steps, c.guidance, c.verifier, c.budget) for c in cells}) == len(cells)
    # The smoke study: one plain block per model and prompt set, one block per search algorithm.
    assert sorted(b.id for b in grouped) == [
        "toy-flow-w8__nosearch__toy-captions", "toy-flow-w8__paths__toy-captions", "toy-w16__fk-steering__toy-captions",
        "toy-w16__nosearch__toy-captions", "toy-w16__nosearch__toy-pairs",
        "toy-w16__paths__toy-captions", "toy-w16__random__toy-captions", "toy-w16__zero-order__toy-captions",
        "toy-w8-lcm__nosearch__toy-captions", "toy-w8__nosearch__toy-captions"]


def test_a_node_whose_input_was_deleted_is_found(repo, tmp_path, monkeypatch):
    """A killed forced run deletes a block's samples and leaves its scores: the score node must be found, so
    that Snakemake (which never remakes a missing intermediate file) runs both again."""
    params = load(repo / "config" / "smoke.yaml")
    study = nodes(params, Paths.of(params))
    monkeypatch.chdir(tmp_path)
    for node in study:
        for out in node.outs.values():
            Path(out).mkdir(parents=True, exist_ok=True)
    assert missing_inputs(study) == []
    sample = next(n for n in study if n.rule_name == "sample")
    shutil.rmtree(sample.outs["samples"])
    found = missing_inputs(study)
    assert found and all(sample.outs["samples"] in n.dep_paths() for n in found)
    assert "score" in {n.rule_name for n in found}
