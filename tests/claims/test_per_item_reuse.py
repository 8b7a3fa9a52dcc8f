"""A sequential run's later look measures only its new items (README "Enough items, chosen by the
data"): the skip and swap sweeps reuse, item by item, what an earlier look of the same run measured
(:meth:`~vlmdiag.runner.Runner.per_item`), and the result equals measuring all items at once. Rows
are counted by a hook on the input embeddings (every prefill row is one generation); planted: a
change of budget, answer format, item content, model state or layer setting is measured afresh."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from vlmdiag.organism import OrganismSuite
from vlmdiag.runner import CheckpointCache, RecipeCheckpoints as Recipe, Runner

N_SETTINGS = 7  # 6 decoder layers of the tiny checkpoints, and the unskipped / unswapped run


def runner(runnable) -> Runner:
    recipe = Recipe("r", str(runnable["base"]), str(runnable["rl"]), str(runnable["origin"]))
    return Runner(recipe, CheckpointCache(), probes=OrganismSuite())


def count_prefill_rows(run: Runner) -> list[int]:
    """``[rows]``: the prompts base has been run on (forward passes over more than one position)."""
    rows = [0]

    def hook(module, args):
        ids = args[0]
        if ids.ndim == 2 and ids.shape[1] > 1:
            rows[0] += ids.shape[0]

    run.loaded("base").model.get_input_embeddings().register_forward_pre_hook(hook)
    return rows


def skip(run: Runner, n: int, max_new_tokens: int = 3):
    return run.measure("skip", {"n_items": n, "max_new_tokens": max_new_tokens, "seed": 0})


def same_skip(a, b) -> None:
    assert a.item_ids == b.item_ids and a.answers == b.answers
    assert np.array_equal(a.layers, b.layers) and np.array_equal(a.correct, b.correct)
    assert np.array_equal(a.truncated, b.truncated)


def test_a_later_skip_look_measures_only_its_new_items_and_equals_one_measurement(runnable):
    run = runner(runnable)
    rows = count_prefill_rows(run)
    four = skip(run, 4)
    assert rows[0] == 4 * N_SETTINGS
    eight = skip(run, 8)
    assert rows[0] == 8 * N_SETTINGS  # the second look measured its 4 new items only
    assert eight.item_ids[:4] == four.item_ids and eight.correct.shape == (N_SETTINGS, 8)

    alone = runner(runnable)
    alone_rows = count_prefill_rows(alone)
    at_once = skip(alone, 8)
    assert alone_rows[0] == 8 * N_SETTINGS
    same_skip(eight, at_once)

    # planted: another budget, then another answer format, is measured afresh (all 4 items)
    skip(run, 4, max_new_tokens=4)
    assert rows[0] == 12 * N_SETTINGS
    run.probes.answer_format = "boxed"
    run._memo.clear()  # forget whole measurements (a suite does not change mid-run); items stay
    skip(run, 4, max_new_tokens=4)
    assert rows[0] == 16 * N_SETTINGS


def test_a_later_swap_look_measures_only_its_new_pairs_and_equals_one_measurement(runnable):
    settings = {"max_new_tokens": 3, "seed": 0}
    run = runner(runnable)
    rows = count_prefill_rows(run)
    first = run.measure("swap", {"n_items": 1, **settings})  # one pair per task
    per_pair = 1 + N_SETTINGS  # the source, the target unswapped and swapped from each layer
    assert rows[0] == len(first) * per_pair == 4 * per_pair
    second = run.measure("swap", {"n_items": 2, **settings})
    assert len(second) == 8 and rows[0] == 8 * per_pair  # only the 4 new pairs
    at_once = runner(runnable).measure("swap", {"n_items": 2, **settings})
    for a, b in zip(second, at_once):
        assert a.pair_id == b.pair_id and a.run.swapped == b.run.swapped
        assert a.run.target_answer == b.run.target_answer and a.run.source_answer == b.run.source_answer
        assert np.array_equal(a.changed, b.changed)
    run.measure("swap", {"n_items": 1, "mode": "only", **settings})  # planted: another mode
    assert rows[0] == 12 * per_pair  # its 4 pairs afresh


def _arrays(value) -> list:
    """The arrays of an AttentionComparison or KLDrift, in a fixed order (None for absent tables)."""
    if hasattr(value, "in_rl"):
        return [x for f in (value.in_rl, value.base_in) for x in (f.kl, f.n_tokens, f.item_ids)]
    return [value.item_ids, value.shared_from] + [
        None if getattr(value, name) is None else getattr(value, name)[mode][m]
        for name in ("mass", "mean", "mass_without_sinks", "sinks") for mode in ("own", "teacher_forced")
        for m in ("IN", "RL")]


@pytest.mark.parametrize("name", ["attention", "kl_drift"])
def test_later_attention_and_kl_looks_measure_only_their_new_items(runnable, name):
    settings = {"max_new_tokens": 2, "seed": 0, **({"sink_ratio": 20.0} if name == "attention" else {})}
    run = runner(runnable)
    rows = count_prefill_rows(run)
    run.measure(name, {"n_items": 1, **settings})
    first = rows[0]
    assert first > 0
    later = run.measure(name, {"n_items": 2, **settings})
    assert rows[0] == 2 * first  # the new item costs what the first did
    alone = runner(runnable)
    alone_rows = count_prefill_rows(alone)
    at_once = alone.measure(name, {"n_items": 2, **settings})
    assert alone_rows[0] == 2 * first
    for a, b in zip(_arrays(later), _arrays(at_once), strict=True):
        assert (a is None and b is None) or np.array_equal(np.asarray(a), np.asarray(b),
                                                           equal_nan=np.asarray(a).dtype.kind == "f")


def test_per_item_shares_nothing_across_a_difference(runnable):
    run = runner(runnable)
    items = list(run.ability_items("text_math", 2, 0).items)
    asked = []

    def compute(missing):
        asked.append([item.id for item in missing])
        return [item.question for item in missing]

    identity = {"state": "a" * 64, "layers": "all", "max_new_tokens": 3, "answer_format": "none"}
    assert run.per_item("skip", identity, items, compute) == [item.question for item in items]
    assert run.per_item("skip", identity, items[:1], compute) == [items[0].question] and len(asked) == 1
    changed = dataclasses.replace(items[1], question=items[1].question + " ")  # same id, other content
    run.per_item("skip", identity, [items[0], changed], compute)
    assert asked[-1] == [items[1].id]
    for field, value in (("state", "b" * 64), ("layers", [0, 1]), ("max_new_tokens", 4), ("answer_format", "boxed")):
        asked.clear()
        run.per_item("skip", {**identity, field: value}, items, compute)
        assert asked == [[item.id for item in items]], field
    asked.clear()
    run.per_item("swap", identity, items, compute)  # another measurement
    assert asked == [[item.id for item in items]]
    with pytest.raises(RuntimeError, match="1 results for 2 items"):
        run.per_item("kl", identity, items, lambda missing: missing[:1])
