"""The toy world: procedural scenes of coloured shapes, their captions and their ground truth.

Every scene is drawn from a seed, so the dataset, the prompt sets and the FID reference set are
reproducible bytes. Ground truth is a handful of categorical *slots* (layout, and colour and shape of
up to two objects in reading order), which makes compositional accuracy and oracle verifiers exact.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageDraw

IMAGE_SIZE = 32
SUPERSAMPLE = 4  # draw at 4x and downsample: anti-aliased edges, like real images have

SHAPES = ("circle", "square", "triangle")
COLORS = {
    "red": (220, 50, 47),
    "green": (60, 180, 75),
    "blue": (45, 100, 230),
    "yellow": (235, 205, 40),
}
COLOR_NAMES = tuple(COLORS)
POSITIONS = ("left", "right", "top", "bottom", "center")
RELATIONS = ("left of", "right of", "above", "below")
# Layout classes: one per single-object position, then the two pair orientations.
LAYOUTS = POSITIONS + ("pair-horizontal", "pair-vertical")
NONE = "none"

# The label slots every image and every prompt carries, with their class names.
SLOTS = {
    "layout": LAYOUTS,
    "color1": COLOR_NAMES,
    "shape1": SHAPES,
    "color2": COLOR_NAMES + (NONE,),
    "shape2": SHAPES + (NONE,),
}

_CENTERS = {"left": (0.27, 0.5), "right": (0.73, 0.5), "top": (0.5, 0.27), "bottom": (0.5, 0.73), "center": (0.5, 0.5)}


@dataclass(frozen=True)
class ToyObject:
    shape: str
    color: str

    @property
    def phrase(self) -> str:
        return f"a {self.color} {self.shape}"


@dataclass(frozen=True)
class Scene:
    """What a caption says: one object at a position, or two objects in a spatial relation."""

    first: ToyObject
    position: str | None = None  # single-object scenes
    relation: str | None = None  # two-object scenes: `first` <relation> `second`
    second: ToyObject | None = None

    @property
    def caption(self) -> str:
        if self.second is None:
            where = "in the center" if self.position == "center" else f"on the {self.position}"
            return f"{self.first.phrase} {where}"
        return f"{self.first.phrase} {self.relation} {self.second.phrase}"

    def reading_order(self) -> tuple[ToyObject, ToyObject | None]:
        """Objects as a viewer reads them: left before right, top before bottom."""
        if self.second is None:
            return self.first, None
        if self.relation in ("left of", "above"):
            return self.first, self.second
        return self.second, self.first

    @property
    def layout(self) -> str:
        if self.second is None:
            return self.position
        return "pair-horizontal" if self.relation in ("left of", "right of") else "pair-vertical"

    def labels(self) -> dict[str, str]:
        """The ground truth per slot; the same for every image of this caption."""
        a, b = self.reading_order()
        return {
            "layout": self.layout,
            "color1": a.color,
            "shape1": a.shape,
            "color2": b.color if b else NONE,
            "shape2": b.shape if b else NONE,
        }

    def label_indices(self) -> list[int]:
        labels = self.labels()
        return [SLOTS[slot].index(labels[slot]) for slot in SLOTS]


def sample_scene(rng: np.random.Generator, pair_probability: float = 0.5) -> Scene:
    first = ToyObject(SHAPES[rng.integers(len(SHAPES))], COLOR_NAMES[rng.integers(len(COLORS))])
    if rng.random() >= pair_probability:
        return Scene(first=first, position=POSITIONS[rng.integers(len(POSITIONS))])
    while True:  # two distinct objects, so the caption names two things
        second = ToyObject(SHAPES[rng.integers(len(SHAPES))], COLOR_NAMES[rng.integers(len(COLORS))])
        if second != first:
            break
    return Scene(first=first, relation=RELATIONS[rng.integers(len(RELATIONS))], second=second)


def _object_centers(scene: Scene, rng: np.random.Generator) -> list[tuple[float, float]]:
    jitter = lambda: rng.uniform(-0.06, 0.06)  # noqa: E731 - a tiny local helper
    if scene.second is None:
        cx, cy = _CENTERS[scene.position]
        return [(cx + jitter(), cy + jitter())]
    along = rng.uniform(0.22, 0.32), rng.uniform(0.68, 0.78)
    across = rng.uniform(0.3, 0.7), rng.uniform(0.3, 0.7)
    if scene.layout == "pair-horizontal":
        return [(along[0], across[0]), (along[1], across[1])]
    return [(across[0], along[0]), (across[1], along[1])]


def render(scene: Scene, rng: np.random.Generator) -> np.ndarray:
    """Draw a scene as an IMAGE_SIZE x IMAGE_SIZE x 3 uint8 array (objects in reading order)."""
    size = IMAGE_SIZE * SUPERSAMPLE
    background = int(rng.integers(10, 45))
    canvas = Image.new("RGB", (size, size), (background,) * 3)
    draw = ImageDraw.Draw(canvas)
    objects = [o for o in scene.reading_order() if o is not None]
    for obj, (cx, cy) in zip(objects, _object_centers(scene, rng)):
        radius = rng.uniform(0.11, 0.16) * size
        shade = rng.uniform(0.85, 1.0)
        fill = tuple(int(c * shade) for c in COLORS[obj.color])
        x, y = cx * size, cy * size
        if obj.shape == "circle":
            draw.ellipse([x - radius, y - radius, x + radius, y + radius], fill=fill)
        elif obj.shape == "square":
            half = radius * 0.9
            draw.rectangle([x - half, y - half, x + half, y + half], fill=fill)
        else:
            draw.polygon([(x, y - radius), (x - radius, y + radius * 0.8), (x + radius, y + radius * 0.8)], fill=fill)
    return np.asarray(canvas.resize((IMAGE_SIZE, IMAGE_SIZE), Image.Resampling.BOX), dtype=np.uint8)


def sample_dataset(n: int, seed: int, pair_probability: float = 0.5) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """n (image, label indices, caption) triples, deterministic in `seed`."""
    rng = np.random.default_rng(seed)
    images = np.empty((n, IMAGE_SIZE, IMAGE_SIZE, 3), dtype=np.uint8)
    labels = np.empty((n, len(SLOTS)), dtype=np.int64)
    captions = []
    for i in range(n):
        scene = sample_scene(rng, pair_probability)
        images[i] = render(scene, rng)
        labels[i] = scene.label_indices()
        captions.append(scene.caption)
    return images, labels, captions


def parse_caption(caption: str) -> Scene:
    """Invert `Scene.caption`: prompt sets carry captions, and the oracle needs their ground truth."""
    words = caption.split()
    first = ToyObject(shape=words[2], color=words[1])
    rest = " ".join(words[3:])
    if rest == "in the center":
        return Scene(first=first, position="center")
    if rest.startswith("on the "):
        return Scene(first=first, position=rest.removeprefix("on the "))
    for relation in RELATIONS:
        if rest.startswith(relation + " "):
            tail = rest.removeprefix(relation + " ").split()
            return Scene(first=first, relation=relation, second=ToyObject(shape=tail[2], color=tail[1]))
    raise ValueError(f"not a toy-world caption: {caption!r}")
