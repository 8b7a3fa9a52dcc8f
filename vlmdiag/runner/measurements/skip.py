"""Layer skipping on the base checkpoint (paper §3.1.2, Fig. 4b): text-only math items answered
with each LLM layer skipped in turn, and unskipped."""

from __future__ import annotations

from vlmdiag.runner.plans import Plan, ProbeSettings, register_plan


@register_plan("skip", roles=("base",), settings=ProbeSettings)
def plan_skip(runner, s: ProbeSettings) -> Plan:
    """:class:`~vlmdiag.measure.skip.SkipResult` over ``n_items`` ``text_math`` items of the suite."""
    items = runner.ability_items("text_math", s.n_items, s.seed).items

    def compute():
        from vlmdiag.measure.skip import skip_sweep

        loaded = runner.loaded("base")
        # All settings × items in shared batches; the items' own question, as Mrea asks them
        # (the paper's GSM8K prefix is for real math sets).
        with runner.step("layer-skip sweep") as progress:
            return skip_sweep(loaded, items, max_new_tokens=runner.budget(s.max_new_tokens), prefix="",
                              answer_format=runner.answer_format, progress=progress)

    return Plan(("base",), compute, runner.model_device, probes=items)
