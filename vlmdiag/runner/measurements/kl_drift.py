"""Forward KL of the next-token distributions, KL(IN‖RL) and KL(Base‖IN), on the suite's
visual-arithmetic items (RL's Razor, arXiv 2509.04259; :mod:`vlmdiag.measure.kl`)."""

from __future__ import annotations

from vlmdiag.runner.plans import Plan, ProbeSettings, register_plan


@register_plan("kl_drift", roles=("origin", "base", "rl"), settings=ProbeSettings)
def plan_kl_drift(runner, s: ProbeSettings) -> Plan:
    """:class:`~vlmdiag.measure.kl.KLDrift` on ``n_items`` ``math_vqa`` items of the suite, each
    KL along the starting state's own greedy answers. The items are asked in the suite's answer
    format with its budget (:meth:`~vlmdiag.runner.Runner.budget`), as the ability sweeps ask them
    (the prompts of :func:`~vlmdiag.runner.measurements.attention.attention_prompts`); both are part
    of the cache key."""
    items = runner.ability_items("math_vqa", s.n_items, s.seed).items
    answer_format, max_new_tokens = runner.answer_format, runner.budget(s.max_new_tokens)

    def compute():
        from vlmdiag.measure.kl import KLDrift, forward_kl
        from vlmdiag.runner.measurements.attention import attention_prompts

        prompts = attention_prompts(items, answer_format)
        ids = [item.id for item in items]
        with runner.step("forward KL (IN‖RL, Base‖IN)", 2 * len(items)) as progress:
            in_rl = forward_kl(runner.loaded("base"), runner.loaded("rl"), prompts, ids,
                               max_new_tokens=max_new_tokens, progress=progress)
            base_in = forward_kl(runner.loaded("origin"), runner.loaded("base"), prompts, ids,
                                 max_new_tokens=max_new_tokens,
                                 progress=lambda done, total: progress(total + done, 2 * total))
        return KLDrift(in_rl=in_rl, base_in=base_in)

    return Plan(("origin", "base", "rl"), compute, runner.model_device, probes=items)
