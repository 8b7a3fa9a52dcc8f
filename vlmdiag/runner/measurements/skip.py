"""Layer skipping on the base checkpoint (paper §3.1.2, Fig. 4b): text-only math items answered
with each LLM layer skipped in turn, and unskipped."""

from __future__ import annotations

from vlmdiag.runner.plans import Plan, ProbeSettings, register_plan


@register_plan("skip", roles=("base",), settings=ProbeSettings)
def plan_skip(runner, s: ProbeSettings) -> Plan:
    """:class:`~vlmdiag.measure.skip.SkipResult` over ``n_items`` ``text_math`` items of the suite; an
    item this run already measured (an earlier sequential look) is not measured again
    (:meth:`~vlmdiag.runner.Runner.per_item`)."""
    items = runner.ability_items("text_math", s.n_items, s.seed).items

    max_new_tokens, answer_format = runner.budget(s.max_new_tokens), runner.answer_format

    def sweep(missing):
        from vlmdiag.measure.skip import skip_sweep, split_items

        loaded = runner.loaded("base")
        # All settings × items in shared batches; the items' own question, as Mrea asks them
        # (the paper's GSM8K prefix is for real math sets).
        with runner.step("layer-skip sweep") as progress:
            return split_items(skip_sweep(loaded, missing, max_new_tokens=max_new_tokens, prefix="",
                                          answer_format=answer_format, progress=progress))

    def compute():
        from vlmdiag.measure.skip import join_items
        from vlmdiag.runtime.generate import DEFAULT_BATCH_SIZE

        # Items measured by an earlier look of this run (same state, budget, format) are reused.
        identity = {"state": runner.checkpoint("base").fingerprint, "layers": "all", "baseline": True,
                    "prefix": "", "max_new_tokens": max_new_tokens, "answer_format": answer_format,
                    "batch_size": DEFAULT_BATCH_SIZE}
        return join_items(runner.per_item("skip", identity, list(items), sweep))

    return Plan(("base",), compute, runner.model_device, probes=items)
