"""Pipeline families on tiny random pipelines of the real classes: SD 1.x, SDXL, DiT, FLUX, SD3, PixArt-Sigma.

Each pipeline is saved in diffusers format (safetensors) and reloaded through the zoo, so the test sees
what a real local model folder gives: family detection, conditioning shapes, the sampling loop with CFG
(or FLUX's embedded guidance) and an exact NFE count, x0 predictions, decoding, and the backbone's cost on
real and meta devices. Tokenizers are fitted to the captions here, so nothing comes from the hub.
"""

from __future__ import annotations

import json
from types import SimpleNamespace

import pytest
import torch
from diffusers import (
    AutoencoderKL,
    DDIMScheduler,
    DiTPipeline,
    DiTTransformer2DModel,
    DPMSolverMultistepScheduler,
    FlowMatchEulerDiscreteScheduler,
    FluxPipeline,
    FluxTransformer2DModel,
    PixArtSigmaPipeline,
    PixArtTransformer2DModel,
    PNDMScheduler,
    SD3Transformer2DModel,
    StableDiffusion3Pipeline,
    StableDiffusionPipeline,
    StableDiffusionXLPipeline,
    UNet2DConditionModel,
)
from diffusers.models.attention_processor import Attention, AttnProcessor, AttnProcessor2_0
from diffusers.pipelines.flux.pipeline_flux import calculate_shift
from tokenizers import Tokenizer, models, pre_tokenizers, trainers
from transformers import (
    CLIPTextConfig,
    CLIPTextModel,
    CLIPTextModelWithProjection,
    T5Config,
    T5EncoderModel,
    T5Tokenizer,
)

from diffscale.models import gpu
from diffscale.models.families import family_of, guidance_inputs
from diffscale.models.flops import backbone_gflops_per_nfe
from diffscale.models.zoo import load_pipeline
from diffscale.sampling.loop import CountingDenoiser, denoise, take
from diffscale.sampling.samplers import make_scheduler
from diffscale.search import ALGORITHMS, SearchProblem
from diffscale.toyworld.denoiser import SD_SCHEDULE
from diffscale.toyworld.text import fit_tokenizer

CAPTIONS = ["a red cube", "a blue ball", "two green cones on the left"]
ID2LABEL = {0: "tabby, tabby cat", 1: "white shark", 2: "umbrella"}
# The published schedulers of FLUX.1-dev (resolution-dependent shift) and SD3 (static shift 3).
# The scheduler config Stable Diffusion 1.5 ships (scheduler/scheduler_config.json): PNDM, no `timestep_spacing`.
SD15_SHIPPED_SCHEDULE = dict(beta_end=0.012, beta_schedule="scaled_linear", beta_start=0.00085, num_train_timesteps=1000,
                             set_alpha_to_one=False, skip_prk_steps=True, steps_offset=1, trained_betas=None,
                             clip_sample=False)
FLUX_DEV_SCHEDULE = dict(base_image_seq_len=256, base_shift=0.5, max_image_seq_len=4096, max_shift=1.15,
                         num_train_timesteps=1000, shift=3.0, use_dynamic_shifting=True)
SD3_SCHEDULE = dict(num_train_timesteps=1000, shift=3.0)
FLOW = {"flux", "sd3"}  # flow-matching families (velocity output)


def _vae(latent_channels=4, **factors):
    return AutoencoderKL(in_channels=3, out_channels=3, down_block_types=("DownEncoderBlock2D",) * 2,
                         up_block_types=("UpDecoderBlock2D",) * 2, block_out_channels=(8, 8), layers_per_block=1,
                         latent_channels=latent_channels, norm_num_groups=8, sample_size=16, **factors)


def _vae16(scaling_factor, shift_factor):
    """The 16-channel latent space of SD3 and FLUX, with their published latent scale and shift."""
    return _vae(16, scaling_factor=scaling_factor, shift_factor=shift_factor)


def t5_tokenizer(captions: list[str]) -> T5Tokenizer:
    """A sentencepiece-style unigram vocabulary learned from the captions, in T5's tokenizer class
    (pad 0, end of sequence 1, unknown 2, as T5's), saved and reloaded from its tokenizer.json offline."""
    unigram = Tokenizer(models.Unigram())
    unigram.pre_tokenizer = pre_tokenizers.Metaspace(replacement="\u2581", prepend_scheme="always")
    trainer = trainers.UnigramTrainer(vocab_size=64, special_tokens=["<pad>", "</s>", "<unk>"], unk_token="<unk>",
                                      show_progress=False)
    unigram.train_from_iterator(sorted(set(captions)), trainer)
    vocab = [tuple(piece) for piece in json.loads(unigram.to_str())["model"]["vocab"]]
    return T5Tokenizer(vocab=vocab, extra_ids=0)


def _t5(tokenizer, width):
    config = T5Config(vocab_size=len(tokenizer), d_model=width, d_kv=8, d_ff=2 * width, num_layers=1, num_heads=2,
                      relative_attention_num_buckets=8, pad_token_id=tokenizer.pad_token_id,
                      eos_token_id=tokenizer.eos_token_id, decoder_start_token_id=tokenizer.pad_token_id)
    return T5EncoderModel(config).eval()


def _text_encoder(tokenizer, cls=CLIPTextModel, **extra):
    ids = {name: tokenizer.convert_tokens_to_ids(token) for name, token in
           (("bos_token_id", "<|startoftext|>"), ("eos_token_id", "<|endoftext|>"), ("pad_token_id", "<|endoftext|>"))}
    config = CLIPTextConfig(vocab_size=len(tokenizer), hidden_size=16, intermediate_size=32, num_hidden_layers=2,
                            num_attention_heads=2, max_position_embeddings=tokenizer.model_max_length, **ids, **extra)
    return cls(config).eval()


def _sd(tokenizer):
    unet = UNet2DConditionModel(sample_size=8, in_channels=4, out_channels=4, layers_per_block=1, block_out_channels=(8, 16),
                                down_block_types=("CrossAttnDownBlock2D", "DownBlock2D"),
                                up_block_types=("UpBlock2D", "CrossAttnUpBlock2D"),
                                cross_attention_dim=16, attention_head_dim=(1, 2), norm_num_groups=8)
    return StableDiffusionPipeline(vae=_vae(), text_encoder=_text_encoder(tokenizer), tokenizer=tokenizer, unet=unet,
                                   scheduler=DDIMScheduler.from_config(SD_SCHEDULE), safety_checker=None,
                                   feature_extractor=None, requires_safety_checker=False)


def _sdxl(tokenizer):
    # SDXL layout: no attention at the first stage, "text_time" added conditioning (pooled text + 6 time ids).
    unet = UNet2DConditionModel(sample_size=8, in_channels=4, out_channels=4, layers_per_block=1, block_out_channels=(8, 16),
                                down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"),
                                up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"), transformer_layers_per_block=(1, 2),
                                attention_head_dim=(1, 2), use_linear_projection=True, cross_attention_dim=32,
                                addition_embed_type="text_time", addition_time_embed_dim=4,
                                projection_class_embeddings_input_dim=6 * 4 + 8, norm_num_groups=8)
    return StableDiffusionXLPipeline(vae=_vae(), text_encoder=_text_encoder(tokenizer), tokenizer=tokenizer,
                                     text_encoder_2=_text_encoder(tokenizer, CLIPTextModelWithProjection, projection_dim=8),
                                     tokenizer_2=tokenizer, unet=unet, scheduler=DDIMScheduler.from_config(SD_SCHEDULE),
                                     add_watermarker=False)


def _dit(tokenizer):
    transformer = DiTTransformer2DModel(num_attention_heads=2, attention_head_dim=8, in_channels=4, out_channels=8,
                                        num_layers=2, sample_size=8, patch_size=2, num_embeds_ada_norm=len(ID2LABEL))
    pipeline = DiTPipeline(transformer=transformer, vae=_vae(), scheduler=DDIMScheduler.from_config(SD_SCHEDULE),
                           id2label=ID2LABEL)
    pipeline.register_to_config(id2label=ID2LABEL)  # the hub's DiT folders carry id2label in model_index.json
    return pipeline


def _flux_transformer(guidance_embeds, width=16):
    # Two heads of 16: the rotary axes (text index, row, column) split the head's 16 dimensions 4 + 6 + 6.
    return FluxTransformer2DModel(patch_size=1, in_channels=64, num_layers=1, num_single_layers=1, attention_head_dim=16,
                                  num_attention_heads=2, joint_attention_dim=width, pooled_projection_dim=width,
                                  guidance_embeds=guidance_embeds, axes_dims_rope=(4, 6, 6))


def _flux(tokenizer):
    """FLUX.1-dev in miniature: guidance embeddings, dynamic shifting, CLIP pooled + T5 states."""
    t5 = t5_tokenizer(CAPTIONS)
    return FluxPipeline(scheduler=FlowMatchEulerDiscreteScheduler(**FLUX_DEV_SCHEDULE),
                        vae=_vae16(scaling_factor=0.3611, shift_factor=0.1159), text_encoder=_text_encoder(tokenizer),
                        tokenizer=tokenizer, text_encoder_2=_t5(t5, 16), tokenizer_2=t5,
                        transformer=_flux_transformer(guidance_embeds=True))


def _sd3(tokenizer):
    """SD3.5 Medium in miniature (MMDiT-X: dual attention in the first layer, RMS-normed q/k): CLIP-L and
    CLIP-G of width 16 (pooled 2 x 8), T5 of width 32 = the two CLIPs' states side by side."""
    clip = {"cls": CLIPTextModelWithProjection, "projection_dim": 8}
    transformer = SD3Transformer2DModel(sample_size=8, patch_size=2, in_channels=16, num_layers=2, attention_head_dim=8,
                                        num_attention_heads=2, joint_attention_dim=32, caption_projection_dim=16,
                                        pooled_projection_dim=16, out_channels=16, pos_embed_max_size=8,
                                        dual_attention_layers=(0,), qk_norm="rms_norm")
    t5 = t5_tokenizer(CAPTIONS)
    return StableDiffusion3Pipeline(transformer=transformer, scheduler=FlowMatchEulerDiscreteScheduler(**SD3_SCHEDULE),
                                    vae=_vae16(scaling_factor=1.5305, shift_factor=0.0609),
                                    text_encoder=_text_encoder(tokenizer, **clip), tokenizer=tokenizer,
                                    text_encoder_2=_text_encoder(tokenizer, **clip), tokenizer_2=tokenizer,
                                    text_encoder_3=_t5(t5, 32), tokenizer_3=t5)


def _pixart(tokenizer):
    """PixArt-Sigma in miniature: T5 states with their mask, learned sigma (8 output channels), DPM-Solver++."""
    transformer = PixArtTransformer2DModel(num_attention_heads=2, attention_head_dim=8, in_channels=4, out_channels=8,
                                           num_layers=2, norm_num_groups=8, cross_attention_dim=16, sample_size=8,
                                           patch_size=2, caption_channels=16, use_additional_conditions=False)
    t5 = t5_tokenizer(CAPTIONS)
    return PixArtSigmaPipeline(tokenizer=t5, text_encoder=_t5(t5, 16), vae=_vae(), transformer=transformer,
                               scheduler=DPMSolverMultistepScheduler(beta_start=0.0001, beta_end=0.02,
                                                                     beta_schedule="linear"))


BUILDERS = {"sd": _sd, "sdxl": _sdxl, "dit": _dit, "flux": _flux, "sd3": _sd3, "pixart": _pixart}


@pytest.fixture(scope="module")
def folders(tmp_path_factory):
    tokenizer = fit_tokenizer(CAPTIONS, max_length=8)
    out = {}
    for name, build in BUILDERS.items():
        torch.manual_seed(0)
        out[name] = tmp_path_factory.mktemp(name)
        build(tokenizer).save_pretrained(out[name], safe_serialization=True)
    return out


@pytest.fixture(scope="module")
def pipelines(folders):
    loaded = {name: load_pipeline(folder, torch.device("cpu")) for name, folder in folders.items()}
    # FluxPipeline hard-codes its native size (default_sample_size = 128 latent pixels, 4096 tokens); the
    # tiny one samples 8 x 8 latent pixels (16 tokens of 2 x 2 x 16), a 16 x 16 image.
    loaded["flux"].default_sample_size = 8
    return loaded


def prompts(name):
    if name == "dit":
        return [{"id": 0, "prompt": "white shark", "labels": {}}, {"id": 1, "prompt": "anything", "labels": {"class_id": 2}}]
    return [{"id": i, "prompt": p, "labels": {}} for i, p in enumerate(CAPTIONS[:2])]


LATENT_SHAPES = {"sd": (4, 8, 8), "sdxl": (4, 8, 8), "dit": (4, 8, 8), "pixart": (4, 8, 8), "sd3": (16, 8, 8),
                 "flux": (16, 64)}  # FLUX: 4 x 4 packed tokens of 2 x 2 x 16 latent values


def sample(pipeline, family, cond, uncond, guidance, steps, noise, keep_x0=False):
    """The sampling loop as a cell runs it: the family's call, guidance inputs and schedule options."""
    denoiser = CountingDenoiser(family.backbone(pipeline), family.call)
    cond, uncond, guidance = guidance_inputs(family, pipeline, cond, uncond, guidance)
    options = family.schedule_options(pipeline, noise.shape[1:], steps)
    trajectory = denoise(denoiser, pipeline.scheduler, noise, cond, uncond, guidance, steps, keep_x0=keep_x0,
                         schedule_options=options)
    return denoiser, trajectory


@pytest.mark.parametrize("name", sorted(BUILDERS))
def test_family_samples_decodes_and_costs(pipelines, name):
    pipeline = pipelines[name]
    family = family_of(pipeline)
    assert family.name == name
    with torch.no_grad():
        cond, uncond = family.encode(pipeline, prompts(name), torch.device("cpu"))
    batch, steps = 2, 3
    for c in (cond, uncond):
        leaves = torch.utils._pytree.tree_leaves(c)
        assert leaves and all(x.shape[0] == batch for x in leaves)
    if name == "sdxl":
        assert cond["encoder_hidden_states"].shape == (batch, 8, 32)
        assert cond["added_cond_kwargs"]["text_embeds"].shape == (batch, 8)
        assert cond["added_cond_kwargs"]["time_ids"].tolist() == [[16, 16, 0, 0, 16, 16]] * batch
    if name == "dit":
        assert cond["class_labels"].tolist() == [1, 2] and uncond["class_labels"].tolist() == [3, 3]
    if name == "flux":  # 512 T5 tokens (FLUX.1-dev), CLIP's pooled output
        assert cond["encoder_hidden_states"].shape == (batch, 512, 16) and cond["pooled_projections"].shape == (batch, 16)
    if name == "sd3":  # CLIP-L | CLIP-G states (8 tokens, 16 + 16 wide) then 256 T5 tokens; pooled 8 + 8
        assert cond["encoder_hidden_states"].shape == uncond["encoder_hidden_states"].shape == (batch, 8 + 256, 32)
        assert cond["pooled_projections"].shape == (batch, 16)
        assert not torch.equal(cond["encoder_hidden_states"][0], uncond["encoder_hidden_states"][0])
    if name == "pixart":  # 300 T5 tokens with the mask of each prompt's own tokens; the null prompt "" is only </s>
        lengths = [len(pipeline.tokenizer(p["prompt"]).input_ids) for p in prompts(name)]
        assert cond["encoder_hidden_states"].shape == (batch, 300, 16)
        assert cond["encoder_attention_mask"].sum(1).tolist() == lengths
        assert uncond["encoder_attention_mask"].sum(1).tolist() == [1, 1]

    backbone = family.backbone(pipeline)
    shape = family.latent_shape(pipeline)
    assert shape == LATENT_SHAPES[name]
    rows = []
    handle = backbone.register_forward_hook(lambda module, args, output: rows.append(output.sample.shape[0]))
    noise = torch.randn(batch, *shape, generator=torch.Generator().manual_seed(0))
    try:
        with torch.no_grad():
            denoiser, trajectory = sample(pipeline, family, cond, uncond, 4.0, steps, noise, keep_x0=True)
    finally:
        handle.remove()
    # FLUX.1-dev takes the guidance scale as an input: one evaluation per step; the others evaluate CFG pairs.
    per_step = 1 if family.embedded_guidance(pipeline) else 2
    assert family.embedded_guidance(pipeline) == (name == "flux")
    assert denoiser.nfe == sum(rows) == per_step * steps * batch
    assert len(trajectory.x0_predictions) == steps
    assert all(x0.shape == (batch, *shape) and torch.isfinite(x0).all() for x0 in trajectory.x0_predictions)
    assert trajectory.latents.shape == (batch, *shape) and torch.isfinite(trajectory.latents).all()

    with torch.no_grad():
        images = family.decode(pipeline, trajectory.latents)
    assert images.shape == (batch, 3, 16, 16) and images.dtype == torch.float32
    assert 0 <= images.min() and images.max() <= 1

    single = take(guidance_inputs(family, pipeline, cond, uncond, 4.0)[0], torch.tensor([0]))
    real = backbone_gflops_per_nfe(backbone, shape, single, call=family.call)
    assert real > 0 and backbone_gflops_per_nfe(backbone, shape, single, meta=True, call=family.call) == real


PIPELINE_CALLS = {  # each pipeline's own __call__ at the family's settings
    "flux": dict(max_sequence_length=512),
    "sd3": dict(max_sequence_length=256),
    "pixart": dict(max_sequence_length=300, clean_caption=False, use_resolution_binning=False),
}


@pytest.mark.parametrize("name", sorted(PIPELINE_CALLS))
def test_family_loop_reproduces_the_pipeline(pipelines, name):
    """The family's conditioning, call, guidance, schedule and decoding give the images of diffusers' own
    pipeline from the same starting latents: the family copies the pipeline, it does not approximate it."""
    pipeline = pipelines[name]
    family = family_of(pipeline)
    steps, guidance = 3, 4.0
    noise = torch.randn(2, *family.latent_shape(pipeline), generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        cond, uncond = family.encode(pipeline, prompts(name), torch.device("cpu"))
        _, trajectory = sample(pipeline, family, cond, uncond, guidance, steps, noise)
        ours = family.decode(pipeline, trajectory.latents)
        theirs = pipeline([p["prompt"] for p in prompts(name)], num_inference_steps=steps, guidance_scale=guidance,
                          height=16, width=16, latents=noise, output_type="pt", **PIPELINE_CALLS[name]).images
    torch.testing.assert_close(ours, theirs, rtol=0, atol=1e-5)


@pytest.mark.parametrize("sampler, scheduler", [("ddim", DDIMScheduler), ("dpmsolver++", DPMSolverMultistepScheduler)])
def test_sd15_shipped_schedule_samples_as_its_pipeline(pipelines, sampler, scheduler):
    """A sampler places its timesteps as the model's config says: with SD 1.5's shipped config (no spacing key, so
    each scheduler's default, leading for DDIM), the loop gives the images of `StableDiffusionPipeline` with that
    scheduler `from_config`, the way its users swap schedulers."""
    pipeline = StableDiffusionPipeline(**pipelines["sd"].components | {"scheduler": PNDMScheduler.from_config(SD15_SHIPPED_SCHEDULE)})
    family, steps, guidance = family_of(pipeline), 4, 5.0
    noise = torch.randn(2, *family.latent_shape(pipeline), generator=torch.Generator().manual_seed(2))
    ours = make_scheduler(sampler, pipeline.scheduler.config)
    with torch.no_grad():
        cond, uncond = family.encode(pipeline, prompts("sd"), torch.device("cpu"))
        latents = denoise(CountingDenoiser(family.backbone(pipeline)), ours, noise, cond, uncond, guidance, steps).latents
        pipeline.scheduler = scheduler.from_config(pipeline.scheduler.config)
        theirs = pipeline([p["prompt"] for p in prompts("sd")], num_inference_steps=steps, guidance_scale=guidance,
                          height=16, width=16, latents=noise.clone(), output_type="pt").images
    assert ours.timesteps.tolist() == pipeline.scheduler.timesteps.tolist()
    if sampler == "ddim":
        assert ours.timesteps.tolist() == [751, 501, 251, 1]  # leading, offset 1: SD's own DDIM schedule
    torch.testing.assert_close(family.decode(pipeline, latents), theirs, rtol=0, atol=1e-5)


def test_flux_schedule_and_guidance_follow_the_pipeline(pipelines):
    pipeline = pipelines["flux"]
    family = family_of(pipeline)
    # FluxPipeline: mu from the image tokens (16 here), and its own sigmas 1 .. 1/steps
    options = family.schedule_options(pipeline, (16, 64), steps=4)
    assert options["mu"] == pytest.approx(calculate_shift(16, 256, 4096, 0.5, 1.15))
    assert options["sigmas"] == pytest.approx([1.0, 0.75, 0.5, 0.25])
    assert family.schedule_options(pipeline, (16, 64)) == {"mu": options["mu"]}

    cond = {"encoder_hidden_states": torch.zeros(3, 5, 16), "pooled_projections": torch.zeros(3, 16)}
    guided, _, loop_guidance = guidance_inputs(family, pipeline, cond, cond, 3.5)
    assert loop_guidance == 1.0 and guided["guidance"].tolist() == [3.5] * 3 and guided["guidance"].dtype == torch.float32
    assert "guidance" not in cond

    # FLUX.1-schnell: no guidance embedding, static shift, and no CFG pair to fall back on
    schnell = FluxPipeline(**{**pipeline.components, "transformer": _flux_transformer(guidance_embeds=False),
                              "scheduler": FlowMatchEulerDiscreteScheduler(shift=1.0)})
    assert not family.embedded_guidance(schnell) and family.schedule_options(schnell, (16, 64)) == {}
    assert guidance_inputs(family, schnell, cond, cond, 1.0) == (cond, cond, 1.0)
    with pytest.raises(ValueError, match="guidance must be 1.0, got 3.5"):
        guidance_inputs(family, schnell, cond, cond, 3.5)
    with torch.no_grad():
        schnell_cond, _ = family.encode(schnell, prompts("flux"), torch.device("cpu"))
    assert schnell_cond["encoder_hidden_states"].shape[1] == 256  # schnell's T5 length


class Brightness:
    """A stand-in verifier (the verifiers' interface): the mean brightness of each image."""

    needs_intermediate = False

    def __init__(self):
        self.cost = SimpleNamespace(calls=0, images=0, gflops=0.0)

    def score(self, images, prompts, *, groups=None, intermediate=None):
        self.cost.calls += 1
        self.cost.images += len(images)
        return images.float().mean((1, 2, 3))


def test_random_search_on_flux_counts_one_evaluation_per_step(pipelines):
    """Best-of-N on the guidance-distilled model: N trajectories of one evaluation per step, no CFG pair."""
    pipeline = pipelines["flux"]
    family = family_of(pipeline)
    with torch.no_grad():
        cond, uncond = family.encode(pipeline, prompts("flux"), torch.device("cpu"))
    cond, uncond, guidance = guidance_inputs(family, pipeline, cond, uncond, 3.5)
    shape, steps = family.latent_shape(pipeline), 3
    problem = SearchProblem(
        denoiser=CountingDenoiser(family.backbone(pipeline), family.call), stochastic=False, steps=steps, guidance=guidance,
        make_scheduler=lambda: FlowMatchEulerDiscreteScheduler.from_config(pipeline.scheduler.config),
        cond=cond, uncond=uncond, seeds=[5, 6], prompts=[p["prompt"] for p in prompts("flux")], shape=shape,
        decode=lambda latents: family.decode(pipeline, latents), verifier=Brightness(),
        schedule_options=family.schedule_options(pipeline, shape, steps),
    )
    budget = 3
    with torch.no_grad():
        result = ALGORITHMS["random"].run(problem, budget, {})
    assert problem.denoiser.nfe == 2 * budget * problem.steps  # 2 slots x budget x steps, guidance embedded
    assert problem.verifier.cost.images == 2 * budget
    assert result.latents.shape == (2, 16, 64) and len(result.chosen) == 2
    best = [max(range(budget), key=h["candidate_scores"].__getitem__) for h in result.history]
    assert result.chosen == best


def test_sdxl_decodes_a_float16_vae_in_float32(pipelines):
    pipeline = pipelines["sdxl"]
    family = family_of(pipeline)
    latents = torch.randn(1, 4, 8, 8)
    with torch.no_grad():
        reference = family.decode(pipeline, latents)
        pipeline.vae.to(torch.float16)
        try:
            assert pipeline.vae.config.force_upcast
            upcast = family.decode(pipeline, latents)
            assert pipeline.vae.dtype == torch.float16  # cast back, as the SDXL pipeline does
        finally:
            pipeline.vae.to(torch.float32)
    # float32 decoding of float16-rounded weights
    assert upcast.dtype == torch.float32 and torch.allclose(upcast, reference, atol=1e-2)


def test_dit_prompt_must_name_an_imagenet_class(pipelines):
    pipeline = pipelines["dit"]
    with pytest.raises(ValueError, match="not an ImageNet label"):
        family_of(pipeline).encode(pipeline, [{"id": 7, "prompt": "a red cube", "labels": {}}], torch.device("cpu"))


def test_configure_sets_sdpa_and_compiles_in_place(folders):
    pipeline = load_pipeline(folders["sd"], torch.device("cpu"))
    backbone = family_of(pipeline).backbone(pipeline)
    backbone.set_attn_processor(AttnProcessor())
    gpu.configure(pipeline, {"dtype": "bfloat16", "compile": "default", "channels_last": True})
    processors = [m.processor for module in (backbone, pipeline.vae) for m in module.modules() if isinstance(m, Attention)]
    assert processors and all(isinstance(p, AttnProcessor2_0) for p in processors)
    assert family_of(pipeline).backbone(pipeline) is backbone and backbone._compiled_call_impl is not None
    assert backbone.dtype == torch.bfloat16 and pipeline.text_encoder.dtype == torch.bfloat16
    with pytest.raises(ValueError, match="unknown GPU options"):
        gpu.configure(pipeline, {"dtyp": "float16"})


@pytest.mark.parametrize("name", ["flux", "pixart", "sd3"])
def test_sdpa_keeps_the_transformers_own_attention(folders, name):
    """SD3's joint attention (text and image streams in one product) must not become plain attention, and
    FLUX's attention modules are not diffusers `Attention` layers: the "sdpa" option leaves both as they are."""
    pipeline = load_pipeline(folders[name], torch.device("cpu"))
    backbone = family_of(pipeline).backbone(pipeline)

    def processors():
        return [type(m.processor).__name__ for m in backbone.modules() if hasattr(m, "processor")]

    before = processors()
    gpu.configure(pipeline, {"attention": "sdpa"})
    assert processors() == before and set(before) == {"flux": {"FluxAttnProcessor"}, "pixart": {"AttnProcessor2_0"},
                                                      "sd3": {"JointAttnProcessor2_0"}}[name]


class FakeOOM:
    """`run` that runs out of memory on batches larger than `limit`."""

    def __init__(self, limit, error=torch.cuda.OutOfMemoryError):
        self.limit, self.error, self.sizes = limit, error, []

    def __call__(self, batch):
        self.sizes.append(len(batch))
        if len(batch) > self.limit:
            raise self.error("CUDA out of memory. Tried to allocate 2.00 GiB")
        return [2 * x for x in batch]


def test_oom_fallback_halves_the_batch_and_keeps_results(caplog):
    run = FakeOOM(limit=3)
    with caplog.at_level("WARNING"):
        out = gpu.batched_with_oom_fallback(run, list(range(10)), batch_size=8)
    assert out == [2 * x for x in range(10)]
    assert run.sizes == [8, 4, 2, 2, 2, 2, 2]
    assert "batch size 8" in caplog.text and "batch size 4" in caplog.text
    assert gpu.batched_with_oom_fallback(FakeOOM(limit=100), list(range(5)), 2) == [0, 2, 4, 6, 8]


def test_oom_fallback_gives_up_at_batch_size_one():
    with pytest.raises(torch.cuda.OutOfMemoryError, match=r"batch size 1 \(batch sizes tried: \[4, 2, 1\]\)"):
        gpu.batched_with_oom_fallback(FakeOOM(limit=0), list(range(4)), batch_size=4)
    # MPS reports out-of-memory as a RuntimeError
    mps = FakeOOM(limit=1, error=lambda msg: RuntimeError("MPS backend out of memory"))
    assert gpu.batched_with_oom_fallback(mps, [1, 2, 3], 3) == [2, 4, 6] and mps.sizes == [3, 1, 1, 1]
    with pytest.raises(KeyError):  # anything else is not swallowed
        gpu.batched_with_oom_fallback(lambda batch: {}[batch[0]], [1], 1)


@pytest.fixture(scope="module")
def tiny_clip(tmp_path_factory):
    """A randomly initialised open_clip model in `local-dir:` format: a real CLIPScore verifier, tiny."""
    import open_clip

    from diffscale.toyworld import clip

    torch.manual_seed(0)
    config = clip.model_config(width=32, layers=1)
    out = tmp_path_factory.mktemp("clip")
    clip.save(open_clip.CLIP(**config).eval(), config, out)
    return out


@pytest.mark.parametrize("name", sorted(BUILDERS))
def test_block_sampler_searches_with_a_verifier_on_every_family(folders, tiny_clip, tmp_path, monkeypatch, name):
    """The whole sampling job on a real pipeline class: a local model entry, search cells, the ledger. Flow
    models sample with the stochastic flow sampler (FK steering needs fresh noise); FLUX.1-dev's guidance is
    an input (one evaluation per step), the others' a CFG pair."""
    from diffscale import prompts as prompt_sets
    from diffscale.cells import Cell, Paths
    from diffscale.config import resolve
    from diffscale.models.hub import prepare_model
    from diffscale.sampling.block import sample_block

    monkeypatch.chdir(tmp_path)
    sampler = "flow-euler-stochastic" if name in FLOW else "ddpm"
    params = resolve({
        "study": "families", "seed": 0, "device": "cpu",
        "models": {name: {"source": "local", "path": str(folders[name])} | ({"guidance": "embedded"} if name == "flux" else {})},
        "prompt_sets": {"p": {"kind": "fetched", "input": "drawbench", "size": 2}},
        "sampling": {"batch_size": 2}, "scoring": {"metrics": []},
        "verifiers": {"clip": {"kind": "clip-score", "model": f"local-dir:{tiny_clip}"}},
        "grids": [{"models": [name], "samplers": [sampler], "steps": [3], "guidance": [2.0], "prompt_sets": ["p"],
                   "search": {"algorithms": ["random", "fk-steering"], "verifiers": ["clip"], "budgets": [2]}}],
    })
    paths = Paths.of(params)
    prepare_model(params["models"][name], paths.model(name))
    prompt_sets.write(paths.prompt_set("p"), prompts(name))
    cells = [Cell(name, sampler, 3, 2.0, "p", search, verifier, budget)
             for search, verifier, budget in (("none", "none", 0), ("random", "clip", 2), ("fk-steering", "clip", 2))]
    for cell in cells:
        sample_block(params, paths.block_of(cell), [cell], paths, progress=False)
        ledger = json.loads((paths.samples(cell) / "ledger.json").read_text())
        records = [json.loads(line) for line in (paths.samples(cell) / "records.jsonl").read_text().splitlines()]
        per_step = 1 if name == "flux" else 2
        assert ledger["nfe_per_image"] == ledger["nfe_per_image_expected"] == per_step * 3 * max(cell.budget, 1)
        assert ledger["nfe_per_image_nocfg"] == 3 * max(cell.budget, 1)
        assert ledger["gflops_per_nfe"] > 0
        assert (ledger["verifier_images"] > 0) == (cell.search != "none")
        assert len(records) == 2 and all((cell.verifier in r["verifier_scores"]) == (cell.search != "none") for r in records)
    plain, searched = (paths.samples(c) / "images" / "00000.png" for c in cells[:2])
    # Random search keeps candidate 0 (the plain image) or a better one by the verifier.
    record = json.loads((paths.samples(cells[1]) / "records.jsonl").read_text().splitlines()[0])
    assert (plain.read_bytes() == searched.read_bytes()) == (record["candidate"] == 0)
