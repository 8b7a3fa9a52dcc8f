"""Local MathVista testmini / MATH-500 loaders: the published layouts, sampling, descriptions,
and malformed files that name the line."""

from __future__ import annotations

import io
import json

import pytest
from PIL import Image

from vlmdiag.errors import ProbeError
from vlmdiag.probes.math500 import load_math500
from vlmdiag.probes.mathvista import load_mathvista
from vlmdiag.probes.records import load_descriptions, sample


def mathvista_records(n_general=3, n_math=4):
    records = []
    for i in range(1, n_general + n_math + 1):
        general = i <= n_general
        records.append({
            "pid": str(i), "question": f"Question {i}?", "image": f"images/{i}.png",
            "choices": ["3", "4.5", "6"] if i % 2 else None,
            "question_type": "multi_choice" if i % 2 else "free_form",
            "answer_type": "text" if i % 2 else "integer", "answer": "4.5" if i % 2 else str(i),
            "unit": None, "precision": None, "query": f"Hint: ... Question {i}?",
            "metadata": {"category": "general-vqa" if general else "math-targeted-vqa",
                         "context": "bar chart", "task": "figure question answering"},
        })
    return records


@pytest.fixture
def mathvista_dir(tmp_path):
    (tmp_path / "images").mkdir()
    for i in range(1, 8):
        Image.new("RGB", (30 + i, 20), (i * 30, 0, 0)).save(tmp_path / "images" / f"{i}.png")
    records = mathvista_records()
    (tmp_path / "testmini.json").write_text(json.dumps({r["pid"]: r for r in records}, indent=4))
    (tmp_path / "testmini.jsonl").write_text("\n".join(json.dumps(r) for r in records) + "\n")
    (tmp_path / "descriptions.jsonl").write_text(
        "\n".join(json.dumps({"pid": str(i), "description": f"A chart number {i}."}) for i in range(4, 8)) + "\n")
    return tmp_path


def test_json_layout_without_descriptions_skips_mv2r(mathvista_dir):
    probes = load_mathvista(mathvista_dir / "testmini.json")
    assert [it.id for it in probes.items["vqa"]] == ["mathvista-1", "mathvista-2", "mathvista-3"]
    assert len(probes.items["math_vqa"]) == 4
    assert "Mv2r" in probes.skipped and "descriptions" in probes.skipped["Mv2r"]
    first = probes.items["vqa"][0]
    assert first.question == "Question 1?\n\nChoices:\nA. 3\nB. 4.5\nC. 6"  # the authors' layout
    assert first.choices == ("3", "4.5", "6") and first.answer == "4.5"
    assert first.image.size == (31, 20) and first.description is None
    assert probes.items["vqa"][1].question == "Question 2?" and probes.items["vqa"][1].choices is None


def test_jsonl_with_descriptions(mathvista_dir):
    probes = load_mathvista(mathvista_dir / "testmini.jsonl", descriptions=mathvista_dir / "descriptions.jsonl")
    assert "Mv2r" not in probes.skipped
    assert [it.description for it in probes.items["math_vqa"]] == [f"A chart number {i}." for i in range(4, 8)]
    assert all(it.description is None for it in probes.items["vqa"])
    assert load_mathvista(mathvista_dir / "testmini.jsonl", use_query=True).items["vqa"][0].question \
        == "Hint: ... Question 1?"


def test_parquet_layout_with_decoded_images(mathvista_dir):
    pa = pytest.importorskip("pyarrow")
    import pyarrow.parquet as pq

    rows = []
    for record in mathvista_records():
        buffer = io.BytesIO()
        Image.new("RGB", (50, 40), (0, 0, 255)).save(buffer, format="PNG")
        rows.append({**record, "decoded_image": {"bytes": buffer.getvalue(), "path": record["image"]}})
    pq.write_table(pa.Table.from_pylist(rows), mathvista_dir / "testmini-00000-of-00001.parquet")
    probes = load_mathvista(mathvista_dir / "testmini-00000-of-00001.parquet", image_root=mathvista_dir / "nowhere")
    assert probes.items["math_vqa"][0].image.size == (50, 40)  # decoded bytes win over the path


def test_sampling_matches_the_authors_draw():
    pool = list(range(1000))
    import numpy as np

    expected = sorted(np.random.RandomState(123).choice(pool, 100, replace=False).tolist())
    assert sample(pool, 100, seed=123) == expected
    assert sample(pool[:5], 100) == pool[:5]


def test_mathvista_samples_n_per_category(mathvista_dir):
    probes = load_mathvista(mathvista_dir / "testmini.json", n=2, seed=1)
    assert len(probes.items["vqa"]) == 2 and len(probes.items["math_vqa"]) == 2


def test_descriptions_missing_for_sampled_items(mathvista_dir):
    with pytest.raises(ProbeError, match=r"1 sampled math-targeted-vqa item\(s\) have no description \(pids 7\)"):
        load_mathvista(mathvista_dir / "testmini.json", descriptions={"4": "a", "5": "b", "6": "c"})


@pytest.mark.parametrize("edit, message", [
    (lambda lines: lines.__setitem__(2, "{not json"), r"testmini\.jsonl:3: not valid JSON"),
    (lambda lines: lines.__setitem__(1, json.dumps({"pid": "2", "question": "q?"})), r"testmini\.jsonl:2: missing field\(s\) answer"),
    (lambda lines: lines.__setitem__(4, lines[4].replace('"metadata"', '"meta"')), r"testmini\.jsonl:5: missing field metadata\.category"),
    (lambda lines: lines.__setitem__(3, lines[0]), r"testmini\.jsonl:4: pid '1' already given at .*testmini\.jsonl:1"),
    (lambda lines: lines.__setitem__(0, lines[0].replace('"choices": ["3", "4.5", "6"]', '"choices": null')),
     r"testmini\.jsonl:1: a multi_choice question without choices"),
    (lambda lines: lines.__setitem__(5, lines[5].replace("images/6.png", "images/missing.png")),
     r"testmini\.jsonl:6: image .*missing\.png does not exist"),
    (lambda lines: lines.__setitem__(6, "[1, 2]"), r"testmini\.jsonl:7: expected a JSON object, got list"),
], ids=["not-json", "no-answer", "no-category", "duplicate-pid", "mc-without-choices", "missing-image", "not-object"])
def test_malformed_mathvista_lines_are_named(mathvista_dir, edit, message):
    path = mathvista_dir / "testmini.jsonl"
    lines = path.read_text().splitlines()
    edit(lines)
    path.write_text("\n".join(lines) + "\n")
    with pytest.raises(ProbeError, match=message):
        load_mathvista(path)


def test_malformed_json_document_names_the_line(mathvista_dir):
    path = mathvista_dir / "testmini.json"
    text = path.read_text().splitlines()
    text[10] = text[10] + ","  # a trailing comma somewhere inside the first record
    path.write_text("\n".join(text))
    with pytest.raises(ProbeError, match=r"testmini\.json:\d+: not valid JSON"):
        load_mathvista(path)
    records = {r["pid"]: r for r in mathvista_records()}
    del records["3"]["question"]
    path.write_text(json.dumps(records, indent=4))
    line = next(i for i, l in enumerate(path.read_text().splitlines(), 1) if l.strip().startswith('"3":'))
    with pytest.raises(ProbeError, match=rf"testmini\.json:{line} \(entry '3'\): missing field\(s\) question"):
        load_mathvista(path)


def test_malformed_descriptions(tmp_path):
    path = tmp_path / "d.jsonl"
    path.write_text('{"pid": "1", "description": "x"}\n\n{"pid": "2"}\n')
    with pytest.raises(ProbeError, match=r"d\.jsonl:3: missing field\(s\) description"):
        load_descriptions(path)
    path.write_text('{"pid": "1", "description": "x"}\n{"pid": "1", "description": "y"}\n')
    with pytest.raises(ProbeError, match=r"d\.jsonl:2: pid '1' has a second description"):
        load_descriptions(path)


@pytest.fixture
def math500_file(tmp_path):
    path = tmp_path / "test.jsonl"
    rows = [{"problem": f"What is {i}+{i}?", "solution": "...", "answer": str(2 * i), "subject": "Algebra",
             "level": 1 + i % 5, "unique_id": f"test/algebra/{i}.json"} for i in range(12)]
    path.write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    return path


def test_math500(math500_file):
    probes = load_math500(math500_file, n=None)
    items = probes.items["text_math"]
    assert len(items) == 12 and items[3].id == "math500-test/algebra/3.json"
    assert items[3].question == "What is 3+3?" and items[3].answer == "6" and items[3].image is None
    assert len(load_math500(math500_file, n=5).items["text_math"]) == 5
    hard = load_math500(math500_file, n=None, min_level=4).items["text_math"]
    assert {it.meta["level"] for it in hard} == {4, 5}


def test_math500_bad_lines(math500_file):
    lines = math500_file.read_text().splitlines()
    lines[7] = json.dumps({"problem": "no answer"})
    math500_file.write_text("\n".join(lines) + "\n")
    with pytest.raises(ProbeError, match=r"test\.jsonl:8: missing field\(s\) answer"):
        load_math500(math500_file)
    lines[7] = "{oops"
    math500_file.write_text("\n".join(lines) + "\n")
    with pytest.raises(ProbeError, match=r"test\.jsonl:8: not valid JSON"):
        load_math500(math500_file)


def test_unknown_file_type(tmp_path):
    (tmp_path / "x.csv").write_text("a,b")
    with pytest.raises(ProbeError, match="unknown probe file type '.csv'"):
        load_math500(tmp_path / "x.csv")
    with pytest.raises(ProbeError, match="does not exist"):
        load_mathvista(tmp_path / "nope.json")
