"""The toy world: deterministic data, exact ground truth, standard component formats."""

from __future__ import annotations

import numpy as np
import pytest

from diffscale.toyworld import scenes, text


def test_dataset_is_deterministic_in_its_seed():
    a, b, c = scenes.sample_dataset(64, seed=5), scenes.sample_dataset(64, seed=5), scenes.sample_dataset(64, seed=6)
    assert a[0].tobytes() == b[0].tobytes() and a[2] == b[2]
    assert a[0].tobytes() != c[0].tobytes()


def test_captions_parse_back_to_their_scene():
    rng = np.random.default_rng(0)
    for _ in range(300):
        scene = scenes.sample_scene(rng)
        assert scenes.parse_caption(scene.caption) == scene


def test_labels_follow_reading_order():
    scene = scenes.parse_caption("a red circle right of a blue square")
    assert scene.labels() == {"layout": "pair-horizontal", "color1": "blue", "shape1": "square",
                              "color2": "red", "shape2": "circle"}
    assert scenes.parse_caption("a green triangle on the top").labels()["color2"] == scenes.NONE


def test_objects_are_drawn_where_and_in_the_colour_the_caption_says():
    rng = np.random.default_rng(1)
    image = scenes.render(scenes.parse_caption("a red square on the left"), rng).astype(int)
    left, right = image[:, :16], image[:, 16:]
    redness = lambda part: (part[..., 0] - part[..., 2]).clip(0).sum()  # noqa: E731
    assert redness(left) > 20 * max(redness(right), 1)


def test_unknown_caption_is_refused():
    with pytest.raises(ValueError, match="not a toy-world caption"):
        scenes.parse_caption("a red circle somewhere")


def test_tokenizer_is_a_clip_tokenizer_that_round_trips(tmp_path):
    from transformers import CLIPTokenizer

    _, labels, captions = scenes.sample_dataset(256, seed=0)
    tokenizer = text.fit_tokenizer(captions, max_length=16)
    tokenizer.save_pretrained(tmp_path)
    loaded = CLIPTokenizer.from_pretrained(tmp_path)
    ids = text.tokenize(loaded, ["a blue triangle above a yellow circle"])
    assert ids.shape == (1, 16)
    assert loaded.decode(ids[0], skip_special_tokens=True).strip() == "a blue triangle above a yellow circle"
    tokens = ids[0].tolist()
    words = tokens[1 : tokens.index(loaded.eos_token_id)]
    assert len(words) == 7, "each caption word is one learned token"


def test_tokenizer_ids_do_not_depend_on_the_process():
    """The BPE trainer numbers its alphabet in hash order; our renumbering makes ids reproducible."""
    import subprocess
    import sys

    script = ("from diffscale.toyworld import scenes, text; _, _, c = scenes.sample_dataset(256, 0); "
              "print(sorted(text.fit_tokenizer(c, 16).get_vocab().items(), key=lambda kv: kv[1]))")
    runs = {subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True).stdout for _ in range(3)}
    assert len(runs) == 1


def test_diffusion_ladder_trains_to_zero_terminal_snr_with_v_targets():
    """The last training step is pure noise (no signal leak for sampling from noise to miss) and the target is v."""
    import torch
    from diffusers import DDPMScheduler

    from diffscale.toyworld.denoiser import TOY_SCHEDULE, v_corruption

    assert DDPMScheduler.from_config(TOY_SCHEDULE).alphas_cumprod[-1] == 0
    x0 = torch.randn(64, 4, 8, 8, generator=torch.Generator().manual_seed(0))
    noisy, t, v = v_corruption(x0, torch.Generator().manual_seed(1))
    abar = DDPMScheduler.from_config(TOY_SCHEDULE).alphas_cumprod[t].view(-1, 1, 1, 1)
    # x0 = sqrt(abar) x_t - sqrt(1 - abar) v: what DDIM's v-prediction step recovers.
    torch.testing.assert_close(abar.sqrt() * noisy - (1 - abar).sqrt() * v, x0, atol=1e-5, rtol=1e-5)


def test_flow_ladder_targets_the_velocity_of_the_straight_path():
    """x0 = x_s - s v with s = timestep / 1000: what the flow samplers' x0 prediction and Euler step assume."""
    import torch

    from diffscale.toyworld.denoiser import rectified_flow_corruption

    x0 = torch.randn(64, 4, 8, 8, generator=torch.Generator().manual_seed(0))
    noisy, timesteps, v = rectified_flow_corruption(x0, torch.Generator().manual_seed(1))
    s = (timesteps / 1000).view(-1, 1, 1, 1)
    assert 0 < s.min() and s.max() < 1
    torch.testing.assert_close(noisy - s * v, x0, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(noisy + (1 - s) * v, v + x0, atol=1e-5, rtol=1e-5)  # the path ends at eps = v + x0


def test_the_schema_offers_exactly_the_objectives_the_trainer_knows():
    from diffscale.schema import build
    from diffscale.toyworld.denoiser import OBJECTIVES

    assert build()["$defs"]["model"]["properties"]["objective"]["enum"] == sorted(OBJECTIVES, key=list(OBJECTIVES).index)


def test_the_declared_spacing_is_what_the_ladders_samplers_use(tmp_path):
    """`toyworld.denoiser.timestep_spacing` is saved in the model's scheduler config: `ddim` and `ddpm` place their
    timesteps by it (trailing: the first step at t = 999, where the sampler's pure noise is), `ddim-leading`
    overrides it, and a schedule that first evaluates t = 1 from pure noise is refused by name."""
    import pytest
    from diffusers import DDIMScheduler

    from diffscale.sampling.samplers import make_scheduler, refuse_blind_start
    from diffscale.toyworld.denoiser import OBJECTIVES

    for spacing, one_step, two_steps in (("trailing", [999], [999, 499]), ("leading", [1], [501, 1])):
        config = DDIMScheduler.from_config(OBJECTIVES["v-prediction"].schedule | {"timestep_spacing": spacing}).config
        for sampler in ("ddim", "ddpm"):
            scheduler = make_scheduler(sampler, config)
            scheduler.set_timesteps(2)
            assert scheduler.timesteps.tolist() == two_steps
            refuse_blind_start(scheduler, sampler, 2)
        scheduler = make_scheduler("ddim", config)
        scheduler.set_timesteps(1)
        assert scheduler.timesteps.tolist() == one_step
        if spacing == "leading":
            with pytest.raises(ValueError, match="sampler 'ddim' at 1 step.*t = 1 of 1000.*ddim-trailing"):
                refuse_blind_start(scheduler, "ddim", 1)
        overridden = make_scheduler("ddim-leading", config)
        overridden.set_timesteps(2)
        assert overridden.timesteps.tolist() == [501, 1]
