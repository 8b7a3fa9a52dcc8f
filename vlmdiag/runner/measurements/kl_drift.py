"""Forward KL of the next-token distributions, KL(IN‖RL) and KL(Base‖IN), on the suite's
visual-arithmetic items (RL's Razor, arXiv 2509.04259; :mod:`vlmdiag.measure.kl`)."""

from __future__ import annotations

import numpy as np

from vlmdiag.runner.plans import Plan, ProbeSettings, register_plan


@register_plan("kl_drift", roles=("origin", "base", "rl"), settings=ProbeSettings)
def plan_kl_drift(runner, s: ProbeSettings) -> Plan:
    """:class:`~vlmdiag.measure.kl.KLDrift` on ``n_items`` ``math_vqa`` items of the suite, each
    KL along the starting state's own greedy answers. The items are asked in the suite's answer
    format with its budget (:meth:`~vlmdiag.runner.Runner.budget`), as the ability sweeps ask them
    (the prompts of :func:`~vlmdiag.runner.measurements.attention.attention_prompts`); both are part
    of the cache key. An item this run already measured (an earlier sequential look) is not
    measured again (:meth:`~vlmdiag.runner.Runner.per_item`)."""
    items = runner.ability_items("math_vqa", s.n_items, s.seed).items
    answer_format, max_new_tokens = runner.answer_format, runner.budget(s.max_new_tokens)

    def sweep(missing):
        from vlmdiag.measure.kl import KLDrift, forward_kl
        from vlmdiag.runner.measurements.attention import attention_prompts

        prompts = attention_prompts(missing, answer_format)
        ids = [item.id for item in missing]
        with runner.step("forward KL (IN‖RL, Base‖IN)", 2 * len(missing)) as progress:
            in_rl = forward_kl(runner.loaded("base"), runner.loaded("rl"), prompts, ids,
                               max_new_tokens=max_new_tokens, progress=progress)
            base_in = forward_kl(runner.loaded("origin"), runner.loaded("base"), prompts, ids,
                                 max_new_tokens=max_new_tokens,
                                 progress=lambda done, total: progress(total + done, 2 * total))
        return [KLDrift(in_rl=_item(in_rl, i), base_in=_item(base_in, i)) for i in range(len(missing))]

    def compute():
        from vlmdiag.measure.kl import KLDrift
        from vlmdiag.runtime.generate import DEFAULT_BATCH_SIZE

        # Items measured by an earlier look of this run (same three states, budget, format) are reused.
        identity = {"states": [runner.checkpoint(role).fingerprint for role in ("origin", "base", "rl")],
                    "max_new_tokens": max_new_tokens, "answer_format": answer_format,
                    "batch_size": DEFAULT_BATCH_SIZE}
        parts = runner.per_item("kl_drift", identity, list(items), sweep)
        return KLDrift(in_rl=_joined([p.in_rl for p in parts]), base_in=_joined([p.base_in for p in parts]))

    return Plan(("origin", "base", "rl"), compute, runner.model_device, probes=items)


def _item(value, i: int):
    """Item ``i`` of a :class:`~vlmdiag.measure.kl.ForwardKL` (arrays [1])."""
    from vlmdiag.measure.kl import ForwardKL

    return ForwardKL(kl=value.kl[i:i + 1], n_tokens=value.n_tokens[i:i + 1], item_ids=(value.item_ids[i],))


def _joined(parts):
    """The items of several :class:`~vlmdiag.measure.kl.ForwardKL` side by side."""
    from vlmdiag.measure.kl import ForwardKL

    return ForwardKL(kl=np.concatenate([p.kl for p in parts]), n_tokens=np.concatenate([p.n_tokens for p in parts]),
                     item_ids=tuple(i for p in parts for i in p.item_ids))
