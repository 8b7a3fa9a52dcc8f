"""The image-only processor fallback (:func:`vlmdiag.runtime.processor.load_processor`) for every
family whose transformers processor needs a video processor: a tiny family processor saved to a
folder loads back as the image-only subclass of the class the folder names, with the settings
``processor_config.json`` keeps, and writes the same model inputs for an image prompt."""

from __future__ import annotations

import json

import pytest
import torch
from PIL import Image

import tiny_checkpoints
from vlmdiag.errors import CheckpointError
from vlmdiag.runtime.processor import image_only, load_processor

#: family -> (processor class, a setting processor_config.json must carry back, or None)
EXPECTED = {"qwen2_5_vl": ("Qwen2_5_VLProcessor", None), "qwen3_vl": ("Qwen3VLProcessor", None),
            "llava_onevision": ("LlavaOnevisionProcessor", ("num_image_tokens", 16)),
            "smolvlm": ("SmolVLMProcessor", ("image_seq_len", 16))}


@pytest.mark.parametrize("family", tiny_checkpoints.FAMILIES)
def test_saved_processor_loads_back_image_only(family, tmp_path):
    _, processor, _ = tiny_checkpoints.PARTS[family](0)
    processor.save_pretrained(tmp_path)
    processor.tokenizer.save_pretrained(tmp_path)
    name, setting = EXPECTED[family]
    saved = json.loads((tmp_path / "processor_config.json").read_text())
    assert saved["processor_class"] == name          # the layout of a real checkpoint
    loaded = load_processor(tmp_path)
    assert type(loaded).__name__ == f"{name}ImageOnly" and type(loaded).__mro__[1].__name__ == name
    assert loaded.video_processor is None
    if setting:
        assert saved[setting[0]] == getattr(loaded, setting[0]) == setting[1]
    messages = [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": "How many items?"}]}]
    text = loaded.apply_chat_template(messages, add_generation_prompt=True)
    assert text == processor.apply_chat_template(messages, add_generation_prompt=True)
    image = Image.new("RGB", (224, 336), (10, 200, 10))
    images = [[image]] if family == "smolvlm" else [image]
    got, want = loaded(text=[text], images=images, return_tensors="pt"), processor(text=[text], images=images, return_tensors="pt")
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
