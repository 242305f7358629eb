"""GPU execution: dtype, attention kernel, compilation, memory layout, and batches that survive OOM.

None of this changes what is computed, only how fast and in how much memory: images still depend only on
their seeds (the loop draws each image's noise from its own generator), so falling back to a smaller
batch after an out-of-memory error gives the same images, up to the kernel's floating-point rounding.
"""

from __future__ import annotations

import gc
import logging
from collections.abc import Callable, Mapping, Sequence

import torch
from diffusers.models.attention_processor import (
    Attention,
    AttnProcessor,
    AttnProcessor2_0,
    AttnProcessorNPU,
    SlicedAttnProcessor,
    XFormersAttnProcessor,
)

from diffscale.models.families import family_of

log = logging.getLogger(__name__)

DTYPES = {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16}
COMPILE_MODES = ("default", "reduce-overhead", "max-autotune", "max-autotune-no-cudagraphs")


# Processors that compute plain attention, as AttnProcessor2_0 does, with another kernel.
PLAIN_ATTENTION = (AttnProcessor, AttnProcessor2_0, AttnProcessorNPU, SlicedAttnProcessor, XFormersAttnProcessor)


def use_sdpa(module: torch.nn.Module) -> int:
    """Give every plain diffusers attention layer torch's scaled_dot_product_attention (`AttnProcessor2_0`).

    It is diffusers' default under torch 2 already; setting it explicitly undoes any other kernel (xformers,
    sliced) a loaded pipeline may carry. Layers whose processor computes something else keep it: SD3's joint
    attention (`JointAttnProcessor2_0`, text and image streams together) would break under the plain one;
    FLUX's attention modules are not `Attention` layers and already use SDPA. Returns the number of layers set.
    """
    layers = [m for m in module.modules() if isinstance(m, Attention) and isinstance(m.processor, PLAIN_ATTENTION)]
    for layer in layers:
        layer.set_processor(AttnProcessor2_0())
    return len(layers)


def configure(pipeline, options: Mapping | None = None):
    """Apply execution options to a loaded pipeline, in place; returns it.

    options (all optional): `dtype` ("float32" | "float16" | "bfloat16": casts every component),
    `attention` ("sdpa", the default, or "keep"), `compile` (false, true or a torch.compile mode: compiles
    the backbone's forward in place, so `family.backbone(pipeline)` and its hooks stay the same object),
    `channels_last` (bool: NHWC layout for the backbone's and the VAE's convolutions).
    """
    options = dict(options or {})
    unknown = set(options) - {"dtype", "attention", "compile", "channels_last"}
    if unknown:
        raise ValueError(f"unknown GPU options {sorted(unknown)}")
    backbone = family_of(pipeline).backbone(pipeline)
    if options.get("dtype"):
        pipeline.to(dtype=DTYPES[options["dtype"]])
    attention = options.get("attention", "sdpa")
    if attention == "sdpa":
        for component in (backbone, getattr(pipeline, "vae", None)):
            if component is not None:
                use_sdpa(component)
    elif attention != "keep":
        raise ValueError(f"attention must be 'sdpa' or 'keep', not {attention!r}")
    if options.get("channels_last"):
        backbone.to(memory_format=torch.channels_last)
        if getattr(pipeline, "vae", None) is not None:
            pipeline.vae.to(memory_format=torch.channels_last)
    mode = options.get("compile")
    if mode:
        mode = "default" if mode is True else mode
        if mode not in COMPILE_MODES:
            raise ValueError(f"compile must be one of {COMPILE_MODES} or a boolean, not {mode!r}")
        backbone.compile(mode=mode)
    return pipeline


def is_out_of_memory(error: BaseException) -> bool:
    """CUDA's OutOfMemoryError, or the RuntimeError that MPS (and older CUDA builds) raise."""
    return isinstance(error, torch.cuda.OutOfMemoryError) or (isinstance(error, RuntimeError) and "out of memory" in str(error))


def empty_cache() -> None:
    gc.collect()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()
    if hasattr(torch, "mps") and torch.backends.mps.is_available():
        torch.mps.empty_cache()


def batched_with_oom_fallback(run: Callable[[Sequence], Sequence], items: Sequence, batch_size: int) -> list:
    """`run(batch)` over consecutive batches of `items`; one result per item, in order.

    `run` returns a sequence with one entry per item of its batch (a list, or a tensor whose rows are
    the items). On out-of-memory the cache is emptied, the batch size halved (and kept for the rest), and
    the failed batch run again; at batch size 1 the error is raised again, naming the sizes tried.
    """
    results: list = []
    size, tried, start = max(1, int(batch_size)), [], 0
    while start < len(items):
        batch = items[start:start + size]
        failed = None
        try:
            out = run(batch)
        except Exception as error:  # noqa: BLE001 - only out-of-memory is handled, the rest re-raised
            if not is_out_of_memory(error):
                raise
            tried.append(size)
            if size == 1:
                raise type(error)(f"out of memory even at batch size 1 (batch sizes tried: {tried}): {error}") from error
            failed = f"{type(error).__name__}: {str(error).splitlines()[0] if str(error) else ''}"
        if failed is not None:  # outside the except block, so the error's frames no longer pin memory
            empty_cache()
            size = max(1, size // 2)
            log.warning("out of memory at batch size %d (%s); retrying items %d.. at batch size %d",
                        tried[-1], failed, start, size)
            continue
        if len(out) != len(batch):
            raise ValueError(f"run returned {len(out)} results for a batch of {len(batch)}")
        results.extend(out)
        start += len(batch)
    return results
