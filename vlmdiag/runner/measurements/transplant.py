"""Frankenstein transplants (paper §3.3, Table 2): the abilities of IN, the six Early:Mid:Late
splices of IN and RL at the run's cuts, and RL (one IN model loaded, RL's regions spliced in
memory)."""

from __future__ import annotations

from vlmdiag.runner.measurements.abilities import ability_items
from vlmdiag.runner.plans import Plan, RegionSettings, register_plan


@register_plan("transplant", roles=("base", "rl"), settings=RegionSettings)
def plan_transplant(runner, s: RegionSettings) -> Plan:
    """:class:`~vlmdiag.measure.tables.AbilityTable` of all eight models, keyed by variant label."""
    items, notes = ability_items(runner, s.n_items, s.seed)
    regions = s.regions

    def compute():
        from vlmdiag.measure.tables import AbilityTable
        from vlmdiag.transplant import Splicer, all_variants

        loaded = runner.loaded("base")
        splicer = Splicer(loaded.model, runner.checkpoint("base"), runner.checkpoint("rl"), regions=regions)
        count = len(all_variants())
        # The splicer's incremental sweep holds each variant while its answers are generated; a
        # variant equal to a parent byte for byte has that parent's identity and shares its answers.
        states = ((variant.label("IN", "RL"), lambda: loaded, splicer.fingerprint(variant))
                  for variant, _ in splicer.sweep())
        scores = runner.ability_sweep(f"transplant sweep ({count} models)", items, s.max_new_tokens, count, states)
        return AbilityTable(scores, (f"splices at cuts {regions.cuts} ({regions.preset}); non-decoder "
                                     "components from the Early source", *notes))

    return Plan(("base", "rl"), compute, runner.model_device, probes=items)
