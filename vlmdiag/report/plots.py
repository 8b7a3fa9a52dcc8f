"""Per-layer curves with Early/Mid/Late bands, written next to the JSON report (SPEC §5)."""

from __future__ import annotations

import io
import math
import re
from pathlib import Path

from vlmdiag.report.document import write_atomic

_BANDS = {"Early": "#dbe9f6", "Mid": "#fde7c8", "Late": "#dff2dc"}


def _layer_arrays(metrics: dict, num_layers: int) -> dict[str, list]:
    return {k: v for k, v in metrics.items()
            if isinstance(v, list) and len(v) == num_layers
            and any(isinstance(x, (int, float)) and math.isfinite(x) for x in v)}


def plot_result(result: dict) -> bytes | None:
    """PNG bytes of every per-layer array of one claim result (one panel each, x = unified LLM
    layer index 1…L, region bands shaded), or None when it has none. Under ``--regions
    localized`` the base checkpoint's curves the cuts were derived from get a panel each."""
    metrics = result.get("metrics") or {}
    regions = metrics.get("regions")
    if not regions:
        return None
    arrays = _layer_arrays(metrics, regions["num_layers"])
    derivation = regions.get("derivation") or {}
    for name in ("swap_change_rate", "skip_error_increase"):  # the curves localized cuts came from
        if isinstance(derivation.get(name), list) and len(derivation[name]) == regions["num_layers"]:
            arrays[f"localized cuts: {name}"] = derivation[name]
    if not arrays:
        return None
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    height = 1.9 * len(arrays) + 0.6  # inches
    fig, axes = plt.subplots(len(arrays), 1, figsize=(7, height), sharex=True, squeeze=False)
    # Fixed margins in inches, not tight_layout: it cost a third of a warm rerun's plotting time.
    fig.subplots_adjust(left=0.1, right=0.98, top=1 - 0.4 / height, bottom=0.45 / height, hspace=0.15)
    x = list(range(1, regions["num_layers"] + 1))
    for ax, (name, values) in zip(axes[:, 0], arrays.items()):
        for region, color in _BANDS.items():
            first, last = regions[region]
            ax.axvspan(first + 0.5, last + 1.5, color=color, zorder=0)
        ax.plot(x, [v if isinstance(v, (int, float)) else float("nan") for v in values], marker="o", ms=3)
        ax.set_ylabel(name, fontsize=7)
        ax.tick_params(labelsize=7)
    axes[-1, 0].set_xlabel("LLM layer (unified index)")
    fig.suptitle(f"{result['id']} [{result['recipe']}]: {result['verdict']}", fontsize=9)
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=110)
    plt.close(fig)
    return buffer.getvalue()


def plot_file_name(result: dict) -> str:
    """The file name of a result's figure in the plots folder: ``CLAIM__RECIPE.png``."""
    return re.sub(r"[^\w.-]+", "_", f"{result['id']}__{result['recipe']}") + ".png"


def write_plots(report: dict, folder: str | Path) -> list[Path]:
    """One PNG per claim result with per-layer arrays, written atomically into ``folder``."""
    folder = Path(folder)
    written = []
    for result in report["claims"]:
        png = plot_result(result)
        if png is None:
            continue
        folder.mkdir(parents=True, exist_ok=True)
        written.append(write_atomic(folder / plot_file_name(result), png))
    return written
