"""Real evaluation inputs, fetched from pinned sources and verified against published checksums.

`EVAL_INPUTS` names every input: prompt sets (COCO-2014 val captions, DrawBench, PartiPrompts, T2I-CompBench),
FID reference statistics, and torch-fidelity's Inception weights. Each entry pins its URLs (a commit, a
revision, a release) and the sha256 of each file where one is published or could be computed from the pinned
source; `sha256: None` means none is known, and such an entry is fetched only with ``allow_unverified=True``.
Whatever is fetched, the checksum observed is recorded next to the output (``<out>.source.json``).

Prompt sets become the project's prompt-set jsonl (`diffscale.prompts`): ``{"id", "prompt", "labels"}``,
optionally the first `size` records after a shuffle seeded by `seed`.
"""

from __future__ import annotations

import csv
import json
import os
import random
import shutil
import tempfile
import urllib.error
import urllib.request
import zipfile
from collections.abc import Callable
from pathlib import Path

from diffscale import prompts as prompt_sets
from diffscale.atomic import write_text
from diffscale.manifest import sha256_of
from diffscale.models.hub import FetchError

PARTI_COMMIT = "2c99f6652cbc7f0d0441aa91f4c7e7055bcb0071"  # google-research/parti: "First release of PartiPrompts"
COMPBENCH_COMMIT = "1b7094991a57f3c22abdd4f6e8ba6c1a15517073"  # Karine-Huang/T2I-CompBench
DRAWBENCH_REVISION = "ad794cba698c253ffdb6d18eff3fc87b004c1135"  # huggingface.co/datasets/sayakpaul/drawbench
T2IBENCHMARK_RELEASE = "v0.0.1"  # boomb0om/text2image-benchmark release (release assets are not content-addressed)

# sha256 of each T2I-CompBench validation file at COMPBENCH_COMMIT (the git blobs raw.githubusercontent serves).
COMPBENCH_SHA256 = {
    "color": "1634259756dbc77d13093d907d414480080ec9790a8c97ad09efaea7b2534f2d",
    "shape": "37e1a276906c7ea9516cbd7ac8501be896006c0c17ca7344f260562834455bae",
    "texture": "fbb5363515b4a28009e360afaaaf389d2dd2289e50dbb0c6ef4ea0c7fe4f3d4f",
    "spatial": "8707a1d7e42ce3002d95363cf55f74bd043c843ae27108f5125aaaa7840ca988",
    "non_spatial": "04c56cc9ac441dc9ea6c5157652058bd1635b5308526dd31bb29a1caab9a758d",
    "complex": "1b808018b8d9916db3d47d5aa2ef18377a3549a56901a474156f799824cdf3b4",
    "numeracy": "dad8df141604b70ba7554bec724e3db0a80023680769b5c514854ea2d2527bbe",
    "3d_spatial": "c9953597315f36a5fcb41291bb19bdc6ab5f64a0fa760d691b4854a73f5d1fe9",
}


# ---------------------------------------------------------------------------------------------- parsers
# A parser takes {file name: local path} and returns records {"prompt", "labels"} (prompt sets) or writes
# `out` itself and returns None (binary inputs).

def _records(rows: list[tuple[str, dict]]) -> list[dict]:
    return [{"prompt": prompt, "labels": labels} for prompt, labels in rows]


def parse_coco_captions(files: dict[str, Path], member: str = "annotations/captions_val2014.json") -> list[dict]:
    """One caption per image, the first by annotation id (as Mei et al. sample COCO captions), images by id."""
    path = files["annotations_trainval2014.zip"]
    if zipfile.is_zipfile(path):
        with zipfile.ZipFile(path) as archive:
            data = json.loads(archive.read(member))
    else:  # the extracted captions_val2014.json, passed as `source`
        data = json.loads(Path(path).read_text())
    first: dict[int, dict] = {}
    for annotation in sorted(data["annotations"], key=lambda a: a["id"]):
        first.setdefault(annotation["image_id"], annotation)
    return [
        {"prompt": " ".join(a["caption"].split()), "labels": {"image_id": image_id, "annotation_id": a["id"]}}
        for image_id, a in sorted(first.items())
    ]


def parse_drawbench(files: dict[str, Path]) -> list[dict]:
    with open(files["drawbench.csv"], newline="", encoding="utf-8") as handle:
        rows = [(r["Prompts"].strip(), {"category": r["Category"].strip()}) for r in csv.DictReader(handle)]
    return _records([r for r in rows if r[0]])


def parse_parti(files: dict[str, Path]) -> list[dict]:
    """PartiPrompts.tsv: Prompt, Category, Challenge, Note. Split on tabs (csv quoting would eat quoted words)."""
    lines = Path(files["PartiPrompts.tsv"]).read_text(encoding="utf-8").splitlines()
    header = lines[0].split("\t")
    rows = []
    for line in lines[1:]:
        if not line.strip():
            continue
        fields = dict(zip(header, line.split("\t")))
        labels = {"category": fields.get("Category", ""), "challenge": fields.get("Challenge", "")}
        if fields.get("Note"):
            labels["note"] = fields["Note"]
        rows.append((fields["Prompt"].strip(), labels))
    return _records(rows)


def _compbench_parser(category: str) -> Callable[[dict[str, Path]], list[dict]]:
    def parse(files: dict[str, Path]) -> list[dict]:
        lines = Path(files[f"{category}_val.txt"]).read_text(encoding="utf-8").splitlines()
        return _records([(line.strip(), {"category": category}) for line in lines if line.strip()])
    return parse


def parse_compbench_all(files: dict[str, Path]) -> list[dict]:
    return [r for category in COMPBENCH_SHA256 for r in _compbench_parser(category)(files)]


def check_fid_statistics(files: dict[str, Path], out: Path) -> None:
    """An .npz with `mu` (d,) and `sigma` (d, d), as torch-fidelity's fid_statistics_to_metric takes them."""
    import numpy as np

    (path,) = files.values()
    with np.load(path, allow_pickle=False) as data:
        if "mu" not in data or "sigma" not in data:
            raise ValueError(f"{path}: FID statistics need arrays `mu` and `sigma`; found {sorted(data.files)}")
        mu, sigma = data["mu"], data["sigma"]
    if mu.ndim != 1 or sigma.shape != (mu.shape[0], mu.shape[0]):
        raise ValueError(f"{path}: mu {mu.shape} and sigma {sigma.shape} do not match")
    _copy_into(path, out)


def copy_file(files: dict[str, Path], out: Path) -> None:
    (path,) = files.values()
    _copy_into(path, out)


# --------------------------------------------------------------------------------------------- registry

def _file(name: str, url: str, sha256: str | None, size: int | None = None, note: str = "") -> dict:
    return {"name": name, "url": url, "sha256": sha256, "size": size, "checksum_source": note}


_RAW = "https://raw.githubusercontent.com"
_COMPBENCH_FILES = {
    category: _file(
        f"{category}_val.txt", f"{_RAW}/Karine-Huang/T2I-CompBench/{COMPBENCH_COMMIT}/examples/dataset/{category}_val.txt",
        digest, note=f"sha256 of the git blob at Karine-Huang/T2I-CompBench@{COMPBENCH_COMMIT}",
    )
    for category, digest in COMPBENCH_SHA256.items()
}

EVAL_INPUTS: dict[str, dict] = {
    "coco2014-val": {
        "kind": "prompts",
        "description": "COCO-2014 validation captions, one per image (40,504 images)",
        "files": [_file(
            "annotations_trainval2014.zip", "http://images.cocodataset.org/annotations/annotations_trainval2014.zip",
            "031296bbc80c45a1d1f76bf9a90ead27e94e99ec629208449507a4917a3bf009", 252872794,
            "tensorflow/datasets: tensorflow_datasets/url_checksums/coco.txt",
        )],
        "parser": parse_coco_captions,
    },
    "drawbench": {
        "kind": "prompts",
        "description": "DrawBench (Imagen), 200 prompts in 11 categories",
        "files": [_file(
            "drawbench.csv",
            f"https://huggingface.co/datasets/sayakpaul/drawbench/resolve/{DRAWBENCH_REVISION}/"
            "DrawBench%20Prompts%20-%20Sheet1.csv",
            None, note="no published checksum found",
        )],
        "parser": parse_drawbench,
    },
    "partiprompts": {
        "kind": "prompts",
        "description": "PartiPrompts (Parti), 1,632 prompts with category and challenge",
        "files": [_file(
            "PartiPrompts.tsv", f"{_RAW}/google-research/parti/{PARTI_COMMIT}/PartiPrompts.tsv",
            "fab29e41bb512a169b56acab4cf2a41dcb675e285df2efcde6640c7dd3c440eb", 123107,
            f"sha256 of the git blob at google-research/parti@{PARTI_COMMIT}",
        )],
        "parser": parse_parti,
    },
    "t2i-compbench": {
        "kind": "prompts",
        "description": "T2I-CompBench(++) validation prompts, 300 per category, all categories",
        "files": list(_COMPBENCH_FILES.values()),
        "parser": parse_compbench_all,
    },
    **{
        f"t2i-compbench-{category.replace('_', '-')}": {
            "kind": "prompts",
            "description": f"T2I-CompBench(++) validation prompts, category {category}",
            "files": [_COMPBENCH_FILES[category]],
            "parser": _compbench_parser(category),
        }
        for category in COMPBENCH_SHA256
    },
    "fid-coco2014-val-30k": {
        "kind": "fid_statistics",
        "description": "Inception (pytorch-fid weights, pool3 2048-d) mu/sigma of 30k COCO-2014 val images "
                       "(text2image-benchmark); resizing differs from torch-fidelity's: compare FIDs only within "
                       "one pipeline",
        "files": [_file(
            "MS-COCO_val2014_fid_stats.npz",
            f"https://github.com/boomb0om/text2image-benchmark/releases/download/{T2IBENCHMARK_RELEASE}/"
            "MS-COCO_val2014_fid_stats.npz",
            None, note="no published checksum found",
        )],
        "parser": check_fid_statistics,
    },
    "inception-torch-fidelity": {
        "kind": "weights",
        "description": "torch-fidelity's InceptionV3 weights (pass as feature_extractor_weights_path)",
        "files": [_file(
            "weights-inception-2015-12-05-6726825d.pth",
            "https://github.com/toshas/torch-fidelity/releases/download/v0.2.0/weights-inception-2015-12-05-6726825d.pth",
            "6726825d0af5f729cebd5821db510b11b1cfad8faad88a03f1befd49fb9129b2", 95628359,
            "published by several projects that pin this file; its first 8 hex digits are in the file name "
            "(torch.hub convention)",
        )],
        "parser": copy_file,
    },
}


# ---------------------------------------------------------------------------------------------- fetching

def _copy_into(source: Path, out: Path) -> None:
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    fd, staging = tempfile.mkstemp(prefix=f".{out.name}.partial-", dir=out.parent)
    os.close(fd)
    try:
        shutil.copyfile(source, staging)
        os.replace(staging, out)
    except BaseException:
        Path(staging).unlink(missing_ok=True)
        raise


def how_to_prefetch(name: str, entry: dict) -> str:
    lines = [f"To use `{name}` without network, download on a machine with network:"]
    lines += [f"    curl -L -o '{f['name']}' '{f['url']}'" for f in entry["files"]]
    lines.append(
        "and pass the local " + ("file" if len(entry["files"]) == 1 else "folder holding these files")
        + " as `source` (the workflow's `source:` key of this input)."
    )
    return "\n".join(lines)


def _download(url: str, target: Path, name: str, entry: dict, timeout: float = 60.0) -> None:
    request = urllib.request.Request(url, headers={"User-Agent": "diffscale"})
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response, open(target, "wb") as handle:
            shutil.copyfileobj(response, handle, 1 << 20)
    except (urllib.error.URLError, OSError, TimeoutError) as error:
        raise FetchError(f"cannot download {url}: {error}\n{how_to_prefetch(name, entry)}") from error


def _verify(spec: dict, path: Path, observed: str, allow_unverified: bool, name: str) -> bool:
    expected = spec["sha256"]
    if expected is None:
        if not allow_unverified:
            raise FetchError(
                f"{name}: no published sha256 is known for {spec['url']} (observed sha256 {observed}); refusing to "
                f"use it unverified. Check the file yourself and pass allow_unverified=True (params key "
                f"`allow_unverified: true`) to accept it; the observed checksum is recorded either way."
            )
        return False
    if observed != expected:
        raise FetchError(
            f"{name}: checksum mismatch for {spec['name']} from {spec['url']}: expected sha256 {expected}, "
            f"observed {observed} ({path}). The file is corrupt, truncated, or not the pinned version."
        )
    return True


def fetch(name: str, out: Path, *, size: int | None, seed: int, allow_unverified: bool = False,
          source: str | None = None) -> Path:
    """Fetch input `name` into `out` (a prompt-set jsonl, an .npz or a weights file); return `out`.

    `source` replaces the URLs with a local file (one-file inputs) or a folder holding the files by name.
    Every file is checked against its pinned sha256; `out` and `<out>.source.json` (provenance: URLs, expected
    and observed checksums) are written atomically.
    """
    if name not in EVAL_INPUTS:
        raise KeyError(f"unknown evaluation input {name!r}; known: {sorted(EVAL_INPUTS)}")
    entry = EVAL_INPUTS[name]
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    provenance = {"name": name, "kind": entry["kind"], "description": entry["description"], "files": []}
    with tempfile.TemporaryDirectory(prefix=f".{out.name}.fetch-", dir=out.parent) as tmp:
        local: dict[str, Path] = {}
        for spec in entry["files"]:
            if source is not None:
                path = Path(source).expanduser()
                if path.is_dir():
                    path = path / spec["name"]
                elif len(entry["files"]) > 1:
                    raise FetchError(f"{name} has {len(entry['files'])} files: `source` must be a folder holding "
                                     f"{[f['name'] for f in entry['files']]}")
                if not path.is_file():
                    raise FetchError(f"{name}: {path} does not exist\n{how_to_prefetch(name, entry)}")
            else:
                path = Path(tmp) / spec["name"]
                _download(spec["url"], path, name, entry)
            observed = sha256_of(path)
            verified = _verify(spec, path, observed, allow_unverified, name)
            provenance["files"].append({
                "name": spec["name"], "url": spec["url"], "local_source": str(path) if source is not None else None,
                "sha256_expected": spec["sha256"], "sha256_observed": observed, "verified": verified,
                "bytes": path.stat().st_size, "checksum_source": spec["checksum_source"],
            })
            local[spec["name"]] = path
        if entry["kind"] == "prompts":
            records = entry["parser"](local)
            order = list(range(len(records)))
            if size is not None:
                # A seeded shuffle, then the first `size`: subsets of one seed nest (size N is a prefix of size M).
                random.Random(seed).shuffle(order)
                order = order[:size]
            prompt_sets.write(out, [{"id": i, **records[j]} for i, j in enumerate(order)])
            provenance.update(count=len(order), source_count=len(records), size=size, seed=seed)
        else:
            entry["parser"](local, out)
        provenance["sha256_output"] = sha256_of(out)
    write_text(Path(str(out) + ".source.json"), json.dumps(provenance, indent=2, sort_keys=True) + "\n")
    return out
