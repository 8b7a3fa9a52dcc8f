"""Reasoning→visual attention of IN and RL (paper §2.3, Eq. 1, Fig. 3), in both modes: each
model's own response, and one shared teacher-forced response."""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np

from vlmdiag.measure.tables import AttentionComparison
from vlmdiag.probes.types import AbilityItem
from pydantic import Field

from vlmdiag.runner.plans import Plan, ProbeSettings, register_plan


class AttentionSettings(ProbeSettings):
    sink_ratio: float | None = Field(20.0, description="τ of the visual-sink test (Kang et al. 2025); None: no sinks")


@register_plan("attention", roles=("base", "rl"), settings=AttentionSettings)
def plan_attention(runner, s: AttentionSettings) -> Plan:
    """:class:`~vlmdiag.measure.tables.AttentionComparison` on ``n_items`` ``math_vqa`` items of the suite,
    asked in the suite's answer format with its budget (:meth:`~vlmdiag.runner.Runner.budget`), as the
    ability sweeps ask them: the reasoning tokens are those of the prompt a user's model sees. Both
    are part of the cache key (the runner adds the suite's generation settings to every probe plan's).
    An item this run already measured (an earlier sequential look) is not measured again
    (:meth:`~vlmdiag.runner.Runner.per_item`)."""
    items = runner.ability_items("math_vqa", s.n_items, s.seed).items
    answer_format, max_new_tokens = runner.answer_format, runner.budget(s.max_new_tokens)

    def sweep(missing):
        base, rl = runner.loaded("base"), runner.loaded("rl")
        with runner.step("attention (IN, RL; own and teacher-forced)") as progress:
            return split_items(measure_attention(base, rl, missing, max_new_tokens=max_new_tokens, progress=progress,
                                                 sink_ratio=s.sink_ratio, answer_format=answer_format))

    def compute():
        from vlmdiag.runtime.generate import DEFAULT_BATCH_SIZE

        # Items measured by an earlier look of this run (same IN and RL, budget, format) are reused.
        identity = {"states": [runner.checkpoint(role).fingerprint for role in ("base", "rl")],
                    "sink_ratio": s.sink_ratio, "max_new_tokens": max_new_tokens, "answer_format": answer_format,
                    "batch_size": DEFAULT_BATCH_SIZE}
        return join_items(runner.per_item("attention", identity, list(items), sweep))

    return Plan(("base", "rl"), compute, runner.model_device, probes=items)


def attention_prompts(items: Sequence[AbilityItem], answer_format: str = "none") -> list:
    """f(i, p) of each item in ``answer_format``: the image, the question, the answer instruction
    (:func:`vlmdiag.runtime.generate.image_prompt`; the same prompt as the ability sweeps' ``image``
    condition, :func:`vlmdiag.measure.abilities.build_prompts`).

    Raises:
        ValueError: an item has no image, or an unknown ``answer_format``.
    """
    from vlmdiag.runtime.generate import image_prompt

    if any(item.image is None for item in items):
        raise ValueError("attention: every probe item needs an image")
    return [image_prompt(item.question, item.image, answer_format) for item in items]


def measure_attention(base, rl, items: Sequence[AbilityItem], *, max_new_tokens: int,
                      progress: Callable[[int, int], None] | None = None,
                      sink_ratio: float | None = 20.0, answer_format: str = "none") -> AttentionComparison:
    """R→V attention of IN (``base``) and RL on image items, in both modes (SPEC §2).

    Each model first answers greedily (``own`` mode). The shared teacher-forced sequence of an
    item is RL's own response (IN's when RL's is empty); both models then read it.
    ``progress(done, 4)`` is called after each of the four passes (own IN, own RL, forced IN, RL).
    ``sink_ratio``: τ of the visual-sink test (Kang et al. 2025: 20); None skips it.
    ``answer_format``: the suite's answer instruction after each question
    (:func:`attention_prompts`, the layout of the ability sweeps' image condition).

    Raises:
        ValueError: an item has no image, or an unknown ``answer_format``.
    """
    from vlmdiag.measure.attention import attention_own_generation, attention_teacher_forced

    prompts = attention_prompts(items, answer_format)
    tick = (lambda done: progress(done, 4)) if progress is not None else (lambda done: None)  # noqa: E731
    own = {"IN": attention_own_generation(base, prompts, max_new_tokens=max_new_tokens, sink_ratio=sink_ratio)}
    tick(1)
    own["RL"] = attention_own_generation(rl, prompts, max_new_tokens=max_new_tokens, sink_ratio=sink_ratio)
    tick(2)
    shared, source = [], []
    for a_in, a_rl in zip(own["IN"], own["RL"]):
        use_rl = bool(a_rl.response.strip()) or not a_in.response.strip()
        shared.append(a_rl.response if use_rl else a_in.response)
        source.append("RL" if use_rl else "IN")
    forced = {"IN": attention_teacher_forced(base, prompts, shared, sink_ratio=sink_ratio)}
    tick(3)
    forced["RL"] = attention_teacher_forced(rl, prompts, shared, sink_ratio=sink_ratio)
    tick(4)
    runs = {"teacher_forced": forced, "own": own}
    head_mean = lambda values: np.stack([v.mean(axis=1) for v in values])  # noqa: E731  [N, L]
    sinks = {} if sink_ratio is None else dict(
        mass_without_sinks={mode: {m: head_mean([a.mass_without_sinks for a in r]) for m, r in by_model.items()}
                            for mode, by_model in runs.items()},
        sinks={mode: {m: np.stack([a.sinks.astype(float) for a in r]) for m, r in by_model.items()}
               for mode, by_model in runs.items()})
    return AttentionComparison(
        **sinks,
        item_ids=tuple(item.id for item in items),
        mass={mode: {m: head_mean([a.mass for a in r]) for m, r in by_model.items()} for mode, by_model in runs.items()},
        mean={mode: {m: head_mean([a.mean for a in r]) for m, r in by_model.items()} for mode, by_model in runs.items()},
        shared_from=tuple(source))


def _tables(table, pick):
    return None if table is None else {mode: {m: pick(v) for m, v in by.items()} for mode, by in table.items()}


def split_items(value: AttentionComparison) -> list[AttentionComparison]:
    """``value`` item by item: one :class:`AttentionComparison` of one item ([1, L] arrays) per item."""
    return [AttentionComparison(item_ids=(value.item_ids[i],), shared_from=(value.shared_from[i],),
                                **{name: _tables(getattr(value, name), lambda v, i=i: v[i:i + 1])
                                   for name in ("mass", "mean", "mass_without_sinks", "sinks")})
            for i in range(len(value.item_ids))]


def join_items(parts: Sequence[AttentionComparison]) -> AttentionComparison:
    """The items of ``parts`` side by side ([Σ N, L] arrays; the inverse of :func:`split_items`).

    Raises:
        ValueError: no parts.
    """
    if not parts:
        raise ValueError("join_items: no results to join")

    def joined(name):
        tables = [getattr(part, name) for part in parts]
        if any(table is None for table in tables):
            return None
        return {mode: {m: np.concatenate([table[mode][m] for table in tables]) for m in by}
                for mode, by in tables[0].items()}

    return AttentionComparison(item_ids=tuple(i for part in parts for i in part.item_ids),
                               shared_from=tuple(x for part in parts for x in part.shared_from),
                               **{name: joined(name) for name in ("mass", "mean", "mass_without_sinks", "sinks")})
