"""One self-contained HTML page of a saved report: ``vlmdiag report PATH --html OUT``.

The page holds everything a reader needs without the run's folder: the verdict table, each
claim's statement, paper source, reason and every condition its verdict read (with its
direction), its figure (embedded as a base64 PNG, rendered from the report by
:mod:`vlmdiag.report.plots`), the environment, the checkpoints, and the probe suite and baseline
sections when the report has them. No external ``src`` or ``href``: it opens offline and can be
attached to a CI run or an e-mail as one file.
"""

from __future__ import annotations

import base64
import os
from html import escape
from pathlib import Path

from vlmdiag.errors import UnsafeOutputError, printable
from vlmdiag.report.terminal import OPS, _effect

COLORS = {"reproduced": "#1a7f37", "not_reproduced": "#cf222e", "inconclusive": "#9a6700", "skipped": "#6e7781",
          "error": "#8250df"}
HOLDS = {True: ("✓", "#1a7f37"), False: ("✗", "#cf222e"), None: ("?", "#9a6700")}
STYLE = """
body{font-family:system-ui,-apple-system,"Segoe UI",sans-serif;max-width:1050px;margin:2em auto;padding:0 1em;
color:#1f2328;line-height:1.45}
h1{font-size:1.5em;margin-bottom:.2em}h2{font-size:1.2em;border-bottom:1px solid #d0d7de;padding-bottom:.2em;
margin-top:2em}h3{font-size:1.05em;margin-bottom:.3em}
table{border-collapse:collapse;margin:.6em 0;font-size:.92em}td,th{border:1px solid #d0d7de;padding:.25em .6em;
text-align:left;vertical-align:top}th{background:#f6f8fa}code,.mono{font-family:ui-monospace,monospace;
font-size:.92em}.verdict{font-weight:600}.muted{color:#656d76}.claim{margin-bottom:2.2em}
.claim figure{margin:.6em 0}.claim img{width:3.3in;max-width:100%;border:1px solid #eaeef2}
ul.conditions{list-style:none;padding-left:.2em;margin:.3em 0}ul.conditions li{margin:.15em 0}
"""


def _verdict(verdict: str) -> str:
    return f'<span class="verdict" style="color:{COLORS.get(verdict, "#1f2328")}">{escape(verdict)}</span>'


def anchor(result: dict) -> str:
    """The page-internal id of a result's section: ``claim-ID--RECIPE`` with unsafe characters
    replaced."""
    import re

    return "claim-" + re.sub(r"[^\w.-]+", "_", f"{result['id']}--{result['recipe']}")


def _number(value) -> str:
    return f"{value:.4g}" if isinstance(value, (int, float)) and not isinstance(value, bool) else escape(str(value))


def _condition(c: dict) -> str:
    mark, color = HOLDS.get(c.get("holds"), HOLDS[None])
    value = "—" if c.get("statistic") is None else _number(c["statistic"])
    interval = c.get("interval") or {}
    if interval and interval.get("level", 1) < 1:
        value += f" [{_number(interval.get('low'))}, {_number(interval.get('high'))}] ({interval['level']:.0%})"
    op = OPS.get(c.get("op"), c.get("op") or "")
    return (f'<li><span style="color:{color};font-weight:700">{mark}</span> {escape(str(c.get("name")))}: '
            f'<span class="mono">{escape(value)} {escape(str(op))} {_number(c.get("threshold"))}</span></li>')


def _png(fig_bytes: bytes | None, alt: str) -> str:
    if not fig_bytes:
        return ""
    data = base64.b64encode(fig_bytes).decode("ascii")
    return f'<figure><img alt="{escape(alt)}" src="data:image/png;base64,{data}"></figure>'


def _rows(pairs) -> str:
    return "".join(f"<tr><th>{escape(str(k))}</th><td>{escape(str(v))}</td></tr>" for k, v in pairs)


def _flat(value, prefix: str = "") -> list[tuple[str, object]]:
    """Nested dicts as ``a.b: value`` rows (lists joined)."""
    if isinstance(value, dict):
        out = []
        for key, item in value.items():
            out += _flat(item, f"{prefix}{key}." if isinstance(item, dict) else f"{prefix}{key}")
        return out
    if isinstance(value, list):
        value = ", ".join(map(str, value))
    return [(prefix.rstrip("."), value)]


def _claim(result: dict) -> str:
    from vlmdiag.report.plots import plot_result

    m = result.get("metrics") or {}
    gate = "gated" if result.get("gate") else "not gated"
    parts = [f'<section class="claim" id="{anchor(result)}">',
             f"<h3><code>{escape(result['id'])}</code> [{escape(result['recipe'])}]: {_verdict(result['verdict'])} "
             f'<span class="muted">({gate})</span></h3>']
    if result.get("statement"):
        source = f' <span class="muted">(paper {escape(str(result["source"]))})</span>' if result.get("source") else ""
        parts.append(f"<p><em>{escape(str(result['statement']))}</em>{source}</p>")
    if result.get("reason"):
        parts.append(f"<p>{escape(str(result['reason']))}</p>")
    conditions = m.get("conditions") or []
    if conditions and result["verdict"] not in ("skipped", "error"):
        parts.append('<p class="muted">Conditions the verdict read (✓ holds, ✗ fails, ? the interval straddles '
                     'the threshold):</p><ul class="conditions">' + "".join(map(_condition, conditions)) + "</ul>")
    if m.get("verdicts_by_cut"):
        robust = {True: "robust to moving a cut by one layer", False: "not robust to moving a cut by one layer"}
        parts.append(f"<p class=\"muted\">{escape(robust.get(m.get('robust_to_cut'), 'cut sensitivity'))}: "
                     + escape("; ".join(f"{k}: {v}" for k, v in m["verdicts_by_cut"].items())) + "</p>")
    try:
        parts.append(_png(plot_result(result), f"figure of {result['id']} [{result['recipe']}]"))
    except Exception as error:  # noqa: BLE001 — a figure that cannot be drawn must not cost the page
        parts.append(f'<p class="muted">(no figure: {escape(type(error).__name__)}: {escape(str(error))})</p>')
    parts.append("</section>")
    return "\n".join(parts)


def _regions(results: list[dict]) -> str:
    """``--regions localized``: the base model's curves each recipe's cuts came from."""
    from vlmdiag.report.plots import curves
    from vlmdiag.report.plots.style import RC, render_png

    import matplotlib

    out, seen = [], set()
    for r in results:
        regions = (r.get("metrics") or {}).get("regions") or {}
        if not regions.get("derivation") or r["recipe"] in seen:
            continue
        seen.add(r["recipe"])
        with matplotlib.rc_context(RC):
            fig = curves.derivation(r)
            png = render_png(fig) if fig is not None else None
        cuts = ", ".join(f"{name} {regions[name][0]}–{regions[name][1]}" for name in ("Early", "Mid", "Late")
                         if name in regions)
        out.append(f"<h3>Localized regions [{escape(r['recipe'])}]</h3><p>{escape(cuts)}</p>"
                   + _png(png, f"localized regions of {r['recipe']}"))
    return "\n".join(out)


def render_html(report: dict, *, source: str | os.PathLike | None = None) -> str:
    """The page as text.

    Args:
        report: a JSON report (:func:`vlmdiag.report.document.load_report`).
        source: the report's path, shown in the header.
    """
    from vlmdiag.report.baseline import cell_text

    results = sorted(report["claims"], key=lambda r: (r["id"], r["recipe"]))
    counts: dict[str, int] = {}
    for r in results:
        counts[r["verdict"]] = counts.get(r["verdict"], 0) + 1
    baseline = report.get("baseline")
    title = f"vlmdiag report{f': {Path(source).name}' if source else ''}"
    head = [f"<h1>{escape(title)}</h1>",
            '<p class="muted">' + escape(
                f"vlmdiag {report.get('vlmdiag_version', '?')}, schema {report.get('schema_version')}, "
                f"created {report.get('created', '?')}; regions {report.get('regions', '?')}; thresholds "
                f"{report.get('thresholds', '?')}" + ("" if report.get("complete", True) else
                                                      "; INCOMPLETE run (not every claim ran)")
                + (f"; source {source}" if source else "")) + "</p>",
            "<p>" + ", ".join(f"{n} {_verdict(v)}" for v, n in sorted(counts.items())) + "</p>"]
    header = ["claim", "recipe", "verdict", "gated", "effect [interval] vs threshold"]
    if baseline is not None:
        header.append("vs baseline")
    rows = []
    for r in results:
        cells = [f'<a href="#{anchor(r)}"><code>{escape(r["id"])}</code></a>', escape(r["recipe"]),
                 _verdict(r["verdict"]), "yes" if r.get("gate") else "no",
                 f'<span class="mono">{escape(_effect(r) or "—")}</span>']
        if baseline is not None:
            cells.append(escape(cell_text(r.get("baseline")) or "—"))
        rows.append("<tr>" + "".join(f"<td>{c}</td>" for c in cells) + "</tr>")
    table = ("<h2>Verdicts</h2><table><tr>" + "".join(f"<th>{escape(h)}</th>" for h in header) + "</tr>"
             + "".join(rows) + "</table>")
    body = [*head, table]
    if baseline is not None:
        regressions = baseline.get("regressions") or []
        body.append("<h2>Baseline</h2><p>" + escape(
            f"compared with {baseline.get('path')} (vlmdiag {baseline.get('vlmdiag_version')}, "
            f"{baseline.get('created')}): {len(regressions)} regression{'s' if len(regressions) != 1 else ''}")
            + "</p>")
    body.append("<h2>Claims</h2>")
    body += [_claim(r) for r in results]
    regions = _regions(results)
    if regions:
        body.append("<h2>Regions</h2>" + regions)
    if report.get("probes"):
        body.append("<h2>Probes</h2><table>" + _rows(_flat(report["probes"])) + "</table>")
    checkpoints = report.get("checkpoints") or {}
    if checkpoints:
        rows = "".join(
            f"<tr><td>{escape(str(recipe))}</td><td>{escape(str(role))}</td><td><code>{escape(str(c.get('spec', '')))}"
            f"</code></td><td><code>{escape(str(c.get('path', '')))}</code></td><td><code>"
            f"{escape(str(c.get('fingerprint', '')))}</code></td></tr>"
            for recipe, roles in checkpoints.items() if isinstance(roles, dict)
            for role, c in roles.items() if isinstance(c, dict))
        body.append("<h2>Checkpoints</h2><table><tr><th>recipe</th><th>role</th><th>spec</th><th>path</th>"
                    "<th>fingerprint</th></tr>" + rows + "</table>")
    if report.get("environment"):
        body.append("<h2>Environment</h2><table>" + _rows(_flat(report["environment"])) + "</table>")
    if report.get("cache"):
        body.append("<h2>Results cache</h2><table>" + _rows(_flat(report["cache"])) + "</table>")
    return ("<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
            "<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">"
            f"<title>{escape(title)}</title><style>{STYLE}</style></head><body>\n"
            + "\n".join(body) + "\n</body></html>\n")


def _looks_like_checkpoint(folder: Path) -> bool:
    """A model folder: a ``config.json`` beside weights (``*.safetensors``, ``*.bin``)."""
    try:
        return (folder / "config.json").is_file() and any(
            p.suffix in (".safetensors", ".bin") for p in folder.iterdir())
    except OSError:
        return False


def check_html_output(out: str | os.PathLike, report: dict, source: str | os.PathLike) -> Path:
    """``--html OUT`` before anything is written: absolute, not the report itself, not inside a
    checkpoint folder the report names nor any folder that holds a model (``config.json`` with
    weights), and a regular file or nothing (symlinks followed).

    Raises:
        UnsafeOutputError (a UsageError): naming OUT and why.
    """
    from vlmdiag.paths import check_output, real

    out = Path(out).absolute()
    shown = printable(out)
    checkpoints = [c["path"] for roles in (report.get("checkpoints") or {}).values() if isinstance(roles, dict)
                   for c in roles.values() if isinstance(c, dict) and isinstance(c.get("path"), str)]
    check_output(out, "--html", checkpoints, fix="; write the page elsewhere")
    target = real(out)
    if target == real(source):
        raise UnsafeOutputError(f"{shown}: --html would replace the report it renders; name another file")
    for folder in target.parents:
        if _looks_like_checkpoint(folder):
            raise UnsafeOutputError(f"{shown}: --html lies inside the checkpoint {printable(folder)}; vlmdiag "
                                    f"never writes into a checkpoint folder; write the page elsewhere")
    if not target.parent.is_dir():
        raise UnsafeOutputError(f"{shown}: --html folder {printable(target.parent)} does not exist")
    return out


def write_html(report: dict, out: str | os.PathLike, *, source: str | os.PathLike) -> Path:
    """Check ``out`` (:func:`check_html_output`), then write the page atomically
    (:func:`vlmdiag.atomic.write_atomic`). Returns the path written."""
    from vlmdiag.atomic import write_atomic

    out = check_html_output(out, report, source)
    return write_atomic(out, render_html(report, source=source))
