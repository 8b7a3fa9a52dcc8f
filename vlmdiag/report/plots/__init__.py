"""One paper-style figure per claim result, written next to the JSON report (SPEC §5, §8).

Built from the report alone (a saved report renders the same figures: ``vlmdiag report --html``):

* attention (paper Fig. 3): IN and RL per layer on one axis, RL − IN below with the Mid–Late
  interval the verdict reads (:mod:`.curves`);
* localization (Fig. 4): swap change rate per task; skip error rate against the unskipped model;
* updates (Figs. 5, 6): energy per layer of IN and RL; RL/IN size; spectra (:mod:`.weights`);
* splices, freezing, abilities (Tables 2, 3; Fig. 2): annotated heatmaps (:mod:`.tables`);
* beyond the paper: updated share per layer, principal rotation and drift, KL per item (:mod:`.beyond`);
* any other claim with per-layer arrays: one small panel per array (:func:`generic`).

Early/Mid/Late are shaded and labelled on every per-layer axis (x = 0-based LLM layer, as the
report's ``regions``); figures are 3.3 in wide (one paper column), text ≥ 7 pt.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path

from vlmdiag.report.plots import beyond, curves, tables, weights
from vlmdiag.report.plots.style import (RC, as_floats, headroom, layer_axis, layer_list, minus, new_figure, region_bands,
                                        render_png, title)

FIGURES: dict[str, Callable] = {
    "attention.r2v_shift_mid_late": curves.attention,
    "localization.vision_early": curves.vision_localization,
    "localization.reasoning_late": curves.reasoning_localization,
    "updates.energy_mid": weights.energy,
    "updates.rl_smaller_than_in": weights.size_ratio,
    "updates.rl_steeper_mid_late": weights.spectra,
    "transplant.mid_late_carries_gain": tables.splices,
    "freezing.late_necessary": tables.freezing,
    "abilities.no_uniform_vision_gain": tables.abilities,
    "updates.rl_sparse": beyond.sparsity,
    "updates.rl_off_principal": beyond.off_principal,
    "behaviour.rl_kl_small": beyond.kl_drift,
}
_SKIP = {"regions", "conditions"}
MAX_GENERIC_PANELS = 6


def generic(result: dict):
    """A claim without a figure of its own: one panel per per-layer array (at most
    :data:`MAX_GENERIC_PANELS`; the claim's ``series`` first), region bands labelled on top."""
    m = result.get("metrics") or {}
    regions = m.get("regions") or {}
    L = regions.get("num_layers")
    if not L:
        return None
    names = [k for k in m if k not in _SKIP and layer_list(m, k, L)]
    series = result.get("series")
    if series in names:
        names.remove(series)
        names.insert(0, series)
    names = names[:MAX_GENERIC_PANELS]
    if not names:
        return None
    from matplotlib.ticker import FuncFormatter

    height = 0.85 + 1.05 * len(names)
    fig, axes = new_figure(height, rows=len(names), hspace=0.18)
    x = list(range(L))
    for i, (ax, name) in enumerate(zip(axes, names)):
        region_bands(ax, regions, labels=i == 0)
        ax.plot(x, as_floats(m[name]), "-", marker="o", ms=2.5, color="black", gid=f"curve:{name}", zorder=3)
        ax.yaxis.set_major_formatter(FuncFormatter(lambda v, _: minus(f"{v:.3g}")))  # no offset text between panels
        ax.set_ylabel(name.replace("_", " "), fontsize=7)
        if i == 0:
            headroom(ax, 0.2)
        if i < len(names) - 1:
            ax.tick_params(labelbottom=False)
    layer_axis(axes[-1], regions)
    title(fig, result, "Per-layer values")
    return fig


def figure(result: dict):
    """The matplotlib Figure of one claim result, or None when the report holds nothing to plot
    for it (a skipped claim, a claim without per-layer or table data). A claim whose own figure
    finds its data missing falls back to :func:`generic`; under ``--regions localized`` a claim
    with no other figure shows the curves its cuts came from."""
    import matplotlib

    with matplotlib.rc_context(RC):
        maker = FIGURES.get(result.get("id"))
        fig = maker(result) if maker is not None else None
        if fig is None:
            fig = generic(result)
        if fig is None:
            fig = curves.derivation(result)
    return fig


def plot_result(result: dict) -> bytes | None:
    """PNG bytes of :func:`figure` for one claim result, or None."""
    import matplotlib

    fig = figure(result)
    if fig is None:
        return None
    with matplotlib.rc_context(RC):
        return render_png(fig)


def plot_file_name(result: dict) -> str:
    """The file name of a result's figure in the plots folder: ``CLAIM__RECIPE.png``."""
    return re.sub(r"[^\w.-]+", "_", f"{result['id']}__{result['recipe']}") + ".png"


def write_plots(report: dict, folder: str | Path) -> list[Path]:
    """One PNG per claim result that has a figure, written atomically into ``folder``."""
    from vlmdiag.atomic import write_atomic

    folder = Path(folder)
    written = []
    for result in report["claims"]:
        png = plot_result(result)
        if png is None:
            continue
        folder.mkdir(parents=True, exist_ok=True)
        written.append(write_atomic(folder / plot_file_name(result), png))
    return written


__all__ = ["FIGURES", "figure", "generic", "plot_file_name", "plot_result", "write_plots"]
