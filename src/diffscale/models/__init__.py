"""The model zoo: turn a model entry into a local diffusers folder, load it, and measure its cost."""

from diffscale.models.flops import backbone_gflops_per_nfe
from diffscale.models.zoo import load_pipeline, prepare_local, resolve_folder

__all__ = ["backbone_gflops_per_nfe", "load_pipeline", "prepare_local", "resolve_folder"]
