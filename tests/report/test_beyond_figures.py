"""Figures of the claims beyond the paper, checked by their data: the organism's results for
updates.rl_sparse, updates.rl_off_principal and behaviour.rl_kl_small (``data/beyond_report.json``,
from README command 1)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from vlmdiag.report.plots import FIGURES, figure

REPORT = json.loads((Path(__file__).parent / "data" / "beyond_report.json").read_text())
RESULTS = {r["id"]: r for r in REPORT["claims"]}


def line(fig, gid: str):
    (found,) = fig.findobj(lambda a: a.get_gid() == gid)
    return found


@pytest.mark.parametrize("claim_id", sorted(RESULTS))
def test_each_has_its_own_figure(claim_id):
    assert claim_id in FIGURES and figure(RESULTS[claim_id]) is not None


def test_sparsity_plots_each_stage_share_in_percent_against_the_threshold():
    m = RESULTS["updates.rl_sparse"]["metrics"]
    fig = figure(RESULTS["updates.rl_sparse"])
    for stage in ("IN", "RL"):
        assert np.allclose(line(fig, f"curve:{stage}").get_ydata(), 100 * np.asarray(m[f"{stage.lower()}_updated_fraction_per_layer"]))
    assert line(fig, "threshold").get_ydata()[0] == pytest.approx(100 * m["threshold"])


def test_off_principal_plots_both_log_ratios_and_the_verdict_interval():
    m = RESULTS["updates.rl_off_principal"]["metrics"]
    fig = figure(RESULTS["updates.rl_off_principal"])
    assert np.allclose(line(fig, "curve:rotation").get_ydata(), m["log10_rotation_ratio_per_layer"])
    assert np.allclose(line(fig, "curve:spectral drift").get_ydata(), m["log10_drift_ratio_per_layer"])
    band = line(fig, "interval:statistic")
    assert band.get_y() == pytest.approx(m["interval"]["low"])
    assert band.get_y() + band.get_height() == pytest.approx(m["interval"]["high"])


def test_kl_plots_one_point_per_item_sft_drift_against_rl_drift():
    m = RESULTS["behaviour.rl_kl_small"]["metrics"]
    fig = figure(RESULTS["behaviour.rl_kl_small"])
    points = line(fig, "points")
    assert np.allclose(points.get_xdata(), m["per_item_kl_base_in"])
    assert np.allclose(points.get_ydata(), m["per_item_kl_in_rl"])
