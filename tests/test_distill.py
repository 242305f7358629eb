"""Latent consistency distillation of the toy ladder: the student beats its teacher at few steps, its folder is
an offline LCM pipeline, its ledger counts the teacher's and the target's passes, the `lcm` sampler and the
LCM family count one evaluation per step, and validation names a bad `distilled_from`."""

from __future__ import annotations

import json

import pytest
import torch
import yaml
from diffusers import DiffusionPipeline, LatentConsistencyModelPipeline, LCMScheduler, UNet2DConditionModel

from diffscale.cells import Paths, expand
from diffscale.config import load, resolve, study_warnings
from diffscale.errors import ParamsError
from diffscale.estimate import nfe_per_image
from diffscale.metrics import fidelity
from diffscale.models.families import family_of, guidance_inputs
from diffscale.models.flops import count_flops, flop_counter
from diffscale.sampling.block import sample_pixels
from diffscale.sampling.loop import CountingDenoiser, denoise, initial_noise
from diffscale.sampling.samplers import SAMPLERS, make_scheduler
from diffscale.search import ALGORITHMS
from diffscale.seeds import derive_seed
from diffscale.toyworld import scenes
from diffscale.toyworld.distill import GUIDANCE_EMBEDDING, guidance_embedding

STUDENT, TEACHER = "toy-w8-lcm", "toy-w8"


@pytest.fixture
def smoke(repo):
    return yaml.safe_load((repo / "config" / "smoke.yaml").read_text())


@pytest.fixture(scope="module")
def smoke_params(repo):
    return load(repo / "config" / "smoke.yaml")


@pytest.fixture(scope="module")
def models(smoke_run, smoke_params):
    return smoke_run / Paths.of(smoke_params).model(STUDENT).parent


# -- validation ---------------------------------------------------------------------------------------------


def test_a_student_takes_its_teachers_width_and_embeds_guidance(smoke_params):
    student = smoke_params["models"][STUDENT]
    assert student["width"] == smoke_params["models"][TEACHER]["width"] and student["guidance"] == "embedded"
    cell = next(c for c in expand(smoke_params) if c.model == STUDENT and c.steps == 4)
    assert nfe_per_image(smoke_params, cell) == 4  # one evaluation per step at guidance 3: no CFG pair


@pytest.mark.parametrize("teacher", ["toy-w99", "toy-flow-w8", "real", "toy-w8-lcm"])
def test_a_bad_teacher_is_named_with_the_allowed_ones(smoke, teacher):
    smoke["models"]["real"] = {"source": "hf", "repo": "org/name", "revision": "0" * 40}
    smoke["models"]["other-lcm"] = {"source": "toy", "distilled_from": teacher}
    with pytest.raises(ParamsError) as error:
        resolve(smoke)
    assert (f"models.other-lcm.distilled_from: {teacher!r} is not a toy v-prediction model of this study; "
            "allowed: ['toy-w8', 'toy-w16']") in str(error.value)


def test_a_student_states_neither_width_nor_classifier_free_guidance(smoke):
    smoke["models"][STUDENT] |= {"width": 16, "guidance": "classifier-free"}
    with pytest.raises(ParamsError) as error:
        resolve(smoke)
    assert f"models.{STUDENT}.width: a distilled toy model takes its teacher's width" in str(error.value)
    assert f"models.{STUDENT}.guidance: a distilled toy model takes the guidance scale as an input; allowed value: " \
           "'embedded'" in str(error.value)


def test_a_real_models_distilled_from_is_a_label(smoke):
    smoke["models"]["lcm-dreamshaper"] = {"source": "hf", "repo": "org/name", "revision": "0" * 40,
                                          "distilled_from": "dreamshaper-7", "guidance": "embedded"}
    assert resolve(smoke)["models"]["lcm-dreamshaper"]["distilled_from"] == "dreamshaper-7"


@pytest.mark.parametrize("model, sampler, fits", [(STUDENT, "ddim", ["lcm"]), (TEACHER, "lcm", ["ddim", "ddpm"])])
def test_lcm_samples_students_and_only_them(smoke, model, sampler, fits):
    smoke["grids"] = [{"models": [model], "samplers": [sampler], "steps": [2], "guidance": [3.0],
                       "prompt_sets": ["toy-captions"]}]
    with pytest.raises(ParamsError) as error:
        resolve(smoke)
    assert f"grids.0.samplers: {sampler!r} cannot sample {model!r}" in str(error.value)
    assert all(name in str(error.value) for name in fits)


def test_a_guidance_scale_the_students_never_saw_is_warned(smoke):
    smoke["grids"].append({"models": [STUDENT], "samplers": ["lcm"], "steps": [2], "guidance": [3.0, 6.0],
                           "prompt_sets": ["toy-captions"]})
    warnings = study_warnings(resolve(smoke))
    assert [w for w in warnings if "distillation" in w] == [
        f"grids.{len(smoke['grids']) - 1}.guidance: 6.0 is outside toyworld.distillation.guidance [1.5, 4.0], the "
        "scales the distilled models were trained for"]


def test_search_over_paths_refuses_lcm_by_name_and_random_search_takes_it(smoke):
    """LCM's step depends on its position in the schedule, not on (t, x_t) alone: it cannot resume mid-way."""
    grid = {"models": [STUDENT], "samplers": ["lcm"], "steps": [4], "guidance": [3.0], "prompt_sets": ["toy-captions"]}
    smoke["grids"] = [grid | {"search": {"algorithms": ["random", "fk-steering"], "verifiers": ["oracle"], "budgets": [2]}}]
    resolve(smoke)
    smoke["grids"] = [grid | {"search": {"algorithms": ["paths"], "verifiers": ["oracle"], "budgets": [2]}}]
    with pytest.raises(ParamsError, match=r"grids.0.samplers: paths search needs a resumable sampler, not 'lcm'"):
        resolve(smoke)


# -- the distilled folder and its ledger -----------------------------------------------------------------------


@pytest.mark.engine  # reads the shared cold run of the smoke study
def test_the_student_loads_offline_as_an_lcm_pipeline(models, smoke_params):
    pipeline = DiffusionPipeline.from_pretrained(models / STUDENT, local_files_only=True)
    assert isinstance(pipeline, LatentConsistencyModelPipeline) and isinstance(pipeline.scheduler, LCMScheduler)
    assert pipeline.unet.config.time_cond_proj_dim == GUIDANCE_EMBEDDING
    recipe = smoke_params["toyworld"]["distillation"]
    config = pipeline.scheduler.config
    assert config.original_inference_steps == config.num_train_timesteps // recipe["skip"]
    assert config.prediction_type == "v_prediction" and config.rescale_betas_zero_snr
    family = family_of(pipeline)
    assert family.name == "lcm" and family.embedded_guidance(pipeline)
    # The guidance input moves the output: the student learned to read it.
    x, t = torch.randn(2, *family.latent_shape(pipeline), generator=torch.Generator().manual_seed(0)), torch.tensor([999, 999])
    with torch.no_grad():
        cond, _ = family.encode(pipeline, [{"prompt": "a red cube"}] * 2, torch.device("cpu"))
        low, high = (pipeline.unet(x, t, timestep_cond=guidance_embedding(torch.full((2,), s)), **cond).sample
                     for s in recipe["guidance"])
    assert not torch.allclose(low, high)


@pytest.mark.engine  # reads the shared cold run of the smoke study
def test_the_ledger_counts_the_student_the_teachers_cfg_pair_and_the_target(models, smoke_params):
    """One distillation step: the student's forward and backward pass, the teacher's forward pass on the
    conditional and unconditional batch, the EMA target's forward pass (the target has the student's shape)."""
    ledger = json.loads((models / STUDENT / "training-ledger.json").read_text())
    recipe = smoke_params["toyworld"]["distillation"]
    assert ledger["steps"] == recipe["steps"] and ledger["batch_size"] == recipe["batch_size"]
    assert ledger["training_flops"] == ledger["flops_per_step"] * ledger["steps"]
    assert "teacher" in ledger["counted"] and "target" in ledger["counted"]
    student = UNet2DConditionModel.from_pretrained(models / STUDENT / "unet")
    teacher = UNet2DConditionModel.from_pretrained(models / TEACHER / "unet")
    pipeline = DiffusionPipeline.from_pretrained(models / STUDENT, local_files_only=True)
    batch = recipe["batch_size"]
    with torch.no_grad():
        context = pipeline.encode_prompt(["a red cube"] * batch, "cpu", 1, False)[0]
    x, t, scales = torch.randn(batch, 4, 8, 8), torch.full((batch,), 999), torch.full((batch,), 3.0)

    def student_pass():
        return student(x, t, timestep_cond=guidance_embedding(scales), encoder_hidden_states=context).sample

    with torch.no_grad():
        teacher_pair = count_flops(lambda: teacher(torch.cat([x, x]), torch.cat([t, t]),
                                                   encoder_hidden_states=torch.cat([context, context])))
        target = count_flops(student_pass)
    counter = flop_counter()
    with counter:
        student_pass().sum().backward()
    trained = counter.get_total_flops()
    assert ledger["flops_per_step"] == trained + teacher_pair + target
    assert ledger["parameters"] == sum(p.numel() for p in student.parameters())


# -- sampling: the lcm sampler and the LCM family ---------------------------------------------------------------


@pytest.mark.engine  # reads the shared cold run of the smoke study
def test_lcm_counts_one_evaluation_per_step_in_every_smoke_ledger(smoke_run, smoke_params):
    cells = [c for c in expand(smoke_params) if c.model == STUDENT]
    assert sorted(c.steps for c in cells) == [1, 2, 4]
    for cell in cells:
        ledger = json.loads((smoke_run / Paths.of(smoke_params).samples(cell) / "ledger.json").read_text())
        assert ledger["nfe_per_image"] == ledger["nfe_per_image_expected"] == nfe_per_image(smoke_params, cell) == cell.steps
        assert ledger["nfe_per_image_nocfg"] == cell.steps
        assert ledger["gflops_per_image"] == pytest.approx(ledger["gflops_per_nfe"] * cell.steps)
    assert SAMPLERS["lcm"].evaluations(4) == 4


@pytest.mark.engine  # reads the shared cold run of the smoke study
def test_the_smoke_tables_know_the_student_and_charge_it_its_teachers_training(smoke_run, smoke_params):
    """What the report's distilled-vs-undistilled section and training-compute view read."""
    import pandas as pd

    paths = Paths.of(smoke_params)
    metrics = pd.read_csv(smoke_run / paths.metrics, keep_default_na=False)
    assert set(metrics.loc[metrics["model"] == STUDENT, "distilled_from"]) == {TEACHER}
    assert set(metrics.loc[metrics["model"] != STUDENT, "distilled_from"]) == {""}
    training = pd.read_csv(smoke_run / paths.training).set_index("model")
    own = json.loads((smoke_run / paths.model(STUDENT) / "training-ledger.json").read_text())["training_flops"]
    assert training.loc[STUDENT, "distillation_flops"] == pytest.approx(own)
    assert training.loc[STUDENT, "training_flops"] == pytest.approx(own + training.loc[TEACHER, "training_flops"])


@pytest.mark.engine  # reads the shared cold run of the smoke study
def test_the_lcm_family_reproduces_the_pipeline_and_counts_its_calls(models):
    """The family's conditioning, guidance embedding, scheduler and decoding give diffusers' own
    LatentConsistencyModelPipeline images from the same latents and per-image generators, with one backbone
    call per step (no CFG pair)."""
    pipeline = DiffusionPipeline.from_pretrained(models / STUDENT, local_files_only=True)
    family = family_of(pipeline)
    prompts, seeds, steps, guidance = [{"prompt": "a red cube"}, {"prompt": "a blue ball left of a green cone"}], [3, 4], 4, 3.0
    calls = []
    handle = pipeline.unet.register_forward_hook(lambda module, args, output: calls.append(output.sample.shape[0]))
    try:
        with torch.no_grad():
            cond, uncond = family.encode(pipeline, prompts, torch.device("cpu"))
            cond, uncond, loop_guidance = guidance_inputs(family, pipeline, cond, uncond, guidance)
            assert loop_guidance == 1.0 and cond["timestep_cond"].shape == (2, GUIDANCE_EMBEDDING)
            noise, generators = initial_noise(seeds, family.latent_shape(pipeline), "cpu")
            denoiser = CountingDenoiser(family.backbone(pipeline), call=family.call)
            trajectory = denoise(denoiser, make_scheduler("lcm", pipeline.scheduler.config), noise, cond, uncond,
                                 loop_guidance, steps, generators=generators, keep_x0=True)
            ours = family.decode(pipeline, trajectory.latents)
    finally:
        handle.remove()
    assert calls == [2] * steps and denoiser.nfe == 2 * steps
    same_noise, same_generators = initial_noise(seeds, family.latent_shape(pipeline), "cpu")
    theirs = pipeline([p["prompt"] for p in prompts], num_inference_steps=steps, guidance_scale=guidance,
                      latents=same_noise, generator=same_generators, output_type="pt").images
    torch.testing.assert_close(ours, theirs, rtol=0, atol=1e-5)
    # The last step returns the consistency function's x0, which is also the step's x0 prediction.
    torch.testing.assert_close(trajectory.x0_predictions[-1], trajectory.latents)


@pytest.mark.engine  # reads the shared cold run of the smoke study
def test_random_search_on_the_student_counts_one_evaluation_per_step_and_candidate(models):
    from diffscale.search import SearchProblem

    pipeline = DiffusionPipeline.from_pretrained(models / STUDENT, local_files_only=True)
    family = family_of(pipeline)
    with torch.no_grad():
        cond, uncond = family.encode(pipeline, [{"prompt": "a red cube"}, {"prompt": "a blue ball"}], torch.device("cpu"))
    cond, uncond, guidance = guidance_inputs(family, pipeline, cond, uncond, 3.0)

    class Brightness:
        cost = None
        needs_intermediate = False

        def score(self, images, prompts, *, groups=None, intermediate=None):
            return images.float().mean((1, 2, 3))

    problem = SearchProblem(
        denoiser=CountingDenoiser(family.backbone(pipeline), family.call), stochastic=True, steps=2, guidance=guidance,
        make_scheduler=lambda: make_scheduler("lcm", pipeline.scheduler.config), cond=cond, uncond=uncond,
        seeds=[5, 6], prompts=["a red cube", "a blue ball"], shape=family.latent_shape(pipeline),
        decode=lambda latents: family.decode(pipeline, latents), verifier=Brightness())
    with torch.no_grad():
        result = ALGORITHMS["random"].run(problem, 3, {})
    assert problem.denoiser.nfe == 2 * 3 * 2  # 2 slots x 3 candidates x 2 steps
    assert result.chosen == [max(range(3), key=h["candidate_scores"].__getitem__) for h in result.history]


# -- what distillation buys ---------------------------------------------------------------------------------------

# Images per model in the FID comparison: the smoke study's 24 captions are too few to rank two models.
FID_IMAGES = 512


def _smoke_fid(smoke_run, smoke_params, model: str, sampler: str, steps: int) -> float:
    """FID (the smoke study's: toy-oracle features) of `model` at `steps`, guidance 3, on FID_IMAGES captions
    drawn like the data, against as many fresh real images; the same prompts and seeds for every model."""
    paths = Paths.of(smoke_params)
    oracle = str(smoke_run / paths.component("oracle"))
    pair_probability = smoke_params["toyworld"]["dataset"]["pair_probability"]
    real, _, _ = scenes.sample_dataset(FID_IMAGES, derive_seed(0, "test_distill", "real"), pair_probability)
    _, _, captions = scenes.sample_dataset(FID_IMAGES, derive_seed(0, "test_distill", "prompts"), pair_probability)
    pipeline = DiffusionPipeline.from_pretrained(smoke_run / paths.model(model), local_files_only=True)
    images = sample_pixels(pipeline, captions, sampler, steps, 3.0,
                           [derive_seed(0, "test_distill", i) for i in range(FID_IMAGES)])
    reference = fidelity.fid_features_to_statistics(fidelity.extract_features(real, fidelity.TOY_EXTRACTOR, oracle))
    return fidelity.fid(fidelity.extract_features(images, fidelity.TOY_EXTRACTOR, oracle), reference)


@pytest.mark.engine  # reads the shared cold run of the smoke study
def test_the_student_beats_its_teacher_at_two_steps(smoke_run, smoke_params):
    """Distillation did something: at 2 steps the LCM student (1 evaluation per step) has a lower FID than its
    teacher with DDIM (a CFG pair per step). Not at 4: in the smoke world the teacher's DDIM has converged by
    4 steps (its FID at 4 and 8 steps differ by under 1%), so no few-step student can beat it there; in the
    default world the student wins at 4 steps too (benchmarks/README.md). Not at 1 either: DDIM's single
    step (leading spacing) is at t = 1, from pure noise, which any student beats."""
    student = _smoke_fid(smoke_run, smoke_params, STUDENT, "lcm", 2)
    teacher = _smoke_fid(smoke_run, smoke_params, TEACHER, "ddim", 2)
    assert student < teacher, f"2 steps: student FID {student:.4f}, teacher {teacher:.4f}"
