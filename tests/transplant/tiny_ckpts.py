"""Tiny random Qwen2.5-VL checkpoints for the transplant tests and benchmark, built from configs and
saved with ``save_pretrained`` (session fixtures in ``conftest.py``; ``notes/cpu-feasibility.md`` §1).

* ``ckpt_a``: random, 6 decoder layers (``paper`` regions 2/2/2: Early 0-1, Mid 2-3, Late 4-5).
* ``ckpt_b``: an unrelated random model of the same shape (every tensor differs from A).
* ``ckpt_planted``: A with a capability planted only in the Late layers: layer 5's MLP pushes the
  next-token distribution towards token ``PLANTED_TOKEN``; every other tensor equals A's.
* ``ckpt_shallow`` (4 layers) and ``ckpt_qwen2vl`` (another architecture): for refusals.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch

LAYERS = 6
VOCAB = 128
PLANTED_TOKEN = 77
PROMPTS = torch.tensor([[3, 4, 5, 6, 7, 8], [10, 20, 30, 40, 50, 60], [99, 98, 97, 11, 12, 13]])


def tiny_config(layers: int = LAYERS, arch: str = "qwen2_5_vl", tied: bool = False):
    from transformers import Qwen2_5_VLConfig, Qwen2VLConfig

    text = dict(hidden_size=64, intermediate_size=128, num_hidden_layers=layers, num_attention_heads=4,
                num_key_value_heads=2, vocab_size=VOCAB, max_position_embeddings=512,
                rope_scaling={"type": "mrope", "mrope_section": [2, 3, 3]},
                bos_token_id=0, eos_token_id=1, pad_token_id=2, tie_word_embeddings=tied)
    tokens = dict(image_token_id=120, video_token_id=121, vision_start_token_id=122,
                  vision_end_token_id=123, tie_word_embeddings=tied)
    if arch == "qwen2_vl":
        vision = dict(depth=2, embed_dim=32, hidden_size=64, mlp_ratio=2, num_heads=2,
                      patch_size=14, spatial_merge_size=2, temporal_patch_size=2)
        return Qwen2VLConfig(text_config=text, vision_config=vision, **tokens)
    vision = dict(depth=2, hidden_size=32, intermediate_size=64, num_heads=2, out_hidden_size=64,
                  fullatt_block_indexes=[1], window_size=56, patch_size=14, spatial_merge_size=2,
                  temporal_patch_size=2)
    return Qwen2_5_VLConfig(text_config=text, vision_config=vision, **tokens)


def build(config, seed: int):
    from transformers import AutoModelForImageTextToText

    torch.manual_seed(seed)
    return AutoModelForImageTextToText.from_config(config).eval()


def save(model, path: Path) -> Path:
    model.save_pretrained(path)
    (path / "tokenizer_config.json").write_text(json.dumps({"marker": path.name}))
    return path


def load(path: Path):
    from transformers import AutoModelForImageTextToText

    return AutoModelForImageTextToText.from_pretrained(path, dtype=torch.float32).eval()


def plant_late_capability(model, token: int = PLANTED_TOKEN, layer: int = LAYERS - 1) -> None:
    """Make decoder ``layer`` push the next-token distribution towards ``token``, whatever the
    input: ``up_proj = gate_proj`` makes every MLP activation ``silu(g)·g`` nearly non-negative,
    and ``down_proj = c·u·1ᵀ/I`` (``u`` the unit lm_head row of ``token``) turns their mean into a
    positive multiple of ``u`` added to the residual stream."""
    mlp = model.model.language_model.layers[layer].mlp
    with torch.no_grad():
        u = model.lm_head.weight[token] / model.lm_head.weight[token].norm()
        mlp.up_proj.weight[:] = mlp.gate_proj.weight  # silu(g)*g >= -0.28: nearly one-signed
        mlp.down_proj.weight[:] = 0
        mlp.down_proj.weight[:, :] += 300.0 * u[:, None] / mlp.down_proj.weight.shape[1]
