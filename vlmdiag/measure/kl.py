"""Forward KL between two model states' next-token distributions on probe prompts (RL's Razor,
Shenfeld et al., arXiv 2509.04259, §3: the forward KL E_x KL(π0(·|x) ‖ π(·|x)) from the starting
policy π0 to the fine-tuned π, measured on the new task's prompts, predicts forgetting).

vlmdiag measures it token by token along the starting policy's own greedy response: at each
position where π0 predicts a response token (and the stop after it), the KL of π0's next-token
distribution from π's, in nats, averaged over the positions of an item.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import torch

from vlmdiag.runtime.generate import Prompt, build_inputs, extend_inputs, generate
from vlmdiag.runtime.model import LoadedModel


@dataclass(frozen=True)
class ForwardKL:
    """Per-item forward KL of ``reference`` (π0) from ``model`` (π).

    Attributes:
        kl: float64 [N], nats per token: KL(π0 ‖ π) averaged over the item's response positions.
        n_tokens: int64 [N], positions averaged (the response length + 1 for its stop).
        item_ids: the items' ids, in order.
    """

    kl: np.ndarray
    n_tokens: np.ndarray
    item_ids: tuple[str, ...]


@dataclass(frozen=True)
class KLDrift:
    """The two drifts ``behaviour.rl_kl_small`` compares, on the same items: ``in_rl`` =
    KL(IN‖RL) along IN's answers, ``base_in`` = KL(Base‖IN) along Base's."""

    in_rl: ForwardKL
    base_in: ForwardKL


def _logits(loaded: LoadedModel, inputs: dict) -> torch.Tensor:
    with torch.inference_mode():
        return loaded.model(**inputs, use_cache=False).logits[0].double()


def forward_kl(reference: LoadedModel, model: LoadedModel, prompts: Sequence[Prompt], item_ids: Sequence[str], *,
               max_new_tokens: int, progress: Callable[[int, int], None] | None = None) -> ForwardKL:
    """KL(reference ‖ model) of the next-token distributions along ``reference``'s greedy answers.

    Both states must share the tokenizer and the processor (a fine-tuning pair does): the inputs
    are built once, with ``reference``'s processor, and fed to both.

    Args:
        reference: π0, the starting state (IN for KL(IN‖RL), Base for KL(Base‖IN)).
        model: π, the state after training.
        prompts: N prompts (chat messages, at most one image each).
        item_ids: N ids, for the report.
        max_new_tokens: greedy budget of ``reference``'s answers.
        progress: called as ``progress(done, N)`` after each item.

    Returns:
        :class:`ForwardKL` with per-item token-averaged KL in nats.

    Raises:
        ValueError: ``prompts`` and ``item_ids`` differ in length, or the two states' vocabularies
            (logit widths) differ.
    """
    if len(prompts) != len(item_ids):
        raise ValueError(f"forward_kl: {len(prompts)} prompts but {len(item_ids)} item ids")
    answers = generate(reference, prompts, max_new_tokens=max_new_tokens)
    kl = np.zeros(len(prompts))
    n_tokens = np.zeros(len(prompts), dtype=np.int64)
    for i, (prompt, answer) in enumerate(zip(prompts, answers)):
        inputs = build_inputs(reference, [prompt])
        prompt_len = inputs["input_ids"].shape[1]
        ids = torch.as_tensor(answer.token_ids, dtype=torch.long, device=reference.device)
        full = extend_inputs(inputs, ids)
        # Position prompt_len - 1 predicts the first response token; the last one predicts the stop.
        positions = slice(prompt_len - 1, prompt_len + len(answer.token_ids))
        p_logits = _logits(reference, full)[positions]
        q_logits = _logits(model, {k: v.to(model.device) if isinstance(v, torch.Tensor) else v
                                   for k, v in full.items()})[positions].to(p_logits.device)
        if p_logits.shape[-1] != q_logits.shape[-1]:
            raise ValueError(f"forward_kl: the two model states have different vocabularies "
                             f"({p_logits.shape[-1]} and {q_logits.shape[-1]} logits)")
        log_p = torch.log_softmax(p_logits, dim=-1)
        log_q = torch.log_softmax(q_logits, dim=-1)
        per_position = (log_p.exp() * (log_p - log_q)).sum(-1).clamp_min(0.0)
        kl[i] = float(per_position.mean())
        n_tokens[i] = per_position.shape[0]
        if progress is not None:
            progress(i + 1, len(prompts))
    return ForwardKL(kl=kl, n_tokens=n_tokens, item_ids=tuple(item_ids))
