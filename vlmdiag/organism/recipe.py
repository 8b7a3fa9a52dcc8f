"""The model organism's recipe: its stages, the settings that determine its weights
(:class:`Recipe`, hashed into the cache key with the pipeline's sources) and the named recipes."""

from __future__ import annotations

import dataclasses
import hashlib
import json
from dataclasses import dataclass
from pathlib import Path

from vlmdiag.errors import CheckpointError

STAGES: tuple[str, ...] = ("base", "in", "rl", "rl-frozen-early", "rl-frozen-mid", "rl-frozen-late")
RL_STAGES: dict[str, str | None] = {"rl": None, "rl-frozen-early": "early",
                                    "rl-frozen-mid": "mid", "rl-frozen-late": "late"}
#: The stages a first use builds: those the built-in suite reads (README command 1). The RL runs
#: with Early or Mid frozen are built when first asked for, each into a cache entry of its own:
#: two RL runs fewer take a third off the first build, and no claim reads them.
FIRST_STAGES: tuple[str, ...] = ("base", "in", "rl", "rl-frozen-late")
ON_DEMAND_STAGES: tuple[str, ...] = tuple(s for s in STAGES if s not in FIRST_STAGES)
#: Bump when the pipeline code changes in a way that changes the weights.
PIPELINE_VERSION = "5"

#: The modules that define the organism (every module of this package but ``__init__.py`` and
#: ``cli.py``): their bytes are hashed into the cache key, so a change to any of them rebuilds.
CODE_FILES: tuple[str, ...] = ("answers.py", "build.py", "cache.py", "data.py", "evaluation.py",
                               "grpo.py", "items.py", "model.py", "probe_items.py", "recipe.py",
                               "report.py", "scenes.py", "supervised.py", "tasks.py",
                               "tokenizer.py", "train.py")


@dataclass(frozen=True)
class Recipe:
    """Everything that determines the organism's weights (hashed into the cache key)."""

    name: str
    seed: int = 1234
    # intra-op threads of the one-process stages (vision, Base, IN and their evaluations): 2 is
    # 1.5x faster per SFT step than 1 on 2 cores; each RL run, two at once, takes 1. Fixed, not
    # the machine's count, because the thread count changes the float rounding, so the weights.
    threads: int = 2
    rl_threads: int = 1
    vocab_size: int = 640
    # model
    hidden: int = 128
    layers: int = 12  # 4 per Early/Mid/Late region
    heads: int = 4
    kv_heads: int = 2
    intermediate: int = 256
    vision_hidden: int = 64
    vision_depth: int = 2
    # base, part 1: vision pre-training (vision tower + merger, per-token and pooled targets)
    vision_steps: int = 300
    vision_batch: int = 32
    vision_lr: float = 2e-3
    vision_scenes: int = 6000
    # base, part 2: SFT on perception, short answers
    base_items_per_task: int = 3000
    base_steps: int = 700
    base_batch: int = 16
    base_lr: float = 1e-3
    # in: SFT on the reasoning format (noisy arithmetic traces)
    in_items_per_task: int = 1000
    in_arith_items: int = 3000
    in_steps: int = 400
    in_batch: int = 16
    in_lr: float = 5e-4
    in_distractor_rate: float = 0.6
    # the prompt conditions whose traces may be noisy; text-only traces are clean, so IN answers
    # text math (the baseline layer skipping needs) and RL's error to fix is the visual one
    in_distractor_conditions: tuple[str, ...] = ("image", "described")
    in_fact_items: int = 1000
    # rl: GRPO on visual arithmetic (plus a share of perception prompts), KL to IN
    rl_items: int = 2000
    rl_perception_share: float = 0.25
    rl_beta: float = 0.1
    rl_steps: int = 40
    rl_prompts_per_step: int = 4
    rl_generations: int = 8
    rl_lr: float = 1e-4
    rl_temperature: float = 1.0
    rl_max_completion: int = 20
    # evaluation (held-out)
    eval_per_task: int = 100
    eval_arith: int = 300

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    def hash(self) -> str:
        """SHA-256 (hex) of the recipe, the pipeline version and the torch/transformers versions."""
        import torch
        import transformers

        payload = json.dumps({"recipe": self.to_dict(), "pipeline": PIPELINE_VERSION,
                              "code": _code_hash(),
                              "torch": torch.__version__.split("+")[0],
                              "transformers": transformers.__version__}, sort_keys=True)
        return hashlib.sha256(payload.encode()).hexdigest()


def _code_hash() -> str:
    """SHA-256 of the organism's pipeline sources, so a code change never reuses a stale build."""
    h = hashlib.sha256()
    here = Path(__file__).resolve().parent
    for name in CODE_FILES:
        h.update((here / name).read_bytes())
    return h.hexdigest()


RECIPES: dict[str, Recipe] = {
    "full": Recipe(name="full"),
    # the CI smoke build: every stage trains, saves, loads and generates; it is not meant to learn
    "fast": Recipe(name="fast", threads=1, layers=6, vision_steps=10, vision_batch=8, vision_scenes=100,
                   base_items_per_task=100, base_steps=30, in_items_per_task=50,
                   in_arith_items=100, in_steps=20, rl_items=50, rl_steps=3,
                   rl_prompts_per_step=2, rl_generations=4, eval_per_task=8, eval_arith=16),
}


def get_recipe(name: str) -> Recipe:
    """The named recipe; raises :class:`CheckpointError` listing the valid names."""
    try:
        return RECIPES[name]
    except KeyError:
        raise CheckpointError(f"unknown organism recipe {name!r}; valid recipes: "
                              f"{', '.join(RECIPES)}") from None
