"""The model organism's network: a randomly initialised, CPU-sized Qwen2.5-VL
(:func:`build_model`), its decoder layers and their Early/Mid/Late regions."""

from __future__ import annotations

import torch


def build_model(tokenizer, *, hidden: int, layers: int, heads: int, kv_heads: int,
                intermediate: int, vision_hidden: int, vision_depth: int, seed: int):
    """A randomly initialised ``Qwen2_5_VLForConditionalGeneration`` sized for CPU training.

    The vision tower uses 14 px patches, temporal patch 2 and 2x2 merging (as Qwen2.5-VL), so a
    112x112 image becomes 64 patches -> 16 visual tokens. M-RoPE sections split head_dim/2 as
    1:1.5:1.5 (the 7B uses 16:24:24 of 64). Token ids come from ``tokenizer``.
    """
    from transformers import Qwen2_5_VLConfig, Qwen2_5_VLForConditionalGeneration

    head_dim = hidden // heads
    half = head_dim // 2
    t = half // 4
    section = [t, (half - t) // 2, half - t - (half - t) // 2]
    ids = {name: tokenizer.convert_tokens_to_ids(tok) for name, tok in (
        ("image_token_id", "<|image_pad|>"), ("video_token_id", "<|video_pad|>"),
        ("vision_start_token_id", "<|vision_start|>"), ("vision_end_token_id", "<|vision_end|>"))}
    eos, pad = tokenizer.convert_tokens_to_ids("<|im_end|>"), tokenizer.pad_token_id
    bos = tokenizer.convert_tokens_to_ids("<|endoftext|>")
    text_config = dict(
        vocab_size=len(tokenizer), hidden_size=hidden, intermediate_size=intermediate,
        num_hidden_layers=layers, num_attention_heads=heads, num_key_value_heads=kv_heads,
        max_position_embeddings=1024, rope_scaling={"type": "mrope", "mrope_section": section},
        rope_theta=10000.0, tie_word_embeddings=False, bos_token_id=bos, eos_token_id=eos,
        pad_token_id=pad, use_sliding_window=False,
    )
    vision_config = dict(
        depth=vision_depth, hidden_size=vision_hidden, intermediate_size=2 * vision_hidden,
        num_heads=max(1, vision_hidden // 32), out_hidden_size=hidden, patch_size=14,
        spatial_merge_size=2, temporal_patch_size=2, window_size=56,
        fullatt_block_indexes=[vision_depth - 1], in_channels=3,
    )
    config = Qwen2_5_VLConfig(text_config=text_config, vision_config=vision_config,
                              bos_token_id=bos, eos_token_id=eos, pad_token_id=pad,
                              tie_word_embeddings=False, **ids)
    torch.manual_seed(seed)
    model = Qwen2_5_VLForConditionalGeneration(config)
    model.generation_config.eos_token_id = eos
    model.generation_config.pad_token_id = pad
    model.generation_config.bos_token_id = bos
    model.generation_config.do_sample = False
    return model


def decoder_layers(model) -> torch.nn.ModuleList:
    """The LLM decoder layers (``model.model.language_model.layers``)."""
    return model.model.language_model.layers


def region_layers(n_layers: int) -> dict[str, list[int]]:
    """Early/Mid/Late thirds of ``n_layers`` (paper preset): L//3 each, remainder to Early then Mid.

    >>> region_layers(28)["early"][-1], len(region_layers(28)["mid"])
    (9, 9)
    """
    base, rem = divmod(n_layers, 3)
    sizes = [base + (1 if rem > 0 else 0), base + (1 if rem > 1 else 0), base]
    out, start = {}, 0
    for name, size in zip(("early", "mid", "late"), sizes):
        out[name] = list(range(start, start + size))
        start += size
    return out


def freeze_region(model, region: str) -> list[int]:
    """``requires_grad_(False)`` on the decoder layers of ``region`` (early|mid|late); returns them."""
    layers = region_layers(len(decoder_layers(model)))[region]
    for i in layers:
        decoder_layers(model)[i].requires_grad_(False)
    return layers

