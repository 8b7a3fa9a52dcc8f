"""Whatever a manifest holds, opening it ends in a suite or one ProbeError line, never another
exception (a traceback)."""

from __future__ import annotations

import tempfile
from pathlib import Path

import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image

from vlmdiag.errors import ProbeError
from vlmdiag.probes.manifest import ManifestSuite

_FOLDER = Path(tempfile.mkdtemp(prefix="vlmdiag-manifest-fuzz-"))
Image.new("RGB", (8, 8)).save(_FOLDER / "a.png")
(_FOLDER / "bad.png").write_bytes(b"\x89PNG")
(_FOLDER / "t.jsonl").write_text('{"id": "x", "question": "q", "answer": 1}\n[1]\n')

keys = st.sampled_from(["id", "image", "question", "answer", "description", "choices", "meta", "target_image",
                        "source_image", "prompt", "target_bbox", "source_bbox", "dataset_path", "vqa", "math_vqa",
                        "text_math", "ocr", "grounding", "items", "swap_pairs", "name", "answer_format",
                        "generation_kwargs", "max_new_tokens", "other"])
leaves = st.one_of(st.none(), st.booleans(), st.integers(-3, 3), st.floats(allow_nan=True),
                   st.sampled_from(["a.png", "bad.png", "gone.png", "t.jsonl", "boxed", "", "x"]),
                   st.text(max_size=5))
values = st.recursive(leaves, lambda inner: st.one_of(st.lists(inner, max_size=3),
                                                       st.dictionaries(keys, inner, max_size=4)), max_leaves=12)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(doc=st.dictionaries(keys, values, max_size=4))
def test_any_manifest_opens_or_fails_in_one_line(doc):
    path = _FOLDER / "m.yaml"
    path.write_text(yaml.safe_dump(doc))
    try:
        ManifestSuite(str(path))
    except ProbeError as error:
        assert "\n" not in str(error) and str(path) in str(error) or "t.jsonl" in str(error)


@settings(max_examples=60, deadline=None)
@given(text=st.text(max_size=60))
def test_any_text_opens_or_fails_in_one_line(text):
    path = _FOLDER / "m.yaml"
    path.write_text(text)
    try:
        ManifestSuite(str(path))
    except ProbeError as error:
        assert str(path) in str(error)


entry = st.dictionaries(keys, leaves | st.lists(st.integers(-5, 500), max_size=5), max_size=7)


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(items=st.dictionaries(st.sampled_from(["vqa", "math_vqa", "text_math"]), st.lists(entry, max_size=3) | entry,
                             max_size=3),
       pairs=st.dictionaries(st.sampled_from(["ocr", "counting", "grounding", "recognition"]), st.lists(entry, max_size=3),
                             max_size=2))
def test_structured_manifests_open_or_fail_in_one_line(items, pairs):
    path = _FOLDER / "m.yaml"
    path.write_text(yaml.safe_dump({"items": items, "swap_pairs": pairs}))
    try:
        suite = ManifestSuite(str(path))
    except ProbeError as error:
        assert "\n" not in str(error) and (str(path) in str(error) or "t.jsonl" in str(error))
        return
    for kind in ("vqa", "math_vqa", "text_math"):
        drawn = suite.ability_items(kind, 5, seed=0)
        assert len(drawn.items) == 5 or drawn.note
