"""families.yaml is checked by a schema: a broken family file fails with one line naming the
file, the family and the key."""

from __future__ import annotations

from importlib import resources

import pytest
import yaml

from vlmdiag.adapters import adapters
from vlmdiag.adapters.schema import FamiliesFileError, parse_families

SHIPPED = resources.files("vlmdiag.adapters").joinpath("families.yaml").read_text()


def test_shipped_file_is_valid():
    assert set(parse_families(SHIPPED, "families.yaml")) == set(adapters())


def _broken(edit) -> str:
    raw = yaml.safe_load(SHIPPED)
    edit(raw["qwen2_5_vl"])
    return yaml.safe_dump({"qwen2_5_vl": raw["qwen2_5_vl"]})


@pytest.mark.parametrize("edit, message", [
    (lambda f: f["modules"].pop("projector"), "qwen2_5_vl: modules.projector: Field required"),
    (lambda f: f.update(box_coordinates="inches"), "qwen2_5_vl: box_coordinates: Input should be"),
    (lambda f: f.update(processor_images="nested"), "qwen2_5_vl: processor_images: Input should be"),
    (lambda f: f["config"].update(llm_layers=[]), "qwen2_5_vl: config.llm_layers: List should have at least 1"),
    (lambda f: f.update(colour="red"), "qwen2_5_vl: colour: Extra inputs are not permitted"),
    (lambda f: f["tokens"].pop("image"), "qwen2_5_vl: tokens.image: Field required"),
    (lambda f: f.update(checkpoint_prefixes=[["a.", "b.", "c."]]), "qwen2_5_vl: checkpoint_prefixes.0"),
])
def test_schema_errors_name_file_family_and_key(edit, message):
    with pytest.raises(FamiliesFileError) as error:
        parse_families(_broken(edit), "my/families.yaml")
    text = str(error.value)
    assert text.startswith("my/families.yaml: ") and message in text and "\n" not in text


def test_not_yaml_or_not_a_mapping():
    with pytest.raises(FamiliesFileError, match=r"^f\.yaml:\d+: not valid YAML"):
        parse_families("a: [\n  b: {\n", "f.yaml")
    with pytest.raises(FamiliesFileError, match="expected a mapping"):
        parse_families("- a\n", "f.yaml")


def test_processor_images_default_to_one_flat_list():
    """Idefics3, SmolVLM and Gemma 3 processors read a flat list of several images as one prompt's
    (their batches fail without ``per_prompt``: tests/inference/test_families_end_to_end.py)."""
    per_prompt = {name for name, a in adapters().items() if a.processor_images == "per_prompt"}
    assert per_prompt == {"idefics3", "smolvlm", "gemma3"}
    assert {a.processor_images for a in adapters().values()} == {"flat", "per_prompt"}
