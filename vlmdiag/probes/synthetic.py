"""The ``synthetic`` probe suite: procedurally drawn items for real VLMs, deterministic from a seed.

Images are ``W x H`` pixels with W, H in 448..896 (multiples of 112, the size real VLMs are trained
on: 28 px Qwen merges and 14/16 px patches divide them). A scene is a grid of 112 px cells: the top
row is a text band holding one word or number, written with Pillow's own font
(``ImageFont.load_default(size=...)``, no other asset); every other cell holds at most one shape (a
square, circle, triangle or diamond in one of six colours) inside a margin of 16 px, so a shape's
box is ``(112*col + 16, 112*row + 16, 112*col + 96, 112*row + 96)`` (x1, y1, x2, y2, pixels,
x2/y2 exclusive).

Items (paper §2.2, §3.1.1), by kind and task family:

* ``vqa`` (Mvis): recognition ("Is there a red circle in the image?" → yes/no), counting ("How many
  triangles ...?"), reading ("What word is written at the top ...?") in turn;
* ``math_vqa`` (Mv2r): visual arithmetic (the number in the text band combined with a count);
* ``text_math`` (Mrea, layer skipping): text-only arithmetic and word problems;
* swap pairs (``ocr``, ``counting``, ``grounding``, ``recognition``): target and source are the same
  scene but for one attribute (the word, one shape more or fewer, where the asked shape is, the
  asked shape replaced), at the same pixel size, so their visual-token spans match.

Every image item carries the exact text description of its image (:meth:`Scene.description`), which
the black image + description condition of Mv2r needs; the black-image counterpart of Mvis is an
all-zero image of the same size (:func:`black_counterpart`).

Each item is drawn from ``random.Random(f"{preset}:{seed}:{what}:{i}")``: item ``i`` does not depend
on how many items were asked for, and equal seeds give equal items on every machine (for one Pillow
version, which draws the pixels).
"""

from __future__ import annotations

import random
from dataclasses import dataclass, replace
from functools import lru_cache

from PIL import Image, ImageDraw, ImageFont

from vlmdiag.probes.types import AbilityItem, SwapPair

CELL = 112
MARGIN = 16
SHAPES = ("square", "circle", "triangle", "diamond")
COLORS = {"red": (220, 40, 40), "green": (30, 160, 60), "blue": (40, 80, 220),
          "yellow": (230, 200, 20), "purple": (140, 60, 170), "orange": (240, 130, 20)}
BACKGROUND = (236, 236, 236)
WORDS = ("APPLE", "RIVER", "CLOUD", "TIGER", "PIANO", "LEMON", "HOUSE", "GARDEN", "SILVER", "ORBIT",
         "CANDLE", "FOREST", "BRIDGE", "PLANET", "WINDOW", "MARKET", "TRAIN", "STONE", "MUSIC", "OCEAN",
         "PENCIL", "ROCKET", "SUMMER", "FALCON", "BASKET", "CASTLE", "DRAGON", "MIRROR", "TABLE", "ZEBRA")
VQA_TASKS = ("recognition", "counting", "reading")
SWAP_TASKS = ("ocr", "counting", "grounding", "recognition")


@dataclass(frozen=True)
class Preset:
    """Image sizes a suite draws from (``(width, height)`` pixels, multiples of :data:`CELL`)."""

    name: str
    sizes: tuple[tuple[int, int], ...]


PRESETS = {
    "real": Preset("real", ((448, 448), (672, 448), (448, 672), (672, 672), (896, 672), (672, 896), (896, 896))),
    # the same scenes at 224-448 px, for tiny models on CPU (fewer visual tokens)
    "small": Preset("small", ((224, 224), (336, 224), (224, 336), (336, 336), (448, 336))),
}


@dataclass(frozen=True)
class Shape:
    kind: str
    color: str
    row: int
    col: int


@dataclass(frozen=True)
class Scene:
    """One image: its size (pixels), the text-band label and the shapes (at most one per cell).
    ``cell`` is the cell side in pixels (112 for ``real``; smaller presets scale it)."""

    size: tuple[int, int]
    text: str
    shapes: tuple[Shape, ...]
    cell: int = CELL

    @property
    def grid(self) -> tuple[int, int]:
        """``(rows, cols)`` of cells; row 0 is the text band."""
        return self.size[1] // self.cell, self.size[0] // self.cell

    def free_cells(self) -> list[tuple[int, int]]:
        rows, cols = self.grid
        used = {(s.row, s.col) for s in self.shapes}
        return [(r, c) for r in range(1, rows) for c in range(cols) if (r, c) not in used]

    def box(self, shape: Shape) -> tuple[float, float, float, float]:
        """The shape's box x1, y1, x2, y2 in pixels (x2/y2 exclusive)."""
        m = self.cell * MARGIN // CELL
        x, y = shape.col * self.cell, shape.row * self.cell
        return float(x + m), float(y + m), float(x + self.cell - m), float(y + self.cell - m)

    def count(self, kind: str | None = None, color: str | None = None) -> int:
        return sum((kind is None or s.kind == kind) and (color is None or s.color == color) for s in self.shapes)

    def description(self) -> str:
        """An exact text description: size, the text and every shape with its box (row-major)."""
        shapes = sorted(self.shapes, key=lambda s: (s.row, s.col))
        listed = "; ".join(f"a {s.color} {s.kind} at [{', '.join(str(int(v)) for v in self.box(s))}]"
                           for s in shapes) or "none"
        return (f"A {self.size[0]}x{self.size[1]} pixel image on a light grey background. The text "
                f"\"{self.text}\" is written at the top. Shapes ({len(shapes)}): {listed}.")


@lru_cache(maxsize=16)
def _font(size: int) -> ImageFont.FreeTypeFont:
    return ImageFont.load_default(size=size)


def render(scene: Scene) -> Image.Image:
    """Draw ``scene`` as an RGB image of ``scene.size``."""
    image = Image.new("RGB", scene.size, BACKGROUND)
    draw = ImageDraw.Draw(image)
    font = _font(scene.cell * 3 // 5)
    left, top, right, bottom = draw.textbbox((0, 0), scene.text, font=font)
    draw.text(((scene.size[0] - (right - left)) // 2 - left, (scene.cell - (bottom - top)) // 2 - top),
              scene.text, fill=(0, 0, 0), font=font)
    for shape in scene.shapes:
        x1, y1, x2, y2 = scene.box(shape)
        x2, y2 = x2 - 1, y2 - 1
        fill = COLORS[shape.color]
        if shape.kind == "square":
            draw.rectangle([x1, y1, x2, y2], fill=fill)
        elif shape.kind == "circle":
            draw.ellipse([x1, y1, x2, y2], fill=fill)
        elif shape.kind == "triangle":
            draw.polygon([((x1 + x2) / 2, y1), (x1, y2), (x2, y2)], fill=fill)
        else:
            draw.polygon([((x1 + x2) / 2, y1), (x2, (y1 + y2) / 2), ((x1 + x2) / 2, y2), (x1, (y1 + y2) / 2)], fill=fill)
    return image


def black_counterpart(image: Image.Image) -> Image.Image:
    """The all-black image of the same size (the paper's ``b``, Mvis and Mv2r)."""
    return Image.new("RGB", image.size, (0, 0, 0))


def _scene(rng: random.Random, preset: Preset, *, text: str | None = None, max_shapes: int = 8) -> Scene:
    width, height = rng.choice(preset.sizes)
    cell = CELL * min(preset.sizes[0]) // 448  # 'real': 112, 'small': 56
    empty = Scene((width, height), "", (), cell)
    cells = empty.free_cells()
    rng.shuffle(cells)
    n = rng.randint(2, min(max_shapes, len(cells) - 2))
    shapes = tuple(Shape(rng.choice(SHAPES), rng.choice(list(COLORS)), r, c) for r, c in cells[:n])
    return Scene((width, height), text if text is not None else rng.choice(WORDS), shapes, cell)


def _plural(kind: str) -> str:
    return kind + "s"


class Generator:
    """Items of one preset and seed. Every method returns item ``i`` of its kind, independent of
    the others."""

    def __init__(self, preset: str | Preset = "real", seed: int = 0):
        self.preset = preset if isinstance(preset, Preset) else PRESETS[preset]
        self.seed = seed

    def _rng(self, what: str, i: int) -> random.Random:
        return random.Random(f"{self.preset.name}:{self.seed}:{what}:{i}")

    def _id(self, what: str, i: int) -> str:
        return f"synthetic-{what}-{self.seed}-{i}"

    # ------------------------------------------------------------------ ability items
    def vqa(self, i: int) -> AbilityItem:
        """Recognition, counting and reading in turn (Mvis)."""
        rng, task = self._rng("vqa", i), VQA_TASKS[i % 3]
        scene = _scene(rng, self.preset)
        if task == "recognition":
            asked = rng.choice(scene.shapes)
            kind, color = asked.kind, asked.color
            if (i // 3) % 2:  # every other recognition item asks about a shape that is absent
                absent = [(k, c) for k in SHAPES for c in COLORS if not scene.count(k, c)]
                kind, color = rng.choice([a for a in absent if a[0] == kind] or absent)
            question = f"Is there a {color} {kind} in the image? Answer yes or no."
            answer = "yes" if scene.count(kind, color) else "no"
        elif task == "counting":
            kind = rng.choice(SHAPES)
            question = f"How many {_plural(kind)} are there in the image? Answer with a number."
            answer = str(scene.count(kind))
        else:
            question = "What word is written at the top of the image? Answer with the word only."
            answer = scene.text
        return AbilityItem(self._id("vqa", i), "vqa", question, answer, render(scene), scene.description(),
                           meta={"task": task, "size": scene.size, "source": "synthetic"})

    def math_vqa(self, i: int) -> AbilityItem:
        """Visual arithmetic: the number in the text band with a count of shapes (Mv2r)."""
        rng = self._rng("math_vqa", i)
        number = rng.randint(2, 40)
        scene = _scene(rng, self.preset, text=str(number))
        kind = rng.choice([s.kind for s in scene.shapes])
        count = scene.count(kind)
        form = i % 3
        if form == 0:
            question = (f"Add the number written at the top of the image to the number of {_plural(kind)} "
                        "in the image. What is the result?")
            answer = number + count
        elif form == 1:
            question = (f"Multiply the number written at the top of the image by the number of "
                        f"{_plural(kind)} in the image. What is the result?")
            answer = number * count
        else:
            question = ("Subtract the number of shapes in the image from the number written at the "
                        "top of the image. What is the result?")
            answer = number - len(scene.shapes)
        return AbilityItem(self._id("math_vqa", i), "math_vqa", question, str(answer), render(scene),
                           scene.description(), meta={"task": "arithmetic", "size": scene.size, "source": "synthetic"})

    def text_math(self, i: int) -> AbilityItem:
        """Text-only arithmetic and word problems with integer answers (Mrea)."""
        rng = self._rng("text_math", i)
        a, b, c, d = rng.randint(2, 19), rng.randint(2, 9), rng.randint(2, 30), rng.randint(2, 9)
        form = i % 4
        if form == 0:
            question, answer = f"What is {a} \\times {b} + {c}?", a * b + c
        elif form == 1:
            question = (f"Mia has {a + c} marbles and gives {c} of them away. She then buys {b} bags "
                        f"with {d} marbles each. How many marbles does she have now?")
            answer = a + b * d
        elif form == 2:
            question, answer = f"Solve for x: {b}x + {c} = {b * a + c}.", a
        else:
            question, answer = f"What is the remainder when {a * b + d - 1} is divided by {b}?", (a * b + d - 1) % b
        return AbilityItem(self._id("text_math", i), "text_math", question, str(answer),
                           meta={"task": "arithmetic", "form": form, "source": "synthetic"})

    def ability(self, kind: str, i: int) -> AbilityItem:
        if kind not in ("vqa", "math_vqa", "text_math"):
            raise ValueError(f"unknown ability kind {kind!r}; expected vqa, math_vqa, text_math")
        return getattr(self, kind)(i)

    # ------------------------------------------------------------------ swap pairs
    def swap_pair(self, task: str, i: int) -> SwapPair:
        """Pair ``i`` of ``task``: target and source differ in the one attribute asked about and
        have the same size (paper §3.1.1)."""
        if task not in SWAP_TASKS:
            raise ValueError(f"unknown swap task {task!r}; expected one of {', '.join(SWAP_TASKS)}")
        rng = self._rng(f"swap-{task}", i)
        scene = _scene(rng, self.preset, max_shapes=6)
        kw: dict = {}
        if task == "ocr":
            word = rng.choice([w for w in WORDS if w != scene.text])
            source = replace(scene, text=word)
            prompt = "What word is written at the top of the image? Answer with the word only."
            kw = dict(target_answer=scene.text, source_answer=word)
        elif task == "counting":
            kind = rng.choice(SHAPES)
            free = scene.free_cells()
            extra = tuple(Shape(kind, rng.choice(list(COLORS)), r, c)
                          for r, c in rng.sample(free, min(len(free), rng.randint(1, 3))))
            source = replace(scene, shapes=scene.shapes + extra)
            prompt = f"How many {_plural(kind)} are there in the image? Answer with a number."
            kw = dict(target_answer=str(scene.count(kind)), source_answer=str(source.count(kind)))
        elif task == "grounding":
            # the asked shape is the only one of its kind and colour; the source moves it
            asked = scene.shapes[0]
            others = tuple(s for s in scene.shapes[1:] if (s.kind, s.color) != (asked.kind, asked.color))
            scene = replace(scene, shapes=(asked,) + others)
            far = [(r, c) for r, c in scene.free_cells() if abs(r - asked.row) + abs(c - asked.col) >= 2]
            r, c = rng.choice(far or scene.free_cells())
            moved = Shape(asked.kind, asked.color, r, c)
            source = replace(scene, shapes=(moved,) + others)
            prompt = (f"Locate the {asked.color} {asked.kind} in the image. Give its bounding box as "
                      "[x1, y1, x2, y2].")
            kw = dict(target_bbox=scene.box(asked), source_bbox=source.box(moved))
        else:
            asked = scene.shapes[0]
            others = tuple(s for s in scene.shapes[1:] if (s.kind, s.color) != (asked.kind, asked.color))
            scene = replace(scene, shapes=(asked,) + others)
            swapped = Shape(rng.choice([k for k in SHAPES if k != asked.kind]), asked.color, asked.row, asked.col)
            source = replace(scene, shapes=(swapped,) + others)
            prompt = f"Is there a {asked.color} {asked.kind} in the image? Answer yes or no."
            kw = dict(target_answer="yes", source_answer="no")
        return SwapPair(f"synthetic-{task}-{self.seed}-{i}", task, render(scene), render(source), prompt,
                        meta={"size": scene.size, "target_description": scene.description(),
                              "source_description": source.description(), "source": "synthetic"}, **kw)
