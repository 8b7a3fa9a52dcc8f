"""Figures of the claims beyond the paper: the updated share of parameters per layer (Mukherjee et
al.), the principal-subspace rotation and spectral drift of RL against IN (Zhu et al.), and the
forward KL of RL's and SFT's drift per item (RL's Razor)."""

from __future__ import annotations

from vlmdiag.report.plots.style import (finite, headroom, interval_band, layer_axis, layer_curves, legend_above,
                                        new_figure, threshold_line, title)

COLORS = {"IN": "#1f77b4", "RL": "#d62728"}


def sparsity(result: dict):
    """The share of each layer's LLM parameters that a stage updated beyond storage rounding, IN and
    RL on one axis, with the threshold RL's overall share must stay under (5–30 % in the paper)."""
    start = layer_curves(result, {stage: f"{stage.lower()}_updated_fraction_per_layer" for stage in ("IN", "RL")})
    if start is None:
        return None
    fig, ax, m, regions, x, curves = start
    for stage, values in curves.items():
        if values:
            ax.plot(x, [100 * v for v in values], "--" if stage == "IN" else "-", marker="s" if stage == "IN" else "o",
                    ms=3, color=COLORS[stage], label=stage,
                    gid=f"curve:{stage}")
    threshold_line(ax, m.get("threshold"), scale=100, label="threshold {:g} %")
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
    start = layer_curves(result, {"rotation": "log10_rotation_ratio_per_layer",
                                  "spectral drift": "log10_drift_ratio_per_layer"})
    if start is None:
        return None
    fig, ax, m, regions, x, curves = start
    for (name, values), style in zip(curves.items(), ("-o", "--s")):
        if values:
            ax.plot(x, values, style, ms=3, color="black", label=name, gid=f"curve:{name}")
    interval_band(ax, m.get("interval"), label="largest region median", gid="interval:statistic")
    threshold_line(ax, m.get("threshold"))
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
