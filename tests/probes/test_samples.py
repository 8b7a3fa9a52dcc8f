"""--log-samples: one JSONL file per model state with prompt, response, extracted answer and grade;
never inside a checkpoint folder; appends whole lines."""

from __future__ import annotations

import json

import pytest

from vlmdiag.errors import UnsafeOutputError
from vlmdiag.measure.abilities import Response, run_abilities
from vlmdiag.measure.samples import SampleLog, state_file_name
from vlmdiag.probes.suite import open_suite


def test_ability_records(tmp_path):
    suite = open_suite("synthetic:preset=small")
    items = suite.ability_items("vqa", 2, seed=0).items + suite.ability_items("text_math", 1, seed=0).items

    def predict(messages, images):
        return [Response("<think>cut off mid-thought", hit_budget=True) if image is not None and image.getextrema()[0][1] == 0
                else Response(f"<think>ok</think>The answer is \\boxed{{{items[0].answer}}}") for image in images]

    outcomes = run_abilities(items, predict, answer_format="boxed")
    log = SampleLog(tmp_path / "samples")
    path = log.log_abilities("IN:RL:RL", items, outcomes, answer_format="boxed", claim="abilities")
    assert path.name == "IN-RL-RL.jsonl"
    records = [json.loads(line) for line in path.read_text().splitlines()]
    assert len(records) == 5   # 2 vqa items x (image, black) + 1 text item
    first = records[0]
    assert first["state"] == "IN:RL:RL" and first["condition"] == "image" and first["prompt"].startswith("<image>")
    assert "\\boxed{}" in first["prompt"] and first["extracted"] == items[0].answer and first["correct"] is True
    black = [r for r in records if r["condition"] == "black"]
    assert all(r["truncated"] and r["correct"] is False and r["extracted"] == "" for r in black)
    log.log_abilities("IN:RL:RL", items[:1], outcomes[:1])
    assert len(path.read_text().splitlines()) == 7   # appended


def test_never_inside_a_checkpoint(tmp_path):
    checkpoint = tmp_path / "ckpt"
    checkpoint.mkdir()
    with pytest.raises(UnsafeOutputError, match="--log-samples lies inside the checkpoint"):
        SampleLog(checkpoint / "samples", checkpoints=[checkpoint])
    (tmp_path / "file").write_text("x")
    with pytest.raises(UnsafeOutputError, match="is a regular file"):
        SampleLog(tmp_path / "file")


def test_state_names():
    assert state_file_name("RL") == "RL.jsonl"
    assert state_file_name("../../etc/passwd") == "etc-passwd.jsonl"
    assert state_file_name("") == "state.jsonl"


def test_swap_records_one_per_pair_and_layer_in_their_own_file(tmp_path):
    import numpy as np

    from vlmdiag.measure.swap import PairSwapResult, SwapRun

    suite = open_suite("synthetic:preset=small,answer_format=think_answer")
    pairs = suite.swap_pairs("counting", 1, seed=0).items + suite.swap_pairs("ocr", 1, seed=0).items
    runs = [SwapRun("<think>a</think><answer>3</answer>", "<answer>5</answer>", np.array([0, 1, 2]),
                    ("<answer>5</answer>", "<answer>3</answer>", "<think>cut"), "from"),
            SwapRun("STOP", "GO", np.array([0, 1, 2]), ("GO", "STOP", "STOP"), "from")]
    results = [PairSwapResult(p.id, p.task, run, np.array(changed))
               for p, run, changed in zip(pairs, runs, ([True, False, True], [True, False, False]))]
    log = SampleLog(tmp_path / "samples")
    path = log.log_swaps("IN", pairs, results, answer_format="think_answer", fingerprint="abc")
    assert path.name == "IN.swap.jsonl" and not log.path("IN").exists()  # the ability records keep their file
    records = [json.loads(line) for line in path.read_text().splitlines()]
    assert len(records) == 6
    first = records[0]
    assert first["state"] == "IN" and first["measurement"] == "swap" and first["fingerprint"] == "abc"
    assert first["pair_id"] == pairs[0].id and first["task"] == "counting" and first["layer"] == 0
    assert first["prompt"].startswith("<image>") and "<think>" in first["prompt"]  # the suite's instruction
    assert first["response_before"] == runs[0].target_answer and first["response_after"] == "<answer>5</answer>"
    assert (first["extracted_before"], first["extracted_after"]) == ("3", "5")
    assert [r["changed"] for r in records] == [True, False, True, True, False, False]
    assert [r["layer"] for r in records] == [0, 1, 2, 0, 1, 2]
    with pytest.raises(ValueError, match="has no pair"):
        log.log_swaps("IN", pairs[:1], results)
