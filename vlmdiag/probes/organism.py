"""The default probe set: the model organism's held-out synthetic items (SPEC §6), which have exact
descriptions and known answers, so all three abilities can be scored without any download."""

from __future__ import annotations

from vlmdiag.probes.records import ProbeSet


def organism_probe_set(n: int = 100, *, seed: int = 0) -> ProbeSet:
    """``n`` items of each kind from :func:`vlmdiag.organism.tasks.ability_items`
    (``vqa`` for Mvis, ``math_vqa`` for Mv2r, ``text_math`` for Mrea).

    Raises:
        ValueError: ``n < 1``.
    """
    if n < 1:
        raise ValueError(f"organism_probe_set: n={n} must be at least 1")
    from vlmdiag.organism.tasks import ability_items

    items = {kind: tuple(ability_items(kind, n, seed=seed)) for kind in ("vqa", "math_vqa", "text_math")}
    return ProbeSet(items=items, skipped={}, source=(f"organism:ability_items(n={n}, seed={seed})",))
