"""Loader of the paper's swap pairs (``<task>/data.jsonl``): good lines, bad lines, bad images."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

import tiny_models
from vlmdiag.errors import ProbeError
from vlmdiag.probes.vision_functionality import load_vision_functionality

PAPER_DATA = Path(os.environ.get("VLMDIAG_VISION_FUNCTIONALITY", "/work/shared/data/vision_functionality"))


def _line(i, task="counting", **over):
    record = {"id": f"{task}_{i:06d}", "task": task, "target_image": f"images/{i}_t.png",
              "source_image": f"images/{i}_s.png", "prompt": "<image>How many items are there in the image?",
              "meta": {"target_answer": "3", "source_answer": "10"}}
    record.update(over)
    return json.dumps(record)


@pytest.fixture
def probe_root(tmp_path):
    folder = tmp_path / "counting" / "images"
    folder.mkdir(parents=True)
    for i in range(3):
        tiny_models.colour_image((255, 0, 0)).save(folder / f"{i}_t.png")
        tiny_models.colour_image((0, 0, 255)).save(folder / f"{i}_s.png")
    (folder.parent / "data.jsonl").write_text("\n".join(_line(i) for i in range(3)) + "\n")
    return tmp_path


def test_good_file(probe_root):
    loaded = load_vision_functionality(probe_root)
    assert len(loaded.pairs) == 3 and loaded.skipped == 0
    pair = loaded.pairs[0]
    assert pair.task == "counting" and pair.prompt == "How many items are there in the image?"
    assert pair.target_answer == "3" and pair.source_answer == "10"
    assert pair.target_image.size == pair.source_image.size == (112, 112)
    assert pair.meta["line"] == 1
    assert len(load_vision_functionality(probe_root, limit=2).pairs) == 2


def test_undecodable_image_is_skipped_and_counted(probe_root):
    (probe_root / "counting" / "images" / "1_s.png").write_bytes(b"not a png")
    (probe_root / "counting" / "images" / "2_t.png").unlink()
    loaded = load_vision_functionality(probe_root)
    assert [p.id for p in loaded.pairs] == ["counting_000000"]
    assert loaded.skipped == 2
    assert loaded.skipped_reasons[0].startswith(f"{probe_root / 'counting' / 'data.jsonl'}:2: image not readable")


@pytest.mark.parametrize("bad, message", [
    ("{not json", "not valid JSON"),
    ("[1, 2]", "expected a JSON object"),
    (json.dumps({"id": "x", "task": "counting"}), "missing keys"),
    (_line(9, task="colour"), "unknown task 'colour'"),
    (_line(9, prompt=5), "'prompt' must be a string"),
    (_line(9, meta=[]), "'meta' must be an object"),
    (_line(9, task="grounding", meta={"source_bbox_xyxy": [1, 2, 3]}), "4 numbers"),
    (_line(9, task="grounding", meta={}), "needs meta.source_bbox_xyxy"),
], ids=["json", "array", "keys", "task", "prompt-type", "meta-type", "bbox", "no-bbox"])
def test_bad_line_names_file_and_line(probe_root, bad, message):
    path = probe_root / "counting" / "data.jsonl"
    lines = path.read_text().splitlines()
    lines.insert(1, bad)
    path.write_text("\n".join(lines) + "\n")
    with pytest.raises(ProbeError, match=message) as info:
        load_vision_functionality(probe_root)
    assert str(info.value).startswith(f"{path}:2: ")


def test_missing_root(tmp_path):
    with pytest.raises(ProbeError, match="not found"):
        load_vision_functionality(tmp_path / "absent")
    with pytest.raises(ProbeError, match="data.jsonl: not found"):
        load_vision_functionality(tmp_path, tasks=["ocr"])


def test_paper_pairs_swap(qwen_loaded):
    """The paper's own pairs, first 2 per task, through the swap sweep (the data is read in
    place, never copied into the repository)."""
    if not PAPER_DATA.is_dir():
        pytest.skip(f"paper swap pairs not present at {PAPER_DATA} (set VLMDIAG_VISION_FUNCTIONALITY)")
    loaded = load_vision_functionality(PAPER_DATA, limit=2)
    if not loaded.pairs:
        pytest.skip(f"{PAPER_DATA}: data.jsonl present but no image decodes "
                    f"({loaded.skipped} pairs skipped, e.g. {loaded.skipped_reasons[0]})")
    from vlmdiag.measure.swap import change_rates, swap_pairs

    results = swap_pairs(qwen_loaded, loaded.pairs, layers=[0, 4], max_new_tokens=8)
    assert {r.task for r in results} <= {"counting", "grounding", "ocr", "recognition"}
    assert change_rates(results).shape == (2,)
    assert all(r.run.swapped[1] == r.run.target_answer for r in results)   # L = n: no swap
    assert all(r.run.swapped[0] == r.run.source_answer for r in results)   # L = 0: the source
