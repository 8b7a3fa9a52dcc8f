"""Fuzzing the parsers of what users hand vlmdiag (issue 7): ``thresholds.yaml``, probe files (JSON
Lines, JSON), safetensors headers, ``config.json`` and pickle weights, region strings, and checkpoint
specs (``organism:…``, ``--recipe NAME=BASE,RL[,ORIGIN]``, ``--rl-frozen REGION=CKPT``).

The property, for every input: it parses (and the result is sane), or it raises a
:class:`~vlmdiag.errors.VlmdiagError` whose message is one non-empty line naming the file or
option — never another exception type, which would reach the user as a traceback.

Hypothesis runs derandomized with a fixed example budget and no example database, so CI sees the
same inputs every time and nothing is written into the repository.
"""

from __future__ import annotations

import json
import string
import struct
import tempfile
from pathlib import Path

import pytest
import torch
import yaml
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st
from PIL import Image

from vlmdiag.checkpoints import Checkpoint
from vlmdiag.checkpoints.resolve import resolve_checkpoint
from vlmdiag.checkpoints.safetensors_header import DTYPES, read_header, read_tensor
from vlmdiag.claims import load_thresholds
from vlmdiag.claims.registry import all_claims
from vlmdiag.errors import CheckpointError, ProbeError, ThresholdsError, UsageError, VlmdiagError
from vlmdiag.options import parse_recipe, parse_rl_frozen, recipes_from
from vlmdiag.organism.build import STAGES
from vlmdiag.probes.math500 import load_math500
from vlmdiag.probes.mathvista import load_mathvista
from vlmdiag.probes.records import load_descriptions
from vlmdiag.probes.vision_functionality import TASKS, load_vision_functionality
from vlmdiag.regions import PRESETS, parse_regions, regions_for


def fuzz(n: int):
    """Hypothesis settings: ``n`` examples, same inputs on every run, nothing written to disk."""
    return settings(max_examples=n, deadline=None, derandomize=True, database=None,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much,
                                           HealthCheck.data_too_large])


def attempt(call, expected: type[VlmdiagError], *names: str):
    """Run ``call()``; an exception must be ``expected`` with one non-empty line mentioning every
    string in ``names`` (the file or option). Returns the result, or None after a clear error."""
    try:
        result = call()
        event("parsed")
        return result
    except VlmdiagError as error:
        event("clear error")
        message = str(error)
        assert isinstance(error, expected), f"{type(error).__name__} where {expected.__name__} was expected: {message}"
        assert message.strip() and "\n" not in message, repr(message)
        for name in names:
            assert name in message, f"{name!r} not in {message!r}"
        return None


class Scratch:
    """A folder for the files one example writes (fresh name per example, removed at the end)."""

    def __init__(self, root: Path):
        self.root, self.count = root, 0

    def folder(self) -> Path:
        self.count += 1
        path = self.root / f"e{self.count}"
        path.mkdir()
        return path


@pytest.fixture(scope="module")
def scratch():
    with tempfile.TemporaryDirectory(prefix="vlmdiag-fuzz-") as root:
        yield Scratch(Path(root))


# ----------------------------------------------------------------------------- value strategies

scalars = st.none() | st.booleans() | st.integers(-10**6, 10**20) | st.floats() | st.text(max_size=12)
values = st.recursive(scalars, lambda inner: st.lists(inner, max_size=4)
                      | st.dictionaries(st.text(max_size=10), inner, max_size=4), max_leaves=12)


def objects_with(keys: list[str], value=values):
    """JSON objects that use (some of) ``keys`` plus a random one, with arbitrary values."""
    return st.dictionaries(st.sampled_from(keys) | st.text(max_size=8), value, max_size=len(keys) + 1)


# ----------------------------------------------------------------------------- thresholds.yaml

CLAIM_IDS = sorted(all_claims())
THRESHOLD_KEYS = sorted({k for c in all_claims().values() for k in c.thresholds.model_fields})
SHIPPED = yaml.safe_load((Path(__file__).resolve().parents[2] / "thresholds.yaml").read_text())


def _thresholds_documents():
    entry = objects_with(THRESHOLD_KEYS, st.floats(-2, 3) | st.integers(-5, 5000) | st.booleans() | values)
    structured = st.fixed_dictionaries({
        "schema_version": st.just(1) | values,
        "claims": st.dictionaries(st.sampled_from(CLAIM_IDS) | st.text(max_size=20), entry | values, max_size=4)
        | values})

    @st.composite
    def mutated(draw):
        data = json.loads(json.dumps(SHIPPED))
        claim = draw(st.sampled_from(CLAIM_IDS))
        key = draw(st.sampled_from(THRESHOLD_KEYS))
        action = draw(st.sampled_from(["set", "delete", "replace-entry"]))
        if action == "set":
            data["claims"][claim][key] = draw(values)
        elif action == "delete":
            data["claims"][claim].pop(key, None)
        else:
            data["claims"][claim] = draw(values)
        return data

    return st.one_of(structured, mutated(), values).map(
        lambda d: yaml.safe_dump(d, allow_unicode=True, sort_keys=False).encode())


@fuzz(300)
@given(content=_thresholds_documents() | st.text().map(str.encode) | st.binary(max_size=200))
def test_thresholds_file_parses_or_names_the_file(scratch, content):
    path = scratch.folder() / "thresholds.yaml"
    path.write_bytes(content)
    loaded = attempt(lambda: load_thresholds(path), ThresholdsError, str(path))
    if loaded is not None:
        assert set(loaded.claims) <= set(CLAIM_IDS)
        assert all(0 < t.confidence < 1 for t in loaded.claims.values())


# ----------------------------------------------------------------------------- probe files

def _lines(record_keys: list[str], valid: dict):
    line = st.one_of(
        st.text(max_size=40),
        values.map(json.dumps),
        objects_with(record_keys).map(json.dumps),
        st.fixed_dictionaries({k: st.just(v) | values for k, v in valid.items()},
                              optional={k: values for k in record_keys if k not in valid}).map(json.dumps),
        st.just(json.dumps(valid)),
        st.integers(1, 3000).map(lambda depth: "[" * depth),  # nesting deeper than the JSON parser recurses
    )
    lines = st.lists(line, max_size=6).map(lambda ls: "\n".join(ls).encode("utf-8", "surrogatepass"))
    return lines | st.binary(max_size=120)


MATH500_KEYS = ["problem", "answer", "solution", "subject", "level", "unique_id"]
MATH500_VALID = {"problem": "What is 1+1?", "answer": "2", "level": 3, "unique_id": "test/1.json"}


@fuzz(200)
@given(content=_lines(MATH500_KEYS, MATH500_VALID), min_level=st.none() | st.integers(1, 5),
       suffix=st.sampled_from([".jsonl", ".json"]))
def test_math500_file_parses_or_names_the_file(scratch, content, min_level, suffix):
    path = scratch.folder() / f"test{suffix}"
    path.write_bytes(content)
    probes = attempt(lambda: load_math500(path, n=None, min_level=min_level), ProbeError, str(path))
    if probes is not None:
        assert all(item.kind == "text_math" for item in probes.all_items())


DESCRIPTION_KEYS = ["pid", "id", "description"]


@fuzz(150)
@given(content=_lines(DESCRIPTION_KEYS, {"pid": "1", "description": "a bar chart"}))
def test_descriptions_file_parses_or_names_the_file(scratch, content):
    path = scratch.folder() / "descriptions.jsonl"
    path.write_bytes(content)
    texts = attempt(lambda: load_descriptions(path), ProbeError, str(path))
    if texts is not None:
        assert all(isinstance(k, str) and isinstance(v, str) for k, v in texts.items())


def _png() -> bytes:
    import io

    buffer = io.BytesIO()
    Image.new("RGB", (8, 6), (200, 10, 10)).save(buffer, format="PNG")
    return buffer.getvalue()


PNG = _png()
MATHVISTA_KEYS = ["pid", "question", "answer", "metadata", "image", "decoded_image", "choices",
                  "question_type", "query"]
IMAGES = ["images/ok.png", "images/bad.png", "images/missing.png", "images"]
MATHVISTA_VALID = {"pid": "1", "question": "How tall?", "answer": "3", "image": "images/ok.png",
                   "metadata": {"category": "general-vqa"}}


def _mathvista_lines():
    field = {
        "metadata": st.fixed_dictionaries({"category": st.sampled_from(["general-vqa", "math-targeted-vqa"])
                                           | values}) | st.text(max_size=30) | values,
        "image": st.sampled_from(IMAGES) | values,
        "decoded_image": st.none() | st.binary(max_size=40).map(lambda b: b.hex())
        | st.fixed_dictionaries({"bytes": values, "path": st.sampled_from(IMAGES) | values}) | values,
        "choices": st.lists(st.text(max_size=5), max_size=3) | values,
        "question_type": st.sampled_from(["multi_choice", "free_form"]) | values,
    }
    record = st.fixed_dictionaries({k: st.just(v) | field.get(k, values) for k, v in MATHVISTA_VALID.items()},
                                   optional={k: field.get(k, values) for k in MATHVISTA_KEYS if k not in MATHVISTA_VALID})
    lines = st.lists(record.map(json.dumps) | st.text(max_size=30), max_size=5).map(lambda ls: "\n".join(ls).encode())
    return lines | _lines(MATHVISTA_KEYS, MATHVISTA_VALID)


@fuzz(120)
@given(content=_mathvista_lines(), with_descriptions=st.booleans(), use_query=st.booleans(),
       suffix=st.sampled_from([".jsonl", ".json"]))
def test_mathvista_file_parses_or_names_the_file(scratch, content, with_descriptions, use_query, suffix):
    folder = scratch.folder()
    (folder / "images").mkdir()
    (folder / "images" / "ok.png").write_bytes(PNG)
    (folder / "images" / "bad.png").write_bytes(b"\x89PNG\r\n\x1a\n truncated")
    path = folder / f"testmini{suffix}"
    path.write_bytes(content)
    descriptions = {"1": "a red rectangle"} if with_descriptions else None
    probes = attempt(lambda: load_mathvista(path, descriptions=descriptions, use_query=use_query, n=None),
                     ProbeError, str(path))
    if probes is not None:
        for item in probes.all_items():
            assert item.image is not None and item.image.mode == "RGB"
        assert all(skip.startswith(f"{path}:") and "image not decodable" in skip for skip in probes.skipped_items)


VF_KEYS = ["id", "task", "target_image", "source_image", "prompt", "meta"]
VF_VALID = {"id": "c1", "task": "counting", "target_image": "images/ok.png", "source_image": "images/ok.png",
            "prompt": "<image>How many?", "meta": {"target_answer": "3", "source_answer": "4"}}


@fuzz(150)
@given(content=_lines(VF_KEYS, VF_VALID), task=st.sampled_from(TASKS), limit=st.none() | st.integers(0, 3))
def test_vision_functionality_file_parses_or_names_the_file(scratch, content, task, limit):
    root = scratch.folder()
    folder = root / task
    (folder / "images").mkdir(parents=True)
    (folder / "images" / "ok.png").write_bytes(PNG)
    (folder / "images" / "bad.png").write_bytes(b"garbage")
    path = folder / "data.jsonl"
    path.write_bytes(content)
    loaded = attempt(lambda: load_vision_functionality(root, limit=limit), ProbeError, str(path))
    if loaded is not None:
        assert loaded.skipped == len(loaded.skipped_reasons)
        assert all(reason.startswith(f"{path}:") for reason in loaded.skipped_reasons)


# ----------------------------------------------------------------------------- safetensors headers

@st.composite
def safetensors_files(draw):
    """A file of an 8-byte little-endian header length, a JSON header and data; each part either
    consistent (so many examples parse) or fuzzed (lengths, dtypes, shapes, offsets)."""
    entries, offset = {}, 0
    for name in draw(st.lists(st.text(min_size=1, max_size=8), max_size=4, unique=True)):
        dtype = draw(st.sampled_from(sorted(DTYPES)) | st.text(max_size=5))
        shape = draw(st.lists(st.integers(-2, 5), max_size=3))
        numel = 1
        for dim in shape:
            numel *= dim
        nbytes = numel * (DTYPES[dtype].itemsize if dtype in DTYPES else 1)
        offsets = draw(st.just([offset, offset + nbytes]) | st.lists(st.integers(-8, 400) | st.floats(0, 64),
                                                                        max_size=3) | values)
        entry = {"dtype": dtype, "shape": shape, "data_offsets": offsets}
        entries[name] = draw(st.just(entry) | objects_with(["dtype", "shape", "data_offsets"]) | values)
        offset += max(nbytes, 0)
    if draw(st.booleans()):
        entries["__metadata__"] = draw(st.just({"format": "pt"}) | values)
    header = draw(st.just(json.dumps(entries).encode()) | st.binary(max_size=60)
                  | st.integers(1, 3000).map(lambda depth: b"[" * depth + b"]" * depth))
    length = draw(st.just(len(header)) | st.integers(0, 2**64 - 1))
    data = draw(st.binary(min_size=offset, max_size=offset)) if offset < 2000 else b""
    data = data[:draw(st.just(len(data)) | st.integers(0, len(data)))]  # whole, or truncated
    return struct.pack("<Q", length) + header + data


@fuzz(300)
@given(content=safetensors_files() | st.binary(max_size=64))
def test_safetensors_header_parses_or_names_the_file(scratch, content):
    path = scratch.folder() / "model.safetensors"
    path.write_bytes(content)
    parsed = attempt(lambda: read_header(path), CheckpointError, str(path))
    if parsed is None:
        return
    entries, raw = parsed
    for name, entry in entries.items():
        tensor = attempt(lambda: read_tensor(entry), CheckpointError, str(path))
        if tensor is not None:
            assert tuple(tensor.shape) == entry.shape and tensor.dtype == DTYPES[entry.dtype]


# ----------------------------------------------------------------------------- config.json, pickle weights

GOOD_CONFIG = {"architectures": ["Qwen2_5_VLForConditionalGeneration"], "model_type": "qwen2_5_vl",
               "text_config": {"num_hidden_layers": 1}, "vision_config": {"depth": 1}, "image_token_id": 5}


def _configs():
    nested = st.fixed_dictionaries({"num_hidden_layers": values | st.integers(-3, 40), "depth": values})
    return st.one_of(
        values,
        objects_with(list(GOOD_CONFIG)),
        st.fixed_dictionaries({"architectures": st.just(GOOD_CONFIG["architectures"]) | values,
                               "model_type": st.just("qwen2_5_vl") | values,
                               "text_config": st.just(GOOD_CONFIG["text_config"]) | nested | values,
                               "vision_config": st.just(GOOD_CONFIG["vision_config"]) | nested | values}),
    ).map(lambda c: json.dumps(c).encode()) | st.binary(max_size=40)


@fuzz(150)
@given(config=_configs())
def test_checkpoint_config_parses_or_names_the_folder(scratch, config):
    from safetensors.torch import save_file

    folder = scratch.folder()
    (folder / "config.json").write_bytes(config)
    save_file({"model.layers.0.mlp.up_proj.weight": torch.zeros(2, 2)}, folder / "model.safetensors")
    checkpoint = attempt(lambda: Checkpoint(folder), CheckpointError, str(folder))
    if checkpoint is not None:
        assert isinstance(checkpoint.num_llm_layers, int) and isinstance(checkpoint.num_vision_layers, int)


class _Payload:
    """Unpickling this would create a file: weights_only loading must refuse it."""

    def __init__(self, marker: str):
        self.marker = marker

    def __reduce__(self):
        return (Path.touch, (Path(self.marker),))


@fuzz(60)
@given(kind=st.sampled_from(["bytes", "tensor", "list", "nested", "payload", "good"]), content=st.binary(max_size=80))
def test_pickle_weights_with_allow_pickle_parse_or_name_the_folder(scratch, kind, content):
    folder = scratch.folder()
    (folder / "config.json").write_text(json.dumps(GOOD_CONFIG))
    target, marker = folder / "pytorch_model.bin", folder / "pwned"
    objects = {"tensor": torch.zeros(2), "list": [torch.zeros(2)], "nested": {"a": {"b": torch.zeros(1)}},
               "payload": {"x": _Payload(str(marker))}, "good": {"model.layers.0.mlp.up_proj.weight": torch.ones(2, 2)}}
    if kind == "bytes":
        target.write_bytes(content)
    else:
        torch.save(objects[kind], target)
    checkpoint = attempt(lambda: Checkpoint(folder, allow_pickle=True), CheckpointError, str(folder))
    assert not marker.exists(), "loading pickle weights ran code"
    if checkpoint is not None:
        assert all(isinstance(checkpoint.get(n), torch.Tensor) for n in checkpoint.names)
    assert kind != "good" or checkpoint is not None


# ----------------------------------------------------------------------------- regions

def _region_specs():
    cut = st.integers(-3, 64).map(str) | st.text(string.digits + " -", max_size=4)
    return st.one_of(st.text(max_size=12), st.sampled_from(PRESETS),
                     st.tuples(cut, st.sampled_from([",", ", ", ";", ",,"]), cut).map("".join))


@fuzz(400)
@given(spec=_region_specs(), num_layers=st.integers(-2, 64))
def test_region_strings_parse_or_say_what_is_accepted(spec, num_layers):
    if attempt(lambda: parse_regions(spec), UsageError, "--regions") is None:
        return
    regions = attempt(lambda: regions_for(spec, num_layers), UsageError)
    if regions is not None:
        ranges = list(regions.ranges.values())
        assert all(len(r) > 0 for r in ranges)
        assert [layer for r in ranges for layer in r] == list(range(num_layers))


# ----------------------------------------------------------------------------- checkpoint specs

piece = st.text(max_size=12) | st.sampled_from(["organism:rl", "ckpt/rl", "", " ", "a,b", "=", "Qwen/Qwen2.5-VL-7B"])


@fuzz(300)
@given(text=st.text(max_size=40) | st.lists(piece, min_size=1, max_size=4).map(",".join).flatmap(
    lambda rest: st.sampled_from(["grpo", "", "bad name", "x=y"]).map(lambda name: f"{name}={rest}")))
def test_recipe_strings_parse_or_say_what_is_accepted(text):
    recipe = attempt(lambda: parse_recipe(text), UsageError, "--recipe")
    if recipe is not None:
        assert recipe.base and recipe.rl and "," not in recipe.base + recipe.rl


@fuzz(300)
@given(text=st.text(max_size=30) | st.tuples(st.sampled_from(["Late", "mid-late", "EARLY", "", "Top"]), piece)
       .map("=".join))
def test_rl_frozen_strings_parse_or_say_what_is_accepted(text):
    parsed = attempt(lambda: parse_rl_frozen(text), UsageError, "--rl-frozen")
    if parsed is not None:
        assert parsed[0] in ("Early", "Mid", "Late", "Mid-Late") and parsed[1]


@fuzz(200)
@given(base=st.none() | piece, rl=st.none() | piece, origin=st.none() | piece,
       names=st.lists(st.sampled_from(["main", "a", "b"]), max_size=3), frozen=st.booleans())
def test_recipe_sets_assemble_or_say_why_not(base, rl, origin, names, frozen):
    extra = [parse_recipe(f"{n}=x,y") for n in names]
    recipes = attempt(lambda: recipes_from(base, rl, origin, extra, [("Late", "z")] if frozen else []), UsageError)
    if recipes is not None:
        assert len({r.name for r in recipes}) == len(recipes)


def _checkpoint_specs():
    stage = st.text(max_size=12).filter(lambda s: s.partition("@")[0] not in STAGES)
    return st.one_of(
        st.text(max_size=30),
        stage.map(lambda s: f"organism:{s}"),
        st.text(string.ascii_letters + "-_.", min_size=1, max_size=12).map(lambda s: f"some-org/{s}"),  # hub ids
        st.text(max_size=8).map(lambda s: f"~{s}/ckpt"),
        st.integers(250, 400).map(lambda n: "x" * n),  # longer than a file name may be
        st.just("\x00"), st.just("a\x00b"),
    )


@fuzz(300)
@given(spec=_checkpoint_specs())
def test_checkpoint_specs_resolve_or_name_the_spec(spec, monkeypatch_session):
    path = attempt(lambda: resolve_checkpoint(spec), CheckpointError)
    if path is not None:
        assert path.is_dir()


@pytest.fixture(scope="module")
def monkeypatch_session():
    """No hub access while fuzzing: ``snapshot_download`` fails as it does offline."""
    import huggingface_hub

    mp = pytest.MonkeyPatch()

    def offline(*args, **kwargs):
        raise huggingface_hub.errors.LocalEntryNotFoundError("offline (fuzz test)")

    mp.setattr(huggingface_hub, "snapshot_download", offline)
    yield
    mp.undo()


# ----------------------------------------------------------------------------- saved reports (vlmdiag report PATH)

def _reports():
    claim = st.fixed_dictionaries({"id": st.just("updates.energy_mid") | values, "recipe": st.just("main") | values,
                                   "verdict": st.just("reproduced") | values},
                                  optional={"metrics": values, "reason": values})
    report = st.fixed_dictionaries({"schema_version": st.integers(0, 3) | values,
                                    "claims": st.lists(claim | values, max_size=3) | values},
                                   optional={"regions": values, "checkpoints": values})
    return (report | values).map(lambda r: json.dumps(r).encode()) | st.binary(max_size=60)


@fuzz(200)
@given(content=_reports())
def test_saved_report_loads_or_names_the_file(scratch, content):
    from vlmdiag.report.document import SCHEMA_VERSION, load_report

    path = scratch.folder() / "report.json"
    path.write_bytes(content)
    report = attempt(lambda: load_report(path), UsageError, str(path))
    if report is not None:
        assert report["schema_version"] <= SCHEMA_VERSION and isinstance(report["claims"], list)
