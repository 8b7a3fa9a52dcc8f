"""Score tables as annotated heatmaps: the Early:Mid:Late splices (paper Table 2), the freezing
runs (Table 3) and the Base→IN→RL abilities (Fig. 2). Rows are models, columns the abilities
(Mvis, Mv2r, Mrea); a cell shows the score (%) and its change in points with the interval,
coloured by the change (blue gain, red loss; bold when the interval excludes 0)."""

from __future__ import annotations

from vlmdiag.report.plots.style import COLUMN_WIDTH, FONT, finite, interval_text, minus, title

ABILITIES = ("Mvis", "Mv2r", "Mrea")


def heatmap(result: dict, *, rows: list[str], columns: list[str], scores: dict, deltas: dict, what: str,
            reference: str, caption: str = ""):
    """The annotated heatmap.

    Args:
        scores: ``{row: {column: score 0..1}}``.
        deltas: ``{(row, column): {"delta": points/100, "interval": {"low", "high", "level"}}}``;
            a cell without one (the reference) is grey.
        reference: what the change is against, for the colour bar.
    """
    from matplotlib.figure import Figure
    from matplotlib.colors import TwoSlopeNorm

    import numpy as np

    cell_h = 0.42  # three lines of 7-pt text
    left = 0.2 + 0.058 * max(len(r) for r in rows)  # inches: the longest row label at 7.5 pt
    bottom_block = 0.66 + (0.15 if caption else 0)  # colour bar, its label, the legend line, the caption
    height = 0.6 + cell_h * len(rows) + bottom_block
    fig = Figure(figsize=(COLUMN_WIDTH, height))
    ax = fig.add_axes((left / COLUMN_WIDTH, bottom_block / height, 1 - (left + 0.08) / COLUMN_WIDTH,
                       cell_h * len(rows) / height))
    values = np.full((len(rows), len(columns)), np.nan)
    for i, row in enumerate(rows):
        for j, column in enumerate(columns):
            cell = deltas.get((row, column))
            if cell and finite(cell.get("delta")):
                values[i, j] = 100 * cell["delta"]
    limit = max(5.0, float(np.nanmax(np.abs(values))) if np.isfinite(values).any() else 5.0)
    import matplotlib

    cmap = matplotlib.colormaps["RdBu"].with_extremes(bad="#eeeeee")
    image = ax.imshow(np.ma.masked_invalid(values), cmap=cmap, norm=TwoSlopeNorm(0, -limit, limit), aspect="auto",
                      gid="heatmap")
    for i, row in enumerate(rows):
        for j, column in enumerate(columns):
            score = (scores.get(row) or {}).get(column)
            cell = deltas.get((row, column)) or {}
            lines = [f"{100 * score:.1f}" if finite(score) else "—"]
            interval = cell.get("interval") or {}
            decided = False
            if finite(cell.get("delta")):
                lines.append(f"{100 * cell['delta']:+.1f}")
                if finite(interval.get("low")) and finite(interval.get("high")):
                    lines.append(f"[{100 * interval['low']:+.0f}, {100 * interval['high']:+.0f}]")
                    decided = interval["low"] > 0 or interval["high"] < 0
            strong = finite(values[i, j]) and abs(values[i, j]) > 0.6 * limit
            ax.text(j, i, minus("\n".join(lines)), ha="center", va="center", fontsize=FONT, linespacing=1.1,
                    color="white" if strong else "black", fontweight="bold" if decided else "normal",
                    gid=f"cell:{row}:{column}")
    ax.set_xticks(range(len(columns)), columns, fontsize=FONT + 0.5)
    ax.xaxis.tick_top()
    ax.set_yticks(range(len(rows)), rows, fontsize=FONT + 0.5)
    ax.tick_params(length=0, pad=2)
    for spine in ax.spines.values():
        spine.set_visible(False)
    ax.set_xticks([j + 0.5 for j in range(len(columns) - 1)], minor=True)
    ax.set_yticks([i + 0.5 for i in range(len(rows) - 1)], minor=True)
    ax.grid(which="minor", color="white", lw=1.5)
    ax.tick_params(which="minor", length=0)
    bar_ax = fig.add_axes((left / COLUMN_WIDTH, (bottom_block - 0.2) / height,
                           1 - (left + 0.08) / COLUMN_WIDTH, 0.07 / height))
    bar = fig.colorbar(image, cax=bar_ax, orientation="horizontal")
    bar.ax.tick_params(labelsize=FONT, length=2, pad=1)
    bar.set_label(f"Δ vs {reference} (points); bold: interval excludes 0", fontsize=FONT, labelpad=1.5)
    fig.text(0.08 / COLUMN_WIDTH, (0.06 + (0.15 if caption else 0)) / height,
             "cells: score (%), Δ (points), [interval]", fontsize=FONT, color="#555555", va="bottom", gid="legend")
    if caption:
        fig.text(0.08 / COLUMN_WIDTH, 0.06 / height, caption, fontsize=FONT, gid="caption", va="bottom")
    title(fig, result, what)
    return fig


def _comparison_deltas(m: dict, pairs: dict[str, str]) -> dict:
    """``{(row, ability): comparison}`` from ``metrics["comparisons"]`` keyed ``"ABILITY ROW − REF"``,
    for each ``row: REF`` of ``pairs``."""
    comparisons = m.get("comparisons") or {}
    out = {}
    for row, ref in pairs.items():
        for ability in ABILITIES:
            cell = comparisons.get(f"{ability} {row} − {ref}")
            if isinstance(cell, dict):
                out[(row, ability)] = cell
    return out


def splices(result: dict):
    """Paper Table 2: every Early:Mid:Late splice's scores and Δ vs IN (``splice_table``)."""
    m = result.get("metrics") or {}
    data = m.get("splice_table")
    if not data or not data.get("columns") or not data.get("rows"):
        return None
    models, abilities = list(data["columns"]), list(data["rows"])
    scores = {model: {a: ((data["cells"].get(a) or {}).get(model) or {}).get("score") for a in abilities}
              for model in models}
    deltas = {(model, a): (data["cells"].get(a) or {}).get(model) or {} for model in models for a in abilities}
    regions = m.get("regions") or {}
    cuts = regions.get("cuts")
    caption = (f"Early:Mid:Late source per region; cuts at {cuts[0]}, {cuts[1]} ({regions.get('preset')})"
               if cuts else "Early:Mid:Late source per region")
    return heatmap(result, rows=models, columns=abilities, scores=scores, deltas=deltas,
                   what="Splices (Early:Mid:Late)", reference=data.get("reference", "IN"), caption=caption)


def freezing(result: dict):
    """Paper Table 3: IN, RL and each RL run with a region frozen; Δ vs IN; the caption gives the
    share of RL's gain each frozen run kept (the verdict's statistic) with its interval."""
    m = result.get("metrics") or {}
    scores, models = m.get("scores") or {}, m.get("models") or list((m.get("scores") or {}))
    if not scores or not models:
        return None
    deltas = _comparison_deltas(m, {model: "IN" for model in models if model != "IN"})
    kept = m.get("kept_share") or {}
    caption = "; ".join(f"{name} kept {interval_text(v.get('estimate'), v.get('interval'), 1, '.2f')}"
                        for name, v in kept.items() if isinstance(v, dict))
    return heatmap(result, rows=models, columns=list(ABILITIES), scores=scores, deltas=deltas,
                   what="Freezing a region during RL", reference="IN",
                   caption=f"share of RL's gain: {caption}" if caption else "")


def abilities(result: dict):
    """Paper Fig. 2 / Table 1: Base, IN and RL scores; Δ vs the previous stage."""
    m = result.get("metrics") or {}
    scores, stages = m.get("scores") or {}, m.get("stages") or list((m.get("scores") or {}))
    if not scores or not stages:
        return None
    deltas = _comparison_deltas(m, dict(zip(stages[1:], stages[:-1])))
    return heatmap(result, rows=list(stages), columns=list(ABILITIES), scores=scores, deltas=deltas,
                   what="Fine-grained abilities, Base→IN→RL", reference="previous stage")
