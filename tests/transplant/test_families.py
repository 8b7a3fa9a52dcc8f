"""Splicing is family-independent: the same checks on LLaVA (CLIP + Llama), Gemma 3 (tied
embeddings, sliding-window layers) and Idefics3 (``model.text_model.layers``)."""

from __future__ import annotations

import pytest
import torch

from vlmdiag.transplant import Splicer, all_variants, write_transplant

TEXT = dict(hidden_size=64, intermediate_size=128, num_hidden_layers=6, num_attention_heads=4,
            num_key_value_heads=2, vocab_size=512, max_position_embeddings=1024,
            bos_token_id=1, eos_token_id=2, pad_token_id=0)
VISION = dict(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=2)
TOKENS = torch.tensor([[5, 6, 7, 8, 9, 10, 11, 12]])


def family_model(family: str, seed: int):
    import transformers as tf

    if family == "llava":
        config = tf.LlavaConfig(text_config=dict(TEXT, model_type="llama", tie_word_embeddings=False),
                                vision_config=dict(VISION, model_type="clip_vision_model", image_size=32, patch_size=8),
                                image_token_index=500)
        cls = tf.LlavaForConditionalGeneration
    elif family == "gemma3":
        config = tf.Gemma3Config(
            text_config=dict(TEXT, head_dim=16, sliding_window=512, query_pre_attn_scalar=16,
                             layer_types=["sliding_attention"] * 5 + ["full_attention"]),
            vision_config=dict(VISION, image_size=32, patch_size=4), mm_tokens_per_image=16,
            image_token_index=500, boi_token_index=501, eoi_token_index=502)
        cls = tf.Gemma3ForConditionalGeneration
    else:
        config = tf.Idefics3Config(text_config=dict(TEXT, model_type="llama"), image_token_id=500, scale_factor=2,
                                   vision_config=dict(VISION, image_size=32, patch_size=4))
        cls = tf.Idefics3ForConditionalGeneration
    torch.manual_seed(seed)
    model = cls(config).eval()
    with torch.no_grad():  # spread the init so that logits differ visibly between seeds
        for p in model.parameters():
            if p.dim() > 1:
                p.normal_(0, 0.2)
    return model


def logits(model):
    with torch.no_grad():
        return model(input_ids=TOKENS).logits[:, -1]


@pytest.mark.parametrize("family", ["llava", "gemma3", "idefics3"])
def test_family(tmp_path, family):
    from transformers import AutoModelForImageTextToText

    a, b = tmp_path / "a", tmp_path / "b"
    family_model(family, 0).save_pretrained(a)
    family_model(family, 1).save_pretrained(b)
    load = lambda p: AutoModelForImageTextToText.from_pretrained(p, dtype=torch.float32).eval()  # noqa: E731
    model, reference = load(a), load(b)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    base, other = logits(model), logits(reference)
    assert not torch.equal(base, other)
    splicer = Splicer(model, a, b)
    seen = {}
    for variant, _ in splicer.sweep():
        seen[variant.label()] = logits(model)
    assert torch.equal(seen["IN"], base) and torch.equal(seen["RL"], other)
    assert len({tuple(v.flatten().tolist()) for v in seen.values()}) == len(all_variants())
    for name, value in model.state_dict().items():
        assert torch.equal(value, before[name]), name
    written = write_transplant(a, b, "IN:RL:RL", tmp_path / "out")
    assert torch.equal(logits(load(written.out)), seen["IN:RL:RL"])
