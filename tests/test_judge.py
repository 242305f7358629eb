"""The judge: an independent classifier for compositional accuracy (not the oracle that search optimises)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from diffscale.metrics.compositional import per_image
from diffscale.toyworld import judge, oracle, scenes
from diffscale.toyworld.training import to_unit_range

WIDTH, STEPS, BATCH, LR = 8, 200, 32, 3e-3  # ~7 s on 2 cores; colour ~0.8, layout ~1.0 held out


@pytest.fixture(scope="module")
def data():
    train_images, train_labels, _ = scenes.sample_dataset(512, seed=11)
    test_images, test_labels, test_captions = scenes.sample_dataset(256, seed=12)
    return train_images, train_labels, test_images, test_labels, test_captions


@pytest.fixture(scope="module")
def trained(data):
    torch.set_num_threads(2)
    return judge.fit(data[0], data[1], WIDTH, STEPS, BATCH, LR, seed=13)[0]


def test_judge_learns_the_slots(trained, data):
    report = oracle.accuracy(trained, data[2], data[3])
    chance = {slot: 1 / len(classes) for slot, classes in scenes.SLOTS.items()}
    assert report["color1"] > 0.6 and report["color2"] > 0.6, report  # chance 0.25 and 0.2
    assert report["layout"] > chance["layout"] + 0.4, report


def test_judge_works_with_the_compositional_metric(trained, data, tmp_path):
    labels = [scenes.parse_caption(c).labels() for c in data[4][:16]]
    scores = per_image(trained, data[2][:16], labels)
    assert scores["correct"].shape == (16,) and set(np.unique(scores["correct"])) <= {0.0, 1.0}
    assert ((scores["probability"] >= 0) & (scores["probability"] <= 1)).all()
    judge.save(trained, tmp_path / "judge", {"all_slots": 0.5})
    reloaded = judge.load(tmp_path / "judge")
    pixels = to_unit_range(data[2][:16])
    assert torch.equal(torch.stack(reloaded(pixels)[0:1]), torch.stack(trained(pixels)[0:1]))
    assert not reloaded.training


def test_architecture_differs_from_the_oracle():
    shapes = lambda model: [tuple(p.shape) for p in model.parameters()]  # noqa: E731
    judge_shapes, oracle_shapes = shapes(judge.JudgeClassifier(WIDTH)), shapes(oracle.AttributeClassifier(WIDTH))
    assert judge_shapes != oracle_shapes
    weights = lambda s: {shape for shape in s if len(shape) > 1}  # noqa: E731
    assert not weights(judge_shapes) & weights(oracle_shapes), "no weight matrix or kernel in common"
    assert any(isinstance(m, torch.nn.MaxPool2d) for m in judge.JudgeClassifier(WIDTH).modules())


def test_training_is_deterministic_in_the_seed(data):
    images, labels = data[0][:128], data[1][:128]
    a, b = (judge.fit(images, labels, WIDTH, 10, 32, LR, seed=5)[0] for _ in range(2))
    c = judge.fit(images, labels, WIDTH, 10, 32, LR, seed=6)[0]
    assert all(torch.equal(x, y) for x, y in zip(a.state_dict().values(), b.state_dict().values()))
    assert not all(torch.equal(x, y) for x, y in zip(a.state_dict().values(), c.state_dict().values()))
