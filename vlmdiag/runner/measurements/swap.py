"""Visual-token swapping on the base checkpoint (paper §3.1.1, Fig. 4a): per swap pair, whether the
answer changes with the source image's visual keys/values from (or at) each LLM layer."""

from __future__ import annotations

from typing import get_args

from vlmdiag.probes.types import SwapTask
from vlmdiag.runner.plans import Plan, SwapSettings, register_plan

#: The swap tasks, in the order their pairs are measured (ocr, counting, grounding, recognition).
TASKS: tuple[str, ...] = get_args(SwapTask)

#: The model state the swap runs on (the base checkpoint, IN), as the sample log names it.
STATE = "IN"


@register_plan("swap", roles=("base",), settings=SwapSettings)
def plan_swap(runner, s: SwapSettings) -> Plan:
    """``[SwapResult]``: ``n_items`` pairs of each task of the suite, swapped in ``mode``.

    The pairs are asked in the suite's answer format with its budget
    (:meth:`~vlmdiag.runner.Runner.budget`), as the ability sweeps ask their items; both are part of
    the cache key. A pair this run already measured (an earlier sequential look) is not measured
    again (:meth:`~vlmdiag.runner.Runner.per_item`). With ``--log-samples``, every pair and layer setting is written to
    ``DIR/IN.swap.jsonl`` (:meth:`~vlmdiag.measure.samples.SampleLog.log_swaps`), also when the
    results come from the cache."""
    pairs = [pair for task in TASKS for pair in runner.swap_pairs(task, s.n_items, s.seed).items]
    answer_format, max_new_tokens = runner.answer_format, runner.budget(s.max_new_tokens)

    def sweep(missing):
        from vlmdiag.measure.swap import swap_pairs

        loaded = runner.loaded("base")
        with runner.step("visual-token swap sweep") as progress:  # all pairs × layers in shared batches
            return swap_pairs(loaded, missing, mode=s.mode, max_new_tokens=max_new_tokens, progress=progress,
                              answer_format=answer_format)

    def compute():
        from vlmdiag.runtime.generate import DEFAULT_BATCH_SIZE

        # Pairs measured by an earlier look of this run (same state, mode, budget, format) are reused.
        identity = {"state": runner.checkpoint("base").fingerprint, "mode": s.mode, "layers": "all",
                    "max_new_tokens": max_new_tokens, "answer_format": answer_format,
                    "batch_size": DEFAULT_BATCH_SIZE}
        return runner.per_item("swap", identity, pairs, sweep)

    def log(results) -> None:
        runner.sample_log.log_swaps(STATE, pairs, results, answer_format=answer_format, measurement="swap",
                                    fingerprint=runner.checkpoint("base").fingerprint)

    return Plan(("base",), compute, runner.model_device, probes=pairs,
                after=log if runner.sample_log is not None else None)
