"""The image-only processor fallback (:func:`vlmdiag.runtime.processor.load_processor`) for every
family whose transformers processor needs a video processor: a tiny family processor saved to a
folder, as transformers 5.x saves it or in the hub layout (``preprocessor_config.json`` naming a
fast image processor, ``video_preprocessor_config.json``, ``chat_template.json``), loads back as
the image-only subclass of the class the folder names, with the settings the folder keeps, and
writes the same model inputs for an image prompt. The families whose processor takes no video
processor (Gemma 3, Idefics3) load back with ``AutoProcessor`` as their own class."""

from __future__ import annotations

import json
import pickle

import pytest
import torch
from PIL import Image
from transformers.models.auto import image_processing_auto

import tiny_checkpoints
from vlmdiag.errors import CheckpointError
from vlmdiag.runtime.processor import image_only, load_processor

#: family -> (processor class, its fast image processor's name on the hub, the settings
#: processor_config.json keeps)
EXPECTED = {"qwen2_5_vl": ("Qwen2_5_VLProcessor", "Qwen2VLImageProcessorFast", {}),
            "qwen3_vl": ("Qwen3VLProcessor", "Qwen2VLImageProcessorFast", {}),
            "llava_onevision": ("LlavaOnevisionProcessor", "LlavaOnevisionImageProcessorFast",
                                {"num_image_tokens": 16, "vision_feature_select_strategy": "full"}),
            "smolvlm": ("SmolVLMProcessor", "SmolVLMImageProcessorFast", {"image_seq_len": 16}),
            "internvl": ("InternVLProcessor", "GotOcr2ImageProcessorFast", {"image_seq_length": 16})}
#: family -> its processor class, which takes no video processor (nothing to fall back from)
NO_VIDEO = {"gemma3": "Gemma3Processor", "idefics3": "Idefics3Processor"}


def test_every_family_is_covered():
    assert set(EXPECTED) | set(NO_VIDEO) == set(tiny_checkpoints.FAMILIES)
    assert not set(EXPECTED) & set(NO_VIDEO)


def _hub_layout(folder, fast: str, settings: dict) -> None:
    """Rewrite a transformers-5 processor folder into the layout hub checkpoints have."""
    config = json.loads((folder / "processor_config.json").read_text())
    image = {**config.pop("image_processor"), "image_processor_type": fast,
             "processor_class": config["processor_class"]}
    (folder / "preprocessor_config.json").write_text(json.dumps(image))
    (folder / "video_preprocessor_config.json").write_text(json.dumps(
        {"video_processor_type": "Qwen2VLVideoProcessor", "processor_class": config["processor_class"]}))
    (folder / "processor_config.json").write_text(
        json.dumps({**settings, "processor_class": config["processor_class"]}))
    template = folder / "chat_template.jinja"
    (folder / "chat_template.json").write_text(json.dumps({"chat_template": template.read_text()}))
    template.unlink()


def _auto_needs_torchvision(*args, **kwargs):
    raise ImportError("AutoImageProcessor requires the Torchvision library")


@pytest.mark.parametrize("auto_image", ["loads", "needs torchvision"])
@pytest.mark.parametrize("layout", ["saved", "hub"])
@pytest.mark.parametrize("family", sorted(EXPECTED))
def test_saved_processor_loads_back_image_only(family, layout, auto_image, tmp_path, monkeypatch):
    """``needs torchvision``: ``AutoImageProcessor`` refuses, as on transformers 5.17 without
    torchvision; the image processor the folder names (its PIL twin there) loads instead."""
    processor = _saved(family, tmp_path)
    name, fast, settings = EXPECTED[family]
    for file in ("processor_config.json", "tokenizer_config.json"):   # the layout of a real checkpoint
        assert json.loads((tmp_path / file).read_text())["processor_class"] == name, file
    if layout == "hub":
        _hub_layout(tmp_path, fast, settings)
    if auto_image == "needs torchvision":
        try:
            auto = image_processing_auto.AutoImageProcessor
        except ImportError:  # a placeholder: here the "loads" case already takes the named-class path
            pytest.skip("AutoImageProcessor needs torchvision in this environment already")
        monkeypatch.setattr(auto, "from_pretrained", _auto_needs_torchvision)
    loaded = load_processor(tmp_path)
    assert type(loaded).__qualname__ == f"{name}ImageOnly" and type(loaded).__mro__[1].__name__ == name
    assert pickle.loads(pickle.dumps(type(loaded))) is type(loaded)
    assert loaded.video_processor is None
    assert {k: getattr(loaded, k) for k in settings} == settings
    _assert_same_inputs(loaded, processor, family)


@pytest.mark.parametrize("family", sorted(NO_VIDEO))
def test_processor_without_video_half_loads_back_as_itself(family, tmp_path):
    processor = _saved(family, tmp_path)
    with pytest.raises(TypeError, match="no video processor"):
        image_only(type(processor))
    loaded = load_processor(tmp_path)
    assert type(loaded).__name__ == type(loaded).__qualname__ == NO_VIDEO[family]
    _assert_same_inputs(loaded, processor, family)


def _saved(family: str, folder):
    """The tiny ``family`` processor, saved into ``folder`` as a checkpoint has it."""
    _, processor, _ = tiny_checkpoints.PARTS[family](0)
    processor.save_pretrained(folder)
    processor.tokenizer.save_pretrained(folder)
    return processor


def _assert_same_inputs(loaded, processor, family: str) -> None:
    """``loaded`` writes the chat template and the model inputs of an image prompt as ``processor``."""
    messages = [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": "How many items?"}]}]
    text = loaded.apply_chat_template(messages, add_generation_prompt=True)
    assert text == processor.apply_chat_template(messages, add_generation_prompt=True)
    image = Image.new("RGB", (224, 336), (10, 200, 10))
    images = [[image]] if family in ("smolvlm", "idefics3") else [image]
    got = loaded(text=[text], images=images, return_tensors="pt")
    want = processor(text=[text], images=images, return_tensors="pt")
    assert set(got) == set(want)
    for key in want:
        assert torch.equal(torch.as_tensor(got[key]), torch.as_tensor(want[key])), key


def test_image_only_needs_a_video_processor_and_the_fallback_says_why(tmp_path):
    from transformers import LlavaProcessor

    with pytest.raises(TypeError, match="no video processor"):
        image_only(LlavaProcessor)
    (tmp_path / "config.json").write_text(json.dumps({"model_type": "qwen2_5_vl"}))
    with pytest.raises(CheckpointError, match="image-only fallback failed too"):
        load_processor(tmp_path)   # no tokenizer, no image processor
