"""Comparing a run with an earlier JSON report (``--baseline PATH``), as pytest-benchmark's
``--benchmark-compare`` and pytest-regressions do for their data. Pure functions on report
dictionaries; the plugin wires them in.

Per claim and recipe (:func:`compare_claim`):

* the verdict change: ``same``, ``regression`` (the verdict got worse: ``reproduced`` →
  ``inconclusive`` or ``not_reproduced``, anything → ``error``), ``improvement``, ``changed``
  (``error`` → ``not_reproduced``), ``unmeasured`` (either run ``skipped`` it) or ``new`` (the
  baseline lacks it);
* the statistic against this run's interval: it has ``moved`` when the baseline's value lies
  outside this run's interval (for an exact statistic: beyond the tolerance), and moved
  ``against_claim`` when it moved toward the failing side of the claim's condition;
* every per-layer curve in ``metrics`` that both reports hold, layer by layer within the
  tolerances of ``baseline`` in ``thresholds.yaml`` (``numpy.isclose``);
* which of the verdict's conditions flipped.

A regression is a verdict that got worse or a statistic that moved against the claim. Curves
outside their tolerance are reported (``drift``) but are not regressions: a new recipe is expected
to move them, and the verdict is what the claim says.
"""

from __future__ import annotations

import math
from pathlib import Path

from vlmdiag.errors import UsageError

# Report schema versions this vlmdiag compares with (1: before metrics.conditions and baseline).
BASELINE_SCHEMAS = (1, 2)
_RANK = {"reproduced": 2, "inconclusive": 1, "not_reproduced": 0, "error": -1}


def load_baseline(path: str | Path) -> dict:
    """Read an earlier report to compare with.

    Raises:
        UsageError: unreadable, not a vlmdiag report, or a ``schema_version`` this vlmdiag does
            not compare with (the message names the file and the version).
    """
    from vlmdiag.report.document import load_report

    try:
        report = load_report(path)
    except UsageError as error:
        raise UsageError(f"--baseline {error}") from None
    version = report["schema_version"]
    if version not in BASELINE_SCHEMAS:
        raise UsageError(f"--baseline {path}: report schema_version {version} is older than this vlmdiag compares "
                         f"with ({', '.join(map(str, BASELINE_SCHEMAS))}); rerun the baseline's checkpoints "
                         f"with this vlmdiag to make a new baseline")
    return report


def check_comparable(baseline: dict, path: str | Path, *, regions: str, layers: dict[str, int],
                     claim_ids, probes: dict | None = None) -> None:
    """Refuse a comparison that would mean nothing.

    Args:
        baseline: the report of :func:`load_baseline`.
        regions: this run's ``--regions`` value; layers: recipe → its LLM decoder layer count;
        claim_ids: the claims this vlmdiag knows; probes: this run's ``probes`` section, if any.

    Raises:
        UsageError (one line naming ``path``): no recipe or no claim in common, another
            ``--regions``, another layer count for a common recipe, or another probe suite (its
            :func:`~vlmdiag.plugin.probes.probes_identity`: name, answer format, budget).
    """
    theirs = {c["recipe"] for c in baseline["claims"]}
    common = sorted(theirs & set(layers))
    if not common:
        raise UsageError(f"--baseline {path}: its recipes ({', '.join(sorted(theirs)) or 'none'}) share none with "
                         f"this run's ({', '.join(sorted(layers))}); name the recipes alike (--recipe NAME=...)")
    if not {c["id"] for c in baseline["claims"]} & set(claim_ids):
        raise UsageError(f"--baseline {path}: none of its claims ({', '.join(sorted({c['id'] for c in baseline['claims']}))})"
                         f" is a claim this vlmdiag knows")
    if baseline.get("regions") != regions:
        raise UsageError(f"--baseline {path}: judged at --regions {baseline.get('regions')}, this run at {regions}; "
                         f"pass --regions={baseline.get('regions')} to compare")
    for recipe in common:
        counts = {(c.get("metrics") or {}).get("regions", {}).get("num_layers") for c in baseline["claims"]
                  if c["recipe"] == recipe} - {None}
        if counts and counts != {layers[recipe]}:
            raise UsageError(f"--baseline {path}: recipe {recipe}: its checkpoints have {'/'.join(map(str, sorted(counts)))} "
                             f"LLM layers, this run's {layers[recipe]}: per-layer results cannot be compared")
    if probes is not None and baseline.get("probes") is not None:
        # Only what identifies the suite before any item is drawn: the items and their hash follow
        # the claims a run selected, and the source holds paths that move with a checkout. A key
        # one report lacks (an older vlmdiag's) is not compared.
        from vlmdiag.plugin.probes import probes_identity

        ours, theirs_ = probes_identity(probes), probes_identity(baseline["probes"])
        differ = sorted(k for k in ours if k in probes and k in baseline["probes"] and ours[k] != theirs_[k])
        if differ:
            raise UsageError(f"--baseline {path}: another probe suite (differs in {', '.join(differ)}): "
                             f"the inference claims' numbers cannot be compared")


def index(baseline: dict) -> dict[tuple[str, str], dict]:
    """``{(claim id, recipe): claim result}`` of a report."""
    return {(c["id"], c["recipe"]): c for c in baseline["claims"]}


def verdict_change(then: str, now: str) -> str:
    """``same``, ``regression``, ``improvement``, ``changed`` or ``unmeasured`` (see the module)."""
    if then == now:
        return "same"
    if "skipped" in (then, now):
        return "unmeasured"
    if now == "error":
        return "regression"
    if then == "error":
        return "changed"
    return "regression" if _RANK[now] < _RANK[then] else "improvement"


def _op(result: dict) -> str | None:
    """The direction of the condition the headline statistic belongs to (``>``, ``<``, ...)."""
    m = result.get("metrics") or {}
    for c in m.get("conditions") or ():
        if (c.get("statistic") is not None and m.get("statistic") is not None
                and math.isclose(c["statistic"], m["statistic"]) and c.get("threshold") == m.get("threshold")):
            return c["op"]
    return None


def _close(now: float, then: float, tolerance) -> bool:
    return abs(now - then) <= tolerance.atol + tolerance.rtol * abs(then)


def statistic_change(now: dict, then: dict, tolerance) -> dict | None:
    """The headline statistic against this run's interval, or None when either lacks one:
    ``baseline``, ``current``, ``delta``, ``moved`` (the baseline's value lies outside this run's
    interval, or beyond the tolerance for an exact statistic), ``against_claim`` (moved toward the
    failing side of the claim's condition; None when the direction is unknown), ``threshold_changed``."""
    m, b = now.get("metrics") or {}, then.get("metrics") or {}
    current, baseline = m.get("statistic"), b.get("statistic")
    if current is None or baseline is None:
        return None
    interval = m.get("interval") or {}
    sampled = interval.get("level", 1) < 1 and interval.get("low") is not None
    moved = not (interval["low"] <= baseline <= interval["high"]) if sampled else not _close(current, baseline, tolerance)
    op = _op(now) or _op(then)
    against = None
    if op is not None:
        against = moved and (current < baseline if op in (">", ">=") else current > baseline)
    return {"baseline": baseline, "current": current, "delta": current - baseline, "moved": moved,
            "against_claim": against, "op": op, "interval": interval or None,
            "threshold_changed": b.get("threshold") != m.get("threshold")}


def _numeric_list(value) -> bool:
    return (isinstance(value, list) and bool(value)
            and all(v is None or (isinstance(v, (int, float)) and not isinstance(v, bool)) for v in value)
            and any(v is not None for v in value))


def curve_changes(now: dict, then: dict, tolerance) -> dict[str, dict]:
    """Per per-layer curve that both results hold with the same length: ``max_abs_diff``,
    ``layers_outside`` (0-based indices where ``|now − then| > atol + rtol·|then|``; a value present
    in one run only counts as outside) and ``within``."""
    m, b = now.get("metrics") or {}, then.get("metrics") or {}
    out = {}
    for name, values in m.items():
        theirs = b.get(name)
        if not (_numeric_list(values) and _numeric_list(theirs) and len(values) == len(theirs)):
            continue
        outside, largest = [], 0.0
        for layer, (x, y) in enumerate(zip(values, theirs)):
            if x is None and y is None:
                continue
            if x is None or y is None or not _close(x, y, tolerance):
                outside.append(layer)
            if x is not None and y is not None:
                largest = max(largest, abs(x - y))
        out[name] = {"max_abs_diff": largest, "layers_outside": outside, "within": not outside}
    return out


def conditions_changed(now: dict, then: dict) -> list[dict]:
    """The conditions (by name) whose ``holds`` differs between the two results."""
    theirs = {c["name"]: c for c in (then.get("metrics") or {}).get("conditions") or ()}
    return [{"name": c["name"], "baseline": theirs[c["name"]].get("holds"), "current": c.get("holds")}
            for c in (now.get("metrics") or {}).get("conditions") or ()
            if c["name"] in theirs and theirs[c["name"]].get("holds") != c.get("holds")]


def compare_claim(now: dict, then: dict | None, tolerance) -> dict:
    """One result against the baseline's result of the same claim and recipe (None: it has none).

    Returns the claim's ``baseline`` entry: ``baseline_verdict``, ``verdict``, ``change`` (see
    :func:`verdict_change`, or ``new``), ``statistic`` (:func:`statistic_change`), ``curves``
    (:func:`curve_changes`), ``curves_outside`` (names), ``conditions_changed``, ``regression``
    (bool) and ``why`` (one line).
    """
    if then is None:
        return {"baseline_verdict": None, "verdict": now["verdict"], "change": "new", "statistic": None,
                "curves": {}, "curves_outside": [], "conditions_changed": [], "regression": False,
                "why": "not in the baseline"}
    change = verdict_change(then["verdict"], now["verdict"])
    measured = change != "unmeasured" and "error" not in (then["verdict"], now["verdict"])
    statistic = statistic_change(now, then, tolerance) if measured else None
    curves = curve_changes(now, then, tolerance) if measured else {}
    outside = sorted(name for name, c in curves.items() if not c["within"])
    flipped = conditions_changed(now, then) if measured else []
    against = bool(statistic and statistic["against_claim"])
    why = [f"{then['verdict']} → {now['verdict']}" if change != "same" else f"{now['verdict']} as before"]
    if statistic and statistic["moved"]:
        where = (f"outside [{statistic['interval']['low']:.3g}, {statistic['interval']['high']:.3g}]"
                 if statistic["interval"] and statistic["interval"].get("level", 1) < 1 else "beyond tolerance")
        why.append(f"statistic {statistic['baseline']:.3g} → {statistic['current']:.3g} ({where}"
                   + (", against the claim" if against else "") + ")")
    for c in flipped:
        why.append(f"{c['name']}: {_mark(c['baseline'])} → {_mark(c['current'])}")
    if outside:
        why.append(f"{len(outside)} of {len(curves)} curves beyond tolerance")
    if statistic and statistic["threshold_changed"]:
        why.append("threshold changed")
    return {"baseline_verdict": then["verdict"], "verdict": now["verdict"], "change": change,
            "statistic": statistic, "curves": curves, "curves_outside": outside, "conditions_changed": flipped,
            "regression": change == "regression" or against, "why": "; ".join(why)}


def _mark(holds) -> str:
    return {True: "✓", False: "✗"}.get(holds, "?")


def summary(results: list[dict], baseline: dict, path: str | Path) -> dict:
    """The report's top-level ``baseline`` section: ``path``, the baseline's ``schema_version``,
    ``vlmdiag_version``, ``created`` and ``checkpoints``; ``regressions`` (``[{id, recipe, why}]``),
    ``counts`` per change, and ``not_run`` (its results, for this run's recipes, that this run did
    not produce)."""
    entries = [r for r in results if r.get("baseline")]
    run = {(r["id"], r["recipe"]) for r in results}
    recipes = {r["recipe"] for r in results}
    counts: dict[str, int] = {}
    for r in entries:
        counts[r["baseline"]["change"]] = counts.get(r["baseline"]["change"], 0) + 1
    return {"path": str(path), "schema_version": baseline.get("schema_version"),
            "vlmdiag_version": baseline.get("vlmdiag_version"), "created": baseline.get("created"),
            "checkpoints": baseline.get("checkpoints"),
            "regressions": [{"id": r["id"], "recipe": r["recipe"], "why": r["baseline"]["why"]}
                            for r in entries if r["baseline"]["regression"]],
            "counts": counts,
            "not_run": sorted(f"{c['id']} [{c['recipe']}]" for c in baseline["claims"]
                              if c["recipe"] in recipes and (c["id"], c["recipe"]) not in run)}


def cell_text(entry: dict | None) -> str:
    """The terminal's and the Markdown summary's short text of a claim's baseline entry:
    ``= reproduced``, ``▼ reproduced → not_reproduced``, ``▲ ...``, ``new``, plus the statistic's
    move and drifting curves."""
    if not entry:
        return ""
    change = entry["change"]
    if change == "new":
        return "new (not in the baseline)"
    mark = {"regression": "▼ ", "improvement": "▲ ", "changed": "≠ ", "unmeasured": "· "}.get(change, "= ")
    text = mark + (entry["verdict"] if change == "same" else f"{entry['baseline_verdict']} → {entry['verdict']}")
    statistic = entry.get("statistic")
    if statistic:
        text += f"; Δ {statistic['delta']:+.3g}"
        if statistic["against_claim"]:
            text += " ▼ against the claim"
        elif statistic["moved"]:
            text += " (moved)"
    if entry.get("curves_outside"):
        text += f"; {len(entry['curves_outside'])} curves drift"
    return text
