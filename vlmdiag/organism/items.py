"""Items of the model organism's tasks: a question about a seeded random scene and its ground
truth, split into a held-out and a training partition by a fingerprint hash.

See :mod:`vlmdiag.organism.tasks` for the tasks and the held-out rule.
"""

from __future__ import annotations

import hashlib
import random
from dataclasses import dataclass, field, replace

from PIL import Image

from vlmdiag.organism.answers import format_bbox
from vlmdiag.organism.scenes import MAX_COUNT, SHAPES, Scene, _random_scene, render

#: The shape kind that recognition ("Is there a triangle?") and grounding ("Where is the
#: triangle?") ask about.
TARGET_KIND = "triangle"
COUNTING_QUESTION = "How many shapes are there?"
RECOGNITION_QUESTION = f"Is there a {TARGET_KIND}?"
GROUNDING_QUESTION = f"Where is the {TARGET_KIND}?"

TASKS = ("recognition", "counting", "reading", "grounding", "arithmetic")
PERCEPTION_TASKS = ("recognition", "counting", "reading", "grounding")

MAX_ADDEND = 3


def arithmetic_question(k: int) -> str:
    """The visual-arithmetic question: add ``k`` to the number read from the image."""
    return f"Add {k} to the number written in the corner."

READING_QUESTION = "What number is written in the corner?"
HELD_OUT_MODULUS = 10


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

