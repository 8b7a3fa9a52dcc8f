"""The weight pass (paper §3.2): ΔW norms per tensor (``weight_deltas``) and, with singular values,
spectra (``weight_spectra``), streamed from the checkpoints (:func:`vlmdiag.measure.weights.weight_deltas`)."""

from __future__ import annotations

from functools import partial

from vlmdiag.runner.plans import Plan, register_plan


def _roles(runner) -> tuple[str, ...]:
    return ("base", "rl", "origin") if runner.recipe.origin else ("base", "rl")


def _weight_pass(runner, spectra: bool):
    from vlmdiag.measure.weights import weight_deltas

    origin = runner.checkpoint("origin") if runner.recipe.origin else None
    with runner.step("weight spectra" if spectra else "weight norms") as progress:
        return weight_deltas(runner.checkpoint("base"), runner.checkpoint("rl"), origin, spectra=spectra,
                             progress=progress)


@register_plan("weight_spectra", roles=("base", "rl"))
def plan_weight_spectra(runner, settings: None) -> Plan:
    """Norms and singular values of ΔW for IN − Base (with ``origin``) and RL − IN."""
    return Plan(_roles(runner), partial(_weight_pass, runner, True), runner.weight_device)


@register_plan("weight_deltas", roles=("base", "rl"), subsumed_by="weight_spectra")
def plan_weight_deltas(runner, settings: None) -> Plan:
    """Norms of ΔW only; read from ``weight_spectra`` when the run makes that anyway."""
    return Plan(_roles(runner), partial(_weight_pass, runner, False), runner.weight_device,
                also_in=("weight_spectra",))
