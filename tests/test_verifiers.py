"""Verifiers: one interface, every kind, on tiny random networks built here (no hub access)."""

from __future__ import annotations

import numpy as np
import open_clip
import pytest
import torch
from PIL import Image
from safetensors.torch import save_file

from diffscale.manifest import write_manifest
from diffscale.metrics.clipscore import OpenClipScorer
from diffscale.metrics.compositional import per_image
from diffscale.toyworld import clip as toy_clip
from diffscale.toyworld import oracle as toy_oracle
from diffscale.toyworld import scenes
from diffscale.verifiers import VERIFIERS, VerifierResources, build_verifiers
from diffscale.verifiers.aesthetic import aesthetic_mlp
from diffscale.verifiers.ensemble import EnsembleVerifier, group_ranks, prompt_groups

EMBED = 32


def _save_clip(out, seed, image_size=scenes.IMAGE_SIZE):
    torch.manual_seed(seed)
    config = toy_clip.model_config(EMBED, 1)
    config["vision_cfg"]["image_size"] = image_size
    model = open_clip.CLIP(**config).eval()
    toy_clip.save(model, config, out)
    return model


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    root = tmp_path_factory.mktemp("verifiers")
    torch.manual_seed(0)
    toy_oracle.save(toy_oracle.AttributeClassifier(width=8).eval(), root / "oracle", {})
    _save_clip(root / "clip", seed=1)
    for component in ("oracle", "clip"):  # what the DAG's toy nodes write last: their integrity manifest
        write_manifest(root / component)
    other = _save_clip(root / "clip-other", seed=2)  # HPS-style checkpoint: other weights, same architecture
    torch.save({"state_dict": other.state_dict(), "epoch": 1}, root / "hps.pt")
    torch.manual_seed(3)
    mlp = aesthetic_mlp(EMBED)
    save_file(mlp.state_dict(), str(root / "aesthetic.safetensors"))
    torch.save(mlp.state_dict(), root / "aesthetic.pth")
    uint8, _, captions = scenes.sample_dataset(6, seed=4)
    prompts = [captions[0], captions[0], captions[0], captions[3], captions[3], captions[5]]
    images = torch.from_numpy(uint8).permute(0, 3, 1, 2).float() / 255.0
    intermediate = (images + 0.1 * torch.randn(images.shape, generator=torch.Generator().manual_seed(5))).clamp(0, 1)
    return {
        "root": root, "uint8": uint8, "images": images, "prompts": prompts, "intermediate": intermediate,
        "resources": VerifierResources(oracle=root / "oracle", clip=root / "clip"),
    }


def _specs(root):
    return {
        "oracle": {"kind": "oracle", "batch_size": 4},
        "clip": {"kind": "clip-score", "toy": True, "batch_size": 4},
        "clip-named": {"kind": "clip-score", "model": f"local-dir:{root / 'clip'}", "batch_size": 4},
        "self-clip": {"kind": "self-consistency", "batch_size": 4},
        "self-oracle": {"kind": "self-consistency", "backbone": "toy-oracle", "batch_size": 4},
        "aesthetic": {"kind": "aesthetic", "clip_model": f"local-dir:{root / 'clip'}", "clip_pretrained": None,
                      "mlp": str(root / "aesthetic.safetensors"), "batch_size": 4},
        "aesthetic-pth": {"kind": "aesthetic", "clip_model": f"local-dir:{root / 'clip'}", "clip_pretrained": None,
                          "mlp": str(root / "aesthetic.pth"), "batch_size": 4},
        "hps": {"kind": "hps", "model": f"local-dir:{root / 'clip'}", "checkpoint": str(root / "hps.pt"), "batch_size": 4},
        "ensemble": {"kind": "ensemble", "members": ["oracle", "clip", "self-clip"]},
    }


NAMES = ["oracle", "clip", "clip-named", "self-clip", "self-oracle", "aesthetic", "aesthetic-pth", "hps", "ensemble"]


@pytest.fixture(scope="module")
def verifiers(world):
    assert list(_specs(world["root"])) == NAMES
    return build_verifiers(_specs(world["root"]), world["resources"], "cpu")


def _call(verifier, world, images=None, prompts=None, intermediate=None):
    images = world["images"] if images is None else images
    prompts = world["prompts"] if prompts is None else prompts
    if verifier.needs_intermediate:
        intermediate = world["intermediate"] if intermediate is None else intermediate
    return verifier.score(images, prompts, intermediate=intermediate if verifier.needs_intermediate else None)


def test_every_kind_is_built(verifiers):
    # classifier reads ImageNet class names, not these captions: tests/test_verifier_classifier.py builds it
    assert {v.kind for v in verifiers.values()} | {"classifier"} == set(VERIFIERS)


@pytest.mark.parametrize("name", NAMES)
def test_shape_dtype_determinism_and_batching(verifiers, world, name):
    verifier = verifiers[name]
    scores = _call(verifier, world)
    assert scores.shape == (6,) and scores.dtype == torch.float32 and scores.device.type == "cpu"
    assert torch.isfinite(scores).all()
    assert torch.equal(scores, _call(verifier, world)), "same input, same bytes"
    if name == "ensemble":  # ranks need the whole group; batching is the members' business
        return
    one_by_one = torch.cat([
        verifier.score(world["images"][i : i + 1], world["prompts"][i : i + 1],
                       intermediate=world["intermediate"][i : i + 1] if verifier.needs_intermediate else None)
        for i in range(6)
    ])
    torch.testing.assert_close(scores, one_by_one, rtol=1e-5, atol=1e-6)


def test_scores_depend_on_the_image(verifiers, world):
    flipped = world["images"].flip(-1)
    for name in ("oracle", "clip", "aesthetic", "hps"):
        assert not torch.equal(_call(verifiers[name], world), _call(verifiers[name], world, images=flipped)), name
    identical = verifiers["self-clip"].score(world["images"], world["prompts"], intermediate=world["images"])
    torch.testing.assert_close(identical, torch.ones(6), rtol=0, atol=1e-5)


def test_cost_accounting(world):
    v = build_verifiers({"c": {"kind": "clip-score", "toy": True, "batch_size": 2}}, world["resources"])["c"]
    assert (v.cost.calls, v.cost.images, v.cost.gflops) == (0, 0, 0.0)
    v.score(world["images"], world["prompts"])
    first = v.cost.gflops
    assert (v.cost.calls, v.cost.images) == (1, 6) and first > 0
    v.score(world["images"][:2], world["prompts"][:2])
    assert (v.cost.calls, v.cost.images) == (2, 8)
    assert v.cost.gflops == pytest.approx(first * 8 / 6)


def test_ensemble_cost_is_its_members_and_not_theirs(world):
    vs = build_verifiers(
        {"a": {"kind": "oracle"}, "b": {"kind": "clip-score", "toy": True}, "e": {"kind": "ensemble", "members": ["a", "b"]}},
        world["resources"],
    )
    vs["a"].score(world["images"][:2], world["prompts"][:2])
    before = vs["a"].cost.as_dict()
    vs["e"].score(world["images"], world["prompts"])
    assert vs["a"].cost.as_dict() == before and vs["b"].cost.calls == 0, "members' own counters untouched"
    per_image = vs["a"].gflops_per_image(world["images"], world["prompts"]) + vs["b"].gflops_per_image(world["images"], world["prompts"])
    assert (vs["e"].cost.calls, vs["e"].cost.images) == (2, 12)
    assert vs["e"].cost.gflops == pytest.approx(6 * per_image)


def test_group_ranks_by_hand():
    groups = torch.tensor([0, 0, 0, 1, 1, 2])
    ranks = group_ranks(torch.tensor([0.3, 0.1, 0.3, 5.0, -1.0, 7.0]), groups)
    # group 0: 0.1 worst (0), the two 0.3 tie for ranks 1 and 2 -> 1.5, over (3 - 1)
    torch.testing.assert_close(ranks, torch.tensor([0.75, 0.0, 0.75, 1.0, 0.0, 0.5], dtype=torch.float64))
    assert prompt_groups(["x", "y", "x"]).tolist() == [0, 1, 0]


class _Fixed:
    """A stand-in member returning given scores (and charging the ledger like a real verifier)."""

    intermediate_level = None

    def __init__(self, scores):
        self.scores = torch.tensor(scores)

    def _score(self, images, prompts, groups, intermediate, ledger):
        ledger.add(1, len(prompts), 0.0)
        return self.scores

    def gflops_per_image(self, *args):
        return 0.0


def test_ensemble_mean_rank_by_hand():
    a = _Fixed([1.0, 2.0, 3.0, 10.0, 20.0])
    b = _Fixed([30.0, 20.0, 10.0, 0.0, 0.0])
    ensemble = EnsembleVerifier({"a": a, "b": b})
    images = torch.zeros(5, 3, 4, 4)
    scores = ensemble.score(images, ["p"] * 5, groups=torch.tensor([0, 0, 0, 1, 1]))
    # a ranks: 0, .5, 1 | 0, 1 ; b ranks: 1, .5, 0 | .5, .5
    assert scores.tolist() == [0.5, 0.5, 0.5, 0.25, 0.75]
    # without groups each distinct prompt is a group
    by_prompt = ensemble.score(images, ["p", "p", "p", "q", "q"])
    assert by_prompt.tolist() == scores.tolist()
    assert ensemble.cost.calls == 4 and ensemble.cost.images == 20


def test_oracle_verifier_equals_oracle_confidence(verifiers, world):
    labels = [scenes.parse_caption(p).labels() for p in world["prompts"]]
    metric = per_image(toy_oracle.load(world["root"] / "oracle"), world["uint8"], labels)["probability"]
    # [0, 1] = uint8 / 255 -> * 2 - 1 differs from uint8 / 127.5 - 1 by float rounding only
    np.testing.assert_allclose(_call(verifiers["oracle"], world).numpy(), metric, rtol=1e-5, atol=1e-7)


def test_clip_score_equals_the_clipscore_metric_at_native_size(verifiers, world):
    scorer = OpenClipScorer(f"local-dir:{world['root'] / 'clip'}")
    pil = [Image.fromarray(im) for im in world["uint8"]]
    expected = scorer.cosine(pil, world["prompts"])
    # no resize at the model's size: only ToTensor's uint8 / 255 against our float input differ
    torch.testing.assert_close(_call(verifiers["clip"], world), expected, rtol=0, atol=1e-5)
    torch.testing.assert_close(_call(verifiers["clip-named"], world), expected, rtol=0, atol=1e-5)


def test_clip_score_tensor_resize_agrees_with_pil(world, tmp_path):
    """A CLIP at 16 px scoring 32 px images: torch's antialiased bicubic against PIL's bicubic."""
    _save_clip(tmp_path / "clip16", seed=6, image_size=16)
    name = f"local-dir:{tmp_path / 'clip16'}"
    verifier = build_verifiers({"c": {"kind": "clip-score", "model": name}})["c"]
    expected = OpenClipScorer(name).cosine([Image.fromarray(im) for im in world["uint8"]], world["prompts"])
    got = _call(verifier, world)
    # The resamplers differ by PIL's 8-bit rounding of the resized image (<= half a grey level per
    # pixel, ~2e-3) and tiny kernel differences: measured 4e-5 on these cosines. 5e-4 leaves room for
    # other seeds and stays two orders of magnitude below the spread between images (checked below).
    torch.testing.assert_close(got, expected, rtol=0, atol=5e-4)
    assert (expected.max() - expected.min()) > 100 * (got - expected).abs().max()


def test_hps_loads_its_checkpoint_over_the_architecture(verifiers, world):
    plain = OpenClipScorer(f"local-dir:{world['root'] / 'clip-other'}")
    expected = plain.cosine([Image.fromarray(im) for im in world["uint8"]], world["prompts"])
    torch.testing.assert_close(_call(verifiers["hps"], world), expected, rtol=0, atol=1e-5)
    assert not torch.allclose(_call(verifiers["clip"], world), expected)


def test_aesthetic_reads_safetensors_and_pth_alike(verifiers, world):
    assert torch.equal(_call(verifiers["aesthetic"], world), _call(verifiers["aesthetic-pth"], world))
    keys = set(aesthetic_mlp().state_dict())
    assert keys == {f"layers.{i}.{p}" for i in (0, 2, 4, 6, 7) for p in ("weight", "bias")}


def test_self_consistency_needs_intermediate(verifiers, world):
    with pytest.raises(ValueError, match="intermediate"):
        verifiers["self-oracle"].score(world["images"], world["prompts"])
    with pytest.raises(ValueError, match="intermediate"):
        verifiers["ensemble"].score(world["images"], world["prompts"])
    assert verifiers["ensemble"].needs_intermediate and not verifiers["oracle"].needs_intermediate


def test_registry_errors(world):
    with pytest.raises(ValueError, match=r"unknown kind 'nope'.*'aesthetic'"):
        build_verifiers({"x": {"kind": "nope"}}, world["resources"])
    with pytest.raises(ValueError, match=r"unknown member 'ghost'.*\['e', 'o'\]"):
        build_verifiers({"o": {"kind": "oracle"}, "e": {"kind": "ensemble", "members": ["o", "ghost"]}}, world["resources"])
    with pytest.raises(ValueError, match="cycle"):
        build_verifiers({"e": {"kind": "ensemble", "members": ["f"]}, "f": {"kind": "ensemble", "members": ["e"]}})
    with pytest.raises(ValueError, match="resources.oracle"):
        build_verifiers({"o": {"kind": "oracle"}})
    with pytest.raises(ValueError, match="unexpected keyword"):
        build_verifiers({"o": {"kind": "oracle", "colour": "red"}}, world["resources"])
    with pytest.raises(ValueError, match="revision"):
        build_verifiers({"a": {"kind": "aesthetic", "clip_model": f"local-dir:{world['root'] / 'clip'}",
                               "clip_pretrained": None, "mlp": "hf-hub:someone/repo:model.pth"}})


def test_members_are_shared_and_resolved_in_dependency_order(world):
    vs = build_verifiers(
        {"e": {"kind": "ensemble", "members": ["o", "c"]}, "c": {"kind": "clip-score", "toy": True}, "o": {"kind": "oracle"}},
        world["resources"],
    )
    assert list(vs) == ["e", "c", "o"]
    assert vs["e"].members["o"] is vs["o"] and vs["e"].members["c"] is vs["c"]
