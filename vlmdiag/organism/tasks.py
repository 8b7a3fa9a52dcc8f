"""Seeded synthetic tasks of the model organism, drawn with PIL, with programmatic ground truth.

Every image is 112x112 px (8x8 patches of 14 px, 4x4 merged visual tokens of 28 px) on a faint
coordinate-gradient background. A one-digit number is written large over the top-left 2x2 cells;
the other 12 cells hold at most one shape per cell: a square, circle or triangle in red, green
or blue, drawn inside the cell with a 4 px margin, so each shape's box is
``(28*col + 4, 28*row + 4, 28*col + 24, 28*row + 24)`` (x1, y1, x2, y2 in pixels, x2/y2 exclusive).
Each 28 px cell is exactly one merged visual token (:func:`token_labels`).

Tasks (question -> short answer):

* ``recognition``: "Is there a triangle?" -> ``yes`` / ``no`` (squares and circles as distractors)
* ``counting``: "How many shapes are there?" -> ``0`` .. ``6``
* ``reading``: "What number is written in the corner?" -> ``0`` .. ``9``
* ``grounding``: "Where is the triangle?" (exactly one, 0-3 other shapes) -> ``[x1,y1,x2,y2]``
* ``arithmetic`` (visual arithmetic, needs perception and reasoning): "Add 2 to the number written
  in the corner." -> corner number + 2 (addend 1..3). Its reasoning trace is
  ``<think>4+2=6</think><answer>6</answer>``.

Each perception question names one fixed target (the triangle, all shapes): a tiny model trained
from scratch on CPU did not learn to condition its answer on a varying question word ("Is there a
{square|circle|triangle}?", "How many {red|green|blue} shapes?") within the build budget, because
no single image feature correlates with the answer until the question word is used (measured; see
``bench/RESULTS.md``), while the fixed-target versions are learned in a few hundred steps.

Every item has an exact text description (for Mv2r), a black-image variant (an all-zero image of
the same size) and, for arithmetic, a text-only counterpart (description + question, for Mrea).

Held-out vs training: a scene/question fingerprint is hashed; items whose hash is 0 mod 10 are
held out (:func:`swap_pairs`, :func:`ability_items`, evaluation) and never used for training
(:func:`training_items`), so the two sets are disjoint by construction.
"""

from __future__ import annotations

import hashlib
import random
import re
from dataclasses import dataclass, field, replace
from functools import lru_cache

from PIL import Image, ImageDraw, ImageFont

from vlmdiag.probes.prompts import described_question, image_message, text_message
from vlmdiag.probes.types import AbilityItem, SwapPair

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
#: The shape kind that recognition ("Is there a triangle?") and grounding ("Where is the
#: triangle?") ask about.
TARGET_KIND = "triangle"
COUNTING_QUESTION = "How many shapes are there?"
RECOGNITION_QUESTION = f"Is there a {TARGET_KIND}?"
GROUNDING_QUESTION = f"Where is the {TARGET_KIND}?"

TASKS = ("recognition", "counting", "reading", "grounding", "arithmetic")
PERCEPTION_TASKS = ("recognition", "counting", "reading", "grounding")
#: Probe task names (``SwapPair.task``) of each perception task.
SWAP_TASK_OF = {"ocr": "reading", "counting": "counting", "grounding": "grounding",
                "recognition": "recognition"}

MAX_ADDEND = 3


def arithmetic_question(k: int) -> str:
    """The visual-arithmetic question: add ``k`` to the number read from the image."""
    return f"Add {k} to the number written in the corner."

READING_QUESTION = "What number is written in the corner?"
HELD_OUT_MODULUS = 10


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


@dataclass(frozen=True)
class TaskItem:
    """One generated item: the scene, its question and its ground truth.

    ``answer`` is the short answer string; ``bbox`` is set for grounding; ``operands`` (for
    arithmetic) are (number read from the image, addend from the question).
    """

    task: str
    scene: Scene
    question: str
    answer: str
    bbox: tuple[int, int, int, int] | None = None
    operands: tuple[int, int] | None = None
    meta: dict = field(default_factory=dict, compare=False)

    def fingerprint(self) -> str:
        return f"{self.task}|{self.question}|{self.scene.fingerprint()}"

    @property
    def held_out(self) -> bool:
        return _bucket(self.fingerprint()) == 0

    def image(self) -> Image.Image:
        return render(self.scene)

    def description(self) -> str:
        return self.scene.description()


def _bucket(text: str) -> int:
    return int.from_bytes(hashlib.sha1(text.encode()).digest()[:4], "big") % HELD_OUT_MODULUS


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


# --------------------------------------------------------------------------- scene sampling


def _random_scene(rng: random.Random, n_shapes: int, number: int,
                  kinds: tuple[str, ...] = SHAPES) -> Scene:
    cells = rng.sample(SHAPE_CELLS, n_shapes)
    shapes = tuple(Shape(r, c, rng.choice(kinds), rng.choice(tuple(COLORS))) for r, c in cells)
    return Scene(number, shapes)


def _make(task: str, rng: random.Random) -> TaskItem:
    if task == "recognition":
        kind = TARGET_KIND
        present = rng.random() < 0.5
        n = rng.randint(1, 4)
        others = tuple(k for k in SHAPES if k != kind)
        scene = _random_scene(rng, n, rng.randint(0, 9), kinds=others)
        if present:
            i = rng.randrange(n)
            s = scene.shapes[i]
            shapes = scene.shapes[:i] + (replace(s, kind=kind),) + scene.shapes[i + 1:]
            scene = Scene(scene.number, shapes)
        return TaskItem(task, scene, RECOGNITION_QUESTION, "yes" if present else "no",
                        meta={"kind": kind})
    if task == "counting":
        k = rng.randint(0, MAX_COUNT)
        scene = _random_scene(rng, k, rng.randint(0, 9))
        return TaskItem(task, scene, COUNTING_QUESTION, str(k))
    if task == "reading":
        number = rng.randint(0, 9)
        scene = _random_scene(rng, rng.randint(0, 4), number)
        return TaskItem(task, scene, READING_QUESTION, str(number))
    if task == "grounding":
        kind = TARGET_KIND
        others = tuple(k for k in SHAPES if k != kind)
        scene = _random_scene(rng, rng.randint(1, 4), rng.randint(0, 9), kinds=others)
        i = rng.randrange(len(scene.shapes))
        shapes = list(scene.shapes)
        shapes[i] = replace(shapes[i], kind=kind)
        scene = Scene(scene.number, tuple(shapes))
        box = shapes[i].bbox
        return TaskItem(task, scene, GROUNDING_QUESTION, format_bbox(box), bbox=box,
                        meta={"kind": kind})
    if task == "arithmetic":
        number, k = rng.randint(0, 9), rng.randint(1, MAX_ADDEND)
        scene = _random_scene(rng, rng.randint(0, 5), number)
        return TaskItem(task, scene, arithmetic_question(k), str(number + k), operands=(number, k))
    raise ValueError(f"unknown task {task!r}; valid: {', '.join(TASKS)}")


def generate(task: str, n: int, *, seed: int, held_out: bool) -> list[TaskItem]:
    """``n`` distinct items of ``task`` from the held-out or the training partition.

    Args:
        task: one of :data:`TASKS`.
        n: number of items.
        seed: RNG seed; the same (task, n, seed, held_out) gives the same items.
        held_out: True for the held-out partition (evaluation, probes), False for training.

    Raises:
        ValueError: unknown task.
    """
    if task not in TASKS:
        raise ValueError(f"unknown task {task!r}; valid: {', '.join(TASKS)}")
    rng = random.Random(f"{task}:{seed}:{'eval' if held_out else 'train'}")
    out, seen = [], set()
    tries = 0
    while len(out) < n:
        tries += 1
        if tries > 200 * n + 10000:
            raise RuntimeError(f"could not draw {n} distinct {task} items (got {len(out)})")
        item = _make(task, rng)
        fp = item.fingerprint()
        if item.held_out != held_out or (held_out and fp in seen):
            continue
        seen.add(fp)
        out.append(item)
    return out


def training_items(task: str, n: int, *, seed: int) -> list[TaskItem]:
    """``n`` training items of ``task`` (never held out; repeats allowed only if drawn twice)."""
    rng = random.Random(f"{task}:{seed}:train")
    out = []
    while len(out) < n:
        item = _make(task, rng)
        if not item.held_out:
            out.append(item)
    return out


def vision_scenes(n: int, *, seed: int) -> list[Scene]:
    """``n`` random scenes (0..MAX_COUNT shapes, any kind and colour, a random number) for the
    vision pre-training of the Base stage; they carry no question or answer."""
    rng = random.Random(f"vision:{seed}")
    return [_random_scene(rng, rng.randint(0, MAX_COUNT), rng.randint(0, 9)) for _ in range(n)]


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


# --------------------------------------------------------------------------- answers, targets


def format_bbox(box: tuple[float, float, float, float]) -> str:
    """``[x1,y1,x2,y2]`` with integer pixels."""
    return "[" + ",".join(str(int(round(v))) for v in box) + "]"


def parse_bbox(text: str) -> tuple[float, float, float, float] | None:
    """The first four integers in ``text`` as a box, or None."""
    nums = re.findall(r"-?\d+", text)
    if len(nums) < 4:
        return None
    return tuple(float(v) for v in nums[:4])  # type: ignore[return-value]


def iou(a: tuple[float, ...], b: tuple[float, ...]) -> float:
    """Intersection over union of two (x1, y1, x2, y2) boxes; 0 for degenerate boxes."""
    ix = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    iy = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = ix * iy
    area = lambda r: max(0.0, r[2] - r[0]) * max(0.0, r[3] - r[1])  # noqa: E731
    union = area(a) + area(b) - inter
    return inter / union if union > 0 else 0.0


_ANSWER_RE = re.compile(r"<answer>(.*?)</answer>", re.S)
_FORMAT_RE = re.compile(r"^\s*<think>.+?</think>\s*<answer>.+?</answer>\s*$", re.S)


def extract_answer(text: str) -> str:
    """The content of the last ``<answer>…</answer>``, else the stripped text, lower-cased."""
    found = _ANSWER_RE.findall(text)
    ans = found[-1] if found else text
    return ans.strip().strip(".").strip().lower()


def has_reasoning_format(text: str) -> bool:
    """True when ``text`` is exactly ``<think>…</think><answer>…</answer>`` (whitespace allowed)."""
    return bool(_FORMAT_RE.match(text))


def is_correct(task: str, prediction: str, answer: str) -> bool:
    """Score one generated text: grounding by IoU >= 0.5, other tasks by exact answer match."""
    pred = extract_answer(prediction)
    if task == "grounding":
        box, gt = parse_bbox(pred), parse_bbox(answer)
        return box is not None and gt is not None and iou(box, gt) >= 0.5
    return pred == answer.strip().lower()


def short_target(item: TaskItem) -> str:
    """Base-stage target: the bare answer."""
    return item.answer


def reasoning_target(item: TaskItem, *, distractor: bool = False) -> str:
    """IN-stage target ``<think>…</think><answer>…</answer>``.

    Arithmetic: ``<think>4+2=6</think><answer>6</answer>``. With ``distractor=True`` the trace
    follows the wrong strategy "read the number and stop" (``<think>4</think><answer>4</answer>``,
    the reasoning step skipped): the IN stage is trained on a share of such noisy traces, so that
    RL has a reasoning error to fix.
    """
    if item.task == "arithmetic":
        n, k = item.operands
        if distractor:
            return f"<think>{n}</think><answer>{n}</answer>"
        return f"<think>{n}+{k}={n + k}</think><answer>{n + k}</answer>"
    think = {
        "recognition": f"look for a {item.meta.get('kind', 'shape')}",
        "counting": "count the shapes",
        "reading": "read the corner",
        "grounding": f"find the {item.meta.get('kind', 'shape')}",
    }[item.task]
    return f"<think>{think}</think><answer>{item.answer}</answer>"


# --------------------------------------------------------------------------- probe items


def _swap_variant(task: str, item: TaskItem, rng: random.Random) -> Scene | None:
    """A source scene equal to ``item.scene`` except for the attribute ``task`` asks about."""
    scene = item.scene
    if task == "reading":
        choices = [n for n in range(10) if n != scene.number]
        return Scene(rng.choice(choices), scene.shapes)
    if task == "counting":
        k = len(scene.shapes)
        target_k = rng.choice([v for v in range(MAX_COUNT + 1) if v != k])
        shapes = list(scene.shapes)
        if target_k > k:
            free = [c for c in SHAPE_CELLS if all((s.row, s.col) != c for s in shapes)]
            for r, c in rng.sample(free, target_k - k):
                shapes.append(Shape(r, c, rng.choice(SHAPES), rng.choice(tuple(COLORS))))
        else:
            shapes = [shapes[i] for i in sorted(rng.sample(range(k), target_k))]
        return Scene(scene.number, tuple(shapes))
    if task == "grounding":
        kind = item.meta["kind"]
        shapes = list(scene.shapes)
        i = next(j for j, s in enumerate(shapes) if s.kind == kind)
        free = [c for c in SHAPE_CELLS if all((s.row, s.col) != c for s in shapes)]
        r, c = rng.choice(free)
        shapes[i] = replace(shapes[i], row=r, col=c)
        return Scene(scene.number, tuple(shapes))
    if task == "recognition":
        kind = item.meta["kind"]
        others = tuple(k for k in SHAPES if k != kind)
        shapes = tuple(replace(s, kind=rng.choice(others)) if s.kind == kind else s
                       for s in scene.shapes)
        return Scene(scene.number, shapes)
    raise ValueError(task)


def swap_pairs(task: str, n: int, *, seed: int = 0) -> list[SwapPair]:
    """``n`` held-out target/source pairs for visual-token swapping (paper §3.1.1).

    Target and source are both 112x112 and differ only in the attribute the prompt asks about:
    ``ocr`` (the corner number), ``counting`` (how many shapes),
    ``grounding`` (where the asked shape is; boxes are x1,y1,x2,y2 pixels, x2/y2 exclusive),
    ``recognition`` (target has the asked shape -> "yes"; source has it replaced -> "no").

    Raises:
        ValueError: unknown task (valid: ocr, counting, grounding, recognition) or n < 0.
    """
    if task not in SWAP_TASK_OF:
        raise ValueError(f"unknown swap task {task!r}; valid: {', '.join(SWAP_TASK_OF)}")
    if n < 0:
        raise ValueError(f"n must be >= 0, got {n}")
    base_task = SWAP_TASK_OF[task]
    rng = random.Random(f"swap:{task}:{seed}")
    out: list[SwapPair] = []
    candidates = generate(base_task, 4 * n + 8, seed=seed + 7919, held_out=True)
    for item in candidates:
        if len(out) == n:
            break
        if task == "recognition" and item.answer != "yes":
            continue
        src_scene = _swap_variant(base_task, item, rng)
        if src_scene is None:
            continue
        src = TaskItem(item.task, src_scene, item.question, "", meta=item.meta)
        kw: dict = {}
        if base_task == "reading":
            kw = dict(target_answer=item.answer, source_answer=str(src_scene.number))
        elif base_task == "counting":
            kw = dict(target_answer=item.answer, source_answer=str(len(src_scene.shapes)))
        elif base_task == "grounding":
            kind = item.meta["kind"]
            sbox = next(s.bbox for s in src_scene.shapes if s.kind == kind)
            kw = dict(target_answer=item.answer, source_answer=format_bbox(sbox),
                      target_bbox=tuple(float(v) for v in item.bbox),
                      source_bbox=tuple(float(v) for v in sbox))
        else:
            kw = dict(target_answer="yes", source_answer="no")
        out.append(SwapPair(
            id=f"organism-{task}-{seed}-{len(out)}", task=task,  # type: ignore[arg-type]
            target_image=render(item.scene), source_image=render(src_scene),
            prompt=item.question, meta={"target_scene": item.scene.fingerprint(),
                                        "source_scene": src_scene.fingerprint(),
                                        "source": "organism"}, **kw))
    if len(out) < n:
        raise RuntimeError(f"could only build {len(out)} of {n} {task} swap pairs")
    return out


ABILITY_KINDS = ("vqa", "math_vqa", "text_math")
VQA_TASKS = ("recognition", "counting", "reading")


def ability_items(kind: str, n: int, *, seed: int = 0) -> list[AbilityItem]:
    """``n`` held-out items for the fine-grained abilities (paper Eqs. 4-6).

    * ``vqa`` (Mvis): recognition, counting and reading questions in turn, with the image; the
      ``description`` is the scene's exact description.
    * ``math_vqa`` (Mv2r): visual arithmetic with the image and its exact ``description``
      (ask with the black image and ``described_question(description, question)``).
    * ``text_math`` (Mrea, layer skipping): the text-only counterpart, question =
      ``described_question(description, arithmetic question)``, ``image`` None.

    Answers are short strings (a number, yes/no). Raises ValueError on an unknown kind or n < 0.
    """
    if kind not in ABILITY_KINDS:
        raise ValueError(f"unknown ability kind {kind!r}; valid: {', '.join(ABILITY_KINDS)}")
    if n < 0:
        raise ValueError(f"n must be >= 0, got {n}")
    out: list[AbilityItem] = []
    if kind == "vqa":
        per = {t: generate(t, (n + 2) // 3, seed=seed + 104729, held_out=True) for t in VQA_TASKS}
        for i in range(n):
            it = per[VQA_TASKS[i % 3]][i // 3]
            out.append(AbilityItem(id=f"organism-vqa-{seed}-{i}", kind="vqa", question=it.question,
                                   answer=it.answer, image=it.image(), description=it.description(),
                                   meta={"task": it.task, "source": "organism"}))
        return out
    items = generate("arithmetic", n, seed=seed + 1299709, held_out=True)
    for i, it in enumerate(items):
        meta = {"task": "arithmetic", "operands": it.operands, "source": "organism"}
        if kind == "math_vqa":
            out.append(AbilityItem(id=f"organism-math_vqa-{seed}-{i}", kind="math_vqa",
                                   question=it.question, answer=it.answer, image=it.image(),
                                   description=it.description(), meta=meta))
        else:
            out.append(AbilityItem(id=f"organism-text_math-{seed}-{i}", kind="text_math",
                                   question=described_question(it.description(), it.question),
                                   answer=it.answer, meta=meta))
    return out


# --------------------------------------------------------------------------- chat examples


@dataclass(frozen=True)
class ChatExample:
    """One prompt in a pinned layout (:mod:`vlmdiag.probes.prompts`) and its target completion.

    ``condition``: ``image`` (image_message), ``described`` (black image +
    described_question), ``text`` (text_message with described_question).
    """

    messages: list
    image: Image.Image | None
    target: str
    task: str
    answer: str
    condition: str


def chat_example(item: TaskItem, condition: str, target: str) -> ChatExample:
    """Wrap ``item`` in the message layout of ``condition`` (image | described | text)."""
    if condition == "image":
        return ChatExample(image_message(item.question), item.image(), target, item.task,
                           item.answer, condition)
    if condition == "described":
        return ChatExample(image_message(described_question(item.description(), item.question)),
                           black_image(), target, item.task, item.answer, condition)
    if condition == "text":
        return ChatExample(text_message(described_question(item.description(), item.question)),
                           None, target, item.task, item.answer, condition)
    raise ValueError(f"unknown condition {condition!r}")


def corpus_texts(seed: int = 0, n_per_task: int = 60) -> list[str]:
    """Texts to train the BPE on: questions, descriptions, answers, targets, chat scaffolding."""
    # the chat scaffolding is in every prompt: repeated so BPE gives it few tokens
    texts = ["system\nYou are a helpful assistant.", "user\n", "assistant\n",
             "Image Description: ", "\nQuestion: "] * 20
    for task in TASKS:
        for it in training_items(task, n_per_task, seed=seed):
            texts += [it.question, it.description(), it.answer, reasoning_target(it),
                      described_question(it.description(), it.question)]
            if task == "arithmetic":
                texts.append(reasoning_target(it, distractor=True))
    return texts
