"""``--regions localized``: the Early/Mid/Late cuts of a recipe derived from its base checkpoint's
own localization curves (SPEC §3; paper §3.1, Fig. 4), with the rule of
:func:`vlmdiag.regions.localized_regions`.

The curves are the measurements the localization claims read, asked of the recipe's
:class:`~vlmdiag.runner.Runner` with the same settings, so they are measured once per
run (and cached) whether or not those claims are selected:

* the visual-token swap sweep of ``localization.vision_early`` (its probe settings), always in
  mode ``from`` (every layer ≥ L, the authors' code), whose curve falls once the image is read;
* the layer-skip sweep of ``localization.reasoning_late`` (its probe settings).
"""

from __future__ import annotations

from vlmdiag.errors import UsageError
from vlmdiag.measure.curves import skip_correct, swap_changed
from vlmdiag.regions import Regions, localized_regions
from vlmdiag.runner.checkpoints import can_run

VISION, REASONING = "localization.vision_early", "localization.reasoning_late"


def check_localized_inputs(thresholds, base_path, base_spec: str) -> None:
    """Fail early (before any claim runs) when ``--regions localized`` cannot be derived.

    Raises:
        UsageError: the thresholds file has no ``localized_regions`` section or no entry for
            ``localization.vision_early`` / ``localization.reasoning_late`` (whose probe settings
            the curves use); the base checkpoint cannot run (no tokenizer or image processor).
    """
    missing = [name for name in (VISION, REASONING) if thresholds.get(name) is None]
    if thresholds.localized is None or missing:
        what = ["the localized_regions section"] * (thresholds.localized is None) + [f"the entry of {m}" for m in missing]
        raise UsageError(f"--regions localized: {thresholds.path} lacks {' and '.join(what)}; the localized "
                         "cuts need the rule and the probe settings of the localization claims")
    if not can_run(base_path):
        raise UsageError(f"--regions localized: the base checkpoint {base_spec} cannot run (its folder has no "
                         "tokenizer and image processor), and the localized cuts come from its visual-token swap "
                         "and layer-skip curves; use paper, thirds or A,B")


def localized_regions_for(runner, thresholds) -> Regions:
    """The ``localized`` regions of ``runner``'s recipe, from its base checkpoint's swap and
    skip curves (measured through ``runner``, memoised there).

    Returns:
        :class:`~vlmdiag.regions.Regions` with ``derivation`` (rule, both curves, per cut whether
        it was derived or fell back and why, the measurements' settings).

    Raises:
        UsageError: as :func:`check_localized_inputs`.
    """
    check_localized_inputs(thresholds, runner.checkpoint("base").path, runner.recipe.base)
    swap_settings = {**thresholds.get(VISION).probe_settings(), "mode": "from"}
    skip_settings = thresholds.get(REASONING).probe_settings()
    num_layers = runner.num_llm_layers
    swap = runner.measure("swap", swap_settings)
    if not swap:
        raise ValueError("--regions localized: the swap sweep measured no pairs")
    swap_rate = swap_changed(swap, num_layers).mean(axis=0)                                   # [L]
    baseline, skipped = skip_correct(runner.measure("skip", skip_settings), num_layers)       # [N], [N, L]
    increase = baseline.mean() - skipped.mean(axis=0)                                        # [L]
    sources = {"checkpoint": runner.recipe.base, "swap": {**swap_settings, "pairs": len(swap)},
               "skip": {**skip_settings, "items": int(len(baseline)), "baseline_accuracy": float(baseline.mean())}}
    return localized_regions(swap_rate, increase, num_layers, thresholds.localized, sources=sources)
