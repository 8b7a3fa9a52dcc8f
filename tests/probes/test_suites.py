"""The built-in probe suites: synthetic (deterministic, real-VLM sizes, matched swap pairs),
paper:DIR (the released pairs; missing parts named), and user manifests (errors name file:line)."""

from __future__ import annotations

import json
import os
import re
from pathlib import Path

import pytest
from PIL import Image

from vlmdiag.errors import ProbeError, UsageError
from vlmdiag.probes.suite import Drawn, ProbeSuite, generation_settings, open_suite, suite_names
from vlmdiag.probes.synthetic import Generator

PAPER = Path(os.environ.get("VLMDIAG_VISION_FUNCTIONALITY", "/work/shared/data/vision_functionality"))
SHAPE = re.compile(r"a (\w+) (\w+) at \[")


def test_builtins_registered_and_protocol():
    assert {"synthetic", "paper", "manifest"} <= set(suite_names())
    suite = open_suite("synthetic")
    assert isinstance(suite, ProbeSuite)
    assert generation_settings(suite) == {"answer_format": "boxed", "max_new_tokens": 1024}
    assert generation_settings(open_suite("synthetic:answer_format=none,max_new_tokens=16,preset=small")) == \
        {"answer_format": "none", "max_new_tokens": 16}


@pytest.mark.parametrize("spec", ["synthetic:colour=red", "synthetic:preset=huge", "synthetic:max_new_tokens=x",
                                  "synthetic:answer_format=json", "nosuch", "paper", "manifest"])
def test_bad_specs_are_usage_errors(spec):
    with pytest.raises(UsageError, match="--probes"):
        open_suite(spec)


def test_synthetic_is_deterministic_and_prefix_stable():
    a, b = open_suite("synthetic:preset=small"), open_suite("synthetic:preset=small")
    for kind in ("vqa", "math_vqa", "text_math"):
        first, again = a.ability_items(kind, 6, seed=3), b.ability_items(kind, 6, seed=3)
        assert first.note is None and len(first.items) == 6
        assert first.content_hash == again.content_hash
        assert a.ability_items(kind, 3, seed=3).content_hash == Drawn(first.items[:3]).content_hash
        assert a.ability_items(kind, 6, seed=4).content_hash != first.content_hash
    b.ability_items("text_math", 6, seed=4)
    b.ability_items("vqa", 6, seed=4)
    b.ability_items("math_vqa", 6, seed=4)
    assert a.describe()["content_hash"] == b.describe()["content_hash"]
    assert a.describe()["items"]["vqa@seed=3"] == 6


def test_synthetic_items_at_real_sizes_with_exact_descriptions():
    gen = Generator("real", seed=0)
    for i in range(9):
        item = gen.vqa(i)
        assert 448 <= min(item.image.size) and max(item.image.size) <= 896
        shapes = SHAPE.findall(item.description)
        if item.meta["task"] == "counting":
            kind = re.search(r"How many (\w+)s", item.question).group(1)
            assert item.answer == str(sum(k == kind for _, k in shapes))
        elif item.meta["task"] == "recognition":
            color, kind = re.search(r"Is there a (\w+) (\w+)", item.question).groups()
            assert item.answer == ("yes" if (color, kind) in shapes else "no")
        else:
            assert f'"{item.answer}"' in item.description
    answers = {gen.vqa(i).answer for i in range(0, 24, 3)}
    assert answers == {"yes", "no"}
    text = [gen.text_math(i) for i in range(8)]
    assert all(t.image is None and t.answer.lstrip("-").isdigit() for t in text)
    assert len({t.meta["form"] for t in text}) == 4


@pytest.mark.parametrize("task", ["ocr", "counting", "grounding", "recognition"])
def test_synthetic_swap_pairs_equal_sizes_one_attribute(task):
    suite = open_suite("synthetic")
    drawn = suite.swap_pairs(task, 4, seed=0)
    assert len(drawn.items) == 4 and drawn.note is None
    for pair in drawn.items:
        assert pair.target_image.size == pair.source_image.size
        assert pair.target_image.tobytes() != pair.source_image.tobytes()
        t, s = pair.meta["target_description"], pair.meta["source_description"]
        if task == "ocr":
            assert pair.target_answer != pair.source_answer and SHAPE.findall(t) == SHAPE.findall(s)
        elif task == "counting":
            assert int(pair.source_answer) > int(pair.target_answer)
        elif task == "grounding":
            assert pair.target_bbox != pair.source_bbox and len(SHAPE.findall(t)) == len(SHAPE.findall(s))
        else:
            assert (pair.target_answer, pair.source_answer) == ("yes", "no")


@pytest.mark.skipif(not PAPER.is_dir(), reason=f"{PAPER} (the paper's vision-functionality pairs) is absent")
def test_paper_folder_loads_400_pairs_and_names_missing_parts():
    suite = open_suite(f"paper:{PAPER}")
    total = 0
    for task in ("counting", "grounding", "ocr", "recognition"):
        drawn = suite.swap_pairs(task, 100, seed=0)
        assert all(p.target_image.size == p.source_image.size for p in drawn.items)
        assert (drawn.note is None) == (len(drawn.items) == 100)
        total += len(drawn.items)
    # 400 lines read; an image that does not decode (recognition line 59 of the release is a
    # truncated PNG) is left out, listed, and the note says so: never a silently smaller N
    left_out = suite.describe()["left_out"]
    assert total + len(left_out) == 400 and total >= 396
    assert all(re.search(r"data\.jsonl:\d+: image not readable", reason) for reason in left_out)
    capped = suite.swap_pairs("ocr", 150, seed=0)
    assert len(capped.items) == 100 and "capped at 100" in capped.note
    for kind, what in (("vqa", "MathVista"), ("math_vqa", "MathVista"), ("text_math", "MATH-500")):
        drawn = suite.ability_items(kind, 5, seed=0)
        assert drawn.items == () and what in drawn.note
    described = suite.describe()
    assert described["name"] == "paper" and described["items"]["swap:ocr@seed=0"] == 100
    assert described["source"]["swap_tasks"] == ["counting", "grounding", "ocr", "recognition"]


def _png(path: Path, colour=(200, 10, 10), size=(64, 48)) -> str:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", size, colour).save(path)
    return path.name if path.parent.name != "img" else f"img/{path.name}"


def test_paper_folder_parts_in_tmp(tmp_path):
    (tmp_path / "math500").mkdir()
    rows = [{"problem": f"What is {i}+1?", "answer": str(i + 1), "unique_id": f"u{i}"} for i in range(3)]
    (tmp_path / "math500" / "test.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    suite = open_suite(f"paper:{tmp_path}")
    drawn = suite.ability_items("text_math", 5, seed=0)
    assert len(drawn.items) == 3 and "capped at 3" in drawn.note
    assert "no counting swap pairs" in suite.swap_pairs("counting", 2, seed=0).note
    (tmp_path / "math500" / "test.jsonl").write_text(json.dumps(rows[0]) + "\n{broken\n")
    with pytest.raises(ProbeError, match=r"test\.jsonl:2: not valid JSON"):
        open_suite(f"paper:{tmp_path}")   # up front, before any item is asked for
    (tmp_path / "math500" / "test.jsonl").write_text(json.dumps(rows[0]) + "\n")
    (tmp_path / "ocr").mkdir()
    (tmp_path / "ocr" / "data.jsonl").write_text('{"id": "o1", "task": "ocr", "prompt": "Read."}\n')
    with pytest.raises(ProbeError, match=r"ocr/data\.jsonl:1: missing keys \['target_image', 'source_image'\]"):
        open_suite(f"paper:{tmp_path}")


def _manifest(tmp_path: Path, body: str) -> Path:
    path = tmp_path / "probes.yaml"
    path.write_text(body)
    return path


def test_manifest_suite_loads(tmp_path):
    _png(tmp_path / "img" / "a.png")
    _png(tmp_path / "img" / "b.png", (10, 10, 200))
    (tmp_path / "math.jsonl").write_text('{"id": "t1", "question": "2+2?", "answer": "4"}\n'
                                         '{"id": "t2", "question": "3+3?", "answer": "6"}\n')
    path = _manifest(tmp_path, """
name: team-probes
answer_format: think_answer
generation_kwargs: {max_new_tokens: 512}
items:
  vqa:
    - {id: q1, image: img/a.png, question: "What colour is it?", answer: red}
    - {id: q2, image: img/b.png, question: "Which option?", answer: B, choices: [red, blue]}
  math_vqa:
    - {id: m1, image: img/a.png, question: "How many?", answer: 1, description: one red rectangle}
  text_math: {dataset_path: math.jsonl}
swap_pairs:
  grounding:
    - {id: g1, target_image: img/a.png, source_image: img/b.png, prompt: "Where?",
       target_bbox: [0, 0, 10, 10], source_bbox: [5, 5, 20, 20]}
""")
    suite = open_suite(str(path))
    assert suite.name == "team-probes"
    assert generation_settings(suite) == {"answer_format": "think_answer", "max_new_tokens": 512}
    vqa = suite.ability_items("vqa", 24, seed=0)
    assert [i.id for i in vqa.items] == ["q1", "q2"] and "capped at 2" in vqa.note
    assert vqa.items[1].choices == ("red", "blue")
    assert suite.ability_items("math_vqa", 1, seed=0).items[0].description == "one red rectangle"
    assert [i.answer for i in suite.ability_items("text_math", 2, seed=0).items] == ["4", "6"]
    pair = suite.swap_pairs("grounding", 1, seed=0).items[0]
    assert pair.source_bbox == (5.0, 5.0, 20.0, 20.0)
    assert "no ocr swap pairs" in suite.swap_pairs("ocr", 1, seed=0).note
    assert suite.describe()["source"]["manifest"] == str(path.resolve())


@pytest.mark.parametrize("body, message", [
    ("items:\n  vqa:\n    - {id: q1, image: img/none.png, question: Q, answer: A}\n", r"probes\.yaml:3: image .*none\.png does not exist"),
    ("items:\n  vqa:\n    - {id: q1, image: img/a.png, answer: A}\n", r"probes\.yaml:3: missing field question"),
    ("items:\n  vqa:\n    - {id: q1, image: img/a.png, question: Q, answer: A, colour: red}\n", r"probes\.yaml:3: unknown key\(s\) colour"),
    ("items:\n  math_vqa:\n    - {id: q1, image: img/a.png, question: Q, answer: A}\n", r"probes\.yaml:3: missing field description"),
    ("items:\n  vqa: [\n", r"probes\.yaml:\d+: not valid YAML"),
    ("itemz: {}\n", r"probes\.yaml:1: unknown key\(s\) itemz"),
    ("items:\n  text_math: {dataset_path: gone.jsonl}\n", r"probes\.yaml:2: dataset_path .*gone\.jsonl does not exist"),
    ("items:\n  text_math: {dataset_path: bad.jsonl}\n", r"bad\.jsonl:2: not valid JSON"),
    ("answer_format: json\nitems: {}\n", r"probes\.yaml:1: answer_format 'json'"),
    ("items:\n  text_math:\n    - {id: a, question: Q, answer: A}\n    - {id: a, question: Q, answer: B}\n",
     r"probes\.yaml:4: id 'a' already given at .*probes\.yaml:3"),
    ("swap_pairs:\n  ocr:\n    - {id: p, target_image: img/a.png, source_image: img/wide.png, prompt: Q}\n",
     r"probes\.yaml:3: target \(64, 48\) and source \(96, 48\) differ in size"),
])
def test_manifest_errors_name_file_and_line(tmp_path, body, message):
    _png(tmp_path / "img" / "a.png")
    _png(tmp_path / "img" / "wide.png", size=(96, 48))
    (tmp_path / "bad.jsonl").write_text('{"id": "t1", "question": "Q", "answer": "A"}\n{nope\n')
    with pytest.raises(ProbeError, match=message) as error:
        open_suite(f"manifest:{_manifest(tmp_path, body)}")
    assert "\n" not in str(error.value)


def test_manifest_undecodable_image_left_out_and_listed(tmp_path):
    _png(tmp_path / "img" / "a.png")
    (tmp_path / "img" / "broken.png").write_bytes(b"\x89PNG not really")
    path = _manifest(tmp_path, "items:\n  vqa:\n    - {id: q1, image: img/a.png, question: Q, answer: A}\n"
                               "    - {id: q2, image: img/broken.png, question: Q, answer: A}\n")
    suite = open_suite(str(path))
    drawn = suite.ability_items("vqa", 2, seed=0)
    assert [i.id for i in drawn.items] == ["q1"]
    assert "1 item(s) left out" in drawn.note
    assert len(suite.describe()["left_out"]) == 1 and "probes.yaml:4: image" in suite.describe()["left_out"][0]


def test_paper_mathvista_with_and_without_descriptions(tmp_path):
    folder = tmp_path / "mathvista"
    (folder / "images").mkdir(parents=True)
    records = {}
    for i, category in enumerate(["general-vqa", "general-vqa", "math-targeted-vqa"]):
        Image.new("RGB", (40, 30), (i * 60, 0, 0)).save(folder / "images" / f"{i}.png")
        records[str(i)] = {"question": f"Q{i}?", "answer": str(i), "image": f"images/{i}.png",
                           "metadata": {"category": category}}
    (folder / "testmini.json").write_text(json.dumps(records))
    suite = open_suite(f"paper:{tmp_path}")
    assert [i.id for i in suite.ability_items("vqa", 5, seed=0).items] == ["mathvista-0", "mathvista-1"]
    missing = suite.ability_items("math_vqa", 5, seed=0)
    assert missing.items == () and "Mv2r skipped: no descriptions file" in missing.note
    (folder / "descriptions.jsonl").write_text('{"pid": "2", "description": "a dark red box"}\n')
    described = open_suite(f"paper:{tmp_path}").ability_items("math_vqa", 5, seed=0)
    assert described.items[0].description == "a dark red box" and "capped at 1" in described.note
    (folder / "images" / "1.png").write_bytes(b"not a png")
    suite = open_suite(f"paper:{tmp_path}")
    drawn = suite.ability_items("vqa", 5, seed=0)
    assert [i.id for i in drawn.items] == ["mathvista-0"] and "left out" in drawn.note
    assert "testmini.json" in suite.describe()["left_out"][0]
