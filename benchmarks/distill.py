"""Benchmark: what latent consistency distillation costs and buys, per rung of the default study's ladder.

Method: the CLI builds the default study's toy world (dataset, reference, autoencoder, text encoder, oracle),
the teachers `toy-w<c>` and their students `toy-w<c>-lcm` (`distilled_from`, the default recipe
`toyworld.distillation`) in WORKDIR (kept, so a rerun reuses them). Each student's ledger gives its
distillation cost (wall time on this machine, counted FLOPs: student forward and backward, the teacher's CFG
pair, the EMA target) beside its teacher's training cost. Then teacher (DDIM, a CFG pair per step) and student
(LCM, one evaluation per step) sample the same N captions drawn like the data with the same per-image seeds
at guidance G, and FID in the toy oracle's features is computed against N fresh real images.
Run: `python benchmarks/distill.py WORKDIR [--widths 8 40] [--steps 1 2 4 8] [--images 512] [--guidance 3]`
(`--built`: measure the models WORKDIR holds, without building).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

import torch
import yaml
from diffusers import DiffusionPipeline

from diffscale.metrics import fidelity
from diffscale.sampling.block import sample_pixels
from diffscale.seeds import derive_seed
from diffscale.toyworld import scenes

REPO = Path(__file__).resolve().parents[1]


def build(work: Path, widths: list[int]) -> Path:
    study = yaml.safe_load((REPO / "params.yaml").read_text())
    study["models"] |= {f"toy-w{c}-lcm": {"source": "toy", "distilled_from": f"toy-w{c}"} for c in widths}
    (work / "study.yaml").write_text(yaml.safe_dump(study, sort_keys=False))
    verbs = [["toy", a] for a in ("dataset", "reference", "autoencoder", "text-encoder", "oracle")]
    verbs += [["model", "--name", f"toy-w{c}{suffix}"] for c in widths for suffix in ("", "-lcm")]
    for verb in verbs:
        subprocess.run([sys.executable, "-m", "diffscale.cli", "--params", "study.yaml", *verb], cwd=work, check=True,
                       env=os.environ | {"PYTHONPATH": str(REPO / "src")})
    return work / "results" / "default"


def fid(root: Path, model: str, sampler: str, steps: int, images: int, guidance: float) -> float:
    oracle = str(root / "toyworld" / "oracle")
    real, _, captions = scenes.sample_dataset(2 * images, derive_seed(0, "benchmark-distill"), 0.5)
    reference = fidelity.fid_features_to_statistics(fidelity.extract_features(real[:images], fidelity.TOY_EXTRACTOR, oracle))
    pipeline = DiffusionPipeline.from_pretrained(root / "models" / model, local_files_only=True)
    pixels = sample_pixels(pipeline, captions[images:], sampler, steps, guidance,
                           [derive_seed(0, "benchmark-distill", i) for i in range(images)])
    return fidelity.fid(fidelity.extract_features(pixels, fidelity.TOY_EXTRACTOR, oracle), reference)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("workdir", type=Path)
    parser.add_argument("--widths", type=int, nargs="+", default=[8, 40])
    parser.add_argument("--steps", type=int, nargs="+", default=[1, 2, 4, 8])
    parser.add_argument("--images", type=int, default=512)
    parser.add_argument("--guidance", type=float, default=3.0)
    parser.add_argument("--built", action="store_true", help="WORKDIR holds the built models already: measure only")
    args = parser.parse_args()
    args.workdir.mkdir(parents=True, exist_ok=True)
    root = args.workdir / "results" / "default" if args.built else build(args.workdir, args.widths)
    torch.set_num_threads(1)
    for c in args.widths:
        teacher, student = (json.loads((root / "models" / m / "training-ledger.json").read_text())
                            for m in (f"toy-w{c}", f"toy-w{c}-lcm"))
        print(json.dumps({"width": c, "teacher_training": {k: teacher[k] for k in ("training_flops", "seconds")},
                          "distillation": {k: student[k] for k in ("training_flops", "flops_per_step", "steps", "seconds")}}))
        for steps in args.steps:
            print(json.dumps({"width": c, "steps": steps,
                              "teacher_ddim_fid": round(fid(root, f"toy-w{c}", "ddim", steps, args.images, args.guidance), 1),
                              "student_lcm_fid": round(fid(root, f"toy-w{c}-lcm", "lcm", steps, args.images, args.guidance), 1)}),
                  flush=True)


if __name__ == "__main__":
    main()
