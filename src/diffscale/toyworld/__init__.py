"""The toy world: the only toy-specific code. It builds a tiny latent diffusion world inside the DAG."""
