"""Fetching real checkpoints (Hugging Face Hub, pinned) and real evaluation inputs, with no network.

The hub tests lay a tiny diffusers pipeline out as a Hugging Face cache snapshot and fetch it with
HF_HUB_OFFLINE=1, exactly as a cache filled on another machine is used; the evaluation-input tests pass
local stand-ins as `source`.
"""

from __future__ import annotations

import copy
import hashlib
import json
import os
import re
import urllib.error
import zipfile
from pathlib import Path

import pytest
import torch

from diffscale import evaldata, prompts
from diffscale.models import hub, source

REPO_ID = "diffscale-test/tiny-ddpm"
COMMIT = "0123456789abcdef0123456789abcdef01234567"


@pytest.fixture
def offline_hub(tmp_path, monkeypatch):
    """HF_HUB_OFFLINE=1 and an empty Hugging Face home of our own: nothing is read from or sent to the Hub."""
    from huggingface_hub import constants

    home = tmp_path / "hf-home"
    home.mkdir()
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HOME", str(home))
    monkeypatch.delenv("HF_HUB_CACHE", raising=False)
    # huggingface_hub reads these once, at import; fetch_hf reads the environment at call time, and this keeps
    # any code path that consults the constants offline as well.
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(home / "hub"))
    return home / "hub"


@pytest.fixture(scope="module")
def tiny_pipeline(tmp_path_factory) -> Path:
    """A complete DDPMPipeline folder (safetensors), with an fp16 variant of the UNet beside the fp32 weights."""
    from diffusers import DDPMPipeline, DDPMScheduler, UNet2DModel

    torch.manual_seed(0)
    unet = UNet2DModel(
        sample_size=8, in_channels=3, out_channels=3, layers_per_block=1, block_out_channels=(8, 16),
        down_block_types=("DownBlock2D", "DownBlock2D"), up_block_types=("UpBlock2D", "UpBlock2D"), norm_num_groups=8,
    )
    folder = tmp_path_factory.mktemp("tiny") / "pipeline"
    DDPMPipeline(unet=unet, scheduler=DDPMScheduler(num_train_timesteps=10)).save_pretrained(folder)
    unet.to(torch.float16).save_pretrained(folder / "unet", variant="fp16")
    return folder


def lay_out_cache(cache: Path, pipeline: Path, repo: str = REPO_ID, commit: str = COMMIT,
                  edit=None) -> Path:
    """Write `pipeline` as the Hugging Face cache does: blobs by hash, snapshot symlinks, refs/main."""
    storage = cache / f"models--{repo.replace('/', '--')}"
    snapshot = storage / "snapshots" / commit
    for path in sorted(p for p in pipeline.rglob("*") if p.is_file()):
        data = path.read_bytes()
        # LFS files (weights) are stored under their sha256, small files under their git blob sha1.
        blob = (hashlib.sha256(data).hexdigest() if path.suffix in (".safetensors", ".bin")
                else hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest())
        (storage / "blobs").mkdir(parents=True, exist_ok=True)
        (storage / "blobs" / blob).write_bytes(data)
        link = snapshot / path.relative_to(pipeline)
        link.parent.mkdir(parents=True, exist_ok=True)
        link.symlink_to(os.path.relpath(storage / "blobs" / blob, link.parent))
    (storage / "refs").mkdir(parents=True, exist_ok=True)
    (storage / "refs" / "main").write_text(commit)
    if edit is not None:
        edit(snapshot)
    return snapshot


def entry(**extra) -> dict:
    return {"source": "hf", "repo": REPO_ID, "revision": COMMIT, **extra}


# ------------------------------------------------------------------------------------------- hub

def test_offline_without_cache_says_how_to_fix(offline_hub, tmp_path):
    with pytest.raises(hub.FetchError) as raised:
        hub.fetch_hf(entry(), tmp_path / "model")
    message = str(raised.value)
    for needed in (REPO_ID, COMMIT, "HF_HUB_OFFLINE", "source: local", "huggingface-cli download"):
        assert needed in message, (needed, message)
    assert not (tmp_path / "model" / source.MANIFEST).exists()


def test_fetch_from_offline_cache_gives_a_loadable_folder_and_manifest(offline_hub, tiny_pipeline, tmp_path):
    from diffusers import DiffusionPipeline

    snapshot = lay_out_cache(offline_hub, tiny_pipeline)
    out = tmp_path / "model"
    manifest = hub.fetch_hf(entry(), out)

    assert json.loads((out / source.MANIFEST).read_text()) == manifest
    assert manifest["source"] == "hf" and manifest["repo"] == REPO_ID and manifest["revision"] == COMMIT
    folder = source.resolve_folder(out)
    assert folder == out / "pipeline" and (folder / "model_index.json").exists()
    expected = hashlib.sha256((snapshot / "unet/diffusion_pytorch_model.safetensors").read_bytes()).hexdigest()
    assert manifest["files"] == {"unet/diffusion_pytorch_model.safetensors": expected}  # the fp16 variant is left out
    pipeline = DiffusionPipeline.from_pretrained(folder, use_safetensors=True, local_files_only=True)
    reference = DiffusionPipeline.from_pretrained(tiny_pipeline, use_safetensors=True, local_files_only=True)
    for a, b in zip(pipeline.unet.state_dict().values(), reference.unet.state_dict().values()):
        assert torch.equal(a, b)


def test_fetch_a_variant_loads_without_the_variant_argument(offline_hub, tiny_pipeline, tmp_path):
    from diffusers import DiffusionPipeline

    lay_out_cache(offline_hub, tiny_pipeline)
    manifest = hub.fetch_hf(entry(variant="fp16"), tmp_path / "model")
    assert manifest["variant"] == "fp16"
    assert list(manifest["files"]) == ["unet/diffusion_pytorch_model.safetensors"]
    from safetensors import safe_open

    folder = source.resolve_folder(tmp_path / "model")
    with safe_open(folder / "unet/diffusion_pytorch_model.safetensors", "pt") as weights:
        assert weights.get_tensor(next(iter(weights.keys()))).dtype == torch.float16  # the fp16 file, renamed
    DiffusionPipeline.from_pretrained(folder, use_safetensors=True, local_files_only=True)  # no variant= needed


def test_pickled_weights_are_refused(offline_hub, tiny_pipeline, tmp_path):
    def only_bin(snapshot: Path):
        for weights in (snapshot / "unet").glob("*.safetensors"):
            weights.unlink()
        (snapshot / "unet" / "diffusion_pytorch_model.bin").write_bytes(b"pickle")

    lay_out_cache(offline_hub, tiny_pipeline, edit=only_bin)
    with pytest.raises(ValueError, match=r"safetensors.*unet/diffusion_pytorch_model\.bin"):
        hub.fetch_hf(entry(), tmp_path / "model")
    assert not (tmp_path / "model" / source.MANIFEST).exists()


@pytest.mark.parametrize("change", [
    {"unet": ["my_package", "MyUNet2DModel"]},
    {"_class_name": "MyCustomPipeline"},
    {"_class_name": ["pipeline", "MyCustomPipeline"]},
])
def test_custom_code_is_refused(offline_hub, tiny_pipeline, tmp_path, change):
    def custom(snapshot: Path):
        index_path = snapshot / "model_index.json"
        index = json.loads(index_path.read_text())
        index_path.unlink()  # a symlink into the blobs: replace it
        index_path.write_text(json.dumps({**index, **change}))

    lay_out_cache(offline_hub, tiny_pipeline, edit=custom)
    with pytest.raises(ValueError, match="custom"):
        hub.fetch_hf(entry(), tmp_path / "model")


def test_revision_must_be_a_commit(tmp_path):
    with pytest.raises(ValueError, match="40-hex"):
        hub.fetch_hf(entry(revision="main"), tmp_path / "model")


def test_local_manifest_keeps_absolute_paths(tiny_pipeline, tmp_path):
    source.prepare_local({"source": "local", "path": str(tiny_pipeline)}, tmp_path / "model")
    assert source.resolve_folder(tmp_path / "model") == tiny_pipeline.resolve()


# -------------------------------------------------------------------------------- evaluation inputs

def sha(path: Path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def trust(monkeypatch, name: str, *paths: Path) -> None:
    """Pin the registry entry to the stand-in files' checksums (as if they were the published files)."""
    modified = copy.deepcopy(evaldata.EVAL_INPUTS[name])
    by_name = {Path(p).name: sha(p) for p in paths}
    for spec in modified["files"]:
        spec["sha256"] = by_name.get(spec["name"], sha(paths[0]) if len(paths) == 1 else None)
    monkeypatch.setitem(evaldata.EVAL_INPUTS, name, modified)


@pytest.fixture
def coco_zip(tmp_path) -> Path:
    annotations = {
        "images": [{"id": i} for i in (7, 3, 5)],
        "annotations": [
            {"id": 12, "image_id": 7, "caption": "A dog  on a couch.\n"},
            {"id": 4, "image_id": 7, "caption": "A brown dog lying down."},
            {"id": 9, "image_id": 3, "caption": "Two cats."},
            {"id": 30, "image_id": 5, "caption": "A red bus."},
            {"id": 31, "image_id": 5, "caption": "A bus on a street."},
        ],
    }
    path = tmp_path / "annotations_trainval2014.zip"
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("annotations/captions_val2014.json", json.dumps(annotations))
        archive.writestr("annotations/captions_train2014.json", json.dumps({"annotations": []}))
    return path


def test_coco_one_caption_per_image_the_first_by_annotation_id(monkeypatch, coco_zip, tmp_path):
    trust(monkeypatch, "coco2014-val", coco_zip)
    out = evaldata.fetch("coco2014-val", tmp_path / "prompts" / "coco.jsonl", size=None, seed=0, source=str(coco_zip))
    records = prompts.read(out)
    assert [(r["id"], r["prompt"], r["labels"]["image_id"]) for r in records] == [
        (0, "Two cats.", 3), (1, "A red bus.", 5), (2, "A brown dog lying down.", 7)]
    provenance = json.loads(Path(str(out) + ".source.json").read_text())
    assert provenance["files"][0]["verified"] and provenance["files"][0]["sha256_observed"] == sha(coco_zip)


def test_parti_tsv(monkeypatch, tmp_path):
    tsv = tmp_path / "PartiPrompts.tsv"
    tsv.write_text('Prompt\tCategory\tChallenge\tNote\nbond\tAbstract\tBasic\tconcepts\n'
                   'The words "PEACE" on a wall\tArts\tWriting & Symbols\t\n')
    trust(monkeypatch, "partiprompts", tsv)
    records = prompts.read(evaldata.fetch("partiprompts", tmp_path / "p.jsonl", size=None, seed=0, source=str(tsv)))
    assert records == [
        {"id": 0, "prompt": "bond", "labels": {"category": "Abstract", "challenge": "Basic", "note": "concepts"}},
        {"id": 1, "prompt": 'The words "PEACE" on a wall',
         "labels": {"category": "Arts", "challenge": "Writing & Symbols"}},
    ]


def test_drawbench_csv_needs_allow_unverified(tmp_path):
    csv_path = tmp_path / "drawbench.csv"
    csv_path.write_text('Prompts,Category\n"A red colored car.",Colors\nA cube made of brick.,Conflicting\n')
    assert evaldata.EVAL_INPUTS["drawbench"]["files"][0]["sha256"] is None
    with pytest.raises(evaldata.FetchError, match=f"allow_unverified.*|{sha(csv_path)}") as raised:
        evaldata.fetch("drawbench", tmp_path / "d.jsonl", size=None, seed=0, source=str(csv_path))
    assert sha(csv_path) in str(raised.value) and "allow_unverified" in str(raised.value)
    assert not (tmp_path / "d.jsonl").exists()

    out = evaldata.fetch("drawbench", tmp_path / "d.jsonl", size=None, seed=0, source=str(csv_path),
                         allow_unverified=True)
    assert [(r["prompt"], r["labels"]["category"]) for r in prompts.read(out)] == [
        ("A red colored car.", "Colors"), ("A cube made of brick.", "Conflicting")]
    recorded = json.loads(Path(str(out) + ".source.json").read_text())["files"][0]
    assert recorded["verified"] is False and recorded["sha256_observed"] == sha(csv_path)


def test_compbench_categories_from_a_folder(monkeypatch, tmp_path):
    folder = tmp_path / "compbench"
    folder.mkdir()
    for category in evaldata.COMPBENCH_SHA256:
        (folder / f"{category}_val.txt").write_text(f"a {category} prompt\nanother {category} prompt")
    trust(monkeypatch, "t2i-compbench", *sorted(folder.iterdir()))
    records = prompts.read(evaldata.fetch("t2i-compbench", tmp_path / "c.jsonl", size=None, seed=0, source=str(folder)))
    assert len(records) == 2 * len(evaldata.COMPBENCH_SHA256)
    assert records[0] == {"id": 0, "prompt": "a color prompt", "labels": {"category": "color"}}

    trust(monkeypatch, "t2i-compbench-3d-spatial", folder / "3d_spatial_val.txt")
    one = evaldata.fetch("t2i-compbench-3d-spatial", tmp_path / "s.jsonl", size=None, seed=0,
                         source=str(folder / "3d_spatial_val.txt"))
    assert [r["labels"]["category"] for r in prompts.read(one)] == ["3d_spatial", "3d_spatial"]


def test_seeded_subsets_are_deterministic_and_nest(monkeypatch, tmp_path):
    tsv = tmp_path / "PartiPrompts.tsv"
    tsv.write_text("Prompt\tCategory\tChallenge\tNote\n" + "".join(f"prompt {i}\tC\tBasic\t\n" for i in range(50)))
    trust(monkeypatch, "partiprompts", tsv)

    def subset(size, seed, name):
        out = evaldata.fetch("partiprompts", tmp_path / name, size=size, seed=seed, source=str(tsv))
        return [r["prompt"] for r in prompts.read(out)]

    ten = subset(10, 1, "a.jsonl")
    assert len(ten) == 10 and ten == subset(10, 1, "b.jsonl")
    assert ten != subset(10, 2, "c.jsonl")
    assert subset(20, 1, "d.jsonl")[:10] == ten
    assert subset(None, 1, "e.jsonl") == [f"prompt {i}" for i in range(50)]


def test_checksum_mismatch_names_both_hashes(tmp_path):
    tsv = tmp_path / "PartiPrompts.tsv"
    tsv.write_text("Prompt\tCategory\tChallenge\tNote\nbond\tAbstract\tBasic\t\n")
    expected = evaldata.EVAL_INPUTS["partiprompts"]["files"][0]["sha256"]
    with pytest.raises(evaldata.FetchError) as raised:
        evaldata.fetch("partiprompts", tmp_path / "p.jsonl", size=None, seed=0, source=str(tsv))
    assert expected in str(raised.value) and sha(tsv) in str(raised.value)
    assert not (tmp_path / "p.jsonl").exists()


def test_fid_statistics_and_weights(monkeypatch, tmp_path):
    import numpy as np

    stats = tmp_path / "MS-COCO_val2014_fid_stats.npz"
    np.savez(stats, mu=np.zeros(4), sigma=np.eye(4))
    out = evaldata.fetch("fid-coco2014-val-30k", tmp_path / "ref" / "coco.npz", size=None, seed=0,
                         source=str(stats), allow_unverified=True)
    assert sha(out) == sha(stats)
    bad = tmp_path / "bad.npz"
    np.savez(bad, mean=np.zeros(4))
    with pytest.raises(ValueError, match="mu"):
        evaldata.fetch("fid-coco2014-val-30k", tmp_path / "bad-out.npz", size=None, seed=0, source=str(bad),
                       allow_unverified=True)

    weights = tmp_path / "weights-inception-2015-12-05-6726825d.pth"
    weights.write_bytes(b"not really inception")
    with pytest.raises(evaldata.FetchError, match="6726825d0af5f729"):
        evaldata.fetch("inception-torch-fidelity", tmp_path / "w.pth", size=None, seed=0, source=str(weights))
    trust(monkeypatch, "inception-torch-fidelity", weights)
    assert sha(evaldata.fetch("inception-torch-fidelity", tmp_path / "w.pth", size=None, seed=0,
                              source=str(weights))) == sha(weights)


def test_offline_download_says_how_to_prefetch(monkeypatch, tmp_path):
    def no_network(*args, **kwargs):
        raise urllib.error.URLError("no network")

    monkeypatch.setattr(evaldata.urllib.request, "urlopen", no_network)
    with pytest.raises(evaldata.FetchError) as raised:
        evaldata.fetch("partiprompts", tmp_path / "p.jsonl", size=None, seed=0)
    message = str(raised.value)
    assert evaldata.EVAL_INPUTS["partiprompts"]["files"][0]["url"] in message and "source" in message


def test_registry_is_pinned():
    commit = re.compile(r"/[0-9a-f]{40}/")
    for name, spec in evaldata.EVAL_INPUTS.items():
        assert spec["kind"] in {"prompts", "fid_statistics", "weights"}, name
        for f in spec["files"]:
            assert f["sha256"] is None or re.fullmatch(r"[0-9a-f]{64}", f["sha256"]), name
            if "raw.githubusercontent.com" in f["url"] or "huggingface.co" in f["url"]:
                assert commit.search(f["url"]), f["url"]
