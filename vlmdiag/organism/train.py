"""Training of the model organism: model construction, SFT stages, GRPO stages, evaluation.

All prompts are the pinned layouts of :mod:`vlmdiag.probes.prompts`, rendered with the processor's
chat template and ``add_generation_prompt=True``, exactly as the diagnostics prompt the model;
every forward pass gets ``mm_token_type_ids``.

The pieces live in :mod:`~vlmdiag.organism.model` (the network and its regions),
:mod:`~vlmdiag.organism.supervised` (encoding, vision pre-training, SFT),
:mod:`~vlmdiag.organism.evaluation` and :mod:`~vlmdiag.organism.grpo`; this module holds the
run settings (:func:`set_determinism`) and re-exports the rest under its old names.
"""

from __future__ import annotations

import random

import torch

from vlmdiag.organism.evaluation import evaluate, generate_texts  # noqa: F401
from vlmdiag.organism.grpo import _completion_text, correctness_reward, format_reward, grpo  # noqa: F401
from vlmdiag.organism.model import build_model, decoder_layers, freeze_region, region_layers  # noqa: F401
from vlmdiag.organism.supervised import (Encoded, ProgressFn, collate, encode,  # noqa: F401
                                         example_mean_loss, merged_visual_tokens, pretrain_vision,
                                         prompt_text, sft)


def set_determinism(seed: int, threads: int | None) -> None:
    """Seed python/torch RNGs, deterministic algorithms, and a fixed intra-op thread count."""
    random.seed(seed)
    torch.manual_seed(seed)
    if threads:
        torch.set_num_threads(threads)
    torch.use_deterministic_algorithms(True, warn_only=True)
