"""The training ledger: FLOPs counted by torch's counter agree with a hand count, the ledger of a trained
component is its per-step count times its steps, and counting leaves the weights (and their name) alone."""

from __future__ import annotations

import json
from dataclasses import replace

import pytest
import torch

from diffscale.manifest import LEDGER, SAMPLING_LEDGER, IntegrityError, content_hash, verified_file, write_manifest
from diffscale.toyworld import oracle, scenes
from diffscale.toyworld.training import count_step, train

IN, HIDDEN, OUT, BATCH, STEPS = 5, 7, 3, 4, 6


def mlp() -> torch.nn.Module:
    torch.manual_seed(0)
    return torch.nn.Sequential(torch.nn.Linear(IN, HIDDEN), torch.nn.SiLU(), torch.nn.Linear(HIDDEN, OUT))


def mlp_loss(model: torch.nn.Module):
    data, targets = torch.randn(32, IN, generator=torch.Generator().manual_seed(1)), torch.randn(32, OUT)
    return lambda idx: torch.nn.functional.mse_loss(model(data[idx]), targets[idx])


def test_one_linear_layer_trained_one_step_counts_forward_and_weight_gradient():
    """y = x W^T + b: forward 2*m*n*k (addmm); backward the weight gradient 2*m*n*k (mm). The input is data,
    which needs no gradient, so torch computes (and counts) no input gradient; bias gradients are no matmul."""
    layer = torch.nn.Linear(IN, HIDDEN)
    x, y = torch.randn(BATCH, IN), torch.randn(BATCH, HIDDEN)
    flops = count_step(list(layer.parameters()), lambda _: torch.nn.functional.mse_loss(layer(x), y), None)
    assert flops == 2 * (2 * BATCH * IN * HIDDEN)


def test_one_convolution_trained_one_step_counts_forward_and_weight_gradient():
    """Forward 2 x (output pixels) x (input channels x kernel area) per output channel; torch's counter counts
    convolution_backward by the gradients it computes: here only the weight's, as many FLOPs again."""
    conv = torch.nn.Conv2d(3, 4, 3, padding=1)
    x, y = torch.randn(BATCH, 3, 8, 8), torch.randn(BATCH, 4, 8, 8)
    flops = count_step(list(conv.parameters()), lambda _: torch.nn.functional.mse_loss(conv(x), y), None)
    forward = 2 * BATCH * 4 * 8 * 8 * 3 * 3 * 3
    assert flops == 2 * forward


def test_ledger_of_a_two_layer_net_equals_the_hand_count_times_the_steps():
    """The second layer's input is the first layer's output, so its backward also computes the input gradient:
    backward = 2x forward there, 1x forward for the first layer."""
    model = mlp()
    losses, ledger = train(model.parameters(), mlp_loss(model), 32, STEPS, BATCH, 1e-2, seed=0, desc="mlp")
    forward = 2 * BATCH * IN * HIDDEN + 2 * BATCH * HIDDEN * OUT
    backward = 2 * BATCH * IN * HIDDEN + 2 * (2 * BATCH * HIDDEN * OUT)
    assert ledger.flops_per_step == forward + backward
    assert ledger.training_flops == STEPS * (forward + backward) > 0
    assert (ledger.steps, ledger.batch_size, len(losses)) == (STEPS, BATCH, STEPS)
    assert ledger.parameters == IN * HIDDEN + HIDDEN + HIDDEN * OUT + OUT
    assert ledger.to_dict()["samples_seen"] == STEPS * BATCH and ledger.seconds >= 0


def test_counting_leaves_weights_gradients_and_random_state_alone():
    """torch's counter runs silu_backward through its decomposition, whose floats differ in the last bits;
    `count_step` runs after the last update on a pass whose gradients are dropped, so the weights trained with
    the ledger are the ones an uncounted loop trains."""
    model = mlp()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    rng = torch.get_rng_state()
    noisy = lambda idx: mlp_loss(model)(idx) + torch.randn(()).abs()  # noqa: E731  (draws from the global RNG)
    assert count_step(list(model.parameters()), noisy, torch.arange(BATCH)) > 0
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
    assert all(p.grad is None for p in model.parameters())
    assert torch.equal(torch.get_rng_state(), rng)


@pytest.fixture(scope="module")
def trained_oracle():
    images, labels, _ = scenes.sample_dataset(96, seed=4)
    return oracle.fit(images, labels, width=8, steps=3, batch_size=16, lr=1e-3, seed=2)


def test_a_trained_component_records_its_ledger(trained_oracle, tmp_path):
    model, ledger = trained_oracle
    assert ledger.flops_per_step > 0 and ledger.training_flops == 3 * ledger.flops_per_step
    assert ledger.parameters == sum(p.numel() for p in model.parameters())
    ledger.write(tmp_path)
    record = json.loads((tmp_path / LEDGER).read_text())
    assert record["training_flops"] == ledger.training_flops and record["samples_seen"] == 48
    assert "forward" in record["counted"] and "backward" in record["counted"]


def test_the_ledger_is_verified_but_left_out_of_the_content_hash(trained_oracle, tmp_path):
    """Wall seconds differ between two trainings to the same weights; the artifact's name must not."""
    model, ledger = trained_oracle
    names = []
    for seconds in (1.0, 2.0):
        folder = tmp_path / f"run{seconds:g}"
        oracle.save(model, folder, {})
        replace(ledger, seconds=seconds).write(folder)
        write_manifest(folder)
        names.append(content_hash(folder))
        assert json.loads(verified_file(folder, LEDGER).read_text())["seconds"] == seconds
    assert names[0] == names[1]
    (folder / LEDGER).write_text("{}")
    with pytest.raises(IntegrityError, match=LEDGER):
        verified_file(folder, LEDGER)
    (folder / "oracle.json").write_text("{}")
    write_manifest(folder)
    assert content_hash(folder) != names[0], "every other file is still part of the name"


def test_a_sampled_cells_content_hash_leaves_out_its_ledger(tmp_path):
    """The same images sampled twice, in different wall seconds (two engines' cold runs): one name, so the score key
    (which names the samples by it) is the same and the images are scored once."""
    names = []
    for seconds in (1.0, 2.0):
        folder = tmp_path / f"cell{seconds:g}"
        (folder / "images").mkdir(parents=True)
        (folder / "images" / "00000.png").write_bytes(b"the same image")
        (folder / "records.jsonl").write_text('{"index": 0}\n')
        (folder / SAMPLING_LEDGER).write_text(json.dumps({"nfe_per_image": 8, "seconds": {"denoise": seconds}}))
        write_manifest(folder)
        names.append(content_hash(folder))
    assert names[0] == names[1]
    (folder / "records.jsonl").write_text('{"index": 1}\n')
    write_manifest(folder)
    assert content_hash(folder) != names[0], "the records are part of the name"


def test_denoiser_encoding_flops_counted_on_one_image_equal_a_full_count(tmp_path):
    from diffscale.models.flops import count_flops
    from diffscale.toyworld import autoencoder, denoiser, text

    images, labels, captions = scenes.sample_dataset(5, seed=3)
    vae = autoencoder.build(8).eval()
    tokenizer = text.fit_tokenizer(captions, max_length=16)
    encoder = text.build_encoder(tokenizer, 16, 1).eval()
    full = count_flops(lambda: denoiser.encode_training_set(vae, tokenizer, encoder, images, captions))
    assert denoiser.encoding_flops(vae, tokenizer, encoder, images, captions) == full > 0
