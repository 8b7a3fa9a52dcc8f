"""Probe items drawn from the model organism's held-out partition: target/source pairs for
visual-token swapping (:func:`swap_pairs`) and the items of the fine-grained abilities
(:func:`ability_items`)."""

from __future__ import annotations

import random
from dataclasses import replace

from vlmdiag.organism.answers import format_bbox
from vlmdiag.organism.items import TaskItem, generate
from vlmdiag.organism.scenes import COLORS, MAX_COUNT, SHAPE_CELLS, SHAPES, Scene, Shape, render
from vlmdiag.probes.prompts import described_question
from vlmdiag.probes.types import AbilityItem, SwapPair

#: Probe task names (``SwapPair.task``) of each perception task.
SWAP_TASK_OF = {"ocr": "reading", "counting": "counting", "grounding": "grounding",
                "recognition": "recognition"}


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

