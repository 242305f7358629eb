"""One small training loop for every toy component: seeded, batched, with a progress bar and a ledger of
what the training cost (Mei et al. compare model sizes also by their training compute)."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch
from tqdm.auto import tqdm

from diffscale.manifest import LEDGER
from diffscale.models.flops import flop_counter

COUNTED = ("torch.utils.flop_counter on one optimisation step at the training batch size, times the steps: the "
           "matmul, convolution and attention FLOPs (2 per multiply-accumulate) of the loss's forward pass and of "
           "its backward pass (weight gradients, and input gradients where a layer's input needs one); not counted: "
           "the optimizer update, norms, activations and other element-wise work")


@dataclass(frozen=True)
class TrainingLedger:
    """What training one component cost. Every step has the same shapes, so one counted step times the steps
    is the whole count. `seconds` is the loop's wall time, a measurement of the machine (see `manifest.LEDGER`)."""

    flops_per_step: int
    steps: int
    batch_size: int
    parameters: int
    seconds: float
    # FLOPs the training needed besides its optimisation steps, by what they were spent on (not in the total).
    not_included: dict[str, int] = field(default_factory=dict)
    counted: str = COUNTED  # what the count covers (distillation adds its teacher's and target's passes)

    @property
    def training_flops(self) -> int:
        return self.flops_per_step * self.steps

    def to_dict(self) -> dict:
        return {"training_flops": self.training_flops, **asdict(self), "samples_seen": self.steps * self.batch_size}

    def write(self, folder: Path) -> None:
        """Write the ledger beside the weights (a file of the artifact, left out of its content hash)."""
        (Path(folder) / LEDGER).write_text(json.dumps(self.to_dict(), indent=2) + "\n")


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
    after_step: Callable[[], None] | None = None,
) -> tuple[list[float], TrainingLedger]:
    """AdamW with a cosine schedule; `loss_fn(batch_indices)` returns the loss; `after_step()` runs after each
    update (distillation moves its EMA target there). Returns the loss curve and the training's ledger."""
    torch.manual_seed(seed)
    parameters = list(parameters)
    # Fused: one kernel for the update of every tensor (a toy UNet has ~290 small ones): the update took 8.5 of
    # the 51.6 ms of a toy-w4 step as torch's default, 2.2 fused (benchmarks/cell_costs.py).
    optimizer = torch.optim.AdamW(parameters, lr=lr, weight_decay=0.0, fused=True)
    warmup = max(0.05, 2.0 / steps)  # OneCycleLR needs at least one warm-up step
    schedule = torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=lr, total_steps=steps, pct_start=warmup)
    batches = seeded_batches(n_examples, batch_size, seed)
    losses = []
    start = time.perf_counter()
    with tqdm(range(steps), desc=desc, unit="step", mininterval=2.0) as bar:
        for _ in bar:
            loss = loss_fn(next(batches))
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            schedule.step()
            if after_step is not None:
                after_step()
            losses.append(loss.item())
            bar.set_postfix(loss=f"{np.mean(losses[-50:]):.4f}", refresh=False)
    seconds = round(time.perf_counter() - start, 3)
    ledger = TrainingLedger(count_step(parameters, loss_fn, next(batches)), steps, batch_size,
                            sum(p.numel() for p in parameters), seconds)
    return losses, ledger


def count_step(parameters: list, loss_fn: Callable[[torch.Tensor], torch.Tensor], batch: torch.Tensor) -> int:
    """FLOPs of one step's forward and backward pass, counted on one more batch after training.

    Not during training: torch's counter runs some backward ops through their decompositions (silu_backward),
    whose floats differ in the last bits, so a counted training step would change the weights. This pass
    happens after the last update, drops its gradients and restores the global RNG, so the weights are those
    an uncounted run trains; its shapes are a training step's, so its count is one step's.
    """
    counter = flop_counter()
    with torch.random.fork_rng(devices=[]), counter:
        loss_fn(batch).backward()
    for parameter in parameters:
        parameter.grad = None
    return counter.get_total_flops()


def to_unit_range(images_uint8: np.ndarray) -> torch.Tensor:
    """NHWC uint8 -> NCHW float in [-1, 1], the range diffusers' autoencoders expect."""
    return torch.from_numpy(images_uint8).permute(0, 3, 1, 2).float().div(127.5).sub(1.0)
