"""The denoisers of the real model families, as diffusers configs, costed on the meta device.

No weights are needed (none can be downloaded here): each backbone is built from its config under
`torch.device("meta")` and one single-sample pass is counted by `backbone_gflops_per_nfe`.
`python -m diffscale.models.architectures` prints the table; `--write` records it in
`architectures.json`, which cost estimates read (building the DAG, e.g. a Slurm job's runtime, must not
load torch); a test counts again and compares.

Sources of the configs (the published `unet/config.json` / `transformer/config.json` of each model):

- SD1.5: the SD v1 UNet (SD1.4 and SD1.5 share it).
- BK-SDM (Kim et al., arXiv 2305.15798; configs in Nota-NetsPresso/BK-SDM `src/unet_config/bk_*`):
  Base = `layers_per_block=1` (one resnet+attention pair per down stage, two per up stage, instead of
  two and three); Small = Base without the mid block (`mid_block_type=None`); Tiny = Small without the
  innermost stage (3 stages, `block_out_channels=(320, 640, 1280)`). Every variant is one diffusers config.
- Segmind small-sd / tiny-sd (segmind/distill-sd): the same block removal, so the same architectures as
  BK-SDM-Base (small-sd's config names "segmind/BKSDM-Base-45K") and BK-SDM-Tiny; only the weights differ.
- SDXL base 1.0: 3 stages, transformer depth (0, 2, 10), 2048-d text states, "text_time" added conditioning.
- SSD-1B and Segmind-Vega (Gupta et al., arXiv 2401.02677): SDXL with transformer layers removed, a mid
  block of one resnet and no attention (`mid_block_type="UNetMidBlock2D"`, which diffusers builds with
  `num_layers=0`); SSD-1B's decoder depths differ from its encoder's, hence
  `reverse_transformer_layers_per_block`. The depths match ComfyUI's detection table for these models.
- DiT-XL/2 (Peebles & Xie): 28 blocks, 16 heads x 72, patch 2, 1000 classes, learned sigma (8 output
  channels), at 256 px (latent 32) and 512 px (latent 64). diffusers gives every block its own
  timestep/class embedding, so its parameter count is ~75M above the paper's 675M; the FLOPs are the same.
"""

from __future__ import annotations

import json
import sys
from importlib import resources

from diffscale.lazy import lazy_import

diffusers = lazy_import("diffusers")
flops = lazy_import("diffscale.models.flops")

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

# (model, family, diffusers backbone class, config)
ARCHITECTURES = [
    ("SD1.5", "sd", "UNet2DConditionModel", SD15_UNET),
    ("BK-SDM-Base (= Segmind small-sd)", "sd", "UNet2DConditionModel", BK_SDM_BASE_UNET),
    ("BK-SDM-Small", "sd", "UNet2DConditionModel", BK_SDM_SMALL_UNET),
    ("BK-SDM-Tiny (= Segmind tiny-sd)", "sd", "UNet2DConditionModel", BK_SDM_TINY_UNET),
    ("SDXL", "sdxl", "UNet2DConditionModel", SDXL_UNET),
    ("SSD-1B", "sdxl", "UNet2DConditionModel", SSD_1B_UNET),
    ("Segmind-Vega", "sdxl", "UNet2DConditionModel", VEGA_UNET),
    ("DiT-XL/2-256", "dit", "DiTTransformer2DModel", DIT_XL_2),
    ("DiT-XL/2-512", "dit", "DiTTransformer2DModel", {**DIT_XL_2, "sample_size": 64}),
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
    "stabilityai/stable-diffusion-xl-base-1.0": "SDXL",
    "segmind/SSD-1B": "SSD-1B",
    "segmind/Segmind-Vega": "Segmind-Vega",
    "facebook/DiT-XL-2-256": "DiT-XL/2-256",
    "facebook/DiT-XL-2-512": "DiT-XL/2-512",
}


def measure_architectures(names: set[str] | None = None) -> list[dict]:
    """Parameters and GFLOPs per NFE (one single-sample pass, 77 text tokens) of each real backbone."""
    rows = []
    for name, family, cls, config in ARCHITECTURES:
        if names is not None and name not in names:
            continue
        model = flops.build_on_meta(getattr(diffusers, cls), config)
        size = model.config.sample_size
        shape = [model.config.in_channels, size, size]
        rows.append({
            "model": name,
            "family": family,
            "params": sum(p.numel() for p in model.parameters()),
            "latent_shape": shape,
            "gflops_per_nfe": flops.backbone_gflops_per_nfe(model, tuple(shape), flops.example_conditioning(model)),
        })
    return rows


def counted() -> list[dict]:
    """The table as last counted (`--write`), read without torch."""
    return json.loads(resources.files("diffscale").joinpath(COUNTED).read_text())


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
        target.write_text(json.dumps(table, indent=1) + "\n")
        print(f"wrote {target}")
