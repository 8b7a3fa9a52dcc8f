"""Figures of the weight claims: update energy per layer of IN and RL (paper Fig. 5), the size of
RL's update against IN's, and the singular-value spectra (Fig. 6). Each function takes one claim
result of the JSON report and returns a Figure, or None when the result lacks the data."""

from __future__ import annotations

import math

from vlmdiag.report.plots.style import (REGIONS, REGION_COLORS, STAGE_COLORS, STAGE_STYLES, finite, headroom,
                                        interval_band, layer_axis, layer_curves, layer_list, legend_above,
                                        new_figure, region_bands, threshold_line, title)

RANK_COLORS = {10: "#1b9e77", 20: "#d95f02", 30: "#7570b3", 40: "#e7298a"}


def normalised(values: list[float]) -> list[float]:
    """Each value over the mean of the finite ones: a stage's per-layer energy relative to its own
    average layer (IN's and RL's raw norms differ 10–100×; paper notes §6.5)."""
    finite_values = [v for v in values if math.isfinite(v)]
    mean = sum(finite_values) / len(finite_values) if finite_values else float("nan")
    return [v / mean if mean else float("nan") for v in values]


def energy(result: dict):
    """Paper Fig. 5: top, the mean per-matrix Frobenius norm ‖ΔW‖_F of each layer for IN and RL,
    each over its own mean across layers (one axis; the raw means are in the legend); bottom, the
    statistic the verdict reads: each region's energy share over its parameter share, with the
    threshold the Mid concentration must exceed."""
    m = result.get("metrics") or {}
    regions = m.get("regions") or {}
    L = regions.get("num_layers")
    stages = {s: layer_list(m, f"{s.lower()}_frobenius_mean", L) for s in ("IN", "RL")}
    stages = {s: v for s, v in stages.items() if v}
    if not L or not stages:
        return None
    fig, (top, bottom) = new_figure(3.8, rows=2, ratios=(1.4, 1), sharex=False, top=0.62, bottom=0.28, hspace=0.62)
    region_bands(top, regions)
    x = list(range(L))
    for stage, values in stages.items():
        finite_values = [v for v in values if math.isfinite(v)]
        mean = sum(finite_values) / len(finite_values)
        top.plot(x, normalised(values), STAGE_STYLES[stage], color=STAGE_COLORS[stage], marker="o",
                 label=f"{stage} (mean {mean:.3g})", gid=f"curve:{stage}", zorder=3)
    top.axhline(1, color="#888888", lw=0.6, zorder=1)
    top.set_ylabel("‖ΔW‖$_F$ / layer mean")
    headroom(top, 0.16)
    legend_above(top, ncol=2)
    layer_axis(top, regions)
    width = 0.38
    for offset, stage in ((-width / 2, "IN"), (width / 2, "RL")):
        concentration = m.get(f"{stage.lower()}_concentration") or {}
        heights = [concentration.get(r) if finite(concentration.get(r)) else float("nan") for r in REGIONS]
        # bars start at 1 (energy share = parameter share): above 1 the region is denser than its size
        bars = bottom.bar([i + offset for i in range(3)], [h - 1 for h in heights], width, bottom=1,
                          color=STAGE_COLORS[stage], alpha=0.85 if stage == "RL" else 0.6, label=stage,
                          gid=f"bars:{stage}")
        for bar, height in zip(bars, heights):
            if math.isfinite(height):
                bottom.text(bar.get_x() + bar.get_width() / 2, height, f"{height:.2f}", ha="center",
                            va="bottom" if height >= 1 else "top", fontsize=7)
    for i, region in enumerate(REGIONS):
        bottom.axvspan(i - 0.5, i + 0.5, color=REGION_COLORS[region], zorder=0, lw=0, gid=f"region-column:{region}")
    bottom.axhline(1, color="#888888", lw=0.6)
    threshold_line(bottom, m.get("threshold"), label="Mid threshold {:g}")
    bottom.set_xticks(range(3), REGIONS)
    bottom.set_xlim(-0.5, 2.5)
    bottom.set_ylabel("energy share /\nparameter share")
    values = [v for s in ("in", "rl") for v in (m.get(f"{s}_concentration") or {}).values() if finite(v)]
    threshold = m.get("threshold") if finite(m.get("threshold")) else 1
    spread = max([abs(v - 1) for v in values] + [abs(threshold - 1), 0.05])
    bottom.set_ylim(1 - 1.35 * spread, 1 + 1.35 * spread)
    legend_above(bottom, ncol=3)
    title(fig, result, "Update energy per layer (Frobenius norm)")
    return fig


def size_ratio(result: dict):
    """Paper Fig. 5's axes: log10 ‖ΔRL‖/‖ΔIN‖ per layer (mean per-matrix norms), with the median
    per-matrix ratio and its interval (the verdict's statistic) as a band, and the threshold."""
    start = layer_curves(result, {"per layer": "log10_ratio_per_layer"})
    if start is None:
        return None
    fig, ax, m, regions, x, curves = start
    ax.plot(x, curves["per layer"], "-", marker="o", color="black", label="per layer", gid="curve:log10_ratio", zorder=3)
    interval_band(ax, m.get("interval"), label="median over matrices", gid="interval:median")
    if finite(m.get("statistic")):
        ax.axhline(m["statistic"], color="#d62728", lw=1, gid="median")
    threshold_line(ax, m.get("threshold"))
    low, high = ax.get_ylim()
    ax.set_ylim(min(low, -2.2), max(high, 0.1))
    headroom(ax, 0.14)
    ax.set_ylabel("log$_{10}$ ‖ΔRL‖/‖ΔIN‖")
    legend_above(ax, ncol=2)
    layer_axis(ax, regions)
    title(fig, result, "Size of RL's update against IN's")
    return fig


def spectra(result: dict):
    """Paper Fig. 6: top, log(σk/σ1) per layer at ranks k = 10, 20, 30, 40 for the IN (solid) and
    RL (dashed) updates (lower = steeper decay); bottom, the per-layer difference RL − IN of the
    mean over those ranks, with the Mid–Late mean and its interval (the verdict's statistic)."""
    m = result.get("metrics") or {}
    regions = m.get("regions") or {}
    L = regions.get("num_layers")
    ranks = [k for k in RANK_COLORS if layer_list(m, f"in_log_ratio_at_{k}", L) and layer_list(m, f"rl_log_ratio_at_{k}", L)]
    diff = layer_list(m, "log_ratio_difference_per_layer", L)
    if not L or not ranks:
        return None
    fig, axes = new_figure(3.95 if diff else 2.8, rows=2 if diff else 1, ratios=(1.5, 1) if diff else None,
                           top=0.62, hspace=0.3)
    top = axes[0]
    x = list(range(L))
    for ax in axes:
        region_bands(ax, regions, labels=ax is top)
    for k in ranks:
        for stage in ("IN", "RL"):
            top.plot(x, layer_list(m, f"{stage.lower()}_log_ratio_at_{k}", L), STAGE_STYLES[stage],
                     color=RANK_COLORS[k], marker="o" if stage == "IN" else "s", ms=2,
                     gid=f"curve:{stage}@{k}", zorder=3)
    top.set_ylabel("log(σ$_k$/σ$_1$)")
    headroom(top, 0.16)
    from matplotlib.lines import Line2D

    handles = [Line2D([], [], color=RANK_COLORS[k], label=f"k={k}") for k in ranks]
    handles += [Line2D([], [], color="#555555", ls=STAGE_STYLES[s], label=s) for s in ("IN", "RL")]
    top.legend(handles=handles, loc="lower center", ncol=len(handles), fontsize=7, frameon=False,
               handlelength=1.5, columnspacing=0.7, handletextpad=0.35, bbox_to_anchor=(0.5, 1.0), borderaxespad=0.15)
    if diff:
        bottom = axes[1]
        bottom.axhline(0, color="black", lw=0.6, gid="zero")
        bottom.plot(x, diff, "-", marker="o", color="black", label="RL − IN, mean over k", gid="curve:RL − IN", zorder=3)
        interval = m.get("interval") or {}
        if "Mid" in regions and "Late" in regions and finite(m.get("statistic")):
            first, last = regions["Mid"][0] - 0.5, regions["Late"][1] + 0.5
            if finite(interval.get("low")) and finite(interval.get("high")):
                bottom.fill_between([first, last], [interval["low"]] * 2, [interval["high"]] * 2, color="#d62728",
                                    alpha=0.25, lw=0, gid="interval:Mid–Late", zorder=2)
            bottom.plot([first, last], [m["statistic"]] * 2, color="#d62728", lw=1.4, gid="mean:Mid–Late",
                        label=f"Mid–Late mean, {interval.get('level', 0.95):.0%} CI", zorder=4)
        bottom.set_ylabel("RL − IN")
        legend_above(bottom, ncol=2)
        top.tick_params(labelbottom=False)
    layer_axis(axes[-1], regions)
    title(fig, result, "Update spectra (lower = steeper decay)")
    return fig

