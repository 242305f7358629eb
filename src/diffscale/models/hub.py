"""Fetch a real checkpoint from the Hugging Face Hub at a pinned revision, safetensors only.

A model entry ``{source: hf, repo: org/name, revision: <40-hex commit>, variant: fp16?, subfolder: ...?}``
becomes a diffusers pipeline folder inside the DAG's output directory, next to a manifest
(``diffscale-source.json``) that records the repo, the resolved commit and the sha256 of every weight file.

The files go through the Hugging Face cache (``HF_HUB_CACHE`` / ``HF_HOME``), so a cache that was filled on a
machine with network works with ``HF_HUB_OFFLINE=1``; they are then hard-linked (or copied, across file systems)
into the output directory, which the workflow's cache tracks. Only safetensors weights are fetched or
accepted, no pipeline code is ever fetched, and ``trust_remote_code`` is never used.
"""

from __future__ import annotations

import fnmatch
import json
import os
import re
import shutil
from pathlib import Path

from diffscale.atomic import atomic_directory, write_text
from diffscale.manifest import sha256_of
from diffscale.models.source import MANIFEST, UNSAFE_SUFFIXES, prepare_local, weight_files

PIPELINE_DIR = "pipeline"  # the fetched folder, relative to the model's output directory
ALLOWED_LIBRARIES = ("diffusers", "transformers")
COMMIT = re.compile(r"[0-9a-f]{40}")
LFS_BLOB = re.compile(r"[0-9a-f]{64}")
# Configuration and tokenizer files (vocab.json, merges.txt, tokenizer.json, spiece.model, ...); weights are added
# per variant below, inside component folders only (a repo's root may hold a single-file checkpoint).
METADATA_PATTERNS = ["model_index.json", "*.json", "*.txt", "*.model"]
# Never fetched: pickled weights, pipeline code, other frameworks' weights.
NEVER = ["*.bin", "*.ckpt", "*.pt", "*.pth", "*.pkl", "*.py", "*.msgpack", "*.h5", "*.onnx", "*.onnx_data"]


class FetchError(RuntimeError):
    """An input could not be fetched (offline, no access, missing or corrupt); the message says how to fix it."""


def _offline() -> bool:
    """HF_HUB_OFFLINE as set now (huggingface_hub reads it once, at import)."""
    from huggingface_hub import constants

    value = os.environ.get("HF_HUB_OFFLINE") or os.environ.get("TRANSFORMERS_OFFLINE")
    if value is not None:
        return value.strip().upper() in {"1", "ON", "YES", "TRUE"}
    return bool(constants.HF_HUB_OFFLINE)


def hub_cache_dir() -> Path:
    """The Hugging Face hub cache as the environment says now (HF_HUB_CACHE, then HF_HOME/hub)."""
    from huggingface_hub import constants

    if os.environ.get("HF_HUB_CACHE"):
        return Path(os.environ["HF_HUB_CACHE"]).expanduser()
    if os.environ.get("HF_HOME"):
        return Path(os.environ["HF_HOME"]).expanduser() / "hub"
    return Path(constants.HF_HUB_CACHE)


def patterns(variant: str | None, subfolder: str | None) -> tuple[list[str], list[str]]:
    """allow_patterns and ignore_patterns for snapshot_download: metadata + safetensors of one variant."""
    if variant:
        weights = [f"*/*.{variant}.safetensors", f"*/*.{variant}-*.safetensors"]
        ignore = NEVER + ["*.safetensors.index.json"]  # the variant's own index replaces it
    else:
        # `<stem>.<variant>.safetensors` and `<stem>.<variant>-0000x-of-0000y.safetensors` are variants.
        weights = ["*/*.safetensors"]
        ignore = NEVER + ["*.*.safetensors", "*.*-*-of-*.safetensors"]
    allow = METADATA_PATTERNS + weights
    if subfolder:
        prefix = subfolder.strip("/") + "/"
        allow = [prefix + p for p in allow]
        ignore = [prefix + p for p in ignore]
    return allow, ignore


def _matches(path: str, allow: list[str], ignore: list[str]) -> bool:
    return any(fnmatch.fnmatch(path, p) for p in allow) and not any(fnmatch.fnmatch(path, p) for p in ignore)


def how_to_prefetch(repo: str, revision: str, variant: str | None, subfolder: str | None) -> str:
    allow, _ = patterns(variant, subfolder)
    include = " ".join(f"--include '{p}'" for p in allow)
    return (
        f"To use it without network: on a machine with network run\n"
        f"    huggingface-cli download {repo} --revision {revision} {include}\n"
        f"then copy its Hugging Face cache ({hub_cache_dir()}, or set HF_HUB_CACHE / HF_HOME) here and run with "
        f"HF_HUB_OFFLINE=1; or download the pipeline to a folder (add --local-dir DIR) and use a model entry "
        f"`source: local` with `path: DIR` instead."
    )


def _fetch_error(entry: dict, error: Exception) -> FetchError:
    from huggingface_hub.errors import GatedRepoError, RepositoryNotFoundError, RevisionNotFoundError

    repo, revision = entry["repo"], entry["revision"]
    where = f"{repo} at revision {revision}"
    fix = how_to_prefetch(repo, revision, entry.get("variant"), entry.get("subfolder"))
    if isinstance(error, GatedRepoError):
        why = (f"{repo} is gated: accept its licence on https://huggingface.co/{repo} with your account, then "
               f"`huggingface-cli login` (or set HF_TOKEN) before fetching.")
    elif isinstance(error, RevisionNotFoundError):
        why = f"revision {revision} does not exist in {repo}: pin a full commit sha from the repo's history."
    elif isinstance(error, RepositoryNotFoundError):
        why = (f"{repo} was not found, or it is private or gated and no valid token was sent: check the name; for a "
               f"gated repo accept its licence on the Hub and `huggingface-cli login`.")
    elif _offline():
        why = "HF_HUB_OFFLINE=1 is set and the files are not in the local Hugging Face cache."
    else:
        why = "the Hub could not be reached and the files are not in the local Hugging Face cache."
    return FetchError(f"cannot fetch {where}: {why}\n{fix}\n(cause: {type(error).__name__}: {error})")


def _http_errors() -> tuple[type[BaseException], ...]:
    """The HTTP client's errors (huggingface_hub 0.x/1.x use httpx or requests, 2.x httpx2)."""
    found = []
    for module in ("httpx2", "httpx", "requests"):
        try:
            found.append(__import__(module).exceptions.RequestException if module == "requests"
                         else __import__(module).HTTPError)
        except (ImportError, AttributeError):
            pass
    return tuple(found)


def _download(entry: dict, allow: list[str], ignore: list[str]) -> Path:
    from huggingface_hub import snapshot_download
    from huggingface_hub.errors import (
        GatedRepoError,
        HfHubHTTPError,
        IncompleteSnapshotError,
        LocalEntryNotFoundError,
        OfflineModeIsEnabled,
        RepositoryNotFoundError,
        RevisionNotFoundError,
    )

    handled = (
        LocalEntryNotFoundError, OfflineModeIsEnabled, GatedRepoError, RepositoryNotFoundError, RevisionNotFoundError,
        IncompleteSnapshotError, HfHubHTTPError, ConnectionError, TimeoutError, *_http_errors(),
    )
    try:
        return Path(snapshot_download(
            entry["repo"], revision=entry["revision"], cache_dir=hub_cache_dir(), allow_patterns=allow,
            ignore_patterns=ignore or None, local_files_only=_offline(),
        ))
    except handled as error:
        raise _fetch_error(entry, error) from error


def check_model_index(index: dict, where: str) -> dict[str, tuple[str, str]]:
    """Components of a model_index.json; refuse custom pipeline code or libraries other than diffusers/transformers."""
    import diffusers

    name = index.get("_class_name")
    if not isinstance(name, str) or not hasattr(diffusers, name):
        raise ValueError(
            f"{where}: model_index.json names pipeline class {name!r}, which is not a diffusers pipeline (custom "
            f"pipeline code is never fetched or trusted); only pipelines shipped with diffusers are accepted"
        )
    components, foreign = {}, []
    for key, value in index.items():
        if key.startswith("_") or not isinstance(value, list) or len(value) != 2:
            continue
        library, cls = value
        if library is None and cls is None:
            continue  # a disabled component, e.g. safety_checker: [null, null]
        if library not in ALLOWED_LIBRARIES:
            foreign.append(f"{key}: [{library}, {cls}]")
        else:
            components[key] = (library, cls)
    if foreign:
        raise ValueError(
            f"{where}: model_index.json has components whose classes come from neither diffusers nor "
            f"transformers (custom code, never trusted): {foreign}"
        )
    return components


def check_components(snapshot: Path, folder: Path, components: dict, where: str) -> None:
    """Every model component (a folder with config.json) must have safetensors weights in the fetched folder."""
    problems = []
    for key in sorted(components):
        fetched = folder / key
        if not fetched.is_dir():
            problems.append(f"{key}: listed in model_index.json but no files were fetched")
            continue
        if not (fetched / "config.json").exists():
            continue  # scheduler, tokenizer, feature extractor: configuration only
        if not any(p.suffix == ".safetensors" for p in fetched.rglob("*")):
            others = [str(p.relative_to(snapshot)) for p in weight_files(snapshot / key)]
            problems.append(f"{key}: no safetensors weights" + (f" (found only {others})" if others else ""))
    if problems:
        raise ValueError(
            f"{where}: only safetensors weights are accepted (pickled .bin/.ckpt/.pt/.pth weights are never "
            f"loaded); " + "; ".join(problems)
        )


def _strip_variant(name: str, variant: str | None) -> str:
    """diffusion_pytorch_model.fp16.safetensors -> diffusion_pytorch_model.safetensors (so no variant= is needed)."""
    if not variant:
        return name
    v = re.escape(variant)
    name = re.sub(rf"\.{v}\.safetensors$", ".safetensors", name)
    name = re.sub(rf"\.{v}-(\d+-of-\d+)\.safetensors$", r"-\1.safetensors", name)
    return re.sub(rf"\.index\.{v}\.json$", ".index.json", name)


def _place(source: Path, target: Path) -> None:
    """Hard-link a cache file into the output (no second copy of the weights); copy across file systems."""
    target.parent.mkdir(parents=True, exist_ok=True)
    real = source.resolve()
    try:
        os.link(real, target)
    except OSError:
        shutil.copyfile(real, target)


def _verify_blob(source: Path, digest: str, where: str) -> None:
    """The cache names an LFS file's blob by its sha256: a mismatch means a corrupt cache."""
    blob = source.resolve().name
    if source.is_symlink() and LFS_BLOB.fullmatch(blob) and blob != digest:
        raise FetchError(
            f"{where}: {source.name} in the Hugging Face cache is corrupt (sha256 {digest}, expected {blob}); "
            f"delete {source.resolve()} and fetch again"
        )


def fetch_hf(entry: dict, out: Path) -> dict:
    """Fetch `entry` into `out/pipeline` and write `out/diffscale-source.json`; return the manifest."""
    repo, revision = entry["repo"], str(entry["revision"])
    variant, subfolder = entry.get("variant"), entry.get("subfolder")
    where = f"{repo}@{revision}"
    if not COMMIT.fullmatch(revision):
        raise ValueError(f"{repo}: revision must be a full 40-hex commit sha, not {revision!r} (branches and tags move)")
    allow, ignore = patterns(variant, subfolder)
    snapshot = _download(entry, allow, ignore)
    resolved = snapshot.name if COMMIT.fullmatch(snapshot.name) else revision
    root = snapshot / subfolder.strip("/") if subfolder else snapshot
    if not (root / "model_index.json").exists():
        raise FetchError(f"{where}: no model_index.json in {root}; is `subfolder` right? "
                         f"{how_to_prefetch(repo, revision, variant, subfolder)}")
    components = check_model_index(json.loads((root / "model_index.json").read_text()), where)

    out = Path(out)
    ignored = sorted(str(p.relative_to(root)) for p in weight_files(root) if p.suffix in UNSAFE_SUFFIXES)
    origin: dict[str, Path] = {}  # fetched file -> its file in the cache snapshot
    with atomic_directory(out / PIPELINE_DIR) as staging:
        for path in sorted(p for p in root.rglob("*") if p.is_file() or p.is_symlink()):
            relative = path.relative_to(snapshot).as_posix()
            if ".cache" in path.relative_to(root).parts or not _matches(relative, allow, ignore):
                continue
            target = staging / _strip_variant(path.relative_to(root).as_posix(), variant)
            origin[target.relative_to(staging).as_posix()] = path
            if target.name.endswith(".index.json") and variant:
                index = json.loads(path.read_text())
                index["weight_map"] = {k: _strip_variant(v, variant) for k, v in index.get("weight_map", {}).items()}
                target.parent.mkdir(parents=True, exist_ok=True)
                target.write_text(json.dumps(index, indent=2))
            else:
                _place(path, target)
        check_components(root, staging, components, where)
        unsafe = [str(p.relative_to(staging)) for p in weight_files(staging) if p.suffix != ".safetensors"]
        if unsafe:
            raise ValueError(f"{where}: only safetensors weights are accepted; found {unsafe}")
        files = {p.relative_to(staging).as_posix(): sha256_of(p) for p in weight_files(staging)}
        for local, digest in files.items():
            _verify_blob(origin[local], digest, where)
    manifest = {
        "source": "hf",
        "repo": repo,
        "revision": resolved,
        "variant": variant,
        "subfolder": subfolder,
        "path": PIPELINE_DIR,  # relative to the model directory, so the directory can move (atomic rename, DVC)
        "files": files,
        "ignored": ignored,  # non-safetensors weights present in the cache, never copied nor loaded
    }
    write_text(out / MANIFEST, json.dumps(manifest, indent=2, sort_keys=True))
    return manifest


def prepare_model(entry: dict, out: Path) -> None:
    """The model directory of a hub or local entry, written atomically with its integrity manifest: the
    fetched pipeline and its source record, or the record of a local folder."""
    with atomic_directory(out) as staging:
        (fetch_hf if entry["source"] == "hf" else prepare_local)(entry, staging)
