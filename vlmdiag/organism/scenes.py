"""Scenes of the model organism's tasks: the 4x4 grid, its shapes and corner number, drawn with
PIL (:func:`render`), and the per-token labels of vision pre-training (:func:`token_labels`).

See :mod:`vlmdiag.organism.tasks` for the layout of an image and the tasks asked about it.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from functools import lru_cache

from PIL import Image, ImageDraw, ImageFont

IMAGE_SIZE = 112
CELL = 28
MARGIN = 4
#: The number is written large over the top-left 2x2 cells (56x56 px); shapes go in the other 12.
NUMBER_CELLS = ((0, 0), (0, 1), (1, 0), (1, 1))
SHAPE_CELLS = tuple((r, c) for r in range(4) for c in range(4) if (r, c) not in NUMBER_CELLS)
SHAPES = ("square", "circle", "triangle")
COLORS = {"red": (220, 40, 40), "green": (40, 170, 60), "blue": (40, 80, 220)}
BACKGROUND = (128, 128, 128)
TEXT_COLOR = (0, 0, 0)
FONT_SIZE = 52
MAX_COUNT = 6


@dataclass(frozen=True)
class Shape:
    """One shape in cell (row, col) of the 4x4 grid."""

    row: int
    col: int
    kind: str
    color: str

    @property
    def bbox(self) -> tuple[int, int, int, int]:
        """(x1, y1, x2, y2) in pixels, x2/y2 exclusive."""
        x0, y0 = CELL * self.col, CELL * self.row
        return (x0 + MARGIN, y0 + MARGIN, x0 + CELL - MARGIN, y0 + CELL - MARGIN)


@dataclass(frozen=True)
class Scene:
    """A drawable scene: the corner number and the shapes."""

    number: int
    shapes: tuple[Shape, ...]

    def count(self, color: str | None = None, kind: str | None = None) -> int:
        return sum(1 for s in self.shapes
                   if (color is None or s.color == color) and (kind is None or s.kind == kind))

    def fingerprint(self) -> str:
        cells = ";".join(f"{s.row}{s.col}{s.kind[0]}{s.color[0]}" for s in
                         sorted(self.shapes, key=lambda s: (s.row, s.col)))
        return f"{self.number}|{cells}"

    def description(self) -> str:
        """Exact text description: the corner number, the number of shapes and of each kind."""
        kinds = [f"{self.count(kind=k)} {k}{'' if self.count(kind=k) == 1 else 's'}"
                 for k in SHAPES]
        return (f"The number {self.number} is written in the top-left corner. "
                f"There are {len(self.shapes)} shapes: {kinds[0]}, {kinds[1]} and {kinds[2]}.")


@lru_cache(maxsize=1)
def _font() -> ImageFont.FreeTypeFont:
    return ImageFont.load_default(size=FONT_SIZE)


def render(scene: Scene) -> Image.Image:
    """Draw ``scene`` as a 112x112 RGB image (deterministic for a given Pillow version)."""
    im = Image.new("RGB", (IMAGE_SIZE, IMAGE_SIZE), BACKGROUND)
    draw = ImageDraw.Draw(im)
    for r in range(4):
        for c in range(4):
            draw.rectangle([CELL * c, CELL * r, CELL * c + CELL - 1, CELL * r + CELL - 1],
                           fill=cell_background(r, c))
    font = _font()
    text = str(scene.number)
    # centre the number in the top-left 2x2 block of cells
    left, top, right, bottom = draw.textbbox((0, 0), text, font=font)
    x = (2 * CELL - (right - left)) // 2 - left
    y = (2 * CELL - (bottom - top)) // 2 - top
    draw.text((x, y), text, fill=TEXT_COLOR, font=font)
    for s in scene.shapes:
        x1, y1, x2, y2 = s.bbox
        fill = COLORS[s.color]
        if s.kind == "square":
            draw.rectangle([x1, y1, x2 - 1, y2 - 1], fill=fill)
        elif s.kind == "circle":
            draw.ellipse([x1, y1, x2 - 1, y2 - 1], fill=fill)
        else:
            draw.polygon([((x1 + x2 - 1) / 2, y1), (x1, y2 - 1), (x2 - 1, y2 - 1)], fill=fill)
    return im


def cell_background(row: int, col: int) -> tuple[int, int, int]:
    """Background colour of cell (row, col): a faint coordinate gradient (grey-blue), so that a
    tiny vision tower without absolute position embeddings can tell where a patch is."""
    return (104 + 12 * col, 104 + 12 * row, 150)


def black_image(size: tuple[int, int] = (IMAGE_SIZE, IMAGE_SIZE)) -> Image.Image:
    """An all-black RGB image of ``size`` (width, height): the paper's ``b``."""
    return Image.new("RGB", size, (0, 0, 0))


def _random_scene(rng: random.Random, n_shapes: int, number: int,
                  kinds: tuple[str, ...] = SHAPES) -> Scene:
    cells = rng.sample(SHAPE_CELLS, n_shapes)
    shapes = tuple(Shape(r, c, rng.choice(kinds), rng.choice(tuple(COLORS))) for r, c in cells)
    return Scene(number, shapes)



GRID = IMAGE_SIZE // CELL


def token_labels(scene: Scene) -> dict[str, list[int]]:
    """Labels of the 16 merged visual tokens of ``scene`` for vision pre-training.

    Token ``GRID * row + col`` covers cell (row, col) (raster order, the order of Qwen2.5-VL's
    merged tokens for one image). Per token: ``kind`` (0 empty, 1 + index in :data:`SHAPES`,
    4 part of the number), ``color`` (0 none, 1 + index in :data:`COLORS`), ``digit`` (the number
    on its four cells, -100 = ignore elsewhere), ``row``, ``col``. Per image: ``occupancy``
    (``len(SHAPES) * 16`` flags, kind-major: is there a shape of kind k on token t) and
    ``number``.
    """
    n = GRID * GRID
    kind, color, digit = [0] * n, [0] * n, [-100] * n
    occupancy = [0] * (len(SHAPES) * n)
    for r, c in NUMBER_CELLS:
        kind[GRID * r + c], digit[GRID * r + c] = len(SHAPES) + 1, scene.number
    names = list(COLORS)
    for s in scene.shapes:
        t = GRID * s.row + s.col
        kind[t], color[t] = 1 + SHAPES.index(s.kind), 1 + names.index(s.color)
        occupancy[SHAPES.index(s.kind) * n + t] = 1
    return {"kind": kind, "color": color, "digit": digit,
            "row": [t // GRID for t in range(n)], "col": [t % GRID for t in range(n)],
            "occupancy": occupancy, "number": [scene.number]}

