"""diffscale: how diffusion models spend compute at inference time, and where it is best spent."""

__version__ = "0.1.0"
