"""The Markdown summary of a run, for CI pages: ``--report-md PATH`` and GitHub Actions' job summary
(``$GITHUB_STEP_SUMMARY``). One row per claim and recipe: verdict, effect with its interval and
threshold, the change against ``--baseline``, and a link to the claim's figure; below it, every
condition each verdict read."""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path

from vlmdiag.errors import printable
from vlmdiag.report.baseline import cell_text
from vlmdiag.report.terminal import _effect, condition_text

MARKS = {"reproduced": "✅", "not_reproduced": "❌", "inconclusive": "⚠️", "skipped": "⏭️", "error": "💥"}


def _cell(text: str) -> str:
    """Table-cell text: pipes escaped, one line."""
    return " ".join(str(text).replace("|", "\\|").split())


def render_markdown(results: list[dict], *, regions: str, figures: Path | None = None,
                    relative_to: Path | None = None, baseline: dict | None = None) -> str:
    """The summary as Markdown text.

    Args:
        results: the claim results (the JSON report's ``claims``).
        figures: the plots folder of the JSON report (None: no figures were written); a figure is
            linked when its file exists, relative to ``relative_to`` (the Markdown file's folder)
            when given, else by absolute path.
        baseline: the report's ``baseline`` section (its path and regressions), or None.
    """
    from vlmdiag.report.plots import plot_file_name

    results = sorted(results, key=lambda r: (r["id"], r["recipe"]))
    counts = {}
    for r in results:
        counts[r["verdict"]] = counts.get(r["verdict"], 0) + 1
    lines = [f"## vlmdiag: {len(results)} results, regions `{regions}`", "",
             ", ".join(f"{MARKS.get(v, '')} {n} {v}" for v, n in sorted(counts.items())), ""]
    if baseline is not None:
        regressions = baseline.get("regressions") or []
        lines += [f"Compared with the baseline `{baseline['path']}` (vlmdiag {baseline.get('vlmdiag_version')}, "
                  f"{baseline.get('created')}): **{len(regressions)} regression{'s' if len(regressions) != 1 else ''}**", ""]
    header = ["claim", "recipe", "verdict", "effect [interval] vs threshold"]
    if baseline is not None:
        header.append("vs baseline")
    header.append("figure")
    lines += ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for r in results:
        gate = " (gated)" if r.get("gate") else ""
        row = [f"`{r['id']}`", _cell(r["recipe"]), f"{MARKS.get(r['verdict'], '')} **{r['verdict']}**{gate}",
               _cell(_effect(r) or "—")]
        if baseline is not None:
            row.append(_cell(cell_text(r.get("baseline")) or "—"))
        figure = figures / plot_file_name(r) if figures is not None else None
        if figure is not None and figure.is_file():
            target = os.path.relpath(figure, relative_to) if relative_to is not None else str(figure)
            row.append(f"[figure]({Path(target).as_posix()})")
        else:
            row.append("—")
        lines.append("| " + " | ".join(row) + " |")
    lines += ["", "<details><summary>Why: every condition each verdict read "
              "(✓ holds, ✗ fails, ? its interval straddles the threshold)</summary>", ""]
    for r in results:
        conditions = (r.get("metrics") or {}).get("conditions") or []
        if r["verdict"] in ("skipped", "error") or not conditions:
            lines.append(f"- `{r['id']}` [{_cell(r['recipe'])}] {r['verdict']}: {_cell(r.get('reason', ''))}")
            continue
        lines.append(f"- `{r['id']}` [{_cell(r['recipe'])}] {r['verdict']}: "
                     + "; ".join(_cell(condition_text(c)) for c in conditions))
    lines += ["", "</details>", ""]
    return "\n".join(lines)


def write_summaries(results: list[dict], options, *, regions: str, report_json: Path | None,
                    environ: Mapping[str, str], write_md: bool = True) -> str | None:
    """Write ``--report-md`` (atomically, never into a checkpoint folder or over anything but a
    regular file: :func:`vlmdiag.atomic.write_atomic`; not when ``write_md`` is False) and append
    to ``$GITHUB_STEP_SUMMARY`` when it is set.

    Returns a one-line problem (the file and why) when a summary could not be written, else None;
    the JSON report is never affected.
    """
    from vlmdiag.atomic import write_atomic

    figures = report_json.parent / f"{report_json.stem}_plots" if report_json else None
    baseline = options.baseline_summary(results)
    if options.report_md is not None and write_md:
        text = render_markdown(results, regions=regions, figures=figures, relative_to=options.report_md.parent,
                               baseline=baseline)
        try:
            write_atomic(options.report_md, text)
        except OSError as error:
            return printable(f"--report-md {options.report_md}: cannot write the summary "
                             f"({error.strerror or error})")
    step_summary = environ.get("GITHUB_STEP_SUMMARY")
    if step_summary:
        # The job page cannot show files of the runner: figures are named, not linked.
        text = render_markdown(results, regions=regions, figures=None, baseline=baseline)
        if figures is not None:
            text += f"\nFigures: `{figures}` (upload it as an artifact to see them)\n"
        try:
            with open(step_summary, "a", encoding="utf-8") as handle:
                handle.write(text + "\n")
        except OSError as error:
            return printable(f"$GITHUB_STEP_SUMMARY {step_summary}: cannot append the summary "
                             f"({error.strerror or error})")
    return None
