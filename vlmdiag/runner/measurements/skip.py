"""Layer skipping on the base checkpoint (paper §3.1.2, Fig. 4b): text-only math items answered
with each LLM layer skipped in turn, and unskipped."""

from __future__ import annotations

from vlmdiag.runner.plans import Plan, ProbeSettings, register_plan


@register_plan("skip", roles=("base",), settings=ProbeSettings)
def plan_skip(runner, s: ProbeSettings) -> Plan:
    """:class:`~vlmdiag.measure.skip.SkipResult` over ``n_items`` ``text_math`` items of the suite."""
    items = runner.ability_items("text_math", s.n_items, s.seed).items

    def compute():
        import numpy as np

        from vlmdiag.measure.skip import SkipResult, skip_sweep

        loaded = runner.loaded("base")
        settings = [-1, *range(loaded.num_layers)]
        parts = []
        # One setting per call (each is generated on its own anyway), so progress moves per layer.
        with runner.step("layer-skip sweep", len(settings)) as progress:
            for done, k in enumerate(settings, 1):
                # The items' own question, as Mrea asks them (the paper's GSM8K prefix is for real math sets).
                parts.append(skip_sweep(loaded, items, layers=[] if k < 0 else [k], include_baseline=k < 0,
                                        max_new_tokens=runner.budget(s.max_new_tokens), prefix="",
                                answer_format=runner.answer_format))
                progress(done, len(settings))
        return SkipResult(layers=np.concatenate([p.layers for p in parts]),
                          correct=np.concatenate([p.correct for p in parts]),
                          answers=tuple(a for p in parts for a in p.answers),
                          item_ids=parts[0].item_ids)

    return Plan(("base",), compute, runner.model_device, probes=items)
