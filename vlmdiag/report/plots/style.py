"""Shared look of the figures: column width (3.3 in), fonts ≥ 7 pt, labelled Early/Mid/Late bands.

Every figure is a bare :class:`matplotlib.figure.Figure` (no pyplot state: safe in any thread
and under any backend the user set) rendered with the Agg canvas. Artists the tests read carry a
``gid``: ``region:Early`` (band), ``region-label:Early`` (its label), ``curve:IN``, ``band:IN``,
``interval:Mid–Late``, ``threshold``... so the figures are checked by their data, not pixels.
"""

from __future__ import annotations

import io
import math

COLUMN_WIDTH = 3.3  # inches: one column of a two-column paper
FONT = 7.0  # points: the smallest text on any figure
DPI = 200  # 660 px wide: sharp on screen, fine in print at column width
REGIONS = ("Early", "Mid", "Late")
REGION_COLORS = {"Early": "#e8eef7", "Mid": "#fbeedd", "Late": "#e6f3e3"}
STAGE_COLORS = {"Base": "#7f7f7f", "IN": "#1f77b4", "RL": "#d62728"}
STAGE_STYLES = {"Base": ":", "IN": "-", "RL": "--"}
RC = {"font.size": FONT, "axes.titlesize": FONT + 1, "axes.labelsize": FONT + 0.5, "xtick.labelsize": FONT,
      "ytick.labelsize": FONT, "legend.fontsize": FONT, "figure.titlesize": FONT + 1, "lines.linewidth": 1.2,
      "lines.markersize": 3, "axes.linewidth": 0.6, "xtick.major.width": 0.6, "ytick.major.width": 0.6,
      "legend.frameon": False, "legend.handlelength": 1.8, "legend.borderaxespad": 0.3,
      "axes.spines.top": False, "axes.spines.right": False, "svg.fonttype": "none"}


def finite(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def as_floats(values: list) -> list[float]:
    """A per-layer list as floats, ``None``/non-finite → NaN (a gap in the line)."""
    return [float(v) if finite(v) else float("nan") for v in values]


def layer_list(metrics: dict, name: str, num_layers: int) -> list[float] | None:
    """``metrics[name]`` when it is a per-layer list of ``num_layers`` values with one finite, else None."""
    values = metrics.get(name)
    if isinstance(values, list) and len(values) == num_layers and any(finite(v) for v in values):
        return as_floats(values)
    return None


def new_figure(height: float, rows: int = 1, ratios: tuple[float, ...] | None = None, sharex: bool = True,
               *, top: float = 0.42, bottom: float = 0.42, hspace: float = 0.12):
    """A column-width figure with ``rows`` stacked axes (shared x); returns (figure, [axes]).
    Margins are fixed in inches (``top``: title and legend strip; no tight_layout: it costs a
    third of the plotting time)."""
    from matplotlib.figure import Figure

    import matplotlib

    with matplotlib.rc_context(RC):
        fig = Figure(figsize=(COLUMN_WIDTH, height))
        grid = fig.add_gridspec(rows, 1, height_ratios=ratios or [1] * rows, hspace=hspace,
                                left=0.53 / COLUMN_WIDTH, right=1 - 0.1 / COLUMN_WIDTH,
                                top=1 - top / height, bottom=bottom / height)
        axes = []
        for i in range(rows):
            axes.append(fig.add_subplot(grid[i, 0], sharex=axes[0] if (sharex and axes) else None))
    for ax in axes:
        _style(ax)
    return fig, axes


def _style(ax) -> None:
    for side in ("top", "right"):
        ax.spines[side].set_visible(False)
    ax.tick_params(labelsize=FONT, width=0.6, length=2.5, pad=1.5)
    ax.xaxis.label.set_size(FONT + 0.5)
    ax.yaxis.label.set_size(FONT + 0.5)


def region_bands(ax, regions: dict, *, labels: bool = True) -> None:
    """Shade Early/Mid/Late behind the data (x = 0-based LLM layer, band = [first − ½, last + ½])
    and, with ``labels``, name each band just inside the top of the axis."""
    from matplotlib.transforms import blended_transform_factory

    transform = blended_transform_factory(ax.transData, ax.transAxes)
    for name in REGIONS:
        if not isinstance(regions.get(name), (list, tuple)):
            continue
        first, last = regions[name]
        ax.axvspan(first - 0.5, last + 0.5, color=REGION_COLORS[name], zorder=0, lw=0, gid=f"region:{name}")
        if labels:
            ax.text((first + last) / 2, 0.985, name, transform=transform, ha="center", va="top",
                    fontsize=FONT, color="#555555", gid=f"region-label:{name}", zorder=5)
    ax.set_xlim(-0.5, regions["num_layers"] - 0.5)


def layer_axis(ax, regions: dict) -> None:
    """x label and integer ticks of the bottom axis (at most ~8 ticks)."""
    from matplotlib.ticker import MaxNLocator

    ax.xaxis.set_major_locator(MaxNLocator(nbins=8, integer=True))
    cuts = regions.get("cuts") or []
    preset = regions.get("preset")
    where = f"; cuts at {cuts[0]}, {cuts[1]} ({preset})" if len(cuts) == 2 else ""
    ax.set_xlabel(f"LLM layer (0-based){where}")


def headroom(ax, fraction: float = 0.14) -> None:
    """Room above the data for the region labels."""
    low, high = ax.get_ylim()
    ax.set_ylim(low, high + fraction * (high - low))


def threshold_line(ax, threshold, *, scale: float = 1.0, label: str = "threshold {:g}") -> None:
    """The claim's threshold (times ``scale``) as a dotted line, labelled ``label.format(value)``;
    drawn only when it is a finite number."""
    if finite(threshold):
        ax.axhline(scale * threshold, color="black", ls=":", lw=1, gid="threshold",
                   label=minus(label.format(scale * threshold)))


def interval_band(ax, interval: dict | None, *, label: str, gid: str) -> None:
    """The verdict's interval (``{"low", "high", "level"}``) as a shaded band, when both ends are
    finite and it is a real interval (level < 1)."""
    interval = interval or {}
    if finite(interval.get("low")) and finite(interval.get("high")) and interval.get("level", 0.95) < 1:
        ax.axhspan(interval["low"], interval["high"], color="#d62728", alpha=0.25, lw=0, gid=gid,
                   label=f"{label}, {interval.get('level', 0.95):.0%} CI")


def layer_curves(result: dict, names: dict[str, str], height: float = 2.75):
    """The common start of a per-layer figure: ``(fig, ax, metrics, regions, x, curves)`` with the
    region bands drawn, ``curves`` mapping each label of ``names`` to its per-layer metric list;
    None when the report has no layer count or none of the metrics."""
    m = result.get("metrics") or {}
    regions = m.get("regions") or {}
    L = regions.get("num_layers")
    curves = {label: layer_list(m, name, L) for label, name in names.items()}
    if not L or not any(curves.values()):
        return None
    fig, (ax,) = new_figure(height, top=0.75)
    region_bands(ax, regions)
    return fig, ax, m, regions, list(range(L)), curves


def title(fig, result: dict, what: str) -> None:
    gate = ", gated" if result.get("gate") else ""
    fig.suptitle(f"{what}\n{result['id']} [{result['recipe']}]: {result['verdict']}{gate}",
                 fontsize=FONT + 0.5, y=1 - 0.04 / fig.get_figheight(), va="top", linespacing=1.15)


def legend(ax, **kwargs):
    kwargs.setdefault("loc", "best")
    return ax.legend(fontsize=FONT, handlelength=1.8, borderaxespad=0.3, labelspacing=0.25, frameon=False,
                     **kwargs)


def legend_above(ax, ncol: int, **kwargs):
    """The legend in a strip just above ``ax`` (never over the data)."""
    return ax.legend(loc="lower center", bbox_to_anchor=(0.5, 1.0), ncol=ncol, fontsize=FONT, frameon=False,
                     handlelength=1.8, columnspacing=1.0, handletextpad=0.4, borderaxespad=0.15, **kwargs)


def interval_text(statistic, interval, scale: float = 1.0, fmt: str = "+.3g") -> str:
    if not finite(statistic):
        return "—"
    text = f"{scale * statistic:{fmt}}"
    if interval and finite(interval.get("low")) and finite(interval.get("high")):
        text += f" [{scale * interval['low']:{fmt}}, {scale * interval['high']:{fmt}}]"
    return minus(text)


def minus(text: str) -> str:
    """Typographic minus signs in numbers (``-0.5`` → ``−0.5``), as matplotlib's tick labels have."""
    import re

    return re.sub(r"(?<![\w])-(?=\d)", "−", text)


def render_png(fig) -> bytes:
    """PNG bytes of ``fig`` (Agg)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    FigureCanvasAgg(fig)
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=DPI)
    return buffer.getvalue()
