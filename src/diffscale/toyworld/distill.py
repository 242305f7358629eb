"""Latent consistency distillation of a toy denoiser (Luo et al. 2023, "Latent Consistency Models").

Mei et al. distil every size of their ladder with few-step consistency distillation and ask whether the
size ordering at a fixed sampling cost survives. This is LCM's recipe (diffusers' example
`train_lcm_distill_sd_wds.py`) on the toy ladder, one recipe (`toyworld.distillation`) for all widths:

- the student starts as the teacher, plus a guidance-scale input (`time_cond_proj_dim`, zero-initialised, so
  at step 0 it is the teacher at every scale): the scale s is drawn per sample from [s_min, s_max] and
  embedded as `LatentConsistencyModelPipeline` embeds it (s - 1, LCM's w);
- the teacher's classifier-free guidance is folded in: the target is one DDIM step of the guided teacher
  (DDIMScheduler over the teacher's own schedule: zero terminal SNR, v-prediction) from t_{n+k} to t_n on
  LCM's skipping grid (k = `skip`; LCMScheduler samples on the same grid, `original_inference_steps` = T/k);
- student and EMA target are consistency functions f(x, t) = c_skip(t) x + c_out(t) x0(x, t), with
  LCMScheduler's boundary scalings, so f(x, 0) = x; pseudo-Huber loss between f_student(x_{t_{n+k}}) and
  f_target(x_{t_n}).

The result is a `LatentConsistencyModelPipeline` folder with an `LCMScheduler`; the `lcm` sampler samples it.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np
import torch
from diffusers import (
    DDIMScheduler,
    LatentConsistencyModelPipeline,
    LCMScheduler,
    StableDiffusionPipeline,
    UNet2DConditionModel,
)
from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn

from diffscale.toyworld.denoiser import ENCODING, TOY_SCHEDULE, encode_training_set, encoding_flops
from diffscale.toyworld.training import COUNTED, train

# Sinusoidal features of the guidance scale (SD's LCM uses 256 for a 320-channel time embedding).
GUIDANCE_EMBEDDING = 32
DISTILLATION_COUNTED = COUNTED + (". Per step the loss runs the student (forward and backward), the teacher (a "
                                  "forward pass on the conditional and unconditional batch: its CFG pair) and the EMA "
                                  "target (forward); all three are in the count")


def guidance_embedding(scales: torch.Tensor, dim: int = GUIDANCE_EMBEDDING) -> torch.Tensor:
    """The UNet's `timestep_cond` for guidance scales s, as `LatentConsistencyModelPipeline` makes it (the
    method reads no pipeline state)."""
    return LatentConsistencyModelPipeline.get_guidance_scale_embedding(None, scales - 1, embedding_dim=dim)


def student_from(teacher: UNet2DConditionModel) -> UNet2DConditionModel:
    """The teacher's UNet with a guidance-scale input whose projection starts at zero."""
    student = UNet2DConditionModel.from_config(teacher.config, time_cond_proj_dim=GUIDANCE_EMBEDDING)
    missing, unexpected = student.load_state_dict(teacher.state_dict(), strict=False)
    if missing != ["time_embedding.cond_proj.weight"] or unexpected:
        raise ValueError(f"the student is not the teacher plus a guidance input: missing {missing}, unexpected {unexpected}")
    torch.nn.init.zeros_(student.time_embedding.cond_proj.weight)
    return student


def consistency_scheduler(skip: int) -> LCMScheduler:
    """LCMScheduler over the teacher's schedule, its sampling grid the distillation's (every `skip`-th timestep)."""
    return LCMScheduler.from_config(TOY_SCHEDULE, original_inference_steps=TOY_SCHEDULE["num_train_timesteps"] // skip)


def consistency(unet, scheduler: LCMScheduler, x: torch.Tensor, t: torch.Tensor, scale_embedding, context) -> torch.Tensor:
    """f(x, t) = c_skip(t) x + c_out(t) x0, x0 from the v-prediction, per sample, as `LCMScheduler.step` forms
    its `denoised`."""
    v = unet(x, t, timestep_cond=scale_embedding, encoder_hidden_states=context).sample
    alpha = scheduler.alphas_cumprod[t].view(-1, 1, 1, 1)
    x0 = alpha.sqrt() * x - (1 - alpha).sqrt() * v
    c_skip, c_out = scheduler.get_scalings_for_boundary_condition_discrete(t.view(-1, 1, 1, 1))
    return c_skip * x + c_out * x0


def ddim_steps(scheduler: DDIMScheduler, v: torch.Tensor, t: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """One DDIM step per sample from its own t (the scheduler steps one timestep at a time: grouped by t)."""
    out = torch.empty_like(x)
    for value in t.unique():
        rows = t == value
        out[rows] = scheduler.step(v[rows], int(value), x[rows]).prev_sample
    return out


def fit(teacher_dir: Path, images: np.ndarray, captions: list[str], settings: dict, seed: int):
    """Distil the teacher pipeline at `teacher_dir`; returns the student pipeline, a report and the ledger."""
    torch.manual_seed(seed)
    teacher_pipeline = StableDiffusionPipeline.from_pretrained(teacher_dir, local_files_only=True)
    parts = {"vae": teacher_pipeline.vae, "tokenizer": teacher_pipeline.tokenizer, "text_encoder": teacher_pipeline.text_encoder}
    latents, states, caption_ids, uncond_id = encode_training_set(*parts.values(), images, captions)
    teacher = teacher_pipeline.unet.eval().requires_grad_(False)
    student = student_from(teacher)
    target = AveragedModel(student, multi_avg_fn=get_ema_multi_avg_fn(settings["ema_decay"]))
    target.requires_grad_(False)

    skip, (low, high), huber_c = settings["skip"], settings["guidance"], settings["huber_c"]
    lcm = consistency_scheduler(skip)
    ddim = DDIMScheduler.from_config(TOY_SCHEDULE)
    ddim.set_timesteps(TOY_SCHEDULE["num_train_timesteps"] // skip)  # its step goes from t to t - skip
    grid = torch.arange(1, TOY_SCHEDULE["num_train_timesteps"] // skip + 1) * skip - 1  # LCMScheduler's grid
    generator = torch.Generator().manual_seed(seed)

    def loss(idx):
        x0, context = latents[idx], states[caption_ids[idx]]
        start = grid[torch.randint(0, len(grid), (len(idx),), generator=generator)]
        end = (start - skip).clamp(min=0)
        scales = low + (high - low) * torch.rand(len(idx), generator=generator)
        embedding = guidance_embedding(scales)
        noisy = ddim.add_noise(x0, torch.randn(x0.shape, generator=generator), start)
        prediction = consistency(student, lcm, noisy, start, embedding, context)
        with torch.no_grad():
            unconditional = states[uncond_id].expand_as(context)
            v_uncond, v_cond = teacher(torch.cat([noisy, noisy]), torch.cat([start, start]),
                                       encoder_hidden_states=torch.cat([unconditional, context])).sample.chunk(2)
            guided = v_uncond + scales.view(-1, 1, 1, 1) * (v_cond - v_uncond)
            target_value = consistency(target.module, lcm, ddim_steps(ddim, guided, start, noisy), end, embedding, context)
        # LCM's pseudo-Huber loss: quadratic below c, linear above, so rare large errors do not dominate.
        return (((prediction - target_value) ** 2 + huber_c**2).sqrt() - huber_c).mean()

    losses, ledger = train(student.parameters(), loss, len(latents), settings["steps"], settings["batch_size"],
                           settings["lr"], seed, desc=f"distil {teacher_dir.name}",
                           after_step=lambda: target.update_parameters(student))
    encoding = encoding_flops(*parts.values(), images, captions)
    ledger = replace(ledger, not_included={ENCODING: encoding}, counted=DISTILLATION_COUNTED)
    pipeline = LatentConsistencyModelPipeline(
        vae=parts["vae"], text_encoder=parts["text_encoder"], tokenizer=parts["tokenizer"], unet=student.eval(),
        scheduler=lcm, safety_checker=None, feature_extractor=None, requires_safety_checker=False,
    )
    report = {"final_loss": float(np.mean(losses[-50:])), "params": sum(p.numel() for p in student.parameters()),
              "guidance_embedding": GUIDANCE_EMBEDDING}
    return pipeline, report, ledger
