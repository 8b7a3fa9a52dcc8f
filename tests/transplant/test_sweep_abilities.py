"""End to end: one model loaded once, the 8 Table-2 variants spliced in turn, each scored on
Mvis / Mv2r / Mrea through the real processor and greedy generation (``make_predict``)."""

from __future__ import annotations

import pytest
import torch

from vlmdiag.measure.abilities import make_predict, run_abilities, score_abilities
from vlmdiag.organism import organism_probe_set
from vlmdiag.transplant import Splicer, all_variants, sweep_abilities


@pytest.fixture(scope="module")
def organism_pair(tmp_path_factory):
    from vlmdiag.organism.tasks import corpus_texts
    from vlmdiag.organism.tokenizer import build_processor, build_tokenizer, save_processor
    from vlmdiag.organism.train import build_model

    tokenizer = build_tokenizer(corpus_texts(seed=0, n_per_task=10))
    processor = build_processor(tokenizer)
    root = tmp_path_factory.mktemp("organism_pair")
    paths = []
    for name, seed in (("in", 0), ("rl", 1)):
        model = build_model(tokenizer, hidden=64, layers=6, heads=4, kv_heads=2, intermediate=128,
                            vision_hidden=32, vision_depth=2, seed=seed)
        model.save_pretrained(root / name)
        save_processor(processor, root / name)
        paths.append(root / name)
    return paths


def answers(loaded, items):
    predict, decoding = make_predict(loaded, max_new_tokens=3, batch_size=4)
    return run_abilities(items, predict, decoding=decoding)


def test_sweep_of_eight_variants_with_one_load(organism_pair):
    from vlmdiag.runtime.model import load_model

    a, b = organism_pair
    items = organism_probe_set(2, seed=0).all_items()
    loaded = load_model(a, device="cpu")
    before = {k: v.clone() for k, v in loaded.model.state_dict().items()}
    splicer = Splicer(loaded.model, a, b)
    results = {}
    for variant, record in splicer.sweep():
        outcomes = answers(loaded, items)
        results[variant.label()] = outcomes
        assert set(score_abilities(outcomes)) == {"Mvis", "Mv2r", "Mrea"}
    assert list(results) == ["IN", "IN:RL:RL", "IN:IN:RL", "RL:RL:IN", "RL:IN:IN", "IN:RL:IN", "RL:IN:RL", "RL"]
    for name, value in loaded.model.state_dict().items():
        assert torch.equal(value, before[name]), name
    # the parents spliced in memory answer exactly as the checkpoints loaded on their own
    assert [o.responses for o in results["IN"]] == [o.responses for o in answers(loaded, items)]
    reference = load_model(b, device="cpu")
    assert [o.responses for o in results["RL"]] == [o.responses for o in answers(reference, items)]
    assert [o.responses for o in results["RL"]] != [o.responses for o in results["IN"]]  # not vacuous
    # incremental sweep: a tensor is streamed from RL only when its source switches to RL
    expected, current = 0, dict.fromkeys(splicer.tensors_from_b(splicer.plan(all_variants()[-1])), "A")
    for variant in all_variants():
        wanted = set(splicer.tensors_from_b(splicer.plan(variant)))
        expected += sum(1 for name in wanted if current[name] == "A")
        current = {name: "B" if name in wanted else "A" for name in current}
    assert splicer.reads == expected < sum(len(splicer.tensors_from_b(splicer.plan(v))) for v in all_variants())


def test_sweep_abilities_with_cache(organism_pair):
    from vlmdiag.runtime.model import load_model

    a, b = organism_pair
    items = organism_probe_set(2, seed=1).all_items()
    loaded = load_model(a, device="cpu")
    splicer = Splicer(loaded, a, b)
    predict, decoding = make_predict(loaded, max_new_tokens=3)
    calls = []

    def counting(messages, images):
        calls.append(len(messages))
        return predict(messages, images)

    cache: dict[str, str] = {}
    first = sweep_abilities(splicer, items, counting, cache=cache, decoding=decoding)
    assert list(first.scores) == [v.label() for v in all_variants()]
    assert set(first.scores["IN:RL:RL"]) == {"Mvis", "Mv2r", "Mrea"}
    asked = sum(calls)
    assert asked == 8 * 10 and len(cache) == 8 * 10  # 2 items x (2 + 2 + 1) conditions per variant
    fingerprints = {splicer.fingerprint(v) for v in all_variants()}
    assert len(fingerprints) == 8
    assert splicer.fingerprint("IN") == splicer.a.fingerprint and splicer.fingerprint("RL") == splicer.b.fingerprint
    second = sweep_abilities(splicer, items, counting, cache=cache, decoding=decoding)
    assert sum(calls) == asked  # every answer came from the cache
    assert {k: [o.responses for o in v] for k, v in second.outcomes.items()} == \
        {k: [o.responses for o in v] for k, v in first.outcomes.items()}
