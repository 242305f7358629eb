"""The denoisers of the real model families, as diffusers configs, costed on the meta device.

No weights are needed (none can be downloaded here): each backbone is built from its config under
`torch.device("meta")` and one single-sample pass is counted by `backbone_gflops_per_nfe`.
`python -m diffscale.models.architectures` prints the table; `--write` records it in
`architectures.json`, which cost estimates read (building the DAG, e.g. a Slurm job's runtime, must not
load torch), with what counted it: the code version of this module (its configs, the counter and the families'
calls) and the versions of torch and diffusers. A test checks that these are today's and counts one
architecture again.

Sources of the configs (the published `unet/config.json` / `transformer/config.json` of each model):

- SD1.5: the SD v1 UNet (SD1.4 and SD1.5 share it).
- BK-SDM (Kim et al., arXiv 2305.15798; configs in Nota-NetsPresso/BK-SDM `src/unet_config/bk_*`):
  Base = `layers_per_block=1` (one resnet+attention pair per down stage, two per up stage, instead of
  two and three); Small = Base without the mid block (`mid_block_type=None`); Tiny = Small without the
  innermost stage (3 stages, `block_out_channels=(320, 640, 1280)`). Every variant is one diffusers config.
- Segmind small-sd / tiny-sd (segmind/distill-sd): the same block removal, so the same architectures as
  BK-SDM-Base (small-sd's config names "segmind/BKSDM-Base-45K") and BK-SDM-Tiny; only the weights differ.
- SD2.1-base (stabilityai): the SD1.5 layout with 1024-d OpenCLIP text states, 64-d heads, linear projections, at
  512 px; SD-Turbo (Sauer et al., adversarial diffusion distillation of SD 2.1) ships the same UNet.
- SDXL base 1.0: 3 stages, transformer depth (0, 2, 10), 2048-d text states, "text_time" added conditioning.
  SDXL-Turbo is the same UNet distilled to sample at 512 px (a 64 x 64 latent).
- SSD-1B and Segmind-Vega (Gupta et al., arXiv 2401.02677): SDXL with transformer layers removed, a mid
  block of one resnet and no attention (`mid_block_type="UNetMidBlock2D"`, which diffusers builds with
  `num_layers=0`); SSD-1B's decoder depths differ from its encoder's, hence
  `reverse_transformer_layers_per_block`. The depths match ComfyUI's detection table for these models.
- DiT-XL/2 (Peebles & Xie): 28 blocks, 16 heads x 72, patch 2, 1000 classes, learned sigma (8 output
  channels), at 256 px (latent 32) and 512 px (latent 64). diffusers gives every block its own
  timestep/class embedding, so its parameter count is ~75M above the paper's 675M; the FLOPs are the same.
- FLUX.1-dev / schnell (black-forest-labs): one transformer, 19 double-stream (MMDiT) and 38 single-stream
  blocks of 24 heads x 128; dev adds the guidance embedding. At 1024 px: 4096 packed image tokens and 512
  T5 tokens (dev; FluxPipeline's default) or 256 (schnell, as Black Forest Labs run it).
- SD3 Medium, SD3.5 Large and SD3.5 Medium (stabilityai): MMDiT of 24 / 38 / 24 blocks of 64-d heads, one
  head per block; SD3.5 Medium is MMDiT-X (extra self-attention in its first 13 blocks, RMS-normed q/k),
  SD3.5 Large has RMS-normed q/k. At 1024 px: 4096 image tokens and 77 CLIP + 256 T5 = 333 text tokens.
- PixArt-Sigma XL/2 1024 (PixArt-alpha): DiT-XL/2 with cross-attention to 300 T5 tokens, adaLN-single,
  learned sigma, at 1024 px (latent 128, 4096 tokens).
Text-to-image transformers are counted at their pipeline's default resolution and text length; the UNets
at 77 CLIP tokens.
"""

from __future__ import annotations

import json
import sys
from importlib import resources
from typing import NamedTuple

from diffscale.cache import library_versions
from diffscale.codeversion import code_version
from diffscale.lazy import lazy_import

diffusers = lazy_import("diffusers")
flops = lazy_import("diffscale.models.flops")
families = lazy_import("diffscale.models.families")

COUNTED = "models/architectures.json"

SD15_UNET = dict(
    sample_size=64, in_channels=4, out_channels=4, layers_per_block=2,
    block_out_channels=(320, 640, 1280, 1280),
    down_block_types=("CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "DownBlock2D"),
    up_block_types=("UpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D"),
    cross_attention_dim=768, attention_head_dim=8,
)
BK_SDM_BASE_UNET = {**SD15_UNET, "layers_per_block": 1}
BK_SDM_SMALL_UNET = {**BK_SDM_BASE_UNET, "mid_block_type": None}
BK_SDM_TINY_UNET = {
    **BK_SDM_SMALL_UNET, "block_out_channels": (320, 640, 1280),
    "down_block_types": ("CrossAttnDownBlock2D",) * 3, "up_block_types": ("CrossAttnUpBlock2D",) * 3,
}

# stabilityai/stable-diffusion-2-1-base, unet/config.json (SD-Turbo, distilled from SD 2.1, ships the same UNet at
# the same 512 px): SD1.5's layout with 1024-d OpenCLIP text states, 64-d heads and linear projections.
SD21_BASE_UNET = {**SD15_UNET, "cross_attention_dim": 1024, "attention_head_dim": (5, 10, 20, 20),
                  "use_linear_projection": True}

SDXL_UNET = dict(
    sample_size=128, in_channels=4, out_channels=4, layers_per_block=2,
    block_out_channels=(320, 640, 1280),
    down_block_types=("DownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D"),
    up_block_types=("CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "UpBlock2D"),
    transformer_layers_per_block=(1, 2, 10), attention_head_dim=(5, 10, 20), use_linear_projection=True,
    cross_attention_dim=2048, addition_embed_type="text_time", addition_time_embed_dim=256,
    projection_class_embeddings_input_dim=2816,
)
SSD_1B_UNET = {
    **SDXL_UNET, "mid_block_type": "UNetMidBlock2D",
    "transformer_layers_per_block": [[1, 1], [2, 2], [4, 4]],
    "reverse_transformer_layers_per_block": [[4, 4, 10], [2, 1, 1], [1, 1, 1]],
}
VEGA_UNET = {**SDXL_UNET, "mid_block_type": "UNetMidBlock2D", "transformer_layers_per_block": (1, 1, 2)}

DIT_XL_2 = dict(
    num_attention_heads=16, attention_head_dim=72, in_channels=4, out_channels=8, num_layers=28,
    patch_size=2, sample_size=32, num_embeds_ada_norm=1000,
)

# black-forest-labs/FLUX.1-dev, transformer/config.json (schnell's differs only in guidance_embeds=false)
FLUX_1_DEV = dict(
    patch_size=1, in_channels=64, num_layers=19, num_single_layers=38, attention_head_dim=128, num_attention_heads=24,
    joint_attention_dim=4096, pooled_projection_dim=768, guidance_embeds=True, axes_dims_rope=(16, 56, 56),
)
# stabilityai/stable-diffusion-3-medium-diffusers, transformer/config.json
SD3_MEDIUM = dict(
    sample_size=128, patch_size=2, in_channels=16, out_channels=16, num_layers=24, attention_head_dim=64,
    num_attention_heads=24, joint_attention_dim=4096, caption_projection_dim=1536, pooled_projection_dim=2048,
    pos_embed_max_size=192,
)
# stabilityai/stable-diffusion-3.5-large, transformer/config.json (also 3.5-large-turbo's)
SD35_LARGE = {**SD3_MEDIUM, "num_layers": 38, "num_attention_heads": 38, "caption_projection_dim": 2432,
              "qk_norm": "rms_norm"}
# stabilityai/stable-diffusion-3.5-medium, transformer/config.json (MMDiT-X)
SD35_MEDIUM = {**SD3_MEDIUM, "pos_embed_max_size": 384, "dual_attention_layers": tuple(range(13)), "qk_norm": "rms_norm"}
# PixArt-alpha/PixArt-Sigma-XL-2-1024-MS, transformer/config.json
PIXART_SIGMA_XL_2_1024 = dict(
    num_attention_heads=16, attention_head_dim=72, in_channels=4, out_channels=8, num_layers=28, cross_attention_dim=1152,
    caption_channels=4096, sample_size=128, patch_size=2, attention_bias=True, activation_fn="gelu-approximate",
    norm_type="ada_norm_single", norm_elementwise_affine=False, norm_eps=1e-6, num_embeds_ada_norm=1000,
    interpolation_scale=2, use_additional_conditions=False,
)


class Architecture(NamedTuple):
    model: str
    family: str  # a `diffscale.models.families` name: its `call` is the pass counted
    backbone: str  # the diffusers class
    config: dict
    text_tokens: int = 77  # conditioning length at the pipeline's default
    latent_shape: tuple[int, ...] | None = None  # one latent as the scheduler sees it; default (in, size, size)


ARCHITECTURES = [
    Architecture("SD1.5", "sd", "UNet2DConditionModel", SD15_UNET),
    Architecture("BK-SDM-Base (= Segmind small-sd)", "sd", "UNet2DConditionModel", BK_SDM_BASE_UNET),
    Architecture("BK-SDM-Small", "sd", "UNet2DConditionModel", BK_SDM_SMALL_UNET),
    Architecture("BK-SDM-Tiny (= Segmind tiny-sd)", "sd", "UNet2DConditionModel", BK_SDM_TINY_UNET),
    Architecture("SD2.1-base (= SD-Turbo)", "sd", "UNet2DConditionModel", SD21_BASE_UNET),
    Architecture("SDXL", "sdxl", "UNet2DConditionModel", SDXL_UNET),
    # SDXL-Turbo: SDXL's UNet distilled to sample at 512 px (its unet/config.json has sample_size 64)
    Architecture("SDXL at 512 px (= SDXL-Turbo)", "sdxl", "UNet2DConditionModel", {**SDXL_UNET, "sample_size": 64}),
    Architecture("SSD-1B", "sdxl", "UNet2DConditionModel", SSD_1B_UNET),
    Architecture("Segmind-Vega", "sdxl", "UNet2DConditionModel", VEGA_UNET),
    Architecture("DiT-XL/2-256", "dit", "DiTTransformer2DModel", DIT_XL_2),
    Architecture("DiT-XL/2-512", "dit", "DiTTransformer2DModel", {**DIT_XL_2, "sample_size": 64}),
    # 1024 px: 128 x 128 latent of 16 channels, packed into 64 x 64 tokens of 2 x 2 x 16
    Architecture("FLUX.1-dev", "flux", "FluxTransformer2DModel", FLUX_1_DEV, 512, (4096, 64)),
    Architecture("FLUX.1-schnell", "flux", "FluxTransformer2DModel", {**FLUX_1_DEV, "guidance_embeds": False}, 256,
                 (4096, 64)),
    Architecture("SD3 Medium", "sd3", "SD3Transformer2DModel", SD3_MEDIUM, 77 + 256),
    Architecture("SD3.5 Large", "sd3", "SD3Transformer2DModel", SD35_LARGE, 77 + 256),
    Architecture("SD3.5 Medium", "sd3", "SD3Transformer2DModel", SD35_MEDIUM, 77 + 256),
    Architecture("PixArt-Sigma-XL/2-1024", "pixart", "PixArtTransformer2DModel", PIXART_SIGMA_XL_2_1024, 300),
]


# Hub repositories whose backbone is one of the architectures above (for cost estimates without weights).
HUB_REPOS = {
    "stable-diffusion-v1-5/stable-diffusion-v1-5": "SD1.5",
    "runwayml/stable-diffusion-v1-5": "SD1.5",
    "nota-ai/bk-sdm-base": "BK-SDM-Base (= Segmind small-sd)",
    "segmind/small-sd": "BK-SDM-Base (= Segmind small-sd)",
    "nota-ai/bk-sdm-small": "BK-SDM-Small",
    "nota-ai/bk-sdm-tiny": "BK-SDM-Tiny (= Segmind tiny-sd)",
    "segmind/tiny-sd": "BK-SDM-Tiny (= Segmind tiny-sd)",
    # Lykon/dreamshaper-7 is an SD1.5 fine-tune; LCM-Dreamshaper-v7 adds to it only a guidance-scale embedding
    # (time_cond_proj_dim=256: one 256 x 320 linear layer, a few MFLOPs per pass against ~800 GFLOPs).
    "Lykon/dreamshaper-7": "SD1.5",
    "SimianLuo/LCM_Dreamshaper_v7": "SD1.5",
    "stabilityai/stable-diffusion-2-1-base": "SD2.1-base (= SD-Turbo)",
    "stabilityai/sd-turbo": "SD2.1-base (= SD-Turbo)",
    "stabilityai/stable-diffusion-xl-base-1.0": "SDXL",
    "stabilityai/sdxl-turbo": "SDXL at 512 px (= SDXL-Turbo)",
    "segmind/SSD-1B": "SSD-1B",
    "segmind/Segmind-Vega": "Segmind-Vega",
    "facebook/DiT-XL-2-256": "DiT-XL/2-256",
    "facebook/DiT-XL-2-512": "DiT-XL/2-512",
    "black-forest-labs/FLUX.1-dev": "FLUX.1-dev",
    "black-forest-labs/FLUX.1-schnell": "FLUX.1-schnell",
    "stabilityai/stable-diffusion-3-medium-diffusers": "SD3 Medium",
    "stabilityai/stable-diffusion-3.5-large": "SD3.5 Large",
    "stabilityai/stable-diffusion-3.5-large-turbo": "SD3.5 Large",
    "stabilityai/stable-diffusion-3.5-medium": "SD3.5 Medium",
    "PixArt-alpha/PixArt-Sigma-XL-2-1024-MS": "PixArt-Sigma-XL/2-1024",
}


def measure_architectures(names: set[str] | None = None) -> list[dict]:
    """Parameters and GFLOPs per NFE (one single-sample pass through the family's call) of each real backbone."""
    rows = []
    for arch in ARCHITECTURES:
        if names is not None and arch.model not in names:
            continue
        model = flops.build_on_meta(getattr(diffusers, arch.backbone), arch.config)
        size = getattr(model.config, "sample_size", None)
        shape = list(arch.latent_shape or (model.config.in_channels, size, size))
        cond = flops.example_conditioning(model, arch.text_tokens)
        call = families.FAMILIES[arch.family].call
        rows.append({
            "model": arch.model,
            "family": arch.family,
            "params": sum(p.numel() for p in model.parameters()),
            "latent_shape": shape,
            "gflops_per_nfe": flops.backbone_gflops_per_nfe(model, tuple(shape), cond, call=call),
        })
    return rows


def counted_with() -> dict:
    """What decides the table: the code that builds and counts the backbones, and the libraries that run it."""
    return {"code": code_version("diffscale.models.architectures"), "libraries": library_versions("torch", "diffusers")}


def recorded() -> dict:
    """`architectures.json` as last written (`--write`): `counted_with` and the table, read without torch."""
    return json.loads(resources.files("diffscale").joinpath(COUNTED).read_text())


def counted() -> list[dict]:
    """The table as last counted (`--write`), read without torch."""
    return recorded()["architectures"]


def markdown_table(rows: list[dict]) -> str:
    lines = ["| model | family | params (M) | latent | GFLOPs/NFE |", "|---|---|---:|---|---:|"]
    for r in rows:
        latent = "x".join(str(d) for d in r["latent_shape"])
        lines.append(f"| {r['model']} | {r['family']} | {r['params'] / 1e6:.1f} | {latent} | {r['gflops_per_nfe']:.1f} |")
    return "\n".join(lines)


if __name__ == "__main__":
    table = measure_architectures()
    print(markdown_table(table))
    if "--write" in sys.argv[1:]:
        target = resources.files("diffscale").joinpath(COUNTED)
        target.write_text(json.dumps({"counted_with": counted_with(), "architectures": table}, indent=1) + "\n")
        print(f"wrote {target}")
