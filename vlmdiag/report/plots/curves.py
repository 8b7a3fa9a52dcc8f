"""Per-layer curves of the inference claims: R→V attention of IN and RL (paper Fig. 3), the swap
change rate per task and the skip error rate (Fig. 4a, 4b), and the curves ``--regions
localized`` derived its cuts from. Each function takes one claim result of the JSON report and
returns a Figure, or None when the result lacks the data."""

from __future__ import annotations

from vlmdiag.report.plots.style import (STAGE_COLORS, STAGE_STYLES, finite, headroom, interval_text, layer_axis,
                                        layer_list, legend_above, new_figure, region_bands, title)

TASK_COLORS = {"counting": "#9467bd", "grounding": "#2ca02c", "ocr": "#ff7f0e", "recognition": "#17becf"}


def per_layer_band(metrics: dict, name: str, num_layers: int) -> tuple[list, list] | None:
    """Per-layer interval of the curve ``name``, when the report has one: ``NAME_interval`` as a
    list of ``{"low", "high"}`` (one per layer), or ``NAME_low`` and ``NAME_high`` lists.
    Returns (lows, highs) or None."""
    cells = metrics.get(f"{name}_interval")
    if isinstance(cells, list) and len(cells) == num_layers and all(isinstance(c, dict) for c in cells):
        lows = layer_list({"v": [c.get("low") for c in cells]}, "v", num_layers)
        highs = layer_list({"v": [c.get("high") for c in cells]}, "v", num_layers)
        return (lows, highs) if lows and highs else None
    lows, highs = layer_list(metrics, f"{name}_low", num_layers), layer_list(metrics, f"{name}_high", num_layers)
    return (lows, highs) if lows and highs else None


def attention(result: dict):
    """Paper Fig. 3: top, the R→V attention mass per layer of IN and RL on one axis (the verdict's
    ``basis`` mode; a band per layer where the report has per-layer intervals); bottom, the
    difference RL − IN per layer with the Mid–Late mean and its bootstrap interval (the
    statistic the verdict reads) drawn as a band over Mid–Late, and the Early mean."""
    m = result.get("metrics") or {}
    regions = m.get("regions") or {}
    L = regions.get("num_layers")
    basis = m.get("basis", "teacher_forced")
    curves = {s: layer_list(m, f"{basis}_{s}_mass", L) for s in ("IN", "RL")}
    diff = layer_list(m, f"{basis}_mass_increase", L)
    if not L or diff is None or not all(curves.values()):
        return None
    fig, (top, bottom) = new_figure(3.75, rows=2, ratios=(1.3, 1), top=0.62, hspace=0.32)
    x = list(range(L))
    for ax in (top, bottom):
        region_bands(ax, regions, labels=ax is top)
    for stage, values in curves.items():
        top.plot(x, values, STAGE_STYLES[stage], color=STAGE_COLORS[stage], marker="o", label=stage,
                 gid=f"curve:{stage}", zorder=3)
        band = per_layer_band(m, f"{basis}_{stage}_mass", L)
        if band:
            top.fill_between(x, *band, color=STAGE_COLORS[stage], alpha=0.18, lw=0, gid=f"band:{stage}", zorder=2)
    top.set_ylabel("R→V attention mass")
    headroom(top, 0.16)
    legend_above(top, ncol=2)
    bottom.axhline(0, color="black", lw=0.6, gid="zero")
    bottom.plot(x, diff, "-", color="black", marker="o", label="RL − IN per layer", gid="curve:RL − IN", zorder=3)
    band = per_layer_band(m, f"{basis}_mass_increase", L)
    if band:
        bottom.fill_between(x, *band, color="black", alpha=0.15, lw=0, gid="band:RL − IN", zorder=2)
    interval = m.get("interval") or {}
    if "Mid" in regions and "Late" in regions and finite(m.get("statistic")):
        first, last = regions["Mid"][0] - 0.5, regions["Late"][1] + 0.5
        level = f"{interval.get('level', 0.95):.0%} CI" if interval else ""
        if finite(interval.get("low")) and finite(interval.get("high")):
            bottom.fill_between([first, last], [interval["low"]] * 2, [interval["high"]] * 2, color="#d62728",
                                alpha=0.25, lw=0, gid="interval:Mid–Late", zorder=2)
        bottom.plot([first, last], [m["statistic"]] * 2, color="#d62728", lw=1.4, gid="mean:Mid–Late",
                    label=f"Mid–Late mean, {level}".rstrip(", "), zorder=4)
    if "Early" in regions and finite(m.get("early_increase")):
        first, last = regions["Early"][0] - 0.5, regions["Early"][1] + 0.5
        bottom.plot([first, last], [m["early_increase"]] * 2, color="#1f77b4", lw=1.4, gid="mean:Early",
                    label="Early mean", zorder=4)
    bottom.set_ylabel("RL − IN")
    legend_above(bottom, ncol=2)
    layer_axis(bottom, regions)
    top.tick_params(labelbottom=False)
    n = m.get("n_items_used")
    title(fig, result, f"Reasoning→vision attention ({basis.replace('_', '-')}{f', N={n}' if n else ''})")
    return fig


def vision_localization(result: dict):
    """Paper Fig. 4a: the swap change rate (%) per layer, one line per task and the pooled rate,
    on one axis; the title carries the Early–Mid − Late difference with its interval."""
    m = result.get("metrics") or {}
    regions = m.get("regions") or {}
    L = regions.get("num_layers")
    pooled = layer_list(m, "swap_change_rate", L)
    if not L or pooled is None:
        return None
    tasks = {key[len("swap_change_rate_"):]: layer_list(m, key, L) for key in sorted(m)
             if key.startswith("swap_change_rate_")}
    tasks = {task: values for task, values in tasks.items() if values}
    fig, (ax,) = new_figure(2.9, top=0.75, bottom=0.55)
    region_bands(ax, regions)
    x = list(range(L))
    for task, values in tasks.items():
        ax.plot(x, [100 * v for v in values], "-", marker="o", ms=2.5, lw=1, color=TASK_COLORS.get(task),
                label=task, gid=f"curve:{task}", zorder=3)
    ax.plot(x, [100 * v for v in pooled], "-", color="black", lw=1.8, label="pooled", gid="curve:pooled", zorder=4)
    ax.set_ylim(-3, 100 * 1.15)
    ax.set_yticks([0, 25, 50, 75, 100])
    ax.set_ylabel("swap change rate (%)")
    legend_above(ax, ncol=3)
    layer_axis(ax, regions)
    mode = m.get("swap_mode")
    what = "Vision localization: swap " + ("from layer ℓ on" if mode == "from" else "at layer ℓ" if mode else "")
    n = m.get("n_pairs")
    fig.text(0.53 / 3.3, 0.012, f"Early–Mid − Late: {interval_text(m.get('statistic'), m.get('interval'), 100, '+.0f')}"
             f" points{f' (N={n} pairs)' if n else ''}", fontsize=7, gid="caption")
    title(fig, result, what.strip())
    return fig


def reasoning_localization(result: dict):
    """Paper Fig. 4b: the error rate (%) with layer ℓ skipped, per layer, against the unskipped
    model's error rate, whose band is the interval of its accuracy (error = 1 − accuracy)."""
    m = result.get("metrics") or {}
    regions = m.get("regions") or {}
    L = regions.get("num_layers")
    errors = layer_list(m, "skip_error_rate", L)
    if not L or errors is None:
        return None
    fig, (ax,) = new_figure(2.75, top=0.75)
    region_bands(ax, regions)
    x = list(range(L))
    ax.plot(x, [100 * v for v in errors], "-", marker="o", color="black", label="layer ℓ skipped",
            gid="curve:skip_error_rate", zorder=3)
    base, accuracy = m.get("baseline_error_rate"), m.get("baseline_accuracy_interval") or {}
    if finite(base):
        ax.axhline(100 * base, color="#1f77b4", lw=1, ls="--", label="unskipped", gid="baseline")
    if finite(accuracy.get("low")) and finite(accuracy.get("high")):
        ax.axhspan(100 * (1 - accuracy["high"]), 100 * (1 - accuracy["low"]), color="#1f77b4", alpha=0.15, lw=0,
                   gid="band:baseline", label=f"unskipped, {accuracy.get('level', 0.95):.0%} interval")
    ax.set_ylim(-3, 100 * 1.15)
    ax.set_yticks([0, 25, 50, 75, 100])
    ax.set_ylabel("error rate (%)")
    legend_above(ax, ncol=2)
    layer_axis(ax, regions)
    n = m.get("n_items")
    title(fig, result, f"Reasoning localization: layer skipping{f' (N={n})' if n else ''}")
    return fig


def derivation(result: dict):
    """``--regions localized``: the base checkpoint's curves the cuts came from (swap change rate
    and the error increase when a layer is skipped), with the derived bands."""
    m = result.get("metrics") or {}
    regions = m.get("regions") or {}
    d = regions.get("derivation") or {}
    L = regions.get("num_layers")
    swap, skip = layer_list(d, "swap_change_rate", L), layer_list(d, "skip_error_increase", L)
    if not L or not (swap or skip):
        return None
    fig, (ax,) = new_figure(2.6, top=0.6)
    region_bands(ax, regions)
    x = list(range(L))
    if swap:
        ax.plot(x, [100 * v for v in swap], "-", marker="o", color="#9467bd", label="swap change rate",
                gid="curve:swap_change_rate", zorder=3)
    if skip:
        ax.plot(x, [100 * v for v in skip], "-", marker="s", color="black", label="skip error increase",
                gid="curve:skip_error_increase", zorder=3)
    ax.set_ylabel("% of items")
    headroom(ax, 0.16)
    legend_above(ax, ncol=2)
    layer_axis(ax, regions)
    title(fig, result, "Localized regions: the base model's curves")
    return fig
