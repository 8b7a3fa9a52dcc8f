"""The synthetic suite's items through the real prompt → processor → generate path of tiny random
models (Qwen2.5-VL with its image-only processor, LLaVA with its processor): every ability item is
asked and graded, every swap pair has matching visual-token spans and yields a change curve."""

from __future__ import annotations

import numpy as np
import pytest

import tiny_models
from vlmdiag.measure.abilities import make_predict, run_abilities, score_abilities
from vlmdiag.measure.swap import swap_pairs
from vlmdiag.measure.samples import SampleLog
from vlmdiag.probes.suite import open_suite
from vlmdiag.runtime.model import wrap_model

SUITE = "synthetic:preset=small,max_new_tokens=6"


@pytest.fixture(scope="module")
def llava_loaded():
    model, processor = tiny_models.llava_with_processor()
    return wrap_model(model, processor)


@pytest.mark.parametrize("which", ["qwen", "llava"])
def test_synthetic_abilities_and_swaps_run(which, qwen_loaded, llava_loaded, tmp_path):
    loaded = qwen_loaded if which == "qwen" else llava_loaded
    suite = open_suite(SUITE)
    items = [i for kind in ("vqa", "math_vqa", "text_math") for i in suite.ability_items(kind, 2, seed=0).items]
    predict, decoding = make_predict(loaded, max_new_tokens=suite.max_new_tokens)
    outcomes = run_abilities(items, predict, decoding=decoding, answer_format=suite.answer_format)
    assert [o.item_id for o in outcomes] == [i.id for i in items]
    assert all(set(o.responses) for o in outcomes)
    scores = score_abilities(outcomes)
    assert scores is not None
    path = SampleLog(tmp_path).log_abilities(which.upper(), items, outcomes, answer_format=suite.answer_format)
    assert len(path.read_text().splitlines()) == 2 * 2 + 2 * 2 + 2   # vqa, math_vqa: 2 conditions; text: 1
    for task in ("ocr", "counting", "grounding", "recognition"):
        pairs = suite.swap_pairs(task, 1, seed=0).items
        results = swap_pairs(loaded, pairs, layers=[0, 2, 4], max_new_tokens=4)
        assert len(results) == 1 and results[0].changed.shape == (3,)
        # swapping every layer's visual keys/values (L = 0) answers as the source image does
        np.testing.assert_array_equal(results[0].run.swapped_ids[0], results[0].run.source_ids)
