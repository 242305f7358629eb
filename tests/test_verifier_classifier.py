"""classifier verifier: an ImageNet classifier's probability of the prompt's class, on a tiny random timm net."""

from __future__ import annotations

import re

import numpy as np
import pytest
import timm
import torch
from PIL import Image
from safetensors.torch import save_file
from timm.data import create_transform, resolve_data_config
from torchvision.models import ResNet50_Weights

from diffscale.prompts import imagenet_classes
from diffscale.verifiers import VERIFIERS, build_verifiers, classifier
from diffscale.verifiers.classifier import ClassifierVerifier, class_index, preprocess

ARCH = "resnet10t"
SMALL = {"pretrained_cfg_overlay": {"input_size": (3, 64, 64), "crop_pct": 0.875, "interpolation": "bicubic"}}
NAMES = ResNet50_Weights.IMAGENET1K_V1.meta["categories"]
PROMPTS = ["tench", "goldfish", "tench", "golden retriever", "pizza", "volcano"]


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    root = tmp_path_factory.mktemp("classifier")
    torch.manual_seed(0)
    model = timm.create_model(ARCH, pretrained=False, num_classes=1000).eval()
    with torch.no_grad():  # a random head gives near-uniform softmax; spread the logits out
        model.fc.weight.mul_(20.0)
    save_file(model.state_dict(), str(root / "model.safetensors"))
    torch.save({"state_dict": model.state_dict(), "epoch": 3}, root / "model.pth")
    images = torch.rand(6, 3, 48, 60, generator=torch.Generator().manual_seed(1))
    return {"root": root, "model": model, "images": images, "weights": str(root / "model.safetensors")}


@pytest.fixture(scope="module")
def verifier(world):
    return build_verifiers({"cls": {"kind": "classifier", "model": ARCH, "weights": world["weights"],
                                    "model_kwargs": SMALL, "batch_size": 4}})["cls"]


def test_registered_and_built_through_the_factory(verifier):
    assert VERIFIERS["classifier"] is ClassifierVerifier
    assert isinstance(verifier, ClassifierVerifier) and verifier.kind == "classifier" and verifier.batch_size == 4
    assert verifier.data_config["input_size"] == (3, 64, 64)
    assert "resnet10t" in repr(verifier)


def test_shape_dtype_range_determinism_and_batching(verifier, world):
    scores = verifier.score(world["images"], PROMPTS)
    assert scores.shape == (6,) and scores.dtype == torch.float32 and scores.device.type == "cpu"
    assert torch.isfinite(scores).all() and (scores >= 0).all() and (scores <= 1).all()
    assert torch.equal(scores, verifier.score(world["images"], PROMPTS)), "same input, same bytes"
    one_by_one = torch.cat([verifier.score(world["images"][i : i + 1], PROMPTS[i : i + 1]) for i in range(6)])
    torch.testing.assert_close(scores, one_by_one, rtol=1e-5, atol=1e-6)
    assert scores.std() > 0, "different images and classes, different scores"


def test_score_is_the_softmax_of_the_prompts_class(verifier, world):
    """At the input size with crop_pct 1 preprocessing is only normalisation: check against the bare net."""
    overlay = {"pretrained_cfg_overlay": {"input_size": (3, 48, 60), "crop_pct": 1.0}}
    exact = ClassifierVerifier(model=ARCH, weights=world["weights"], model_kwargs=overlay)
    config = exact.data_config
    images = world["images"]
    mean, std = torch.tensor(config["mean"]).view(1, 3, 1, 1), torch.tensor(config["std"]).view(1, 3, 1, 1)
    with torch.no_grad():
        probs = world["model"]((images - mean) / std).softmax(-1)
    expected = torch.stack([probs[i, NAMES.index(p)] for i, p in enumerate(PROMPTS)])
    torch.testing.assert_close(exact.score(images, PROMPTS), expected, rtol=1e-5, atol=1e-7)
    # and the resizing verifier scores its own preprocessing's logits
    logits = verifier.logits(images)
    expected = torch.stack([logits[i].softmax(-1)[NAMES.index(p)] for i, p in enumerate(PROMPTS)])
    torch.testing.assert_close(verifier.score(images, PROMPTS), expected, rtol=1e-5, atol=1e-7)


def test_names_map_to_torchvision_indices_by_hand(world):
    """A head biased toward one class: its name scores ~1, every other name ~0."""
    model = timm.create_model(ARCH, pretrained=False, num_classes=1000).eval()
    model.load_state_dict(world["model"].state_dict())
    target = NAMES.index("golden retriever")  # 207
    assert target == 207
    with torch.no_grad():
        model.fc.weight.zero_()
        model.fc.bias.zero_()
        model.fc.bias[target] = 50.0
    path = world["root"] / "biased.safetensors"
    save_file(model.state_dict(), str(path))
    v = ClassifierVerifier(model=ARCH, weights=str(path), model_kwargs=SMALL)
    images = world["images"][:3]
    scores = v.score(images, ["golden retriever", "tench", "Siberian husky"])
    assert scores[0] > 0.999 and (scores[1:] < 1e-6).all()
    assert class_index("tench") == 0 and class_index("toilet tissue") == 999


def test_every_prompt_of_the_prompt_set_maps_to_its_class_id():
    for row in imagenet_classes(50, seed=0):
        assert class_index(row["prompt"]) == row["labels"]["class_id"]


def test_unknown_and_ambiguous_names_raise_before_any_cost(verifier, world, monkeypatch):
    before = verifier.cost.as_dict()
    with pytest.raises(ValueError, match=r"'a photo of a tench' is not an ImageNet class name"):
        verifier.score(world["images"][:2], ["tench", "a photo of a tench"])
    # torchvision's current list has no shared names; older ones had "crane" at 134 and 517
    shared = list(NAMES)
    shared[517] = shared[134]
    monkeypatch.setattr(classifier, "imagenet_categories", lambda: tuple(shared))
    with pytest.raises(ValueError, match=re.escape(f"{shared[134]!r} is ambiguous: classes [134, 517]")):
        verifier.score(world["images"][:1], [shared[134]])
    assert class_index("tench") == 0
    assert verifier.cost.as_dict() == before


def test_cost_accounting(world):
    v = ClassifierVerifier(model=ARCH, weights=world["weights"], model_kwargs=SMALL, batch_size=2)
    v.score(world["images"][:5], PROMPTS[:5])
    per_image = v.gflops_per_image(world["images"], PROMPTS)
    assert per_image > 0
    assert v.cost.calls == 1 and v.cost.images == 5
    assert v.cost.gflops == pytest.approx(5 * per_image)
    v.score(world["images"][:3], PROMPTS[:3])
    assert v.cost.calls == 2 and v.cost.images == 8 and v.cost.gflops == pytest.approx(8 * per_image)
    v.score(world["images"][:0], [])
    assert v.cost.calls == 3 and v.cost.images == 8


def test_default_data_config_is_the_models_own(world):
    v = ClassifierVerifier(model=ARCH, weights=world["weights"])
    expected = resolve_data_config({}, model=timm.create_model(ARCH, pretrained=False))
    assert v.data_config == expected and v.data_config["input_size"] == (3, 176, 176)
    scores = v.score(world["images"][:2], PROMPTS[:2])
    assert scores.shape == (2,) and ((scores >= 0) & (scores <= 1)).all()


def test_pth_weights_load_like_safetensors(verifier, world):
    v = ClassifierVerifier(model=ARCH, weights=str(world["root"] / "model.pth"), model_kwargs=SMALL)
    torch.testing.assert_close(v.score(world["images"], PROMPTS), verifier.score(world["images"], PROMPTS))


@pytest.mark.parametrize("mode", ["center", "squash", "border"])
@pytest.mark.parametrize("interpolation", ["bilinear", "bicubic"])
@pytest.mark.parametrize("hw", [(48, 60), (70, 40), (64, 64), (300, 200)])
def test_tensor_preprocessing_agrees_with_timms_pil_transform(mode, interpolation, hw):
    """Upscale, downscale, no resize; every crop mode timm's eval transform has; against timm itself."""
    config = {"input_size": (3, 56, 56), "interpolation": interpolation, "mean": (0.485, 0.456, 0.406),
              "std": (0.229, 0.224, 0.225), "crop_pct": 0.875, "crop_mode": mode}
    rng = np.random.default_rng(0)
    smooth = rng.random((hw[0] // 4 + 1, hw[1] // 4 + 1, 3))  # smooth content, where resamplers agree closely
    uint8 = np.array(Image.fromarray((smooth * 255).astype(np.uint8)).resize((hw[1], hw[0]), Image.BILINEAR))
    expected = create_transform(**config)(Image.fromarray(uint8))
    got = preprocess(torch.from_numpy(uint8).permute(2, 0, 1)[None].float() / 255.0, config)[0]
    assert got.shape == expected.shape == (3, 56, 56)
    diff = (got - expected).abs()  # PIL resamples in 8 bits: about one grey level (0.004 / std) apart
    assert diff.mean() < 0.01 and diff.max() < 0.03, (diff.mean(), diff.max())  # a 1-pixel shift: > 0.07


def test_option_errors(world):
    with pytest.raises(ValueError, match="`weights` is required"):
        build_verifiers({"c": {"kind": "classifier", "model": ARCH}})
    with pytest.raises(ValueError, match="Unknown model"):
        ClassifierVerifier(model="no_such_net", weights=world["weights"])
    with pytest.raises(ValueError, match="do not fit timm model 'resnet18'"):
        ClassifierVerifier(model="resnet18", weights=world["weights"])
    with pytest.raises(FileNotFoundError):
        ClassifierVerifier(model=ARCH, weights=str(world["root"] / "missing.safetensors"))
    with pytest.raises(ValueError, match="pin the revision"):
        ClassifierVerifier(model=ARCH, weights="hf-hub:timm/resnet10t.c3_in1k")
    with pytest.raises(ValueError, match="may not set 'num_classes'"):
        ClassifierVerifier(model=ARCH, weights=world["weights"], model_kwargs={"num_classes": 10})
    with pytest.raises(ValueError, match=r"\(classifier\).*colour"):
        build_verifiers({"c": {"kind": "classifier", "weights": world["weights"], "colour": "red"}})
