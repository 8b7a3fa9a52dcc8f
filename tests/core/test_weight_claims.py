"""The weight-update claims follow the planted truth, both ways; regions and thresholds."""

import pytest

from vlmdiag.claims import CheckpointCache, Evidence, Recipe, all_claims, load_thresholds, run_claim
from vlmdiag.errors import ThresholdsError, UsageError
from vlmdiag.regions import parse_regions, regions_for

WEIGHT_CLAIMS = ["updates.energy_mid", "updates.rl_smaller_than_in", "updates.rl_steeper_mid_late"]


@pytest.fixture(scope="module")
def thresholds(pytestconfig):
    return load_thresholds(pytestconfig.rootpath / "thresholds.yaml")


def verdicts(paths, thresholds, *, origin=True, regions="paper"):
    recipe = Recipe("r", str(paths["base"]), str(paths["rl"]), str(paths["origin"]) if origin else None)
    evidence = Evidence(recipe, CheckpointCache(), wants_spectra=True)
    return {c: run_claim(all_claims()[c], evidence, regions, thresholds.get(c)) for c in WEIGHT_CLAIMS}


def test_paper_like_updates_reproduce_every_weight_claim(planted, thresholds):
    results = verdicts(planted("paper"), thresholds)
    assert {c: r.verdict for c, r in results.items()} == dict.fromkeys(WEIGHT_CLAIMS, "reproduced")
    energy = results["updates.energy_mid"].metrics
    assert energy["rl_concentration"]["Mid"] > 2 and energy["in_concentration"]["Mid"] > 2
    assert results["updates.rl_smaller_than_in"].metrics["median_ratio"] == pytest.approx(0.01, rel=0.2)
    assert all(r.metrics["robust_to_cut"] for r in results.values())
    assert len(energy["rl_frobenius_mean"]) == 6


def test_inverted_updates_reproduce_none(planted, thresholds):
    results = verdicts(planted("inverted"), thresholds)
    assert {c: r.verdict for c, r in results.items()} == dict.fromkeys(WEIGHT_CLAIMS, "not_reproduced")


def test_structureless_updates_do_not_reproduce_energy_or_size(planted, thresholds):
    results = verdicts(planted("uniform"), thresholds)
    assert results["updates.energy_mid"].verdict == "not_reproduced"
    assert results["updates.rl_smaller_than_in"].verdict == "not_reproduced"
    assert results["updates.rl_steeper_mid_late"].verdict != "reproduced"


def test_without_origin_only_RL_energy_is_checked(planted, thresholds):
    results = verdicts(planted("paper"), thresholds, origin=False)
    assert results["updates.energy_mid"].verdict == "reproduced"
    assert "IN not checked: no --origin" in results["updates.energy_mid"].reason
    for claim in WEIGHT_CLAIMS[1:]:
        assert results[claim].verdict == "skipped" and "--origin" in results[claim].reason


def test_a_claim_that_raises_is_an_error_and_others_go_on(planted, thresholds, tmp_path):
    import shutil

    paths = dict(planted("paper"))
    broken = tmp_path / "rl"
    shutil.copytree(paths["rl"], broken)
    from safetensors.torch import load_file, save_file

    state = load_file(broken / "model.safetensors")
    state["model.layers.3.mlp.up_proj.weight"][0, 0] = float("nan")
    save_file(state, broken / "model.safetensors", metadata={"format": "pt"})
    paths["rl"] = broken
    results = verdicts(paths, thresholds)
    for r in results.values():
        assert r.verdict == "error"
        assert "NaN/Inf" in r.reason and "model.language_model.layers.3.mlp.up_proj.weight" in r.reason


@pytest.mark.parametrize("spec, sizes", [("paper", (10, 9, 9)), ("thirds", (9, 9, 10)), ("8,20", (8, 12, 8))])
def test_region_presets_on_28_layers(spec, sizes):
    regions = regions_for(spec, 28)
    assert tuple(len(r) for r in regions.ranges.values()) == sizes
    assert len(regions.shifted()) == 8


@pytest.mark.parametrize("bad", ["third", "20,8", "0,", "a,b", "1,2,3"])
def test_bad_region_specs_are_usage_errors(bad):
    with pytest.raises(UsageError, match="expected paper, thirds, localized, or two increasing cuts"):
        parse_regions(bad)


def test_regions_out_of_range_are_usage_errors():
    with pytest.raises(UsageError, match="do not split 6 decoder layers"):
        regions_for("2,6", 6)


BAD_THRESHOLDS = {
    "unknown key": ("schema_version: 1\nclaims:\n  updates.energy_mid:\n    gate: true\n    confidence: 0.9\n"
                    "    min_mid_concentration: 1.1\n    typo_key: 3\n", ":7: claims.updates.energy_mid.typo_key"),
    "unknown claim": ("schema_version: 1\nclaims:\n  updates.nope: {gate: true}\n", ":3: unknown claim 'updates.nope'"),
    "bad value": ("schema_version: 1\nclaims:\n  updates.energy_mid:\n    gate: true\n    confidence: 1.5\n"
                  "    min_mid_concentration: 1.1\n", ":5: claims.updates.energy_mid.confidence"),
    "missing key": ("schema_version: 1\nclaims:\n  updates.energy_mid:\n    gate: true\n    confidence: 0.9\n",
                    "claims.updates.energy_mid.min_mid_concentration: Field required"),
    "bad yaml": ("claims: [\n", "not valid YAML"),
    "wrong version": ("schema_version: 9\nclaims: {}\n", ":1: schema_version 9 is not supported"),
}


@pytest.mark.parametrize("case", BAD_THRESHOLDS, ids=list(BAD_THRESHOLDS))
def test_malformed_thresholds_name_file_line_and_key(case, tmp_path):
    text, expected = BAD_THRESHOLDS[case]
    path = tmp_path / "thresholds.yaml"
    path.write_text(text)
    with pytest.raises(ThresholdsError) as info:
        load_thresholds(path)
    assert str(path) in str(info.value) and expected in str(info.value)


def test_the_shipped_thresholds_cover_every_claim(thresholds):
    assert set(thresholds.claims) == set(all_claims())


# ---------------------------------------------------------------- the storage-precision floor


def test_paper_like_updates_stored_in_bf16_are_still_found(planted, thresholds):
    """All three checkpoints rounded to bf16, as trainers save them: RL's 1e-4 updates are a few
    times the rounding, and every weight claim still reads them."""
    results = verdicts(planted("paper", dtype="bfloat16"), thresholds)
    assert {c: r.verdict for c, r in results.items()} == dict.fromkeys(WEIGHT_CLAIMS, "reproduced")
    assert results["updates.rl_smaller_than_in"].metrics["median_ratio"] == pytest.approx(0.01, rel=0.3)
    assert results["updates.energy_mid"].metrics["rl_signal_to_floor"] > 2


def test_a_bf16_round_trip_of_IN_is_not_an_update(planted, thresholds):
    """RL = IN rounded to bf16 (no training): its ΔW is pure storage rounding. Every weight claim
    says so (inconclusive, naming the floor) instead of reading the rounding as an update."""
    results = verdicts(planted("null", rl_dtype="bfloat16"), thresholds)
    for claim, result in results.items():
        assert result.verdict == "inconclusive", (claim, result.reason)
        assert "RL's update" in result.reason and "within the storage-precision floor" in result.reason
    assert 0.9 < results["updates.energy_mid"].metrics["rl_signal_to_floor"] < 1.1


def test_a_null_pair_reproduces_nothing(planted, thresholds):
    """RL = a copy of IN: no claim comparing RL with IN is reproduced; each says RL has no update."""
    results = verdicts(planted("null"), thresholds)
    for claim, result in results.items():
        assert result.verdict == "inconclusive", (claim, result.reason)
        assert "RL has no update at all" in result.reason
