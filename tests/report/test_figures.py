"""The paper-style figures, checked by their data (what each axis holds), not by pixels.

The report is a real one: the model organism's nine claims (``data/organism_report.json``, written
by ``pytest --origin organism:base --base organism:in --rl organism:rl --rl-frozen
Late=organism:rl-frozen-late --report-json``, paths shortened). Artists carry a ``gid``
(``curve:IN``, ``region:Early``, ``interval:Mid–Late``...; :mod:`vlmdiag.report.plots.style`)."""

from __future__ import annotations

import copy
import json
from pathlib import Path

import numpy as np
import pytest
from matplotlib.text import Text

from vlmdiag.report.plots import FIGURES, figure, plot_file_name, plot_result, write_plots
from vlmdiag.report.plots.style import COLUMN_WIDTH, FONT

REPORT = json.loads((Path(__file__).parent / "data" / "organism_report.json").read_text())
#: the claims beyond the paper, from a later run of the same command
BEYOND = json.loads((Path(__file__).parent / "data" / "beyond_report.json").read_text())


def result(claim_id: str) -> dict:
    return copy.deepcopy(next(r for r in REPORT["claims"] + BEYOND["claims"] if r["id"] == claim_id))


def by_gid(fig, gid: str) -> list:
    return fig.findobj(lambda a: a.get_gid() == gid)


def one(fig, gid: str):
    found = by_gid(fig, gid)
    assert len(found) == 1, (gid, found)
    return found[0]


def ydata(fig, gid: str) -> list[float]:
    return list(np.asarray(one(fig, gid).get_ydata(), dtype=float))


def y_extent(artist) -> tuple[float, float]:
    """(low, high) of a fill_between / axhspan in data units."""
    if hasattr(artist, "get_y") and hasattr(artist, "get_height"):  # a Rectangle (axhspan)
        return artist.get_y(), artist.get_y() + artist.get_height()
    ys = artist.get_paths()[0].vertices[:, 1]
    return float(ys.min()), float(ys.max())


def x_extent(artist) -> tuple[float, float]:
    if hasattr(artist, "get_x") and hasattr(artist, "get_width"):
        return artist.get_x(), artist.get_x() + artist.get_width()
    xs = artist.get_paths()[0].vertices[:, 0]
    return float(xs.min()), float(xs.max())


def assert_regions_labelled(fig, regions: dict) -> None:
    """Early/Mid/Late shaded at their layers (band = [first − ½, last + ½]) and named over the band."""
    for name in ("Early", "Mid", "Late"):
        first, last = regions[name]
        bands = by_gid(fig, f"region:{name}")
        assert bands and all(x_extent(b) == pytest.approx((first - 0.5, last + 0.5)) for b in bands), name
        label = one(fig, f"region-label:{name}")
        assert label.get_text() == name and label.get_position()[0] == pytest.approx((first + last) / 2)


@pytest.mark.parametrize("claim_id", sorted(FIGURES))
def test_every_claim_of_a_real_run_has_a_column_width_figure_with_text_of_7_pt_or_more(claim_id):
    fig = figure(result(claim_id))
    assert fig is not None
    assert fig.get_figwidth() == pytest.approx(COLUMN_WIDTH)
    sizes = [t.get_fontsize() for t in fig.findobj(Text) if t.get_text().strip()]
    assert sizes and min(sizes) >= FONT, sorted(set(sizes))
    texts = " ".join(t.get_text() for t in fig.findobj(Text))
    assert claim_id in texts and result(claim_id)["verdict"] in texts  # the title names claim and verdict
    assert plot_result(result(claim_id))[:4] == b"\x89PNG"


def test_attention_in_and_rl_on_one_axis_and_the_difference_with_the_verdicts_interval_below():
    r = result("attention.r2v_shift_mid_late")
    m, regions = r["metrics"], r["metrics"]["regions"]
    fig = figure(r)
    top, bottom = one(fig, "curve:IN").axes, one(fig, "curve:RL − IN").axes
    assert one(fig, "curve:RL").axes is top and top is not bottom
    assert ydata(fig, "curve:IN") == pytest.approx(m["teacher_forced_IN_mass"])  # the basis mode's curves
    assert ydata(fig, "curve:RL") == pytest.approx(m["teacher_forced_RL_mass"])
    assert ydata(fig, "curve:RL − IN") == pytest.approx(m["teacher_forced_mass_increase"])
    assert list(one(fig, "curve:IN").get_xdata()) == list(range(regions["num_layers"]))
    band = one(fig, "interval:Mid–Late")
    assert y_extent(band) == pytest.approx((m["interval"]["low"], m["interval"]["high"]))
    assert x_extent(band) == pytest.approx((regions["Mid"][0] - 0.5, regions["Late"][1] + 0.5))
    assert ydata(fig, "mean:Mid–Late") == pytest.approx([m["statistic"]] * 2)
    assert ydata(fig, "mean:Early") == pytest.approx([m["early_increase"]] * 2)
    assert not by_gid(fig, "band:IN")  # the report has no per-layer intervals: no band is invented
    assert_regions_labelled(fig, regions)
    assert bottom.get_xlabel().startswith("LLM layer") and top.get_ylabel() == "R→V attention mass"


def test_attention_bands_per_layer_when_the_report_has_per_layer_intervals():
    r = result("attention.r2v_shift_mid_late")
    m = r["metrics"]
    m["teacher_forced_IN_mass_interval"] = [{"low": v - 0.01, "high": v + 0.02} for v in m["teacher_forced_IN_mass"]]
    m["teacher_forced_RL_mass_low"] = [v - 0.03 for v in m["teacher_forced_RL_mass"]]
    m["teacher_forced_RL_mass_high"] = [v + 0.03 for v in m["teacher_forced_RL_mass"]]
    fig = figure(r)
    lows = one(fig, "band:IN").get_paths()[0].vertices[:, 1]
    assert min(lows) == pytest.approx(min(m["teacher_forced_IN_mass"]) - 0.01)
    assert max(lows) == pytest.approx(max(m["teacher_forced_IN_mass"]) + 0.02)
    assert y_extent(one(fig, "band:RL")) == pytest.approx((min(m["teacher_forced_RL_mass"]) - 0.03,
                                                           max(m["teacher_forced_RL_mass"]) + 0.03))


def test_attention_reads_the_verdicts_basis_mode():
    r = result("attention.r2v_shift_mid_late")
    r["metrics"]["basis"] = "own"
    fig = figure(r)
    assert ydata(fig, "curve:IN") == pytest.approx(r["metrics"]["own_IN_mass"])
    assert ydata(fig, "curve:RL − IN") == pytest.approx(r["metrics"]["own_mass_increase"])


def test_swap_change_rates_per_task_and_pooled_on_one_axis_in_percent():
    r = result("localization.vision_early")
    m = r["metrics"]
    fig = figure(r)
    axes = {one(fig, f"curve:{task}").axes for task in ("counting", "grounding", "ocr", "recognition", "pooled")}
    assert len(axes) == 1
    for task in ("counting", "grounding", "ocr", "recognition"):
        assert ydata(fig, f"curve:{task}") == pytest.approx([100 * v for v in m[f"swap_change_rate_{task}"]])
        assert one(fig, f"curve:{task}").get_label() == task
    assert ydata(fig, "curve:pooled") == pytest.approx([100 * v for v in m["swap_change_rate"]])
    assert "+54 [+43, +65]" in one(fig, "caption").get_text()  # the statistic and its interval, in points
    assert_regions_labelled(fig, m["regions"])


def test_skip_error_rate_against_the_unskipped_model_and_its_interval():
    r = result("localization.reasoning_late")
    m = r["metrics"]
    fig = figure(r)
    assert ydata(fig, "curve:skip_error_rate") == pytest.approx([100 * v for v in m["skip_error_rate"]])
    assert ydata(fig, "baseline") == pytest.approx([100 * m["baseline_error_rate"]] * 2)
    accuracy = m["baseline_accuracy_interval"]
    assert y_extent(one(fig, "band:baseline")) == pytest.approx((100 * (1 - accuracy["high"]),
                                                                 100 * (1 - accuracy["low"])))
    assert_regions_labelled(fig, m["regions"])


def test_update_energy_of_in_and_rl_per_layer_on_one_axis_and_the_region_concentration_read():
    r = result("updates.energy_mid")
    m = r["metrics"]
    fig = figure(r)
    assert one(fig, "curve:IN").axes is one(fig, "curve:RL").axes
    for stage in ("in", "rl"):
        values = np.array(m[f"{stage}_frobenius_mean"])
        assert ydata(fig, f"curve:{stage.upper()}") == pytest.approx(list(values / values.mean()))
        bars = by_gid(fig, f"bars:{stage.upper()}")  # the container's gid goes to each bar
        assert [b.get_y() + b.get_height() for b in bars] == pytest.approx(
            [m[f"{stage}_concentration"][region] for region in ("Early", "Mid", "Late")])
    assert ydata(fig, "threshold") == pytest.approx([m["threshold"]] * 2)
    assert "mean 1.19" in one(fig, "curve:IN").get_label()  # the raw scale is kept in the legend
    assert_regions_labelled(fig, m["regions"])


def test_rl_over_in_size_per_layer_with_the_median_interval_and_threshold():
    r = result("updates.rl_smaller_than_in")
    m = r["metrics"]
    fig = figure(r)
    assert ydata(fig, "curve:log10_ratio") == pytest.approx(m["log10_ratio_per_layer"])
    assert y_extent(one(fig, "interval:median")) == pytest.approx((m["interval"]["low"], m["interval"]["high"]))
    assert ydata(fig, "threshold") == pytest.approx([m["threshold"]] * 2)
    assert_regions_labelled(fig, m["regions"])


def test_spectra_of_in_and_rl_at_each_rank_and_the_mid_late_difference():
    r = result("updates.rl_steeper_mid_late")
    m, regions = r["metrics"], r["metrics"]["regions"]
    fig = figure(r)
    for k in (10, 20, 30, 40):
        assert ydata(fig, f"curve:IN@{k}") == pytest.approx(m[f"in_log_ratio_at_{k}"])
        assert ydata(fig, f"curve:RL@{k}") == pytest.approx(m[f"rl_log_ratio_at_{k}"])
        assert one(fig, f"curve:IN@{k}").get_color() == one(fig, f"curve:RL@{k}").get_color()
    assert ydata(fig, "curve:RL − IN") == pytest.approx(m["log_ratio_difference_per_layer"])
    band = one(fig, "interval:Mid–Late")
    assert y_extent(band) == pytest.approx((m["interval"]["low"], m["interval"]["high"]))
    assert x_extent(band) == pytest.approx((regions["Mid"][0] - 0.5, regions["Late"][1] + 0.5))
    assert_regions_labelled(fig, regions)


def heat(fig):
    image = one(fig, "heatmap")
    return image.get_array(), image.axes


def test_the_splice_table_as_an_annotated_heatmap():
    r = result("transplant.mid_late_carries_gain")
    table = r["metrics"]["splice_table"]
    fig = figure(r)
    values, ax = heat(fig)
    assert [t.get_text() for t in ax.get_yticklabels()] == table["columns"]  # one row per splice
    assert [t.get_text() for t in ax.get_xticklabels()] == table["rows"]  # one column per ability
    for i, model in enumerate(table["columns"]):
        for j, ability in enumerate(table["rows"]):
            cell = table["cells"][ability][model]
            text = one(fig, f"cell:{model}:{ability}").get_text().replace("−", "-").split("\n")
            assert text[0] == f"{100 * cell['score']:.1f}"
            if cell["delta"] is None:  # the reference: grey, no colour
                assert values.mask[i, j] and len(text) == 1
            else:
                assert values[i, j] == pytest.approx(100 * cell["delta"])
                assert text[1] == f"{100 * cell['delta']:+.1f}"
                assert text[2] == f"[{100 * cell['interval']['low']:+.0f}, {100 * cell['interval']['high']:+.0f}]"


def test_freezing_and_abilities_heatmaps_hold_the_scores_and_the_changes_the_verdict_compared():
    r = result("freezing.late_necessary")
    m = r["metrics"]
    fig = figure(r)
    values, ax = heat(fig)
    assert [t.get_text() for t in ax.get_yticklabels()] == m["models"]
    comparison = m["comparisons"]["Mrea RL-frozen-Late − IN"]
    assert values[m["models"].index("RL-frozen-Late"), 2] == pytest.approx(100 * comparison["delta"])
    assert one(fig, "cell:RL-frozen-Late:Mrea").get_fontweight() == "bold"  # its interval excludes 0
    assert "0.62 [0.20, 1.25]" in one(fig, "caption").get_text()  # the kept share the verdict read
    r = result("abilities.no_uniform_vision_gain")
    fig = figure(r)
    values, ax = heat(fig)
    assert [t.get_text() for t in ax.get_yticklabels()] == ["Base", "IN", "RL"]
    assert values.mask[0].all()  # Base has no previous stage
    comparison = r["metrics"]["comparisons"]["Mvis RL − IN"]
    assert values[2, 0] == pytest.approx(100 * comparison["delta"])


def test_a_claim_without_its_own_figure_gets_a_panel_per_layer_array_and_missing_data_falls_back():
    r = result("updates.rl_smaller_than_in")
    r["id"] = "updates.some_new_claim"
    fig = figure(r)
    curves = [a for a in fig.findobj(lambda a: (a.get_gid() or "").startswith("curve:"))]
    assert len(curves) == 6 and curves[0].get_gid() == "curve:log10_ratio_per_layer"  # the series first
    assert_regions_labelled(fig, r["metrics"]["regions"])
    broken = result("attention.r2v_shift_mid_late")
    del broken["metrics"]["teacher_forced_IN_mass"]  # its own figure cannot be drawn: the generic one is
    assert figure(broken) is not None and not by_gid(figure(broken), "interval:Mid–Late")


def test_no_figure_for_a_skipped_claim_and_files_named_per_claim_and_recipe(tmp_path):
    skipped = {"id": "attention.r2v_shift_mid_late", "recipe": "main", "verdict": "skipped", "metrics": {},
               "reason": "no --origin"}
    assert figure(skipped) is None and plot_result(skipped) is None
    written = write_plots({"claims": [*REPORT["claims"], skipped]}, tmp_path / "plots")
    assert sorted(p.name for p in written) == sorted(plot_file_name(r) for r in REPORT["claims"])
    assert all(p.read_bytes()[:4] == b"\x89PNG" for p in written)


def test_localized_regions_show_the_curves_their_cuts_came_from():
    r = result("abilities.no_uniform_vision_gain")
    r["id"], r["metrics"] = "x", {"regions": {**REPORT["claims"][0]["metrics"]["regions"], "preset": "localized",
                                              "derivation": {"swap_change_rate": [1, 0.8, 0.2, 0.1, 0, 0],
                                                             "skip_error_increase": [0.5, 0, 0, 0.1, 0.3, 0.2]}}}
    fig = figure(r)
    assert ydata(fig, "curve:swap_change_rate") == pytest.approx([100, 80, 20, 10, 0, 0])
    assert ydata(fig, "curve:skip_error_increase") == pytest.approx([50, 0, 0, 10, 30, 20])
    assert_regions_labelled(fig, r["metrics"]["regions"])
