"""Search algorithms: NFE formulas by counting denoiser calls, nesting, monotone anytime curves, SMC maths."""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import pytest
import torch

from diffscale.sampling import SAMPLERS, CountingDenoiser, denoise, make_scheduler
from diffscale.sampling.loop import initial_noise
from diffscale.search import ALGORITHMS, SearchProblem, fk_steering, paths
from test_flow import FLUX_OPTIONS, FLUX_SCHEDULE, schedule_for

OPTIONS = {
    "random": {},
    "zero-order": {"radius": 0.5, "neighbours": 2, "restart": "keep"},
    "paths": {"copies": 2, "start": 0.5, "forward": 1, "backward": 2},
    "fk-steering": {"lambda": 10.0, "potential": "difference", "interval": 2, "select": "best"},
}


@dataclass
class Cost:
    calls: int = 0
    images: int = 0
    gflops: float = 0.0


@dataclass
class Brightness:
    """A stand-in verifier with the verifiers' interface: the mean brightness of the image."""

    cost: Cost = field(default_factory=Cost)
    needs_intermediate: bool = False

    def score(self, images, prompts, *, groups=None, intermediate=None):
        assert len(prompts) == len(images)
        self.cost.calls += 1
        self.cost.images += len(images)
        return images.float().mean((1, 2, 3)).cpu()


def decode(latents):
    return torch.sigmoid(latents[:, :3])


def problem(unet, sampler="ddim", steps=4, seeds=(1, 2, 3), guidance=2.0, chunk=256, dynamic=False):
    """`dynamic`: a flow model with FLUX's dynamic shifting (its timesteps need mu); else the sampler's kind."""
    schedule = FLUX_SCHEDULE if dynamic else schedule_for(sampler)
    cond = torch.stack([torch.randn(16, 16, generator=torch.Generator().manual_seed(s)) for s in seeds])
    return SearchProblem(
        denoiser=CountingDenoiser(unet), make_scheduler=lambda: make_scheduler(sampler, schedule),
        stochastic=SAMPLERS[sampler].stochastic, steps=steps, guidance=guidance,
        cond={"encoder_hidden_states": cond}, uncond={"encoder_hidden_states": torch.zeros_like(cond)},
        seeds=list(seeds), prompts=[f"prompt {s}" for s in seeds], shape=(4, 8, 8), decode=decode,
        verifier=Brightness(), chunk=chunk, schedule_options=FLUX_OPTIONS if dynamic else {},
    )


class RowCounter:
    def __init__(self, unet):
        self.rows = 0
        self.handle = unet.register_forward_hook(lambda m, args, out: setattr(self, "rows", self.rows + args[0].shape[0]))


def run(unet, algorithm, budget, **kwargs):
    p = problem(unet, **kwargs)
    counter = RowCounter(unet)
    try:
        with torch.no_grad():
            result = ALGORITHMS[algorithm].run(p, budget, OPTIONS[algorithm])
    finally:
        counter.handle.remove()
    return p, result, counter.rows


def plain(unet, sampler="ddim", steps=4, seeds=(1, 2, 3), guidance=2.0, dynamic=False):
    p = problem(unet, sampler, steps, seeds, guidance, dynamic=dynamic)
    noise, generators = initial_noise(list(seeds), (4, 8, 8), "cpu")
    with torch.no_grad():
        return denoise(p.denoiser, p.make_scheduler(), noise, p.cond, p.uncond, guidance, steps,
                       generators=generators if p.stochastic else None, schedule_options=p.schedule_options).latents


@pytest.mark.parametrize("algorithm,sampler,budget,per_slot_trajectory_steps", [
    ("random", "ddim", 3, 3 * 4),
    ("zero-order", "ddim", 4, 4 * 4),  # pivot + 2 neighbours + 1 neighbour: 4 whole trajectories
    ("fk-steering", "ddpm", 3, 3 * 4),
    # paths, 4 steps, start 2, f=1, b=2: 2 paths x 2 steps, then rounds (1,3) and (2,4) with 2x2 copies x 2 steps
    ("paths", "ddim", 2, 2 * 2 + 4 * 2 + 4 * 2),
    # flow models: the same counts with the flow samplers (flow-heun: 2 x 4 - 1 = 7 evaluations a trajectory)
    ("random", "flow-euler", 3, 3 * 4),
    ("random", "flow-heun", 2, 2 * 7),
    ("zero-order", "flow-euler", 4, 4 * 4),
    ("fk-steering", "flow-euler-stochastic", 3, 3 * 4),
    ("paths", "flow-euler", 2, 2 * 2 + 4 * 2 + 4 * 2),
    ("paths", "flow-euler-stochastic", 2, 2 * 2 + 4 * 2 + 4 * 2),
])
def test_nfe_formula_matches_the_denoiser_calls(tiny_unet, algorithm, sampler, budget, per_slot_trajectory_steps):
    p, result, rows = run(tiny_unet, algorithm, budget, sampler=sampler)
    assert p.denoiser.nfe == rows == 3 * 2 * per_slot_trajectory_steps  # 3 slots, CFG pairs count 2
    # ... which is the registries' formula (what `diffscale estimate` and the ledger check use).
    formula = SAMPLERS[sampler].evaluations(4) * ALGORITHMS[algorithm].trajectories(4, budget, OPTIONS[algorithm])
    assert p.denoiser.nfe == 3 * 2 * formula
    assert result.latents.shape == (3, 4, 8, 8)
    assert len(result.scores) == len(result.chosen) == 3
    assert p.verifier.cost.images > 0


def test_paths_rounds():
    assert paths.rounds(4, 0.5, 1, 2) == (2, [(1, 3), (2, 4)])
    assert paths.rounds(10, 0.5, 2, 3) == (5, [(3, 6), (4, 7), (5, 8), (6, 9), (7, 10)])
    assert paths.rounds(3, 1.0, 1, 2) == (3, [])


@pytest.mark.parametrize("algorithm,sampler", [("random", "ddim"), ("random", "ddpm"), ("fk-steering", "ddpm"),
                                               ("zero-order", "ddim"), ("random", "flow-euler"),
                                               ("fk-steering", "flow-euler-stochastic"), ("zero-order", "flow-heun")])
def test_a_budget_of_one_is_the_no_search_image(tiny_unet, algorithm, sampler):
    _, result, _ = run(tiny_unet, algorithm, 1, sampler=sampler)
    torch.testing.assert_close(result.latents, plain(tiny_unet, sampler), rtol=0, atol=0)


@pytest.mark.parametrize("algorithm,sampler,budget", [("random", "flow-euler", 2), ("zero-order", "flow-euler", 3),
                                                      ("fk-steering", "flow-euler-stochastic", 2),
                                                      ("paths", "flow-euler-stochastic", 2)])
def test_search_on_a_dynamically_shifted_flow_model(tiny_unet, algorithm, sampler, budget):
    """FLUX's schedule reaches every algorithm's scheduler through `schedule_options` (without mu,
    `set_timesteps` raises); NFEs still follow the formula, and a budget of one is the plain image."""
    p, result, rows = run(tiny_unet, algorithm, budget, sampler=sampler, dynamic=True)
    formula = SAMPLERS[sampler].evaluations(4) * ALGORITHMS[algorithm].trajectories(4, budget, OPTIONS[algorithm])
    assert p.denoiser.nfe == rows == 3 * 2 * formula
    if algorithm != "paths":  # paths' first round branches whatever the budget
        _, one, _ = run(tiny_unet, algorithm, 1, sampler=sampler, dynamic=True)
        torch.testing.assert_close(one.latents, plain(tiny_unet, sampler, dynamic=True), rtol=0, atol=0)


def test_random_search_is_nested_and_its_anytime_curve_monotone(tiny_unet):
    results = {n: run(tiny_unet, "random", n)[1] for n in (1, 2, 4)}
    four = [h["candidate_scores"] for h in results[4].history]
    two = [h["candidate_scores"] for h in results[2].history]
    # Budget 2's candidates are budget 4's first two (the same noises; batches of other sizes may round
    # the last float bit differently).
    assert [s[:2] for s in four] == [pytest.approx(s, abs=1e-5) for s in two]
    for smaller, larger in ((1, 2), (2, 4)):
        assert (results[larger].scores >= results[smaller].scores - 1e-5).all()
    assert (results[4].scores > results[1].scores).any()  # search found something better somewhere


def test_zero_order_never_returns_worse_than_its_pivot(tiny_unet):
    _, result, _ = run(tiny_unet, "zero-order", 5)
    pivot = Brightness().score(decode(plain(tiny_unet)), ["p"] * 3)
    assert (result.scores >= pivot).all()
    assert all(len(h["scores"]) == 5 for h in result.history)


def test_images_do_not_depend_on_the_batch(tiny_unet):
    for algorithm, sampler in (("random", "ddim"), ("fk-steering", "ddpm"), ("paths", "ddpm"),
                               ("fk-steering", "flow-euler-stochastic"), ("paths", "flow-euler-stochastic")):
        _, together, _ = run(tiny_unet, algorithm, 2, sampler=sampler, seeds=(1, 2, 3))
        _, alone, _ = run(tiny_unet, algorithm, 2, sampler=sampler, seeds=(2,))
        torch.testing.assert_close(together.latents[1:2], alone.latents, rtol=1e-4, atol=1e-5)


def test_fk_potentials_and_weights_by_hand():
    state = {}
    first = fk_steering.log_potential("difference", 2.0, torch.tensor([0.2, 0.5, 0.1, 0.1]), state)
    torch.testing.assert_close(first, torch.tensor([0.4, 1.0, 0.2, 0.2]))
    second = fk_steering.log_potential("difference", 2.0, torch.tensor([0.3, 0.5, 0.0, 0.4]), state)
    torch.testing.assert_close(second, torch.tensor([0.2, 0.0, -0.2, 0.6]))
    weights = fk_steering.resampling_weights(second, 2)  # two images of two particles each
    e = math.exp
    torch.testing.assert_close(weights, torch.tensor([[e(0.2) / (e(0.2) + 1), 1 / (e(0.2) + 1)],
                                                      [e(-0.2) / (e(-0.2) + e(0.6)), e(0.6) / (e(-0.2) + e(0.6))]]))
    running = {}
    fk_steering.log_potential("max", 1.0, torch.tensor([0.5, 0.1]), running)
    torch.testing.assert_close(fk_steering.log_potential("max", 1.0, torch.tensor([0.2, 0.3]), running),
                               torch.tensor([0.5, 0.3]))


def test_resampling_follows_degenerate_weights():
    weights = torch.tensor([[0.0, 1.0, 0.0], [1.0, 0.0, 0.0]])
    generators = [torch.Generator().manual_seed(0), torch.Generator().manual_seed(1)]
    assert fk_steering.resample(weights, generators).tolist() == [[1, 1, 1], [0, 0, 0]]
