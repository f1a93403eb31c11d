"""Scenes of the synthetic world: shape categories, colours, sizes, placement, outlines, drawing.

A scene is a list of filled shapes on a textured background. Each shape's outline is one or
more polygons; the same vertex list is drawn and annotated, so masks are exact.

>>> import numpy as np
>>> scene = make_scene(np.random.default_rng(0), (320, 240), level=2, group=None)
>>> [shape.category.name for shape in scene.shapes][:3] == [scene.shapes[0].category.name] * 3
True
>>> draw(scene, np.random.default_rng(0)).size == (scene.width, scene.height)
True
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Collection, Sequence
from dataclasses import dataclass
from fractions import Fraction

import numpy as np
from PIL import Image, ImageDraw


@dataclass(frozen=True)
class ShapeCategory:
    """One shape category as written to ``instances.json``."""

    id: int
    name: str
    plural: str
    group: str  # "round" (the testA group, like RefCOCO's people) or "angular"


CATEGORIES: tuple[ShapeCategory, ...] = (
    ShapeCategory(1, "circle", "circles", "round"),
    ShapeCategory(2, "ellipse", "ellipses", "round"),
    ShapeCategory(3, "ring", "rings", "round"),
    ShapeCategory(4, "square", "squares", "angular"),
    ShapeCategory(5, "triangle", "triangles", "angular"),
    ShapeCategory(6, "star", "stars", "angular"),
    ShapeCategory(7, "hexagon", "hexagons", "angular"),
    ShapeCategory(8, "cross", "crosses", "angular"),
    ShapeCategory(9, "diamond", "diamonds", "angular"),
    ShapeCategory(10, "pentagon", "pentagons", "angular"),
)

# Colours at least ~85 apart from each other and ~80 from any background tone, so a
# JPEG-compressed pixel still names its colour.
PALETTE: dict[str, tuple[int, int, int]] = {
    "red": (215, 35, 35),
    "green": (30, 150, 50),
    "blue": (35, 75, 215),
    "yellow": (240, 220, 40),
    "purple": (110, 25, 150),
    "orange": (245, 135, 25),
    "white": (248, 248, 248),
    "black": (18, 18, 18),
    "pink": (245, 120, 200),
    "cyan": (40, 195, 210),
}

# radius as a fraction of the image's shorter side, per size class
_SIZE_RANGES = {"small": (0.055, 0.08), "medium": (0.09, 0.12), "large": (0.13, 0.16)}
# with separated sizes: each class at least ~1.25x the one below, so the size word shows in
# the pixels (the default ranges nearly touch: a large small and a small medium differ by 12%)
_SEPARATED_RANGES = {"small": (0.05, 0.062), "medium": (0.08, 0.096), "large": (0.12, 0.145)}
_SIZE_ORDER = ("large", "medium", "small")  # placement falls back towards small
_SIZE_PROBS = {"small": 0.35, "medium": 0.4, "large": 0.25}
_EQUAL_SIZE_PROBS = {"small": 1 / 3, "medium": 1 / 3, "large": 1 / 3}
SIZE_WORDS = {"small": ("small", "little", "tiny"), "medium": ("medium",), "large": ("big", "large")}
# Smallest radius drawn, in pixels: below it a ring's band and a star's points blur into blobs
# in a JPEG and the category can no longer be told.
MIN_RADIUS = 6.0


@dataclass(frozen=True)
class Shape:
    """One drawn object: what it is, where it is, and its outline."""

    category: ShapeCategory
    colour: str
    size: str
    cx: float
    cy: float
    parts: tuple[tuple[float, ...], ...]  # flat polygon parts, as drawn and as annotated


@dataclass(frozen=True)
class WorldRules:
    """How a scene is populated beyond its distractor level; the defaults are the original world.

    - ``objects_per_image``: ``(low, high)``: each image holds a uniform draw from
      ``low..high`` shapes, never fewer than its level's copies of the primary category
      (a level asking for more copies than ``high`` raises the count to the copies).
    - ``same_colour_prob``: ``None`` keeps the original rule (copies of the primary
      category get distinct colours in 70% of the images, colours drawn independently in
      the rest); a probability ``p`` makes each copy after the first repeat the colour of
      an earlier copy (one drawn uniformly) with probability ``p``, and take a colour no
      copy has yet otherwise. Copies of one colour can then be told apart only by size,
      position or relations.
    - ``separated_sizes``: draw radii from size classes at least ~1.25x apart and equally
      often (small / medium / large a third each), so the size word can be seen, also in
      a shrunk mosaic cell; by default the classes nearly touch and small and medium
      are the common ones.

    >>> WorldRules().objects_per_image, WorldRules(same_colour_prob=0.8).separated_sizes
    ((2, 6), False)
    """

    objects_per_image: tuple[int, int] = (2, 6)
    same_colour_prob: float | None = None
    separated_sizes: bool = False

    def __post_init__(self) -> None:
        span = self.objects_per_image
        valid = (
            isinstance(span, tuple) and len(span) == 2
            and all(isinstance(v, int) and not isinstance(v, bool) for v in span)
            and 1 <= span[0] <= span[1] <= MAX_OBJECTS
        )  # fmt: skip
        if not valid:
            raise ValueError(
                f"objects_per_image must be (low, high) integers with 1 <= low <= high <= {MAX_OBJECTS}, got {span!r}"
            )
        p = self.same_colour_prob
        if p is not None and not (isinstance(p, (int, float)) and not isinstance(p, bool) and 0.0 <= p <= 1.0):
            raise ValueError(f"same_colour_prob must be a probability in [0, 1] or None, got {p!r}")
        if not isinstance(self.separated_sizes, bool):
            raise ValueError(f"separated_sizes must be True or False, got {self.separated_sizes!r}")

    @property
    def size_ranges(self) -> dict[str, tuple[float, float]]:
        """Radius range per size class, as fractions of the image's shorter side."""
        return _SEPARATED_RANGES if self.separated_sizes else _SIZE_RANGES

    @property
    def size_probs(self) -> dict[str, float]:
        """How often each size class is drawn (before placement shrinks what does not fit)."""
        return _EQUAL_SIZE_PROBS if self.separated_sizes else _SIZE_PROBS


# a category has at most one shape besides the primary's copies, and there are ten
MAX_OBJECTS = 10


@dataclass(frozen=True)
class Scene:
    """One image's size and shapes; the primary category's copies come first."""

    width: int
    height: int
    shapes: tuple[Shape, ...]


def _ring_points(cx: float, cy: float, rx: float, ry: float, theta: float, n: int) -> np.ndarray:
    angles = np.linspace(0.0, 2.0 * np.pi, n, endpoint=False)
    x, y = rx * np.cos(angles), ry * np.sin(angles)
    c, s = np.cos(theta), np.sin(theta)
    return np.stack([cx + c * x - s * y, cy + s * x + c * y], axis=1)


def _outline(category: str, cx: float, cy: float, r: float, rng: np.random.Generator) -> list[np.ndarray]:
    """Polygon parts of one shape, all inside the circle of radius ``r`` around the centre."""
    theta = float(rng.uniform(0.0, 2.0 * np.pi))
    smooth = int(np.clip(round(r / 1.5), 16, 64))
    if category == "circle":
        return [_ring_points(cx, cy, r, r, 0.0, smooth)]
    if category == "ellipse":
        return [_ring_points(cx, cy, r, r * float(rng.uniform(0.5, 0.7)), theta, smooth)]
    if category == "ring":
        outer = _ring_points(cx, cy, r, r, 0.0, smooth)
        inner = _ring_points(cx, cy, 0.5 * r, 0.5 * r, 0.0, smooth)
        # one keyhole polygon: outer loop, a zero-width cut in, inner loop backwards
        return [np.concatenate([outer, outer[:1], inner[:1], inner[::-1]])]
    if category == "cross":
        bar = np.array([[-0.95, -0.3], [0.95, -0.3], [0.95, 0.3], [-0.95, 0.3]]) * r
        c, s = np.cos(theta), np.sin(theta)
        parts = []
        for rot in (np.array([[c, -s], [s, c]]), np.array([[-s, -c], [c, -s]])):
            parts.append(bar @ rot.T + [cx, cy])
        return parts
    if category == "star":
        points = _ring_points(cx, cy, r, r, theta, 10)
        points[1::2] = (points[1::2] - [cx, cy]) * 0.45 + [cx, cy]
        return [points]
    if category == "diamond":
        return [_ring_points(cx, cy, r, 0.6 * r, theta, 4)]
    corners = {"square": 4, "triangle": 3, "hexagon": 6, "pentagon": 5}[category]
    return [_ring_points(cx, cy, r, r, theta, corners)]


def reshaped(shape: Shape, category: ShapeCategory, rng: np.random.Generator) -> Shape:
    """``shape`` drawn as ``category``: the same centre, colour, size class and enclosing circle.

    Every outline lies inside the circle its shape was placed with (see :func:`_outline`), so
    the new shape overlaps no other shape the old one did not.

    >>> star = make_scene(np.random.default_rng(0), (160, 120), 0, None).shapes[0]
    >>> ring = reshaped(star, CATEGORIES[2], np.random.default_rng(1))
    >>> ring.category.name, ring.colour == star.colour, (ring.cx, ring.cy) == (star.cx, star.cy)
    ('ring', True, True)
    """
    points = np.concatenate([np.reshape(part, (-1, 2)) for part in shape.parts])
    radius = float(np.max(np.hypot(points[:, 0] - shape.cx, points[:, 1] - shape.cy)))
    parts = tuple(
        tuple(round(float(v), 2) for v in part.ravel()) for part in _outline(category.name, shape.cx, shape.cy, radius, rng)
    )
    return Shape(category, shape.colour, shape.size, shape.cx, shape.cy, parts)


def _radius(fraction: float, short: int, ranges: dict[str, tuple[float, float]] = _SIZE_RANGES) -> float:
    """Radius of a shape ``fraction`` of the shorter side ``short`` across, at least :data:`MIN_RADIUS`.

    Where the smallest size would fall under the floor, the whole size scale is squeezed
    into [MIN_RADIUS, largest], so that small < medium < large still holds.
    """
    smallest, largest = ranges["small"][0], ranges["large"][1]
    if smallest * short >= MIN_RADIUS:
        return fraction * short
    return MIN_RADIUS + (fraction - smallest) / (largest - smallest) * (largest * short - MIN_RADIUS)


def _place(
    rng: np.random.Generator, width: int, height: int, placed: list[tuple[float, float, float]], size: str,
    scale: float = 1.0, ranges: dict[str, tuple[float, float]] = _SIZE_RANGES,
) -> tuple[str, float, float, float] | None:
    """Centre and radius for a new shape clear of the placed ones, shrinking it if it must."""
    short = min(width, height)
    for size_class in _SIZE_ORDER[_SIZE_ORDER.index(size) :]:
        low, high = ranges[size_class]
        for _ in range(30):
            r = _radius(float(rng.uniform(low, high)), short, ranges) * scale
            cx = float(rng.uniform(r + 2, width - r - 2))
            cy = float(rng.uniform(r + 2, height - r - 2))
            # the gap keeps every object's outline clear of the others, so masks are exact
            if all(np.hypot(cx - x, cy - y) >= r + q + 6 for x, y, q in placed):
                return size_class, cx, cy, r
    return None


def _free_spot(
    rng: np.random.Generator, width: int, height: int, placed: list[tuple[float, float, float]], scale: float = 1.0,
    ranges: dict[str, tuple[float, float]] = _SIZE_RANGES,
) -> tuple[str, float, float, float] | None:
    """Last resort for a primary copy: a random free centre of a 1-px grid for the smallest shape."""
    r = _radius(ranges["small"][0], min(width, height), ranges) * scale
    xs, ys = np.meshgrid(np.arange(r + 2, width - r - 2), np.arange(r + 2, height - r - 2))
    free = np.ones(xs.shape, dtype=bool)
    for x, y, q in placed:
        free &= np.hypot(xs - x, ys - y) >= r + q + 6
    spots = np.flatnonzero(free)
    if not spots.size:
        return None
    k = int(spots[int(rng.integers(spots.size))])
    return "small", float(xs.flat[k]), float(ys.flat[k]), r


def _copy_colours(rng: np.random.Generator, copies: int, n_colours: int, rules: WorldRules) -> list[int]:
    """Palette indices of the primary category's copies, by the rule of ``rules``."""
    if rules.same_colour_prob is None:
        # mostly distinct colours among copies; shared ones make the hard cases
        distinct = rng.random() < 0.7
        return [int(j) for j in rng.choice(n_colours, size=copies, replace=not distinct)]
    chosen = [int(rng.integers(n_colours))]
    for _ in range(copies - 1):
        if rng.random() < rules.same_colour_prob:
            chosen.append(chosen[int(rng.integers(len(chosen)))])
        else:
            unused = [j for j in range(n_colours) if j not in chosen]
            chosen.append(unused[int(rng.integers(len(unused)))])
    return chosen


def make_scene(
    rng: np.random.Generator, size: tuple[int, int], level: int, group: str | None, object_scale: float = 1.0,
    rules: WorldRules = WorldRules(),
) -> Scene:
    """A scene of nominal ``size`` (±20%) whose primary category appears ``level + 1`` times.

    Level 3 stands for "3+": the primary category appears 4–6 times. Every other shape is
    of a category of its own. ``group`` limits the primary category to one group;
    ``object_scale`` multiplies every radius; ``rules`` (:class:`WorldRules`) sets how many
    shapes, how often copies share a colour and how far apart the size classes lie.
    """
    width = round(size[0] * float(rng.uniform(0.8, 1.2)))
    height = round(size[1] * float(rng.uniform(0.8, 1.2)))
    primaries = [c for c in CATEGORIES if group is None or c.group == group]
    primary = primaries[int(rng.integers(len(primaries)))]
    copies = level + 1 if level < 3 else int(rng.integers(4, 7))
    low, high = rules.objects_per_image
    total = int(rng.integers(max(low, copies), max(high, copies) + 1))
    others = [c for c in CATEGORIES if c.id != primary.id]
    other_cats = [others[j] for j in rng.choice(len(others), size=total - copies, replace=False)]
    colour_names = list(PALETTE)
    wanted = [(primary, colour_names[j]) for j in _copy_colours(rng, copies, len(colour_names), rules)]
    wanted += [(c, colour_names[int(rng.integers(len(colour_names)))]) for c in other_cats]

    ranges, probs = rules.size_ranges, rules.size_probs
    placed: list[tuple[float, float, float]] = []
    shapes = []
    for n, (category, colour) in enumerate(wanted):
        size_class = str(rng.choice(list(probs), p=list(probs.values())))
        spot = _place(rng, width, height, placed, size_class, object_scale, ranges)
        if spot is None and n < copies:
            # random tries can miss the last free room; a primary copy lost would lower the level
            spot = _free_spot(rng, width, height, placed, object_scale, ranges)
        if spot is None:
            continue
        size_class, cx, cy, r = spot
        placed.append((cx, cy, r))
        parts = tuple(
            tuple(round(float(v), 2) for v in part.ravel()) for part in _outline(category.name, cx, cy, r, rng)
        )
        shapes.append(Shape(category, colour, size_class, cx, cy, parts))
    return Scene(width, height, tuple(shapes))


def draw(scene: Scene, rng: np.random.Generator) -> Image.Image:
    """Textured background (gradient + smooth noise, muted tones) with the shapes on top."""
    w, h = scene.width, scene.height
    gw, gh = w // 4 + 1, h // 4 + 1
    tone = float(rng.uniform(105, 155))
    start = tone + rng.uniform(-8, 8, 3)
    end = tone + rng.uniform(-8, 8, 3) + float(rng.uniform(-15, 15))
    angle = float(rng.uniform(0, 2 * np.pi))
    ramp = np.cos(angle) * np.linspace(0, 1, gw)[None, :] + np.sin(angle) * np.linspace(0, 1, gh)[:, None]
    ramp = (ramp - ramp.min()) / max(float(np.ptp(ramp)), 1e-6)
    base = start + (end - start) * ramp[..., None]
    coarse = rng.normal(0, 5, (gh // 6 + 2, gw // 6 + 2)).astype(np.float32)
    coarse = np.asarray(Image.fromarray(coarse).resize((gw, gh), Image.Resampling.BILINEAR))
    base += coarse[..., None] + rng.integers(-4, 5, (gh, gw, 3))
    small = Image.fromarray(np.clip(base, 0, 255).astype(np.uint8))
    # 4×4 blocks of fine noise are texture enough, and NEAREST upscales ~8× faster than BILINEAR
    image = small.resize((w, h), Image.Resampling.NEAREST)
    canvas = ImageDraw.Draw(image)
    for shape in scene.shapes:
        for part in shape.parts:
            canvas.polygon(list(part), fill=PALETTE[shape.colour])
    return image


def level_sequence(weights: Sequence[float], n: int) -> list[int]:
    """``n`` distractor levels (0, 1, 2, 3 = "3+") in the proportions of ``weights``.

    Each level gets its share of ``n`` rounded down, and the images left over go to the
    largest remainders (ties to the lower level), so every count is within one of its
    exact share and a level of weight 0 gets none. The levels are then dealt round-robin:
    equal weights give 0, 1, 2, 3, 0, 1, ….

    >>> level_sequence((1, 1, 1, 1), 6)
    [0, 1, 2, 3, 0, 1]
    >>> level_sequence((0.5, 0.25, 0.25, 0), 8)
    [0, 1, 2, 0, 1, 2, 0, 0]
    """
    # exact integer shares: equal weights must tie exactly, whatever their float rounding
    exact = [Fraction(w) for w in weights]
    scale = math.lcm(*(f.denominator for f in exact))
    parts = [int(f * scale) for f in exact]
    total = sum(parts)
    counts = [part * n // total for part in parts]
    by_remainder = sorted(range(len(parts)), key=lambda k: (-(parts[k] * n % total), k))
    for k in by_remainder[: n - sum(counts)]:
        counts[k] += 1
    # round-robin rather than in blocks: the plan shuffles this list, and equal weights must
    # hand it the 0, 1, 2, 3, 0, … list that trees made before the weights existed
    out: list[int] = []
    while len(out) < n:
        for k in range(len(counts)):
            if counts[k]:
                out.append(k)
                counts[k] -= 1
    return out


def shape_levels(scene: Scene) -> list[int]:
    """Per shape: how many other shapes of its category the scene holds, 3 standing for 3+."""
    per_category = Counter(shape.category.id for shape in scene.shapes)
    return [min(per_category[shape.category.id] - 1, 3) for shape in scene.shapes]


def choose_referred(
    scene: Scene, rng: np.random.Generator, group: str | None, at_least: int, levels: Collection[int]
) -> list[int]:
    """Indices of the shapes that get refs: the first primary copy, then some others.

    Only shapes in ``group`` (if given) whose distractor level is in ``levels`` are
    eligible; an image with none gets no refs.
    """
    level_of = shape_levels(scene)
    eligible = [
        i
        for i, s in enumerate(scene.shapes)
        if (group is None or s.category.group == group) and level_of[i] in levels
    ]
    if not eligible:
        return []
    chosen = {eligible[0]} | {i for i in eligible[1:] if rng.random() < 0.42}
    rest = [i for i in eligible if i not in chosen]
    while len(chosen) < min(at_least, len(eligible)):
        chosen.add(rest.pop(int(rng.integers(len(rest)))))
    return sorted(chosen)
