"""classifier: an ImageNet classifier's probability of the prompt's class (class-conditional models).

Ma et al.'s *oracle* IS-style verifier on ImageNet: pick the candidate to which a classifier gives
the highest probability of the target class. The prompt is the class name exactly as in torchvision's
`ResNet50_Weights.IMAGENET1K_V1.meta["categories"]` (what `diffscale.prompts.imagenet_classes`
writes); its index in that list is the class. The classifier is any `timm` architecture with the
standard ImageNet-1k head (1000 classes in that same order), built without pretrained weights and
loaded from `weights` ourselves, so nothing is downloaded implicitly.

Preprocessing follows the model's own timm data config (`resolve_data_config({}, model=model)`:
input size, crop_pct, crop_mode, interpolation, mean/std), as timm's eval transform does, but on
tensors: resize (antialiased) then centre crop (or pad), then normalise. Bicubic results are clamped
to [0, 1], as PIL's 8-bit resize would be. The data config comes from the model name's pretrained
tag: name the tag that matches the weights (`resnet50.tv_in1k`, `resnet50.a1_in1k`, ...) to get its
preprocessing.
"""

from __future__ import annotations

import math
from functools import lru_cache

from diffscale.lazy import lazy_import
from diffscale.verifiers.base import (
    BATCH_SIZE_OPTION,
    Verifier,
    VerifierResources,
    load_state_dict,
    register,
    resolve_file,
)

torch = lazy_import("torch")
timm = lazy_import("timm")
timm_data = lazy_import("timm.data")
torchvision_models = lazy_import("torchvision.models")

NUM_CLASSES = 1000
_MODES = {"bilinear": "bilinear", "bicubic": "bicubic", "nearest": "nearest"}


@lru_cache(maxsize=1)
def imagenet_categories() -> tuple[str, ...]:
    names = tuple(torchvision_models.ResNet50_Weights.IMAGENET1K_V1.meta["categories"])
    assert len(names) == NUM_CLASSES
    return names


@lru_cache(maxsize=4)
def _index_of(names: tuple[str, ...]) -> dict[str, int | None]:
    """name -> class index; None for a name two classes share (older torchvision lists had "crane"
    and "maillot" twice; 0.29's are all unique, but `imagenet_classes` leaves shared names out either way)."""
    index: dict[str, int | None] = {}
    for i, name in enumerate(names):
        index[name] = None if name in index else i
    return index


def class_index(prompt: str) -> int:
    """The ImageNet-1k index of a class name (torchvision's category names, exactly)."""
    names = imagenet_categories()
    index = _index_of(names)
    if prompt not in index:
        raise ValueError(
            f"classifier: prompt {prompt!r} is not an ImageNet class name (expected one of torchvision's "
            "ResNet50_Weights.IMAGENET1K_V1.meta['categories'], exactly, as diffscale.prompts.imagenet_classes writes)"
        )
    if index[prompt] is None:
        ids = [i for i, n in enumerate(names) if n == prompt]
        raise ValueError(f"classifier: prompt {prompt!r} is ambiguous: classes {ids} share that name")
    return index[prompt]


# -- timm's eval transform, on tensors ---------------------------------------------------------------


def _resize(images: torch.Tensor, size: tuple[int, int], interpolation: str) -> torch.Tensor:
    if tuple(images.shape[-2:]) == tuple(size):
        return images
    mode = _MODES.get(interpolation)
    if mode is None:
        raise ValueError(f"classifier: interpolation {interpolation!r} of the model's data config is not supported "
                         f"on tensors (supported: {sorted(_MODES)})")
    if mode == "nearest":
        return torch.nn.functional.interpolate(images, size=size, mode="nearest")
    out = torch.nn.functional.interpolate(images, size=size, mode=mode, align_corners=False, antialias=True)
    return out.clamp(0.0, 1.0) if mode == "bicubic" else out


def _keep_ratio_size(h: int, w: int, target: tuple[int, int], longest: float) -> tuple[int, int]:
    """timm's ResizeKeepRatio (no randomness)."""
    ratio_h, ratio_w = h / target[0], w / target[1]
    ratio = max(ratio_h, ratio_w) * longest + min(ratio_h, ratio_w) * (1.0 - longest)
    return round(h / ratio), round(w / ratio)


def _center_crop_or_pad(images: torch.Tensor, size: tuple[int, int], fill: torch.Tensor | float = 0.0) -> torch.Tensor:
    """torchvision CenterCrop / timm center_crop_or_pad: pad (split as they do) when smaller, then crop."""
    crop_h, crop_w = size
    h, w = images.shape[-2:]
    if crop_h > h or crop_w > w:
        pad_l = (crop_w - w) // 2 if crop_w > w else 0
        pad_t = (crop_h - h) // 2 if crop_h > h else 0
        pad_r = (crop_w - w + 1) // 2 if crop_w > w else 0
        pad_b = (crop_h - h + 1) // 2 if crop_h > h else 0
        padded = images.new_empty(*images.shape[:-2], h + pad_t + pad_b, w + pad_l + pad_r)
        padded[:] = fill.view(1, -1, 1, 1) if isinstance(fill, torch.Tensor) else fill
        padded[..., pad_t : pad_t + h, pad_l : pad_l + w] = images
        images = padded
        h, w = images.shape[-2:]
    top = int(round((h - crop_h) / 2.0))
    left = int(round((w - crop_w) / 2.0))
    return images[..., top : top + crop_h, left : left + crop_w]


def preprocess(images: torch.Tensor, config: dict) -> torch.Tensor:
    """(B, 3, H, W) in [0, 1] -> the classifier's normalised input, per timm's `transforms_imagenet_eval`."""
    _, th, tw = config["input_size"]
    crop_pct = config.get("crop_pct") or 0.875
    crop_mode = config.get("crop_mode") or "center"
    interpolation = config.get("interpolation") or "bilinear"
    mean = torch.tensor(config["mean"], dtype=images.dtype, device=images.device)
    std = torch.tensor(config["std"], dtype=images.dtype, device=images.device)
    scale = (math.floor(th / crop_pct), math.floor(tw / crop_pct))
    h, w = images.shape[-2:]
    fill: torch.Tensor | float = 0.0
    if crop_mode == "squash":
        images = _resize(images, scale, interpolation)
    elif crop_mode == "border":
        images = _resize(images, _keep_ratio_size(h, w, scale, longest=1.0), interpolation)
        fill = torch.tensor([round(255 * v) / 255 for v in config["mean"]], dtype=images.dtype, device=images.device)
    elif crop_mode == "center":
        if scale[0] == scale[1]:  # torchvision Resize(int): the short edge to `scale`, the long edge truncated
            short, long = (h, w) if h <= w else (w, h)
            new_short, new_long = scale[0], int(scale[0] * long / short)
            size = (new_short, new_long) if h <= w else (new_long, new_short)
        else:
            size = _keep_ratio_size(h, w, scale, longest=0.0)
        images = _resize(images, size, interpolation)
    else:
        raise ValueError(f"classifier: unknown crop_mode {crop_mode!r} in the model's data config")
    images = _center_crop_or_pad(images, (th, tw), fill)
    return (images - mean.view(1, -1, 1, 1)) / std.view(1, -1, 1, 1)


# -- the verifier -----------------------------------------------------------------------------------


@register("classifier")
class ClassifierVerifier(Verifier):
    """An ImageNet classifier's probability of the prompt's class: the IS-style oracle for class-conditional models.

    Options: `model` (a timm architecture, optionally with its pretrained tag for the data config;
    default `resnet50`), `weights` (required: a local .safetensors/.pth file, or
    `hf-hub:<repo>@<revision>[:<file>]`, e.g. `hf-hub:timm/resnet50.a1_in1k@<commit>`, default file
    `model.safetensors`), `model_kwargs` (extra `timm.create_model` arguments, e.g.
    `pretrained_cfg_overlay`), `batch_size`. Score: softmax probability of the prompt's class, in [0, 1]."""

    options = {
        **BATCH_SIZE_OPTION,
        "model": {"type": "string", "default": "resnet50",
                  "description": "A timm architecture (with its pretrained tag for the data config)."},
        "weights": {"type": "string", "description": "A local .safetensors file or hf-hub:<repo>@<revision>[:<file>]."},
        "model_kwargs": {"type": "object", "description": "Extra timm.create_model arguments."},
    }
    required = ("weights",)

    def __init__(self, *, resources: VerifierResources | None = None, device="cpu", model: str = "resnet50",
                 weights: str | None = None, model_kwargs: dict | None = None, batch_size: int = 256):
        super().__init__(device=device, batch_size=batch_size)
        if weights is None:
            raise ValueError("classifier: `weights` is required (a local .safetensors file, or "
                             "hf-hub:timm/<model>@<revision>, whose model.safetensors is read)")
        kwargs = dict(model_kwargs or {})
        for key in ("pretrained", "num_classes"):
            if key in kwargs:
                raise ValueError(f"classifier: `model_kwargs` may not set {key!r} (weights come from `weights`; "
                                 f"the head is ImageNet-1k's {NUM_CLASSES} classes)")
        try:
            self.model = timm.create_model(model, pretrained=False, num_classes=NUM_CLASSES, **kwargs)
        except RuntimeError as error:  # timm: "Unknown model (...)"
            raise ValueError(f"classifier: {error}") from error
        state = load_state_dict(resolve_file(weights, ("model.safetensors", "pytorch_model.bin")))
        try:
            self.model.load_state_dict(state)
        except RuntimeError as error:
            raise ValueError(f"classifier: weights {weights!r} do not fit timm model {model!r} with a "
                             f"{NUM_CLASSES}-class head: {error}") from error
        self.model.to(self.device).eval()
        self.model_name = model
        self.data_config = timm_data.resolve_data_config({}, model=self.model)

    def _score(self, images, prompts, groups, intermediate, ledger):
        for prompt in dict.fromkeys(prompts):  # fail on a bad name before any compute is charged
            class_index(prompt)
        return super()._score(images, prompts, groups, intermediate, ledger)

    def logits(self, images: torch.Tensor) -> torch.Tensor:
        """(B, 1000) logits of (B, 3, H, W) images in [0, 1] (no cost counted)."""
        with torch.no_grad():
            return self.model(preprocess(images.to(self.device, torch.float32), self.data_config)).float().cpu()

    def _forward(self, images, prompts, intermediate) -> torch.Tensor:
        logits = self.model(preprocess(images, self.data_config)).float()
        index = torch.tensor([class_index(p) for p in prompts], device=logits.device)
        return logits.softmax(dim=-1).gather(1, index[:, None])[:, 0]

    def __repr__(self) -> str:
        return (f"{type(self).__name__}(kind={self.kind!r}, model={self.model_name!r}, "
                f"device={str(self.device)!r}, batch_size={self.batch_size})")
