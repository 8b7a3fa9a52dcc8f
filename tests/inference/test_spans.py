"""Visual and reasoning token spans for every family in families.yaml: on tiny random models, the
visual span found from the ids is exactly where the model writes image features (the input of the
first decoder layer differs from the token embeddings there and nowhere else), and the markers
around an image are found as text tokens."""

from __future__ import annotations

import pytest
import torch

import tiny_models
from vlmdiag.adapters import adapter_for, adapters
from vlmdiag.measure.spans import reasoning_mask, think_opened, visual_spans
from vlmdiag.runtime.model import get_module


def feature_positions(model, adapter, inputs) -> torch.Tensor:
    """bool [S]: positions whose first-decoder-layer input is not the token embedding."""
    seen = {}

    def grab(module, args, kwargs):
        seen["h"] = (kwargs.get("hidden_states") if "hidden_states" in kwargs else args[0]).detach()

    layer = get_module(model, adapter.decoder_layers)[0]
    handle = layer.register_forward_pre_hook(grab, with_kwargs=True)
    try:
        with torch.no_grad():
            model(**inputs, use_cache=False)
            embedded = get_module(model, adapter.embed_tokens)(inputs["input_ids"])
    finally:
        handle.remove()
    return (seen["h"][0] - embedded[0]).abs().amax(-1) > 0


def test_every_family_declares_its_tokens():
    for name, adapter in adapters().items():
        assert adapter.image_token, name
        assert (adapter.vision_start_token is None) == (adapter.vision_end_token is None), name


@pytest.mark.parametrize("family", tiny_models.ARCH_FAMILIES)
def test_visual_span_is_where_the_model_puts_image_features(family):
    model = tiny_models.arch_model(family)
    config = model.config.to_dict()
    adapter = adapter_for(config)
    assert adapter.family == family
    inputs = tiny_models.arch_inputs(model, family)
    spans = visual_spans(inputs["input_ids"][0], adapter, config)
    expected = feature_positions(model, adapter, inputs)
    assert spans.n_visual > 0 and torch.equal(torch.from_numpy(spans.visual), expected)
    assert len(spans.images) == 1 and spans.images[0][1] - spans.images[0][0] == spans.n_visual
    n_markers = int(spans.markers.sum())
    assert n_markers == (2 if family in ("qwen2_5_vl", "qwen2_vl", "qwen3_vl", "gemma3") else 0)
    if n_markers:   # right around the image
        start, end = spans.images[0]
        assert spans.markers[start - 1] and spans.markers[end]


def test_qwen25_processor_prompt_spans(qwen_processor, images):
    model = tiny_models.qwen25_model(qwen_processor.tokenizer)
    messages = [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": "How many items?"}]}]
    text = qwen_processor.apply_chat_template(messages, add_generation_prompt=True)
    inputs = dict(qwen_processor(text=[text], images=[images["green_wide"]], return_tensors="pt"))
    config = model.config.to_dict()
    spans = visual_spans(inputs["input_ids"][0], adapter_for(config), config, qwen_processor.tokenizer)
    grid = inputs["image_grid_thw"][0]
    assert spans.n_visual == int(grid.prod()) // 4     # 2x2 merge
    assert torch.equal(torch.from_numpy(spans.visual), feature_positions(model, adapter_for(config), inputs))
    assert int(spans.markers.sum()) == 2


def test_llava_processor_prompt_spans(images):
    model, processor = tiny_models.llava_with_processor()
    messages = [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": "How many items?"}]}]
    text = processor.apply_chat_template(messages, add_generation_prompt=True)
    inputs = dict(processor(text=[text], images=[images["red"]], return_tensors="pt"))
    config = model.config.to_dict()
    adapter = adapter_for(config)
    spans = visual_spans(inputs["input_ids"][0], adapter, config, processor.tokenizer)
    assert spans.n_visual == 16 and not spans.markers.any()
    assert torch.equal(torch.from_numpy(spans.visual), feature_positions(model, adapter, inputs))


def test_reasoning_spans(qwen_processor):
    tok = qwen_processor.tokenizer
    closed = tok.encode("<think> the answer is 12 </think>12", add_special_tokens=False)
    mask = reasoning_mask(tok, closed)
    inside = tok.decode([i for i, m in zip(closed, mask) if m])
    assert "answer is 12" in inside and not mask[-1]
    opened = tok.encode(" the answer is 12 </think>12", add_special_tokens=False)
    mask = reasoning_mask(tok, opened, opened=True)
    assert mask[0] and not mask[-1]
    assert reasoning_mask(tok, tok.encode("12", add_special_tokens=False)).all()   # no think: all
    assert think_opened("<|im_start|>assistant\n<think>\n") and not think_opened("<think>x</think>\n")
