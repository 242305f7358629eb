"""Pipeline families on tiny random pipelines of the real classes: SD 1.x, SDXL, DiT.

Each pipeline is saved in diffusers format (safetensors) and reloaded through the zoo, so the test sees
what a real local model folder gives: family detection, conditioning shapes, the sampling loop with CFG
and an exact NFE count, x0 predictions, decoding, and the backbone's cost on real and meta devices.
"""

from __future__ import annotations

import json

import pytest
import torch
from diffusers import (AutoencoderKL, DDIMScheduler, DiTPipeline, DiTTransformer2DModel, StableDiffusionPipeline,
                       StableDiffusionXLPipeline, UNet2DConditionModel)
from diffusers.models.attention_processor import Attention, AttnProcessor, AttnProcessor2_0
from transformers import CLIPTextConfig, CLIPTextModel, CLIPTextModelWithProjection

from diffscale.models import gpu
from diffscale.models.families import family_of
from diffscale.models.flops import backbone_gflops_per_nfe
from diffscale.models.zoo import load_pipeline
from diffscale.sampling.loop import CountingDenoiser, denoise, take
from diffscale.toyworld.denoiser import SD_SCHEDULE
from diffscale.toyworld.text import fit_tokenizer

CAPTIONS = ["a red cube", "a blue ball", "two green cones on the left"]
ID2LABEL = {0: "tabby, tabby cat", 1: "white shark", 2: "umbrella"}


def _vae():
    return AutoencoderKL(in_channels=3, out_channels=3, down_block_types=("DownEncoderBlock2D",) * 2,
                         up_block_types=("UpDecoderBlock2D",) * 2, block_out_channels=(8, 8), layers_per_block=1,
                         latent_channels=4, norm_num_groups=8, sample_size=16)


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


BUILDERS = {"sd": _sd, "sdxl": _sdxl, "dit": _dit}


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
    return {name: load_pipeline(folder, torch.device("cpu")) for name, folder in folders.items()}


def prompts(name):
    if name == "dit":
        return [{"id": 0, "prompt": "white shark", "labels": {}}, {"id": 1, "prompt": "anything", "labels": {"class_id": 2}}]
    return [{"id": i, "prompt": p, "labels": {}} for i, p in enumerate(CAPTIONS[:2])]


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

    backbone = family.backbone(pipeline)
    shape = family.latent_shape(pipeline)
    assert shape == (4, 8, 8)
    rows = []
    handle = backbone.register_forward_hook(lambda module, args, output: rows.append(args[0].shape[0]))
    denoiser = CountingDenoiser(backbone)
    noise = torch.randn(batch, *shape, generator=torch.Generator().manual_seed(0))
    try:
        with torch.no_grad():
            trajectory = denoise(denoiser, pipeline.scheduler, noise, cond, uncond, guidance=4.0, steps=steps, keep_x0=True)
    finally:
        handle.remove()
    assert denoiser.nfe == sum(rows) == 2 * steps * batch
    assert len(trajectory.x0_predictions) == steps
    assert all(x0.shape == (batch, *shape) and torch.isfinite(x0).all() for x0 in trajectory.x0_predictions)

    with torch.no_grad():
        images = family.decode(pipeline, trajectory.latents)
    assert images.shape == (batch, 3, 16, 16) and images.dtype == torch.float32
    assert 0 <= images.min() and images.max() <= 1

    single = take(cond, torch.tensor([0]))
    real = backbone_gflops_per_nfe(backbone, shape, single)
    assert real > 0 and backbone_gflops_per_nfe(backbone, shape, single, meta=True) == real


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
    """The whole sampling job on a real pipeline class: a local model entry, search cells, the ledger."""
    from diffscale import prompts as prompt_sets
    from diffscale.cells import Cell, Paths
    from diffscale.config import resolve
    from diffscale.models.hub import prepare_model
    from diffscale.sampling.block import sample_block

    monkeypatch.chdir(tmp_path)
    params = resolve({
        "study": "families", "seed": 0, "device": "cpu", "models": {name: {"source": "local", "path": str(folders[name])}},
        "prompt_sets": {"p": {"kind": "fetched", "input": "drawbench", "size": 2}},
        "sampling": {"batch_size": 2}, "scoring": {"metrics": []},
        "verifiers": {"clip": {"kind": "clip-score", "model": f"local-dir:{tiny_clip}"}},
        "grids": [{"models": [name], "samplers": ["ddpm"], "steps": [3], "guidance": [2.0], "prompt_sets": ["p"],
                   "search": {"algorithms": ["random", "fk-steering"], "verifiers": ["clip"], "budgets": [2]}}],
    })
    paths = Paths.of(params)
    prepare_model(params["models"][name], paths.model(name))
    prompt_sets.write(paths.prompt_set("p"), prompts(name))
    cells = [Cell(name, "ddpm", 3, 2.0, "p", search, verifier, budget)
             for search, verifier, budget in (("none", "none", 0), ("random", "clip", 2), ("fk-steering", "clip", 2))]
    for cell in cells:
        sample_block(params, paths.block_of(cell), [cell], paths, progress=False)
        ledger = json.loads((paths.samples(cell) / "ledger.json").read_text())
        records = [json.loads(line) for line in (paths.samples(cell) / "records.jsonl").read_text().splitlines()]
        assert ledger["nfe_per_image"] == 2 * 3 * max(cell.budget, 1)
        assert ledger["gflops_per_nfe"] > 0
        assert (ledger["verifier_images"] > 0) == (cell.search != "none")
        assert len(records) == 2 and all((cell.verifier in r["verifier_scores"]) == (cell.search != "none") for r in records)
    plain, searched = (paths.samples(c) / "images" / "00000.png" for c in cells[:2])
    # Random search keeps candidate 0 (the plain image) or a better one by the verifier.
    record = json.loads((paths.samples(cells[1]) / "records.jsonl").read_text().splitlines()[0])
    assert (plain.read_bytes() == searched.read_bytes()) == (record["candidate"] == 0)
