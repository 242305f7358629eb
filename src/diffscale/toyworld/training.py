"""One small training loop for every toy component: seeded, batched, with a progress bar."""

from __future__ import annotations

from typing import Callable

import numpy as np
import torch
from tqdm.auto import tqdm


def seeded_batches(n: int, batch_size: int, seed: int):
    """Endless stream of index batches, a fresh permutation per epoch, deterministic in `seed`."""
    rng = np.random.default_rng(seed)
    while True:
        order = rng.permutation(n)
        for start in range(0, n - batch_size + 1, batch_size):
            yield torch.from_numpy(order[start : start + batch_size])


def train(
    parameters,
    loss_fn: Callable[[torch.Tensor], torch.Tensor],
    n_examples: int,
    steps: int,
    batch_size: int,
    lr: float,
    seed: int,
    desc: str,
) -> list[float]:
    """AdamW with a cosine schedule; `loss_fn(batch_indices)` returns the loss. Returns the loss curve."""
    torch.manual_seed(seed)
    optimizer = torch.optim.AdamW(parameters, lr=lr, weight_decay=0.0)
    warmup = max(0.05, 2.0 / steps)  # OneCycleLR needs at least one warm-up step
    schedule = torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=lr, total_steps=steps, pct_start=warmup)
    batches = seeded_batches(n_examples, batch_size, seed)
    losses = []
    with tqdm(range(steps), desc=desc, unit="step", mininterval=2.0) as bar:
        for _ in bar:
            loss = loss_fn(next(batches))
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            schedule.step()
            losses.append(loss.item())
            bar.set_postfix(loss=f"{np.mean(losses[-50:]):.4f}", refresh=False)
    return losses


def to_unit_range(images_uint8: np.ndarray) -> torch.Tensor:
    """NHWC uint8 -> NCHW float in [-1, 1], the range diffusers' autoencoders expect."""
    return torch.from_numpy(images_uint8).permute(0, 3, 1, 2).float().div(127.5).sub(1.0)
