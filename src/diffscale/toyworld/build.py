"""The toy world's DAG nodes: each function builds one cached artifact from the study parameters.

The networks' libraries are imported when a component that needs them is built: drawing the dataset, the
reference set or a prompt set needs numpy and PIL only, and a job that needs no more starts in a second.
"""

from __future__ import annotations

import json

import numpy as np

from diffscale import prompts as prompt_sets
from diffscale.atomic import atomic_directory
from diffscale.cells import Paths
from diffscale.lazy import lazy_import
from diffscale.manifest import verified
from diffscale.seeds import derive_seed
from diffscale.toyworld import scenes
from diffscale.toyworld.arrays import load_arrays, save_arrays

torch = lazy_import("torch")
diffusers = lazy_import("diffusers")
transformers = lazy_import("transformers")
autoencoder = lazy_import("diffscale.toyworld.autoencoder")
clip = lazy_import("diffscale.toyworld.clip")
denoiser = lazy_import("diffscale.toyworld.denoiser")
distill = lazy_import("diffscale.toyworld.distill")
judge = lazy_import("diffscale.toyworld.judge")
oracle = lazy_import("diffscale.toyworld.oracle")
text = lazy_import("diffscale.toyworld.text")


def _seed(params: dict, *what) -> int:
    return derive_seed(params["seed"], "toyworld", *what)


def load_dataset(paths: Paths) -> tuple[np.ndarray, np.ndarray, list[str]]:
    return load_arrays(paths.dataset)


def build_dataset(params: dict, paths: Paths) -> None:
    settings = params["toyworld"]["dataset"]
    images, labels, captions = scenes.sample_dataset(settings["size"], _seed(params, "dataset"), settings["pair_probability"])
    save_arrays(paths.dataset, images, labels, captions)


def build_reference(params: dict, paths: Paths) -> None:
    """Fresh draws from the data distribution (never seen in training): the FID/KID reference set."""
    settings = params["toyworld"]["dataset"]
    images, labels, captions = scenes.sample_dataset(
        params["toyworld"]["reference_size"], _seed(params, "reference"), settings["pair_probability"]
    )
    save_arrays(paths.reference, images, labels, captions)


def build_prompt_set(params: dict, paths: Paths, name: str) -> None:
    """toy-captions: captions drawn like the data (FID-style); toy-compositional: two-object prompts."""
    spec = params["prompt_sets"][name]
    rng = np.random.default_rng(_seed(params, "prompts", name))
    pair_probability = 1.0 if spec["kind"] == "toy-compositional" else params["toyworld"]["dataset"]["pair_probability"]
    chosen = [scenes.sample_scene(rng, pair_probability) for _ in range(spec["size"])]
    prompt_sets.write(
        paths.prompt_set(name),
        [{"id": i, "prompt": s.caption, "labels": s.labels()} for i, s in enumerate(chosen)],
    )


def toy_training(params: dict, component: str, model: str | None = None) -> dict:
    """Training settings of a toy component; a model entry may override the shared denoiser recipe."""
    settings = dict(params["toyworld"][component])
    if model is not None:
        settings.update(params["models"][model].get("training", {}))
    return settings


def _threads(params: dict) -> None:
    torch.set_num_threads(params["threads"])


def build_autoencoder(params: dict, paths: Paths) -> None:
    _threads(params)
    s = toy_training(params, "autoencoder")
    images, _, _ = load_dataset(paths)
    vae, report, ledger = autoencoder.fit(images, s["width"], s["steps"], s["batch_size"], s["lr"], s["kl_weight"],
                                          _seed(params, "autoencoder"))
    with atomic_directory(paths.component("autoencoder")) as out:
        autoencoder.save(vae, out)
        ledger.write(out)
        (out / "training.json").write_text(json.dumps(report, indent=2))


def build_text_encoder(params: dict, paths: Paths) -> None:
    _threads(params)
    s = toy_training(params, "text_encoder")
    _, labels, captions = load_dataset(paths)
    tokenizer, encoder, report, ledger = text.fit(captions, labels, s["width"], s["layers"], s["steps"], s["batch_size"],
                                                  s["lr"], _seed(params, "text"))
    with atomic_directory(paths.component("text_encoder")) as out:
        text.save(tokenizer, encoder, out)
        ledger.write(out)
        (out / "training.json").write_text(json.dumps(report, indent=2))


def _build_classifier(params: dict, paths: Paths, name: str, module) -> None:
    """A slot classifier (`oracle` or `judge`), trained on the dataset and scored on the held-out reference."""
    _threads(params)
    s = toy_training(params, name)
    images, labels, _ = load_dataset(paths)
    model, ledger = module.fit(images, labels, s["width"], s["steps"], s["batch_size"], s["lr"], _seed(params, name))
    held_out_images, held_out_labels, _ = load_arrays(paths.reference)
    report = oracle.accuracy(model, held_out_images, held_out_labels)
    with atomic_directory(paths.component(name)) as out:
        module.save(model, out, report)
        ledger.write(out)


def build_oracle(params: dict, paths: Paths) -> None:
    _build_classifier(params, paths, "oracle", oracle)


def build_judge(params: dict, paths: Paths) -> None:
    """The compositional-accuracy judge: another architecture and seed than the oracle that search optimises."""
    _build_classifier(params, paths, "judge", judge)


def build_clip(params: dict, paths: Paths) -> None:
    _threads(params)
    s = toy_training(params, "clip")
    images, _, captions = load_dataset(paths)
    model, config, report, ledger = clip.fit(images, captions, s["width"], s["layers"], s["steps"], s["batch_size"],
                                             s["lr"], _seed(params, "clip"))
    with atomic_directory(paths.component("clip")) as out:
        clip.save(model, config, out)
        ledger.write(out)
        (out / "training.json").write_text(json.dumps(report, indent=2))


def build_denoiser(params: dict, paths: Paths, model: str) -> None:
    """Train one rung of a ladder (diffusion or flow objective) and save it as a full pipeline folder.

    Every rung trains from one seed: the same batches in the same order, the same noise, timesteps and dropped
    captions, so that rungs differ in their width only (common random numbers, as cells share seeds per prompt).
    """
    _threads(params)
    s = toy_training(params, "denoiser", model)
    images, _, captions = load_dataset(paths)
    components = {
        "vae": diffusers.AutoencoderKL.from_pretrained(verified(paths.component("autoencoder"))),
        "tokenizer": transformers.CLIPTokenizer.from_pretrained(verified(paths.component("text_encoder")) / "tokenizer"),
        "text_encoder": transformers.CLIPTextModel.from_pretrained(paths.component("text_encoder") / "text_encoder"),
    }
    objective = params["models"][model].get("objective", "v-prediction")
    unet, report, ledger = denoiser.fit(
        components, images, captions, params["models"][model]["width"], s["steps"], s["batch_size"], s["lr"],
        s["uncond_probability"], _seed(params, "denoiser"), objective,
    )
    with atomic_directory(paths.model(model)) as out:
        denoiser.save_pipeline(unet, components, out, objective, s.get("timestep_spacing"))
        (out / "training.json").write_text(json.dumps(report | {"settings": s}, indent=2))
        ledger.write(out)



def build_student(params: dict, paths: Paths, model: str) -> None:
    """Distil a toy denoiser (`models.<model>.distilled_from`) with latent consistency distillation; saved as a
    `LatentConsistencyModelPipeline` folder with its training ledger."""
    _threads(params)
    s = params["toyworld"]["distillation"]
    teacher = params["models"][model]["distilled_from"]
    images, _, captions = load_dataset(paths)
    pipeline, report, ledger = distill.fit(verified(paths.model(teacher)), images, captions, s,
                                           _seed(params, "distillation", model))
    with atomic_directory(paths.model(model)) as out:
        pipeline.save_pretrained(out, safe_serialization=True)
        (out / "training.json").write_text(json.dumps(report | {"teacher": teacher, "settings": s}, indent=2))
        ledger.write(out)
