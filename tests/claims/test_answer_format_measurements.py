"""The attention, swap and KL measurements ask their items in the suite's answer format, exactly as
the ability sweeps do (issue 14): planted by construction, two suites that differ only in their
answer format feed the models different prompt token ids (those of the ability sweeps' image-condition
layout) and have different cache keys; the same suite twice has equal keys."""

from __future__ import annotations

import pytest
import torch

from vlmdiag.cache import ResultsCache, key_of
from vlmdiag.measure.abilities import build_prompts
from vlmdiag.organism import OrganismSuite
from vlmdiag.runner import CheckpointCache, RecipeCheckpoints as Recipe, Runner
from vlmdiag.runner.plans import get_plan
from vlmdiag.runtime.generate import build_cpu_inputs, image_prompt, pad_id

SETTINGS = {"attention": {"n_items": 1, "max_new_tokens": 2, "seed": 0, "sink_ratio": None},
            "swap": {"n_items": 1, "max_new_tokens": 2, "seed": 0},
            "kl_drift": {"n_items": 1, "max_new_tokens": 2, "seed": 0}}


def suite(answer_format: str, max_new_tokens: int | None = None) -> OrganismSuite:
    """The organism's items, asked in ``answer_format`` (and with that budget)."""
    made = OrganismSuite()
    made.answer_format, made.max_new_tokens = answer_format, max_new_tokens
    return made


def runner(runnable, probes, store=None) -> Runner:
    recipe = Recipe("r", str(runnable["base"]), str(runnable["rl"]), str(runnable["origin"]))
    return Runner(recipe, CheckpointCache(), probes=probes, results=store)


def key(run: Runner, name: str) -> str:
    spec = get_plan(name)
    plan = spec.build(run, spec.settings(**SETTINGS[name]))
    return key_of(run.cache_material(name, SETTINGS[name], plan))


def test_the_answer_format_and_budget_are_in_the_keys_of_attention_swap_and_kl(runnable, tmp_path):
    store = ResultsCache(tmp_path)
    for name in SETTINGS:
        none, again = key(runner(runnable, suite("none"), store), name), key(runner(runnable, suite("none"), store), name)
        boxed = key(runner(runnable, suite("boxed"), store), name)
        think = key(runner(runnable, suite("think_answer"), store), name)
        longer = key(runner(runnable, suite("boxed", 64), store), name)
        assert none == again, name  # the same suite twice: one key
        assert len({none, boxed, think, longer}) == 4, name


def _prefills(loaded) -> list[list[int]]:
    """Records the ids of every forward pass of more than one position (prompts, prompt + response),
    left padding removed, through a hook on the input embeddings."""
    seen, pad = [], pad_id(loaded)

    def hook(module, args):
        for row in args[0]:
            ids = row.tolist()
            if len(ids) > 1:
                start = next((i for i, t in enumerate(ids) if t != pad), len(ids))
                seen.append(ids[start:])

    loaded.model.get_input_embeddings().register_forward_pre_hook(hook)
    return seen


def _ids(loaded, prompt) -> list[int]:
    return build_cpu_inputs(loaded, [prompt])["input_ids"][0].tolist()


@pytest.mark.parametrize("name", list(SETTINGS))
def test_attention_swap_and_kl_prompts_are_the_ability_sweeps_in_the_suites_format(runnable, name):
    torch.manual_seed(0)
    prompts = {}
    for answer_format in ("none", "boxed"):
        run = runner(runnable, suite(answer_format))
        spec = get_plan(name)
        plan = spec.build(run, spec.settings(**SETTINGS[name]))
        seen = {role: _prefills(run.loaded(role)) for role in plan.roles}
        run.measure(name, SETTINGS[name])
        loaded = run.loaded("base")
        if name == "swap":  # the target and the source image, each with the pair's prompt
            expected = [_ids(loaded, image_prompt(p.prompt, image, answer_format)) for p in plan.probes
                        for image in (p.target_image, p.source_image)]
        else:  # the ability sweeps' image condition of the same item
            expected = [_ids(loaded, next(p for p in build_prompts(item, answer_format)[0] if p.condition == "image"))
                        for item in plan.probes]
        for role, sequences in seen.items():
            assert sequences, (name, role)
            for ids in sequences:  # every prompt the model read is one of the expected ones (a prefix
                assert any(ids[:len(e)] == e for e in expected), (name, role, answer_format)  # of prompt + response)
        prompts[answer_format] = expected
    assert all(a != b for a, b in zip(prompts["none"], prompts["boxed"]))
    assert all(len(b) > len(a) for a, b in zip(prompts["none"], prompts["boxed"]))  # the instruction added


def test_the_swap_sweep_writes_its_samples_also_from_the_cache(runnable, tmp_path):
    import json

    from vlmdiag.errors import UnsafeOutputError
    from vlmdiag.measure.samples import SampleLog

    store = ResultsCache(tmp_path / "cache")
    logs = []
    for attempt in range(2):  # measured, then read from the cache by a fresh runner (another worker)
        log = SampleLog(tmp_path / f"samples{attempt}", checkpoints=[runnable["base"]])
        run = runner(runnable, suite("boxed"), store)
        run.sample_log = log
        results = run.measure("swap", SETTINGS["swap"])
        assert run.cache_log[-1] == ("swap", "miss" if attempt == 0 else "hit")
        logs.append([json.loads(line) for line in log.path("IN", "swap").read_text().splitlines()])
    assert logs[0] == logs[1]
    records = logs[0]
    layers = len(results[0].run.layers)
    assert len(records) == len(results) * layers == 4 * 6  # one pair per task, every LLM layer
    assert [r["changed"] for r in records] == [bool(c) for r in results for c in r.changed]
    assert [r["response_after"] for r in records] == [a for r in results for a in r.run.swapped]
    assert all(r["response_before"] == results[i // layers].run.target_answer for i, r in enumerate(records))
    assert all("\\boxed{}" in r["prompt"] and r["fingerprint"] == run.checkpoint("base").fingerprint for r in records)

    # never written into a checkpoint folder, even through a link planted in the samples folder
    (tmp_path / "samples2").mkdir()
    (tmp_path / "samples2" / "IN.swap.jsonl").symlink_to(runnable["base"] / "config.json")
    run = runner(runnable, suite("boxed"), store)
    run.sample_log = SampleLog(tmp_path / "samples2", checkpoints=[runnable["base"]])
    with pytest.raises(UnsafeOutputError, match="never writes into a checkpoint"):
        run.measure("swap", SETTINGS["swap"])
