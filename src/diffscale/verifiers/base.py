"""One interface for every verifier, one registry of kinds, one factory from a study's specs.

A verifier scores candidate images against their prompts (higher is better). Search calls
`score(images, prompts, groups=..., intermediate=...)` and reads `cost` for the ledger: calls, images
and GFLOPs, where the GFLOPs per image are measured once per verifier with `FlopCounterMode` on a
single-image forward and then multiplied by the number of images scored.

Each kind carries its own metadata as class attributes: the JSON schema of its options (the params
schema and its validation come from them), which toy-world components it reads, and whether it
compares a whole trajectory's x0 predictions (`intermediate_level`).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, ClassVar

from diffscale.lazy import lazy_import
from diffscale.registry import Registry

torch = lazy_import("torch")
flop_counter = lazy_import("torch.utils.flop_counter")

VERIFIERS: Registry[type[Verifier]] = Registry("verifier kind")

BATCH_SIZE_OPTION = {"batch_size": {"type": "integer", "minimum": 1, "default": 256,
                                    "description": "Images per verifier forward pass."}}


def register(kind: str):
    """Class decorator: `@register("clip-score")` makes the class the verifier of that kind."""

    def decorate(cls: type[Verifier]) -> type[Verifier]:
        cls.kind = kind
        VERIFIERS.register(kind, cls)
        return cls

    return decorate


@dataclass
class VerifierCost:
    """Accumulated over calls: how often the verifier ran, on how many images, at what compute."""

    calls: int = 0
    images: int = 0
    gflops: float = 0.0

    def add(self, calls: int, images: int, gflops: float) -> None:
        self.calls += calls
        self.images += images
        self.gflops += gflops

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class VerifierResources:
    """Local components a study provides (the toy world's); real checkpoints come through options."""

    oracle: Path | None = None  # toy oracle folder (diffscale.toyworld.oracle.save)
    clip: Path | None = None  # toy CLIP folder, open_clip `local-dir:` format


class Verifier:
    """Base class: checks inputs, batches, counts cost. Subclasses implement `_forward` on one batch."""

    kind: ClassVar[str] = "abstract"
    options: ClassVar[dict] = BATCH_SIZE_OPTION  # JSON schema of each option (the spec minus `kind`)
    required: ClassVar[tuple[str, ...]] = ()  # options without which the kind cannot run

    def __init__(self, *, device: str | torch.device = "cpu", batch_size: int = 256):
        if int(batch_size) < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        self.device = torch.device(device)
        self.batch_size = int(batch_size)
        self.cost = VerifierCost()
        self.intermediate_level: float | None = None  # set by kinds that compare an x0 prediction with the result
        self._gflops_per_image: float | None = None

    @property
    def needs_intermediate(self) -> bool:
        return self.intermediate_level is not None

    # -- metadata read by validation and the DAG, from a spec alone (nothing is loaded) -------------

    @classmethod
    def schema(cls) -> dict:
        return {"type": "object", "additionalProperties": False, "required": ["kind", *cls.required],
                "description": (cls.__doc__ or "").strip().splitlines()[0],
                "properties": {"kind": {"const": cls.kind}, **cls.options}}

    @classmethod
    def members(cls, options: dict) -> list[str]:
        """Other verifiers of the study this one is built from."""
        return []

    @classmethod
    def toy_components(cls, options: dict) -> set[str]:
        """Toy-world components (`oracle`, `clip`) a verifier of these options reads."""
        return set()

    @classmethod
    def level(cls, options: dict) -> float | None:
        """The fraction of the trajectory whose x0 prediction it compares with the result; None: final images only."""
        return None

    @classmethod
    def from_spec(cls, options: dict, resources: VerifierResources, device, built: dict[str, Verifier]) -> Verifier:
        """Build from a spec's options (the spec minus `kind`); `built` holds the verifiers built so far."""
        return cls(resources=resources, device=device, **options)

    def score(
        self,
        images: torch.Tensor,
        prompts: list[str],
        *,
        groups: torch.Tensor | None = None,
        intermediate: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """(B,) float32 CPU scores of (B, 3, H, W) images in [0, 1]; higher is better."""
        return self._score(images, prompts, groups, intermediate, self.cost)

    # -- internals shared by all kinds -------------------------------------------------------------

    def _score(self, images, prompts, groups, intermediate, ledger: VerifierCost) -> torch.Tensor:
        """Score and charge `ledger` (an ensemble passes its own, so members' counters stay untouched)."""
        check_inputs(self, images, prompts, groups, intermediate)
        n = len(prompts)
        if n == 0:
            ledger.add(1, 0, 0.0)
            return torch.zeros(0, dtype=torch.float32)
        per_image = self.gflops_per_image(images, prompts, intermediate)
        scores = []
        for start in range(0, n, self.batch_size):
            stop = start + self.batch_size
            scores.append(self._run_batch(images[start:stop], prompts[start:stop],
                                          None if intermediate is None else intermediate[start:stop]))
        ledger.add(1, n, n * per_image)
        return torch.cat(scores)

    def _run_batch(self, images, prompts, intermediate) -> torch.Tensor:
        images = images.to(self.device, torch.float32)
        if intermediate is not None:
            intermediate = intermediate.to(self.device, torch.float32)
        with torch.no_grad():
            return self._forward(images, list(prompts), intermediate).float().cpu()

    def gflops_per_image(self, images, prompts, intermediate=None) -> float:
        """Measured once, on the first image of the first call, then cached."""
        if self._gflops_per_image is None:
            with flop_counter.FlopCounterMode(display=False) as counter:
                self._run_batch(images[:1], prompts[:1], None if intermediate is None else intermediate[:1])
            self._gflops_per_image = counter.get_total_flops() / 1e9
        return self._gflops_per_image

    def _forward(self, images: torch.Tensor, prompts: list[str], intermediate: torch.Tensor | None) -> torch.Tensor:
        raise NotImplementedError

    def __repr__(self) -> str:
        return f"{type(self).__name__}(kind={self.kind!r}, device={str(self.device)!r}, batch_size={self.batch_size})"


def check_inputs(verifier: Verifier, images, prompts, groups, intermediate) -> None:
    if not isinstance(images, torch.Tensor) or images.ndim != 4 or images.shape[1] != 3:
        raise ValueError(f"{verifier.kind}: images must be a (B, 3, H, W) tensor, got {getattr(images, 'shape', type(images))}")
    if len(prompts) != len(images):
        raise ValueError(f"{verifier.kind}: {len(images)} images but {len(prompts)} prompts")
    if groups is not None and tuple(groups.shape) != (len(images),):
        raise ValueError(f"{verifier.kind}: groups must have shape ({len(images)},), got {tuple(groups.shape)}")
    if intermediate is not None and intermediate.shape != images.shape:
        raise ValueError(f"{verifier.kind}: intermediate shape {tuple(intermediate.shape)} != images shape {tuple(images.shape)}")
    if verifier.needs_intermediate and intermediate is None:
        raise ValueError(
            f"{verifier.kind}: this verifier needs `intermediate` (x0 predictions at an intermediate noise level); "
            "the search must pass them"
        )


def build_verifiers(specs: dict[str, dict], resources: VerifierResources | None = None,
                    device: str | torch.device = "cpu") -> dict[str, Verifier]:
    """Build every named verifier of a study: `{name: {kind: <registry key>, **options}}`.

    Ensembles name their members (`members: [names]`) among the same specs; members are built first
    and shared, so a member used alone and inside an ensemble is one object.
    """
    resources = resources or VerifierResources()
    built: dict[str, Verifier] = {}
    visiting: list[str] = []

    def build(name: str) -> Verifier:
        if name in built:
            return built[name]
        if name in visiting:
            raise ValueError(f"verifier {name!r}: members form a cycle: {' -> '.join(visiting + [name])}")
        spec = dict(specs[name])
        kind = spec.pop("kind", None)
        if kind not in VERIFIERS:
            raise ValueError(f"verifier {name!r}: unknown kind {kind!r}; known kinds: {VERIFIERS.names()}")
        visiting.append(name)
        for member in VERIFIERS[kind].members(spec):
            if member not in specs:
                raise ValueError(f"verifier {name!r}: unknown member {member!r}; defined verifiers: {sorted(specs)}")
            build(member)
        visiting.pop()
        try:
            built[name] = VERIFIERS[kind].from_spec(spec, resources, device, built)
        except TypeError as error:  # an option the kind does not take
            raise ValueError(f"verifier {name!r} ({kind}): {error}") from error
        return built[name]

    for name in specs:
        build(name)
    return {name: built[name] for name in specs}


# -- weights from local paths or pinned hub revisions ----------------------------------------------


def is_hub_spec(spec: str | None) -> bool:
    return isinstance(spec, str) and spec.startswith("hf-hub:")


def resolve_file(spec: str | Path, default_filenames: tuple[str, ...] = ()) -> Path:
    """A local file, or `hf-hub:<repo>@<revision>[:<filename>]` downloaded at that pinned revision.

    Without a filename the first of `default_filenames` that the repository has is taken (list
    safetensors first).
    """
    if not is_hub_spec(spec):
        path = Path(spec)
        if not path.is_file():
            raise FileNotFoundError(f"weights file not found: {path}")
        return path
    from huggingface_hub import hf_hub_download
    from huggingface_hub.errors import EntryNotFoundError

    repo_revision, _, filename = str(spec).removeprefix("hf-hub:").partition(":")
    repo, _, revision = repo_revision.partition("@")
    if not repo or not revision:
        raise ValueError(f"{spec!r}: pin the revision, as hf-hub:<repo>@<revision>[:<filename>]")
    candidates = (filename,) if filename else default_filenames
    if not candidates:
        raise ValueError(f"{spec!r}: name the file, as hf-hub:<repo>@<revision>:<filename>")
    for i, name in enumerate(candidates):
        try:
            return Path(hf_hub_download(repo, name, revision=revision))
        except EntryNotFoundError:
            if i == len(candidates) - 1:
                raise
    raise AssertionError("unreachable")


def load_state_dict(path: Path) -> dict[str, torch.Tensor]:
    """safetensors, or a torch file read with `weights_only=True` (a `state_dict` key is unwrapped)."""
    path = Path(path)
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        return load_file(str(path))
    state = torch.load(path, map_location="cpu", weights_only=True)
    if isinstance(state, dict) and "state_dict" in state:
        state = state["state_dict"]
    return {k.removeprefix("module."): v for k, v in state.items()}
