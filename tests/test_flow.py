"""Flow-matching samplers: model kinds, exact x0 on the rectified-flow path, dynamic shifting, resuming and
the forward kernel that search over paths re-noises with."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
import torch

from diffscale.sampling import SAMPLERS, CountingDenoiser, denoise, make_scheduler
from diffscale.sampling.loop import initial_noise, integrate, set_schedule, x0_prediction
from diffscale.sampling.samplers import model_kind
from diffscale.search import paths
from diffscale.toyworld.denoiser import SD_SCHEDULE

# SD3's schedule (a static shift) and FLUX's (dynamic shifting: `set_timesteps` needs mu).
FLOW_SCHEDULE = {"_class_name": "FlowMatchEulerDiscreteScheduler", "num_train_timesteps": 1000, "shift": 3.0}
FLUX_SCHEDULE = FLOW_SCHEDULE | {"use_dynamic_shifting": True, "base_shift": 0.5, "max_shift": 1.15}
FLUX_OPTIONS = {"mu": 0.8}
FLOW_SAMPLERS = [name for name, sampler in SAMPLERS.items() if sampler.serves == "flow"]


def schedule_for(sampler: str) -> dict:
    """A training schedule of the kind of model the sampler serves."""
    return FLOW_SCHEDULE if SAMPLERS[sampler].serves == "flow" else SD_SCHEDULE


class PointVelocity(torch.nn.Module):
    """The exact velocity field when all data is one point x0*: x_t = (1 - sigma) x0* + sigma eps gives
    v = eps - x0* = (x_t - x0*) / sigma, with sigma = t / 1000 (the flow schedulers' timesteps)."""

    def __init__(self, target: torch.Tensor):
        super().__init__()
        self.target = target

    def forward(self, latents, timestep, **cond):
        sigma = (timestep / 1000).view(-1, *[1] * (latents.dim() - 1))
        return SimpleNamespace(sample=(latents - self.target) / sigma)


def test_the_models_kind_comes_from_its_scheduler_config():
    assert model_kind(FLOW_SCHEDULE) == model_kind(FLUX_SCHEDULE) == "flow"
    assert model_kind({"shift": 3.0}) == "flow"  # an in-memory FlowMatch config records no class
    assert model_kind(SD_SCHEDULE) == model_kind({"_class_name": "PNDMScheduler"}) == "diffusion"
    # DPM-Solver's config carries use_dynamic_shifting=False: a diffusion schedule still.
    assert model_kind(dict(make_scheduler("dpmsolver++", SD_SCHEDULE).config)) == "diffusion"


def test_a_sampler_of_the_other_kind_is_refused_by_name():
    with pytest.raises(ValueError, match=r"'ddim' serves diffusion.*FlowMatchEulerDiscreteScheduler.*'flow-euler'"):
        make_scheduler("ddim", FLOW_SCHEDULE)
    with pytest.raises(ValueError, match=r"'flow-heun' serves flow.*PNDMScheduler.*'ddim'"):
        make_scheduler("flow-heun", SD_SCHEDULE | {"_class_name": "PNDMScheduler"})


def test_flow_heun_refuses_a_schedule_it_cannot_shift():
    """FlowMatchHeun has no dynamic shifting: it would sample another schedule than FLUX's."""
    with pytest.raises(ValueError, match=r"'flow-heun'.*use_dynamic_shifting.*'flow-euler'"):
        make_scheduler("flow-heun", FLUX_SCHEDULE)


def test_flow_samplers_keep_the_models_shift():
    scheduler = make_scheduler("flow-euler", FLOW_SCHEDULE)
    set_schedule(scheduler, 4, "cpu")
    # linspace(1000, t_min, 4) / 1000 shifted by s -> s x / (1 + (s - 1) x), s = 3, t_min = 1000 sigma_min(train)
    train_min = 3 * 0.001 / (1 + 2 * 0.001)
    unshifted = torch.linspace(1.0, train_min, 4, dtype=torch.float64)
    torch.testing.assert_close(scheduler.sigmas[:4].double(), 3 * unshifted / (1 + 2 * unshifted), rtol=1e-5, atol=1e-6)
    dynamic = make_scheduler("flow-euler", FLUX_SCHEDULE)
    set_schedule(dynamic, 4, "cpu", FLUX_OPTIONS)
    x = torch.linspace(1.0, 1e-3, 4, dtype=torch.float64)
    torch.testing.assert_close(dynamic.sigmas[:4].double(), torch.exp(torch.tensor(0.8)) / (torch.exp(torch.tensor(0.8)) + (1 / x - 1)),
                               rtol=1e-5, atol=1e-6)


SHIFT, DYNAMIC = (FLOW_SCHEDULE, None), (FLUX_SCHEDULE, FLUX_OPTIONS)


@pytest.mark.parametrize("sampler,steps,schedule", [
    ("flow-euler", 3, SHIFT), ("flow-euler", 5, SHIFT), ("flow-heun", 3, SHIFT), ("flow-euler-stochastic", 4, SHIFT),
    ("flow-euler", 3, DYNAMIC), ("flow-euler-stochastic", 4, DYNAMIC),  # flow-heun refuses dynamic shifting
])
def test_a_perfect_velocity_model_gives_the_data_point_at_every_step(sampler, steps, schedule):
    """x0 = x_t - sigma v is exact for the exact field, and every flow sampler lands on x0* (Euler and the
    stochastic step are exact on a straight path; Heun too); NFEs are the registry's formula."""
    schedule, options = schedule
    target = torch.randn(2, 4, 8, 8, generator=torch.Generator().manual_seed(7))
    denoiser = CountingDenoiser(PointVelocity(target))
    noise, generators = initial_noise([3, 4], (4, 8, 8), "cpu")
    trajectory = denoise(denoiser, make_scheduler(sampler, schedule), noise, {}, {}, 1.0, steps,
                         generators=generators if SAMPLERS[sampler].stochastic else None, keep_x0=True,
                         schedule_options=options)
    assert denoiser.nfe == 2 * SAMPLERS[sampler].evaluations(steps)
    assert len(trajectory.x0_predictions) == SAMPLERS[sampler].evaluations(steps)
    for x0 in trajectory.x0_predictions:
        torch.testing.assert_close(x0, target, rtol=1e-4, atol=1e-4)
    torch.testing.assert_close(trajectory.latents, target, rtol=1e-4, atol=1e-4)


def test_flow_x0_by_hand_and_as_the_stochastic_step_uses_it():
    scheduler = make_scheduler("flow-euler-stochastic", FLOW_SCHEDULE)
    set_schedule(scheduler, 4, "cpu")
    generator = torch.Generator().manual_seed(0)
    sample, velocity = torch.randn(2, 4, 8, 8, generator=generator), torch.randn(2, 4, 8, 8, generator=generator)
    # Step 1 of 4: t = linspace(1000, 1000 sigma_min, 4)[1] / 1000, shifted by 3.
    x = (1000 - (1000 - 1000 * 3 * 0.001 / 1.002) / 3) / 1000
    sigma = 3 * x / (1 + 2 * x)
    ours = x0_prediction(scheduler, SimpleNamespace(), sample, velocity, scheduler.timesteps[1], 1)
    torch.testing.assert_close(ours, sample - sigma * velocity, rtol=1e-5, atol=1e-5)
    # The stochastic step is (1 - sigma') x0 + sigma' eps with eps from the generators: recover its x0.
    scheduler.set_begin_index(1)
    generators = [torch.Generator().manual_seed(s) for s in (5, 6)]
    stepped = scheduler.step(velocity, scheduler.timesteps[1], sample, generator=generators).prev_sample
    eps = torch.stack([torch.randn(4, 8, 8, generator=torch.Generator().manual_seed(s)) for s in (5, 6)])
    following = scheduler.sigmas[2]
    torch.testing.assert_close((stepped - following * eps) / (1 - following), ours, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("sampler", ["flow-euler", "flow-euler-stochastic"])
def test_resumable_flow_samplers_resume_exactly(tiny_unet, sampler):
    """What `resumable` promises search over paths: stopping at step 2 and resuming on a fresh scheduler
    (begin index 2) is the uninterrupted trajectory."""
    noise, _ = initial_noise([1, 2], (4, 8, 8), "cpu")
    cond = {"encoder_hidden_states": torch.randn(2, 16, 16, generator=torch.Generator().manual_seed(0))}
    uncond = {"encoder_hidden_states": torch.zeros(2, 16, 16)}
    stochastic = SAMPLERS[sampler].stochastic

    def scheduler(begin):
        built = make_scheduler(sampler, FLUX_SCHEDULE)
        set_schedule(built, 4, "cpu", FLUX_OPTIONS)
        built.set_begin_index(begin)
        return built

    denoiser = CountingDenoiser(tiny_unet)
    with torch.no_grad():
        generators = initial_noise([1, 2], (4, 8, 8), "cpu")[1] if stochastic else None
        whole = integrate(denoiser, scheduler(0), noise, cond, uncond, 2.0, range(4), generators).latents
        generators = initial_noise([1, 2], (4, 8, 8), "cpu")[1] if stochastic else None
        half = integrate(denoiser, scheduler(0), noise, cond, uncond, 2.0, range(2), generators).latents
        rest = integrate(denoiser, scheduler(2), half, cond, uncond, 2.0, range(2, 4), generators).latents
    torch.testing.assert_close(rest, whole, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("sampler,schedule,options", [("ddim", SD_SCHEDULE, None), ("flow-euler", FLOW_SCHEDULE, None),
                                                      ("flow-euler", FLUX_SCHEDULE, FLUX_OPTIONS)])
def test_the_paths_kernel_keeps_the_forward_marginals(sampler, schedule, options):
    """x_t' = a x_t + b eps maps x_t = s_t x0 + n_t eps to mean s_t' x0 and variance n_t'^2."""
    scheduler = make_scheduler(sampler, schedule)
    set_schedule(scheduler, 6, "cpu", options)
    for position, back_to in ((4, 2), (3, 0), (5, 4)):
        a, b = paths.forward_kernel(scheduler, position, back_to)
        (s, n), (s_back, n_back) = paths.scales(scheduler, position), paths.scales(scheduler, back_to)
        assert a * s == pytest.approx(float(s_back), rel=1e-9)
        assert a**2 * n**2 + b**2 == pytest.approx(float(n_back**2), rel=1e-9)
        assert b > 0


def test_the_flow_kernel_from_clean_data_is_the_schedulers_own_scale_noise():
    scheduler = make_scheduler("flow-euler", FLOW_SCHEDULE)
    set_schedule(scheduler, 5, "cpu")
    generator = torch.Generator().manual_seed(1)
    x0, eps = torch.randn(2, 4, 8, 8, generator=generator), torch.randn(2, 4, 8, 8, generator=generator)
    a, b = paths.forward_kernel(scheduler, 5, 2)  # sigmas[5] = 0: the clean end of the schedule
    theirs = scheduler.scale_noise(x0, scheduler.timesteps[2:3].expand(2), eps)
    torch.testing.assert_close(a * x0 + b * eps, theirs, rtol=1e-5, atol=1e-5)
