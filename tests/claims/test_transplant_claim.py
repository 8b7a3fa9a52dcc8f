"""transplant.mid_late_carries_gain: the verdict rule on planted Table-2 scores, and end to end."""

from __future__ import annotations

from claim_helpers import run, scores_at, small

from vlmdiag.claims import all_claims
from vlmdiag.measure.tables import AbilityTable
from vlmdiag.regions import regions_for

CLAIM = "transplant.mid_late_carries_gain"
LABELS = ("IN", "IN:RL:RL", "IN:IN:RL", "RL:RL:IN", "RL:IN:IN", "IN:RL:IN", "RL:IN:RL", "RL")


def table(gain_kept_by: set[str], *, rl_gain: float = 0.3) -> AbilityTable:
    """IN at 0.3 on every metric; RL and the splices in ``gain_kept_by`` gain ``rl_gain`` on
    Mv2r and Mrea; the others stay at IN's level."""
    rates = {label: {"Mvis": 0.5, "Mv2r": 0.3, "Mrea": 0.3} for label in LABELS}
    for label in {"RL"} | gain_kept_by:
        rates[label].update(Mv2r=0.3 + rl_gain, Mrea=0.3 + rl_gain)
    return AbilityTable({label: scores_at(r) for label, r in rates.items()}, ("synthetic",))


def judge(m, shipped):
    return all_claims()[CLAIM].judge(m, regions_for("paper", 6), shipped.get(CLAIM))


def test_a_mid_late_splice_that_keeps_the_gain_is_found(shipped):
    out = judge(table({"IN:RL:RL"}), shipped)
    assert out.verdict == "reproduced" and out.interval.low > 0.5  # keeps over half of RL's gain
    assert out.metrics["rl_gains"] == ["Mv2r", "Mrea"]
    assert out.metrics["splices_keeping_the_gain"] == ["IN:RL:RL"]
    assert out.metrics["models"] == list(LABELS)  # all eight models, Table 2 order


def test_a_gain_carried_by_Early_only_is_not_the_claim(shipped):
    out = judge(table({"RL:IN:IN"}), shipped)
    assert out.verdict == "not_reproduced" and out.metrics["splices_keeping_the_gain"] == ["RL:IN:IN"]


def test_without_an_RL_gain_there_is_nothing_to_carry(shipped):
    out = judge(table(set(), rl_gain=0.0), shipped)
    assert out.verdict == "inconclusive" and "no resolved" in out.reason


def test_weight_only_checkpoints_skip_with_a_reason(planted, shipped):
    result = run(CLAIM, planted("paper"), shipped.get(CLAIM))
    assert result.verdict == "skipped" and "tokenizer" in result.reason


def test_end_to_end_on_tiny_models(runnable, shipped):
    result = run(CLAIM, runnable, small(shipped, CLAIM, n_items=1))
    assert result.verdict not in ("error", "skipped"), result.reason + result.metrics.get("traceback", "")
    assert result.metrics["models"] == list(LABELS)
    assert result.metrics["robust_to_cut"] is None and result.metrics["verdicts_by_cut"] == {}


def test_splice_table_is_table_2_as_data_and_in_the_terminal(shipped):
    from vlmdiag.report.document import _jsonable
    from vlmdiag.report.terminal import render

    out = judge(table({"IN:RL:RL"}), shipped)
    data = out.metrics["splice_table"]
    assert data["rows"] == ["Mvis", "Mv2r", "Mrea"] and data["columns"] == list(LABELS)
    assert data["cells"]["Mv2r"]["IN"] == {"score": 0.3, "delta": None, "interval": None, "p_value": None}
    kept = data["cells"]["Mv2r"]["IN:RL:RL"]
    assert kept["score"] == 0.6 and kept["delta"] == 0.3 and kept["interval"]["low"] > 0
    assert data["cells"]["Mrea"]["RL:IN:IN"]["delta"] == 0
    result = {"id": CLAIM, "recipe": "rec[1]", "verdict": out.verdict, "gate": False, "reason": out.reason,
              "metrics": _jsonable({"regions": regions_for("paper", 6).as_dict(), **out.metrics})}
    text = render({"claims": [result], "regions": "paper"}, width=160, color=False)
    assert f"{CLAIM} [rec[1]]: Early:Mid:Late splices" in text
    assert "Δ vs IN in points [95% interval]; cuts 2,4 (paper)" in text
    header = next(line for line in text.splitlines() if "IN:RL:RL" in line and "ability" in line)
    assert [c.strip() for c in header.strip("┃ ").split("┃")] == ["ability", *LABELS]
    table_text = text.split("Early:Mid:Late splices", 1)[1]  # the verdict table's note names Mv2r too
    mv2r = [line for line in table_text.splitlines() if "│ Mv2r" in line or "Mv2r " in line][0]
    assert "30.0" in mv2r and "60.0" in mv2r
    assert "+30.0" in text and "[+21, +39]" in text  # Δ vs IN with its interval, in points
    # at 80 columns (CI logs) every splice is still named in full, folded at a colon, never cut
    narrow = render({"claims": [result], "regions": "paper"}, width=80, color=False)
    assert "…" not in narrow
    splices = narrow.split("Early:Mid:Late splices", 1)[1]
    header_lines = [line for line in splices.splitlines() if line.startswith("┃")]
    columns = zip(*[[c.strip() for c in line.strip()[1:-1].split("┃")] for line in header_lines])
    assert ["".join(parts) for parts in columns] == ["ability", *LABELS]
    # no table without the transplant metrics
    other = dict(result, id="x", metrics={"statistic": 0.1})
    assert "splices" not in render({"claims": [other], "regions": "paper"}, color=False)
