"""The terminal summary: one rich table, claims × recipes (SPEC §5), and a Table-2-style table of
the splices for each transplant result (paper §3.3)."""

from __future__ import annotations

import io
import math

from rich.console import Console
from rich.table import Table
from rich.text import Text

from vlmdiag.errors import printable

STYLES = {"reproduced": "bold green", "not_reproduced": "bold red", "inconclusive": "yellow",
          "skipped": "dim", "error": "bold magenta"}
_BARS = "▁▂▃▄▅▆▇█"


def sparkline(values: list, cuts: tuple[int, int] | None = None) -> str:
    """One bar per layer, scaled to the finite values' range; ``│`` marks the region cuts
    (0-based layer indices where Mid and Late start); ``·`` is a layer without a value."""
    finite = [v for v in values if isinstance(v, (int, float)) and math.isfinite(v)]
    if not finite:
        return ""
    low, high = min(finite), max(finite)
    out = []
    for i, v in enumerate(values):
        if cuts and i in cuts:
            out.append("│")
        if not isinstance(v, (int, float)) or not math.isfinite(v):
            out.append("·")
        else:
            out.append(_BARS[0 if high == low else round((v - low) / (high - low) * (len(_BARS) - 1))])
    return "".join(out)


OPS = {">": ">", "<": "<", ">=": "≥", "<=": "≤"}
HOLDS = {True: "✓", False: "✗", None: "?"}
CONDITIONS_LEGEND = "conditions: ✓ holds, ✗ fails, ? its interval straddles the threshold"


def _number(statistic, interval) -> str:
    text = f"{statistic:.3g}"
    if interval and interval.get("level", 1) < 1:
        text += f" [{interval['low']:.3g}, {interval['high']:.3g}]"
    return text


def _effect(result: dict) -> str:
    """``0.00252 [0.00124, 0.00384] > 0``: the statistic, its interval and the threshold, with the
    direction of the condition it belongs to (``vs`` when no recorded condition matches)."""
    m = result.get("metrics") or {}
    statistic, interval, threshold = m.get("statistic"), m.get("interval"), m.get("threshold")
    if statistic is None:
        return ""
    text = _number(statistic, interval)
    if threshold is not None:
        op = next((c["op"] for c in m.get("conditions") or () if c.get("threshold") == threshold
                   and c.get("statistic") is not None and math.isclose(c["statistic"], statistic)), None)
        text += f" {OPS.get(op, 'vs')} {threshold:g}"
    return text


def condition_text(c: dict) -> str:
    """``✗ margin over Early -0.0003 [-0.001, -0.0001] > 0`` (see :class:`vlmdiag.claims.registry.Condition`)."""
    value = "—" if c.get("statistic") is None else _number(c["statistic"], c.get("interval"))
    return f"{HOLDS.get(c.get('holds'), '?')} {c['name']} {value} {OPS.get(c['op'], c['op'])} {c['threshold']:g}"


def conditions_line(result: dict) -> Text | None:
    """Every condition the verdict read, on one line (folded by the console), or None."""
    conditions = (result.get("metrics") or {}).get("conditions")
    if not conditions or result["verdict"] in ("skipped", "error"):
        return None
    gate = "gated" if result.get("gate") else "not gated"
    line = Text(f"{result['id']} [{result['recipe']}] {result['verdict']} ({gate}): ",
                style=STYLES.get(result["verdict"], ""))
    for i, c in enumerate(conditions):
        line.append("; " if i else "")
        line.append(condition_text(c), style={True: "green", False: "red"}.get(c.get("holds"), "yellow"))
    return line


def _percent(value: float) -> str:
    return f"{100 * value:.1f}"


def splice_table(result: dict) -> Table | None:
    """The splices of one transplant result like the paper's Table 2: rows Mvis/Mv2r/Mrea,
    columns the models (IN, the six Early:Mid:Late splices, RL), each cell the score in % and,
    below it, Δ vs IN in points with its interval (green when the interval lies above 0, red
    when below). None when the result has no ``splice_table`` metric."""
    data = (result.get("metrics") or {}).get("splice_table")
    if not data:
        return None
    regions = (result.get("metrics") or {}).get("regions") or {}
    levels = {cell["interval"].get("level") for row in data["cells"].values() for cell in row.values()
              if cell and cell.get("interval")}
    level = f"{levels.pop():.0%} " if len(levels) == 1 else ""
    caption = f"cells: score %; Δ vs {data['reference']} in points [{level}interval]"
    if regions.get("cuts"):
        caption += f"; cuts {regions['cuts'][0]},{regions['cuts'][1]} ({regions.get('preset')})"
    # Text, not a str: "[recipe]" must not be read as rich markup
    table = Table(title=Text(f"{result['id']} [{result['recipe']}]: Early:Mid:Late splices"),
                  caption=Text(caption), show_lines=True)
    table.add_column("ability", no_wrap=True)
    for column in data["columns"]:
        table.add_column(column, justify="right", overflow="fold")  # never cut "IN:RL:RL" to "IN:RL…"
    for row in data["rows"]:
        cells = [Text(row)]
        for column in data["columns"]:
            cell = data["cells"].get(row, {}).get(column) or {}
            if cell.get("score") is None:
                cells.append(Text("—", style="dim"))
                continue
            text = Text(_percent(cell["score"]))
            if cell.get("delta") is not None:
                interval = cell.get("interval") or {}
                low, high = interval.get("low"), interval.get("high")
                style = "green" if low is not None and low > 0 else "red" if high is not None and high < 0 else ""
                text.append(f"\n{100 * cell['delta']:+.1f}", style=style)
                if low is not None and high is not None:
                    text.append(f"\n[{100 * low:+.0f}, {100 * high:+.0f}]", style=style or "dim")
            cells.append(text)
        table.add_row(*cells)
    return table


def localized_line(recipe: str, results: list[dict]) -> Text | None:
    """``--regions localized``: the cuts derived for ``recipe`` and where each came from, or None
    when no result of the recipe carries a derivation."""
    regions = next((r["metrics"]["regions"] for r in results
                    if ((r.get("metrics") or {}).get("regions") or {}).get("derivation")), None)
    if regions is None:
        return None
    d = regions["derivation"]
    parts = []
    for key, label in (("early_end", "Mid starts"), ("late_start", "Late starts")):
        cut = d.get(key) or {}
        parts.append(f"{label} at layer {cut.get('layer')} ({'derived' if cut.get('derived') else 'fallback'}: "
                     f"{cut.get('why')})")
    ranges = ", ".join(f"{name} {regions[name][0]}–{regions[name][1]}" for name in ("Early", "Mid", "Late"))
    return Text(f"localized regions [{recipe}]: {ranges}; " + "; ".join(parts))


def baseline_cell(entry: dict | None) -> Text:
    """The ``vs baseline`` cell: the change (:func:`vlmdiag.report.baseline.cell_text`), red for a
    regression, green for an improvement."""
    from vlmdiag.report.baseline import cell_text

    if not entry:
        return Text("—")
    style = "bold red" if entry.get("regression") else "green" if entry.get("change") == "improvement" else ""
    return Text(cell_text(entry).replace("; ", "\n"), style=style)


def render(report: dict, *, width: int = 120, color: bool = True) -> str:
    """The summary table and one line per skipped/errored claim, as text (ANSI when ``color``)."""
    results = report["claims"]
    recipes = list(dict.fromkeys(r["recipe"] for r in results))
    claims = list(dict.fromkeys(r["id"] for r in sorted(results, key=lambda r: r["id"])))
    by_key = {(r["id"], r["recipe"]): r for r in results}
    table = Table(title=f"vlmdiag — regions: {report.get('regions')}", show_lines=True)
    table.add_column("claim", no_wrap=True)
    compared = any(r.get("baseline") for r in results)  # --baseline: a column of changes per recipe
    for recipe in recipes:
        table.add_column(recipe, overflow="fold")  # a narrow terminal folds a verdict, never cuts it
        if compared:
            table.add_column(f"{recipe} vs baseline", overflow="fold")
    notes, why = [], []
    for claim_id in claims:
        row = [Text(claim_id)]
        for recipe in recipes:
            result = by_key.get((claim_id, recipe))
            if result is None:
                row.extend([Text("—")] * (2 if compared else 1))
                continue
            verdict = result["verdict"]
            cell = Text(verdict + ("" if not result.get("gate") else " (gate)"), style=STYLES.get(verdict, ""))
            m = result.get("metrics") or {}
            if _effect(result):
                cell.append("\n" + _effect(result))
            series = m.get(result.get("series") or "")
            if isinstance(series, list):
                cuts = tuple((m.get("regions") or {}).get("cuts") or ()) or None
                cell.append("\n" + sparkline(series, cuts))
            if m.get("robust_to_cut") is False:
                cell.append("\nnot robust to the cut", style="yellow")
            row.append(cell)
            if compared:
                row.append(baseline_cell(result.get("baseline")))
            if verdict in ("skipped", "error") or not _effect(result):  # a verdict without a number: say why
                # printable: a reason quotes file and tensor names, which must not drive the terminal
                notes.append(Text(printable(f"{claim_id} [{recipe}] {verdict}: {result['reason']}"),
                                  style=STYLES.get(verdict, "")))
            line = conditions_line(result)
            if line is not None:
                why.append(line)
        table.add_row(*row)
    buffer = io.StringIO()
    console = Console(file=buffer, width=width, force_terminal=color, color_system="standard" if color else None)
    console.print(table)
    for note in notes:
        console.print(note)
    if why:
        console.print(Text(CONDITIONS_LEGEND, style="dim"))
    for line in why:
        console.print(line)
    for recipe in recipes:
        line = localized_line(recipe, [r for r in results if r["recipe"] == recipe])
        if line is not None:
            console.print(line)
    for result in sorted(results, key=lambda r: (r["recipe"], r["id"])):
        splices = splice_table(result)
        if splices is not None:
            console.print(splices)
    return buffer.getvalue()
