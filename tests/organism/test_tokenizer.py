"""The organism's tokenizer and processor: construction, save, offline reload."""

from __future__ import annotations

import pytest
import torch
from transformers import AutoTokenizer

from vlmdiag.organism import tasks as T
from vlmdiag.organism.tokenizer import (QWEN25VL_SPECIAL_TOKENS, REASONING_TAGS, build_processor,
                                        build_tokenizer, save_processor, torchvision_available)
from vlmdiag.probes.prompts import described_question, image_message, text_message
from vlmdiag.runtime.processor import Qwen2_5_VLImageOnlyProcessor, load_processor


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    tok = build_tokenizer(T.corpus_texts(0))
    proc = build_processor(tok)
    path = tmp_path_factory.mktemp("proc")
    save_processor(proc, path)
    return proc, path


def test_special_tokens_and_tags(saved):
    proc, _ = saved
    tok = proc.tokenizer
    for i, name in enumerate(QWEN25VL_SPECIAL_TOKENS):
        assert tok.convert_tokens_to_ids(name) == i
    for tag in REASONING_TAGS:  # one token each, kept by decode(skip_special_tokens=True)
        ids = tok(tag, add_special_tokens=False)["input_ids"]
        assert len(ids) == 1 and tok.decode(ids, skip_special_tokens=True) == tag
    assert tok.eos_token == "<|im_end|>" and tok.pad_token == "<|endoftext|>"
    assert tok.padding_side == "left"
    assert tok.tokenize("2+13") == ["2", "+", "1", "3"]  # digits split, as in Qwen2


def test_round_trip_offline(saved, monkeypatch):
    proc, path = saved
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    for name in ("tokenizer.json", "tokenizer_config.json", "processor_config.json",
                 "chat_template.jinja"):
        assert (path / name).is_file(), name
    proc2 = load_processor(path)
    tok2 = AutoTokenizer.from_pretrained(path)
    text = "<think>4+2=6</think><answer>6</answer>"
    assert tok2(text)["input_ids"] == proc.tokenizer(text)["input_ids"]
    assert tok2.decode(tok2(text)["input_ids"]) == text
    it = T.generate("arithmetic", 1, seed=0, held_out=True)[0]
    for messages in (image_message(it.question),
                     image_message(described_question(it.description(), it.question)),
                     text_message(it.question)):
        a = proc.apply_chat_template(messages, add_generation_prompt=True)
        b = proc2.apply_chat_template(messages, add_generation_prompt=True)
        assert a == b and a.endswith("<|im_start|>assistant\n")
    prompt = proc2.apply_chat_template(image_message(it.question), add_generation_prompt=True)
    assert "<|vision_start|><|image_pad|><|vision_end|>" + it.question in prompt
    enc = proc2(text=[prompt], images=[it.image()], return_tensors="pt")
    assert set(enc) >= {"input_ids", "attention_mask", "mm_token_type_ids", "pixel_values",
                        "image_grid_thw"}
    n_img = int((enc["input_ids"] == proc2.tokenizer.convert_tokens_to_ids("<|image_pad|>")).sum())
    assert n_img == 16 and int(enc["mm_token_type_ids"].sum()) == 16
    assert enc["image_grid_thw"].tolist() == [[1, 8, 8]]
    assert tuple(enc["pixel_values"].shape) == (64, 1176)
    enc1 = proc(text=[prompt], images=[it.image()], return_tensors="pt")
    assert torch.equal(enc1["pixel_values"], enc["pixel_values"])


def test_processor_class_matches_torchvision(saved):
    proc, _ = saved
    if torchvision_available():
        assert type(proc).__name__ == "Qwen2_5_VLProcessor"
    else:
        assert isinstance(proc, Qwen2_5_VLImageOnlyProcessor)
        assert proc.to_dict()["processor_class"] == "Qwen2_5_VLProcessor"
