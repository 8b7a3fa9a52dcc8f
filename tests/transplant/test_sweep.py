"""End to end: one model loaded once, the 8 Table-2 variants spliced in turn, each scored on
Mvis / Mv2r / Mrea through the real processor and greedy generation (``make_predict``); and the
transplant measurement, the one sweep path the claim uses, with its results cache."""

from __future__ import annotations

import pytest
import torch

from vlmdiag.measure.abilities import make_predict, run_abilities, score_abilities
from vlmdiag.organism import organism_probe_set
from vlmdiag.transplant import Splicer, all_variants

CLAIM = "transplant.mid_late_carries_gain"


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
    # each splice has its own identity; the parents' are the checkpoints' own
    assert len({splicer.fingerprint(v) for v in all_variants()}) == 8
    assert splicer.fingerprint("IN") == splicer.a.fingerprint and splicer.fingerprint("RL") == splicer.b.fingerprint


def test_the_transplant_measurement_scores_eight_splices_then_reads_the_cache(organism_pair, tmp_path, monkeypatch):
    """The one sweep path: the transplant claim's measurement (``vlmdiag.run``, as ``pytest --base
    --rl``) scores the 8 variants in Table 2 order on Mvis/Mv2r/Mrea, generates answers once per
    splice identity (8 distinct ones here), and a second run reads everything from the cache."""
    import yaml

    import vlmdiag
    from vlmdiag.cache import ResultsCache
    from vlmdiag.packaged import default_thresholds

    a, b = organism_pair
    shipped = yaml.safe_load(default_thresholds().read_text())
    shipped["claims"][CLAIM].update(n_items=2, max_new_tokens=3, bootstrap_resamples=200)
    thresholds = tmp_path / "thresholds.yaml"
    thresholds.write_text(yaml.safe_dump(shipped))
    monkeypatch.setenv("VLMDIAG_CACHE_DIR", str(tmp_path / "cache"))

    def run():
        report = vlmdiag.run(str(a), str(b), claims=[CLAIM], thresholds=thresholds, args=["-p", "no:xdist"])
        (claim,) = report["claims"]
        assert claim["verdict"] not in ("error", "skipped"), claim["reason"]
        return claim

    first = run()
    labels = [v.label() for v in all_variants()]
    assert first["metrics"]["models"] == labels
    assert all(set(first["metrics"]["scores"][label]) >= {"Mvis", "Mv2r", "Mrea"} for label in labels)
    assert first["cache"]["measurements"] == {"transplant": "miss"}
    stored = ResultsCache(tmp_path / "cache" / "results").info()["by_measurement"]
    assert stored["answers"]["entries"] == 8 and stored["transplant"]["entries"] == 1  # one per splice identity
    second = run()
    assert second["cache"] == {**first["cache"], "measurements": {"transplant": "hit"}, "from_cache": True}
    assert second["metrics"]["scores"] == first["metrics"]["scores"]
    assert ResultsCache(tmp_path / "cache" / "results").info()["by_measurement"] == stored  # nothing new
