"""The model organism's training and evaluation sets, drawn from its tasks by the recipe's
seeds: held-out evaluation sets, the SFT mixes of the Base and IN stages and the GRPO prompts."""

from __future__ import annotations

import random

from vlmdiag.organism.recipe import Recipe


def _eval_sets(recipe: Recipe):
    from vlmdiag.organism import tasks as T

    seed = recipe.seed + 17
    sets = {}
    for task in T.PERCEPTION_TASKS:
        items = T.generate(task, recipe.eval_per_task, seed=seed, held_out=True)
        sets[task] = [T.chat_example(it, "image", it.answer) for it in items]
    arith = T.generate("arithmetic", recipe.eval_arith, seed=seed, held_out=True)
    for cond, name in (("image", "arithmetic"), ("described", "arithmetic_described"),
                       ("text", "arithmetic_text")):
        sets[name] = [T.chat_example(it, cond, it.answer) for it in arith]
    return sets


def _sft_examples(recipe: Recipe, stage: str):
    from vlmdiag.organism import tasks as T
    from vlmdiag.probes.prompts import text_message

    rng = random.Random(f"{recipe.seed}:{stage}:mix")
    exs = []
    if stage == "base":
        for task in T.PERCEPTION_TASKS:
            for it in T.training_items(task, recipe.base_items_per_task, seed=recipe.seed):
                exs.append(T.chat_example(it, "image", T.short_target(it)))
        return exs
    for task in T.PERCEPTION_TASKS:
        for it in T.training_items(task, recipe.in_items_per_task, seed=recipe.seed + 1):
            exs.append(T.chat_example(it, "image", T.reasoning_target(it)))
    # clean addition facts in text ("What is 4+2?"), so the reasoning step itself is learnable
    for i in range(recipe.in_fact_items):
        n, k = rng.randint(0, 9), rng.randint(1, T.MAX_ADDEND)
        exs.append(T.ChatExample(text_message(f"What is {n}+{k}?"), None,
                                 f"<think>{n}+{k}={n + k}</think><answer>{n + k}</answer>",
                                 "arithmetic", str(n + k), "text"))
    conditions = ("image", "image", "described", "text")
    for i, it in enumerate(T.training_items("arithmetic", recipe.in_arith_items,
                                            seed=recipe.seed + 1)):
        condition = conditions[i % len(conditions)]
        noisy = (rng.random() < recipe.in_distractor_rate
                 and condition in recipe.in_distractor_conditions)
        exs.append(T.chat_example(it, condition, T.reasoning_target(it, distractor=noisy)))
    return exs


def _rl_items(recipe: Recipe):
    """GRPO prompts: ``rl_items`` visual-arithmetic items plus perception items (each task in
    turn) making up ``rl_perception_share`` of the whole, in a seeded shuffled order."""
    from vlmdiag.organism import tasks as T

    items = T.training_items("arithmetic", recipe.rl_items, seed=recipe.seed + 2)
    share = recipe.rl_perception_share
    n_perc = round(recipe.rl_items * share / (1 - share)) if 0 < share < 1 else 0
    per_task = {t: T.training_items(t, -(-n_perc // len(T.PERCEPTION_TASKS)), seed=recipe.seed + 2)
                for t in T.PERCEPTION_TASKS}
    for i in range(n_perc):
        task = T.PERCEPTION_TASKS[i % len(T.PERCEPTION_TASKS)]
        items.append(per_task[task][i // len(T.PERCEPTION_TASKS)])
    random.Random(f"{recipe.seed}:rl:mix").shuffle(items)
    return items

