"""The denoising loop: exact NFE counts for every sampler, x0 predictions, per-image reproducibility."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
import torch

from diffscale.sampling import SAMPLERS, CountingDenoiser, denoise, make_scheduler
from diffscale.sampling.loop import initial_noise, x0_prediction
from diffscale.toyworld.denoiser import SD_SCHEDULE
from test_flow import schedule_for


class RowCounter:
    """An independent count of denoiser evaluations: rows seen by a forward hook on the UNet."""

    def __init__(self, unet):
        self.rows = 0
        self.handle = unet.register_forward_hook(self.hook)

    def hook(self, module, args, output):
        self.rows += args[0].shape[0]


def run(unet, sampler, steps, guidance, batch=3, keep_x0=False, seeds=None):
    scheduler = make_scheduler(sampler, schedule_for(sampler))
    seeds = seeds or list(range(batch))
    noise, generators = initial_noise(seeds, (4, 8, 8), "cpu")
    cond = torch.stack([torch.randn(16, 16, generator=torch.Generator().manual_seed(s)) for s in seeds])
    uncond = torch.zeros_like(cond)
    denoiser = CountingDenoiser(unet)
    counter = RowCounter(unet)
    try:
        with torch.no_grad():
            trajectory = denoise(denoiser, scheduler, noise, {"encoder_hidden_states": cond},
                                 {"encoder_hidden_states": uncond}, guidance, steps,
                                 generators=generators if SAMPLERS[sampler].stochastic else None, keep_x0=keep_x0)
    finally:
        counter.handle.remove()
    return denoiser, counter, trajectory, scheduler


@pytest.mark.parametrize("sampler", sorted(SAMPLERS))
@pytest.mark.parametrize("steps", [1, 2, 5])
def test_nfe_equals_the_denoiser_calls_made(tiny_unet, sampler, steps):
    denoiser, counter, _, scheduler = run(tiny_unet, sampler, steps, guidance=3.0)
    assert denoiser.nfe == counter.rows
    per_image = denoiser.nfe / 3
    # CFG pairs count 2; the registry's formula (Heun: a second evaluation on every step but the last).
    evaluations = SAMPLERS[sampler].evaluations(steps)
    assert evaluations == (2 * steps - 1 if sampler in ("heun", "flow-heun") else steps)
    assert per_image == 2 * evaluations
    assert len(scheduler.timesteps) == evaluations


def test_guidance_one_skips_the_unconditional_pass(tiny_unet):
    denoiser, counter, _, _ = run(tiny_unet, "ddim", 4, guidance=1.0)
    assert denoiser.nfe == counter.rows == 3 * 4


@pytest.mark.parametrize("sampler", ["ddim", "ddpm", "euler", "euler-ancestral"])
def test_x0_prediction_matches_the_schedulers_own(tiny_unet, sampler):
    """Our generic x0 (used by search and verifiers) equals what the scheduler computes itself."""
    _, _, trajectory, _ = run(tiny_unet, sampler, 3, guidance=2.0, keep_x0=True)
    scheduler = make_scheduler(sampler, SD_SCHEDULE)
    noise, generators = initial_noise([0, 1, 2], (4, 8, 8), "cpu")
    cond = torch.stack([torch.randn(16, 16, generator=torch.Generator().manual_seed(s)) for s in (0, 1, 2)])
    scheduler.set_timesteps(3)
    latents = noise * scheduler.init_noise_sigma
    t = scheduler.timesteps[0]
    with torch.no_grad():
        inp = scheduler.scale_model_input(torch.cat([latents, latents]), t)
        eps_u, eps_c = tiny_unet(inp, t, encoder_hidden_states=torch.cat([torch.zeros_like(cond), cond])).sample.chunk(2)
    step = scheduler.step(eps_u + 2.0 * (eps_c - eps_u), t, latents, generator=generators)
    assert len(trajectory.x0_predictions) == 3
    torch.testing.assert_close(trajectory.x0_predictions[0], step.pred_original_sample, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("sampler", ["dpmsolver++", "unipc"])
def test_x0_of_multistep_solvers_is_the_one_their_step_computes(tiny_unet, sampler, monkeypatch):
    """Solvers whose step returns no x0 compute it inside `step` (`convert_model_output`); ours must equal it."""
    seen = []
    original = type(make_scheduler(sampler, SD_SCHEDULE)).convert_model_output

    def spy(self, *args, **kwargs):
        seen.append(original(self, *args, **kwargs))
        return seen[-1]

    monkeypatch.setattr(type(make_scheduler(sampler, SD_SCHEDULE)), "convert_model_output", spy)
    _, _, trajectory, _ = run(tiny_unet, sampler, 4, guidance=2.0, keep_x0=True)
    assert len(trajectory.x0_predictions) == len(seen) == 4  # one conversion per step
    for ours, theirs in zip(trajectory.x0_predictions, seen):
        torch.testing.assert_close(ours, theirs, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("prediction_type", ["epsilon", "v_prediction"])
def test_x0_conversion_follows_the_prediction_type(prediction_type):
    """Epsilon and v-prediction checkpoints: the conversion equals DDIM's own x0 for the same output."""
    config = SD_SCHEDULE | {"prediction_type": prediction_type}
    ddim, solver = make_scheduler("ddim", config), make_scheduler("dpmsolver++", config)
    ddim.set_timesteps(10)
    generator = torch.Generator().manual_seed(0)
    sample, output = torch.randn(2, 4, 8, 8, generator=generator), torch.randn(2, 4, 8, 8, generator=generator)
    t = ddim.timesteps[3]
    expected = ddim.step(output, t, sample).pred_original_sample
    torch.testing.assert_close(x0_prediction(solver, SimpleNamespace(), sample, output, t, 3), expected)


def test_x0_refuses_a_prediction_type_it_does_not_know():
    solver = make_scheduler("dpmsolver++", SD_SCHEDULE)
    solver.register_to_config(prediction_type="flow_prediction")
    with pytest.raises(ValueError, match="flow_prediction.*supported"):
        x0_prediction(solver, SimpleNamespace(), torch.zeros(1, 4, 8, 8), torch.zeros(1, 4, 8, 8), 999, 0)


@pytest.mark.parametrize("sampler", ["ddim", "ddpm", "flow-euler-stochastic"])
def test_an_image_does_not_depend_on_its_batch(tiny_unet, sampler):
    """Per-image generators: image 1 is the same alone or beside others (so cells are paired)."""
    _, _, together, _ = run(tiny_unet, sampler, 4, 3.0, seeds=[10, 11, 12])
    _, _, alone, _ = run(tiny_unet, sampler, 4, 3.0, seeds=[11])
    torch.testing.assert_close(together.latents[1:2], alone.latents, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("sampler", ["ddpm", "flow-euler-stochastic"])
def test_same_seeds_give_identical_bytes(tiny_unet, sampler):
    _, _, a, _ = run(tiny_unet, sampler, 3, 3.0)
    _, _, b, _ = run(tiny_unet, sampler, 3, 3.0)
    assert torch.equal(a.latents, b.latents)


def test_unknown_sampler_lists_the_known_ones():
    with pytest.raises(KeyError, match="dpmsolver"):
        make_scheduler("nope", SD_SCHEDULE)


@pytest.mark.parametrize("sampler", ["euler-trailing", "euler-ancestral-trailing"])
def test_turbo_schedules_start_from_pure_noise_with_one_evaluation_per_step(tiny_unet, sampler):
    """SD-Turbo and SDXL-Turbo run 1-4 steps without CFG (diffusers' guidance_scale 0, here guidance 1): the trailing
    schedule's one step is at t = 999 (linspace would put it at t = 0, a step that denoises nothing), each step
    is one evaluation, and the cost estimate counts the same."""
    from diffscale.cells import Cell
    from diffscale.estimate import nfe_per_image

    one_step = make_scheduler(sampler, SD_SCHEDULE)
    one_step.set_timesteps(1)
    linspace = make_scheduler("euler", SD_SCHEDULE)
    linspace.set_timesteps(1)
    assert one_step.timesteps.tolist() == [999] and linspace.timesteps.tolist() == [0]
    denoiser, counter, _, _ = run(tiny_unet, sampler, 4, guidance=1.0)
    assert denoiser.nfe == counter.rows == 3 * 4
    params = {"models": {"sd-turbo": {"source": "hf"}}}
    cell = Cell(model="sd-turbo", sampler=sampler, steps=4, guidance=1.0, search="none", verifier="none", budget=0,
                prompt_set="coco")
    assert nfe_per_image(params, cell) == 4
