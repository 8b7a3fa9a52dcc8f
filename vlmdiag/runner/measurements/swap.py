"""Visual-token swapping on the base checkpoint (paper §3.1.1, Fig. 4a): per swap pair, whether the
answer changes with the source image's visual keys/values from (or at) each LLM layer."""

from __future__ import annotations

from typing import get_args

from vlmdiag.probes.types import SwapTask
from vlmdiag.runner.plans import Plan, SwapSettings, register_plan

#: The swap tasks, in the order their pairs are measured (ocr, counting, grounding, recognition).
TASKS: tuple[str, ...] = get_args(SwapTask)


@register_plan("swap", roles=("base",), settings=SwapSettings)
def plan_swap(runner, s: SwapSettings) -> Plan:
    """``[SwapResult]``: ``n_items`` pairs of each task of the suite, swapped in ``mode``."""
    pairs = [pair for task in TASKS for pair in runner.swap_pairs(task, s.n_items, s.seed).items]

    def compute():
        from vlmdiag.measure.swap import swap_pairs

        loaded = runner.loaded("base")
        with runner.step("visual-token swap sweep") as progress:  # all pairs × layers in shared batches
            return swap_pairs(loaded, pairs, mode=s.mode, max_new_tokens=s.max_new_tokens, progress=progress)

    return Plan(("base",), compute, runner.model_device, probes=pairs)
