"""Figures of the claims beyond the paper: the updated share of parameters per layer (Mukherjee et
al.), the principal-subspace rotation and spectral drift of RL against IN (Zhu et al.), and the
forward KL of RL's and SFT's drift per item (RL's Razor)."""

from __future__ import annotations

from vlmdiag.report.plots.style import (finite, headroom, layer_axis, layer_list, legend_above, minus, new_figure,
                                        region_bands, title)

COLORS = {"IN": "#1f77b4", "RL": "#d62728"}


def sparsity(result: dict):
    """The share of each layer's LLM parameters that a stage updated beyond storage rounding, IN and
    RL on one axis, with the threshold RL's overall share must stay under (5–30 % in the paper)."""
    m = result.get("metrics") or {}
    regions = m.get("regions") or {}
    L = regions.get("num_layers")
    curves = {stage: layer_list(m, f"{stage.lower()}_updated_fraction_per_layer", L) for stage in ("IN", "RL")}
    if not L or not any(curves.values()):
        return None
    fig, (ax,) = new_figure(2.75, top=0.75)
    region_bands(ax, regions)
    x = list(range(L))
    for stage, values in curves.items():
        if values:
            ax.plot(x, [100 * v for v in values], "--" if stage == "IN" else "-", marker="s" if stage == "IN" else "o",
                    ms=3, color=COLORS[stage], label=stage,
                    gid=f"curve:{stage}")
    if finite(m.get("threshold")):
        ax.axhline(100 * m["threshold"], color="black", ls=":", lw=1, gid="threshold",
                   label=f"threshold {100 * m['threshold']:g} %")
    ax.set_ylim(0, 108)
    headroom(ax, 0.14)
    ax.set_ylabel("parameters updated (%)")
    legend_above(ax, ncol=3)
    layer_axis(ax, regions)
    title(fig, result, "Share of parameters updated")
    return fig


def off_principal(result: dict):
    """log10 RL/IN of the top-k principal-subspace rotation and of the spectral drift per layer on
    one axis, the threshold below which both must lie, and the verdict's interval."""
    m = result.get("metrics") or {}
    regions = m.get("regions") or {}
    L = regions.get("num_layers")
    curves = {"rotation": layer_list(m, "log10_rotation_ratio_per_layer", L),
              "spectral drift": layer_list(m, "log10_drift_ratio_per_layer", L)}
    if not L or not any(curves.values()):
        return None
    fig, (ax,) = new_figure(2.75, top=0.75)
    region_bands(ax, regions)
    x = list(range(L))
    for (name, values), style in zip(curves.items(), ("-o", "--s")):
        if values:
            ax.plot(x, values, style, ms=3, color="black", label=name, gid=f"curve:{name}")
    interval = m.get("interval") or {}
    if finite(interval.get("low")) and finite(interval.get("high")):
        ax.axhspan(interval["low"], interval["high"], color="#d62728", alpha=0.25, lw=0, gid="interval:statistic",
                   label=f"largest region median, {interval.get('level', 0.95):.0%} CI")
    if finite(m.get("threshold")):
        ax.axhline(m["threshold"], color="black", ls=":", lw=1, gid="threshold", label=minus(f"threshold {m['threshold']:g}"))
    low, high = ax.get_ylim()
    ax.set_ylim(low, max(high, 0.1))
    headroom(ax, 0.2)
    ax.set_ylabel("log$_{10}$ RL / IN")
    legend_above(ax, ncol=2)
    layer_axis(ax, regions)
    title(fig, result, "RL turns and drifts the principal subspace less")
    return fig


def kl_drift(result: dict):
    """Per item, KL(Base‖IN) against KL(IN‖RL) (nats per token, log axes), with the line where
    they are equal and the line of the ratio threshold."""
    m = result.get("metrics") or {}
    rl, sft = m.get("per_item_kl_in_rl"), m.get("per_item_kl_base_in")
    if not rl or not sft or len(rl) != len(sft):
        return None
    points = [(a, b) for a, b in zip(sft, rl) if finite(a) and finite(b) and a > 0 and b > 0]
    if not points:
        return None
    fig, (ax,) = new_figure(2.9, top=0.75)
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.plot([p[0] for p in points], [p[1] for p in points], "o", ms=3, color="#d62728", label="item", gid="points")
    low = min(min(p) for p in points) / 2
    high = max(max(p) for p in points) * 2
    ax.plot([low, high], [low, high], "-", color="grey", lw=1, label="equal drift", gid="diagonal")
    if finite(m.get("threshold")) and m["threshold"] != 1:
        t = m["threshold"]
        ax.plot([low, high], [t * low, t * high], ":", color="black", lw=1, label=f"ratio {t:g}", gid="threshold")
    ax.set_xlim(low, high)
    ax.set_ylim(low, high)
    ax.set_xlabel("KL(Base‖IN), nats per token")
    ax.set_ylabel("KL(IN‖RL), nats per token")
    legend_above(ax, ncol=2)
    title(fig, result, "RL's drift against SFT's")
    return fig
