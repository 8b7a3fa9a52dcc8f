"""``--regions localized``: cuts derived from the base checkpoint's swap and skip curves (SPEC §3).

Planted localizations: the swap changes answers only when it starts in the first k layers, and
skipping a layer costs accuracy only from layer m on; the preset must give the cuts (k, m), the
verdicts must still be re-judged at ±1/±2, and the report must carry the curves.
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections import Counter
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import yaml

from vlmdiag.organism import OrganismSuite
from vlmdiag.runner import CheckpointCache, RecipeCheckpoints as Recipe, Runner
from vlmdiag.claims import all_claims, load_thresholds, run_claim
from vlmdiag.runner.localized import localized_regions_for
from vlmdiag.errors import UsageError
from vlmdiag.measure.skip import SkipResult
from vlmdiag.regions import LocalizedRule, localized_regions, regions_for

RULE = LocalizedRule(swap_fall=0.25, skip_rise=0.5, min_signal=0.1)
ROOT = Path(__file__).resolve().parents[2]


def planted_swap(k: int, L: int, *, n: int = 24, rate: float = 0.8, seed: int = 0) -> list:
    """Swap results of the authors' swap (every layer ≥ l): a pair changes with probability
    ``rate`` when the swap starts before layer k (the image is read in layers < k), never after."""
    rng = np.random.default_rng(seed)
    out = []
    for i in range(n):
        reads = rng.random() < rate
        changed = np.array([reads and l < k for l in range(L)] + [False])  # l = L swaps nothing
        out.append(SimpleNamespace(task=("ocr", "counting", "grounding", "recognition")[i % 4], changed=changed,
                                   run=SimpleNamespace(layers=np.arange(L + 1), mode="from")))
    return out


def planted_skip(m: int, L: int, *, n: int = 30, accuracy: float = 0.9, damage: float = 0.7,
                 first_layer_damage: float = 1.0, seed: int = 0) -> SkipResult:
    """Math items right with probability ``accuracy``; skipping layer k ≥ m breaks a right item
    with probability ``damage``, skipping layer 0 with ``first_layer_damage`` (a first layer that
    every input needs, as in real models), any other layer never."""
    rng = np.random.default_rng(seed)
    right = rng.random(n) < accuracy
    rows = [right]
    for k in range(L):
        p = damage if k >= m else first_layer_damage if k == 0 else 0.0
        rows.append(right & (rng.random(n) >= p))
    return SkipResult(np.arange(-1, L), np.array(rows), (), tuple(f"i{i}" for i in range(n)))


def curves(swap, skip, L):
    swap_rate = np.stack([r.changed[:L] for r in swap]).astype(float).mean(axis=0)
    acc = skip.correct.astype(float).mean(axis=1)
    return swap_rate, acc[0] - acc[1:]


@pytest.mark.parametrize("L, k, m", [(6, 2, 4), (12, 3, 9), (28, 8, 20), (28, 12, 13), (8, 1, 7)])
def test_the_rule_finds_a_planted_localization(L, k, m):
    swap_rate, increase = curves(planted_swap(k, L), planted_skip(m, L), L)
    regions = localized_regions(swap_rate, increase, L, RULE)
    assert regions.cuts == (k, m) and regions.preset == "localized"
    d = regions.derivation
    assert d["early_end"]["derived"] and d["late_start"]["derived"]
    assert d["swap_change_rate"] == pytest.approx(swap_rate.tolist()) and len(d["skip_error_increase"]) == L


def test_no_signal_falls_back_to_the_paper_cuts_and_says_why():
    regions = localized_regions(np.zeros(28), np.zeros(28), 28, RULE)
    assert regions.cuts == regions_for("paper", 28).cuts
    assert "< min_signal" in regions.derivation["early_end"]["why"]
    assert not regions.derivation["early_end"]["derived"] and not regions.derivation["late_start"]["derived"]


def test_each_cut_falls_back_alone():
    L = 28
    swap_rate, _ = curves(planted_swap(20, L), planted_skip(22, L), L)
    no_skip = localized_regions(swap_rate, np.zeros(L), L, RULE)
    # Early from the curve (20); the paper's Late start (19) is not after it: moved to 21
    assert no_skip.cuts == (20, 21) and "moved after Early" in no_skip.derivation["late_start"]["why"]
    vision_to_the_end = localized_regions(np.full(L, 0.9), np.zeros(L), L, RULE)
    assert vision_to_the_end.cuts == regions_for("paper", L).cuts
    assert "no room" in vision_to_the_end.derivation["early_end"]["why"]


def test_bad_curves_are_refused():
    with pytest.raises(ValueError, match="swap_change_rate must be 6 finite values"):
        localized_regions([0.5] * 5, [0.0] * 6, 6, RULE)
    with pytest.raises(ValueError, match="skip_error_increase"):
        localized_regions([0.5] * 6, [0.0] * 5 + [float("nan")], 6, RULE)


# --------------------------------------------------------------------------- through the claims


class PlantedEvidence(Runner):
    """A recipe's evidence whose swap and skip measurements are planted (memoized by
    :meth:`Runner.measure` as real ones are); counts how often each is computed."""

    def __init__(self, paths, swap, skip, num_layers):
        super().__init__(Recipe("r", str(paths["base"]), str(paths["rl"])), CheckpointCache(), probes=OrganismSuite())
        self.planted = {"swap": swap, "skip": skip}
        self.computed = Counter()
        self.layers = num_layers

    @property
    def num_llm_layers(self):
        return self.layers

    def measure(self, name, settings=None):
        key = (name, tuple(sorted((settings or {}).items())))
        if key not in self._memo:
            self.computed[name] += 1
            self._memo[key] = self.planted[name]
        return self._memo[key]


def test_localized_regions_for_reads_the_localization_claims_measurements(runnable, shipped):
    L = 6
    evidence = PlantedEvidence(runnable, planted_swap(2, L), planted_skip(4, L), L)
    regions = localized_regions_for(evidence, shipped)
    assert regions.cuts == (2, 4)
    sources = regions.derivation["sources"]
    assert sources["swap"]["mode"] == "from" and sources["swap"]["n_items"] == shipped.get(
        "localization.vision_early").n_items
    assert sources["skip"]["baseline_accuracy"] > 0.5


def test_claims_under_localized_share_the_curves_and_are_rejudged_at_shifted_cuts(runnable, shipped):
    L = 6
    evidence = PlantedEvidence(runnable, planted_swap(2, L), planted_skip(4, L, first_layer_damage=0.0), L)
    localized = lambda: localized_regions_for(evidence, shipped)  # noqa: E731  (what the plugin passes)
    results = {cid: run_claim(all_claims()[cid], evidence, localized, shipped.get(cid))
               for cid in ("localization.vision_early", "localization.reasoning_late")}
    assert evidence.computed == Counter(swap=1, skip=1)  # measured once, for the cuts and both claims
    for result in results.values():
        assert result.verdict == "reproduced", result.reason
        assert result.metrics["regions"]["preset"] == "localized" and result.metrics["regions"]["cuts"] == [2, 4]
        assert result.metrics["regions"]["derivation"]["early_end"]["layer"] == 2
        cuts = set(result.metrics["verdicts_by_cut"])
        assert {"localized A-1", "localized A+1", "localized B-1", "localized B+1"} <= cuts
        assert result.metrics["robust_to_cut"] in (True, False)
    json.dumps(results["localization.vision_early"].metrics)  # the derivation is JSON-ready


def test_a_derivation_that_fails_is_the_claims_error_not_a_crash(runnable, shipped):
    evidence = PlantedEvidence(runnable, [], planted_skip(4, 6), 6)
    result = run_claim(all_claims()["localization.reasoning_late"], evidence,
                       lambda: localized_regions_for(evidence, shipped), shipped.get("localization.reasoning_late"))
    assert result.verdict == "error" and "measured no pairs" in result.reason


def test_missing_inputs_are_clear_errors(runnable, planted, shipped, tmp_path):
    weights_only = planted("paper")
    evidence = Runner(Recipe("r", str(weights_only["base"]), str(weights_only["rl"])), CheckpointCache(), probes=OrganismSuite())
    with pytest.raises(UsageError, match="base checkpoint .* cannot run .* swap and layer-skip curves"):
        localized_regions_for(evidence, shipped)
    text = (ROOT / "thresholds.yaml").read_text()
    data = yaml.safe_load(text)
    del data["localized_regions"], data["claims"]["localization.reasoning_late"]
    path = tmp_path / "t.yaml"
    path.write_text(yaml.safe_dump(data))
    evidence = Runner(Recipe("r", str(runnable["base"]), str(runnable["rl"])), CheckpointCache(), probes=OrganismSuite())
    with pytest.raises(UsageError, match="lacks the localized_regions section and the entry of localization.reasoning_late"):
        localized_regions_for(evidence, load_thresholds(path))


def test_the_rule_section_is_validated_with_its_line(tmp_path):
    from vlmdiag.errors import ThresholdsError

    text = (ROOT / "thresholds.yaml").read_text().replace("swap_fall: 0.25", "swap_fall: 1.5")
    path = tmp_path / "t.yaml"
    path.write_text(text)
    line = next(i for i, row in enumerate(text.splitlines(), 1) if "swap_fall: 1.5" in row)
    with pytest.raises(ThresholdsError, match=rf"t.yaml:{line}: localized_regions.swap_fall"):
        load_thresholds(path)


# --------------------------------------------------------------------------- the user's view


def _pytest(*args):
    proc = subprocess.run([sys.executable, "-m", "pytest", "-p", "no:randomly", *map(str, args)], cwd=ROOT,
                          capture_output=True, text=True, timeout=600)
    return proc.returncode, proc.stdout + proc.stderr


def test_pytest_run_with_localized_regions_records_cuts_and_curves(runnable, tmp_path):
    data = yaml.safe_load((ROOT / "thresholds.yaml").read_text())
    for cid in ("localization.vision_early", "localization.reasoning_late"):
        data["claims"][cid].update(n_items=1, max_new_tokens=4, bootstrap_resamples=200)
    thresholds = tmp_path / "small.yaml"
    thresholds.write_text(yaml.safe_dump(data))
    report = tmp_path / "r.json"
    code, out = _pytest("diagnostics/test_localization.py", f"--base={runnable['base']}", f"--rl={runnable['rl']}",
                        "--regions=localized", f"--thresholds={thresholds}", f"--report-json={report}", "--report-only",
                        "--no-cache")
    assert code == 0, out
    claims = json.loads(report.read_text())["claims"]
    assert len(claims) == 2
    for claim in claims:
        assert claim["verdict"] not in ("error", "skipped"), claim["reason"]
        regions = claim["metrics"]["regions"]
        assert regions["preset"] == "localized" and len(regions["derivation"]["swap_change_rate"]) == 6
        assert 0 < regions["cuts"][0] < regions["cuts"][1] < 6
        assert {"early_end", "late_start", "rule", "skip_error_increase"} <= set(regions["derivation"])
    assert claims[0]["metrics"]["regions"] == claims[1]["metrics"]["regions"]
    assert "localized regions [main]: Early 0–" in out  # the terminal names the derived cuts
    assert len(list((tmp_path / "r_plots").glob("*.png"))) == 2


def test_the_terminal_and_plots_show_where_localized_cuts_came_from():
    from vlmdiag.report.plots import plot_result
    from vlmdiag.report.terminal import localized_line

    L = 12
    swap_rate, increase = curves(planted_swap(3, L), planted_skip(9, L), L)
    regions = localized_regions(swap_rate, np.zeros(L), L, RULE).as_dict()
    result = {"id": "x", "recipe": "main", "verdict": "reproduced", "metrics": {"regions": regions}}
    line = localized_line("main", [result]).plain
    assert line.startswith("localized regions [main]: Early 0–2, Mid 3–")
    assert "Mid starts at layer 3 (derived" in line and "Late starts at layer 8 (fallback" in line
    assert localized_line("main", [{"metrics": {"regions": regions_for("paper", L).as_dict()}}]) is None
    assert plot_result(result)[:4] == b"\x89PNG"  # the derivation's curves alone make a plot


def test_pytest_run_with_localized_on_weight_only_checkpoints_is_a_usage_error(planted):
    paths = planted("paper")
    code, out = _pytest("diagnostics/test_updates.py", f"--base={paths['base']}", f"--rl={paths['rl']}",
                        "--regions=localized")
    assert code == 4 and "--regions localized: the base checkpoint" in out and "cannot run" in out, out


def test_localized_needs_curves_not_just_a_layer_count():
    with pytest.raises(UsageError, match="here use paper, thirds or A,B"):
        regions_for("localized", 28)
