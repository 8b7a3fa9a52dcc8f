"""WeightClaimsCallback: a few GRPO steps (trl's GRPOTrainer) with the callback, and the values it
logged against what the pytest run (``vlmdiag.run``, the weight claims) reports on the checkpoint the
trainer saved at the same step; the schedule, the errors, and that it writes nothing."""

from __future__ import annotations

import math
import os
from pathlib import Path

import pytest
import torch
from grpo_helpers import LogRecorder, grpo_run

from vlmdiag.claims import all_claims
from vlmdiag.claims.registry import Outcome
from vlmdiag.errors import IncompatibleCheckpointsError, UsageError
from vlmdiag.integrations import VERDICT_CODES, WeightClaimsCallback, outcome_scalars
from vlmdiag.stats import Interval

#: every claim the callback logs: those read from the weight pass
WEIGHT_CLAIMS = tuple(sorted(i for i, c in all_claims().items() if c.measurement in ("weight_deltas", "weight_spectra")))
PROBE_CLAIM = "abilities.no_uniform_vision_gain"


def report_scalars(report) -> dict[str, dict[str, float]]:
    """``{recipe: {logged key: value}}`` from a ``vlmdiag.run`` report, flattened as the callback
    flattens an outcome (the report's claim ``metrics`` hold the outcome's metrics plus the
    statistic, interval and threshold)."""
    out: dict[str, dict[str, float]] = {}
    for claim in report["claims"]:
        metrics = dict(claim["metrics"])
        interval = metrics.pop("interval", None)
        outcome = Outcome(claim["verdict"], claim["reason"], metrics.pop("statistic", None),
                          Interval(interval["low"], interval["high"], interval["level"]) if interval else None,
                          metrics=metrics)
        out.setdefault(claim["recipe"], {}).update(outcome_scalars(outcome, f"vlmdiag/{claim['id']}", constants=True))
    return out


def assert_logged_equals_report(logged: dict[str, float], reported: dict[str, float], claims=WEIGHT_CLAIMS) -> None:
    claim_keys = [k for k in logged if k != "vlmdiag/seconds"]
    assert {k.split("/")[1] for k in claim_keys} == set(claims)
    missing = [k for k in claim_keys if k not in reported]
    assert not missing, f"logged but not in the pytest report: {missing}"
    for key in claim_keys:
        assert logged[key] == pytest.approx(reported[key], rel=1e-4, abs=1e-7), key


def test_logged_values_equal_the_pytest_run_on_the_checkpoint_saved_at_that_step(tiny_stages, tmp_path):
    import vlmdiag

    out = tmp_path / "out"
    reporter = LogRecorder()
    trainer, callback = grpo_run(tiny_stages["start"], tiny_stages["origin"], out, steps=4, every=2,
                                 spectra_every=2, save_steps=2, reporter=reporter)
    assert [h["step"] for h in callback.history] == [2, 4]
    # a logger the trainer was built with (as report_to's are) saw the values at their step
    for entry in callback.history:
        seen = [logs for step, logs in reporter.seen if step == entry["step"] and "vlmdiag/seconds" in logs]
        assert len(seen) == 1 and all(seen[0][k] == v for k, v in entry.items() if k != "step")
    # the values went through the trainer's logging: in its log history at their step, and the
    # trainer's own log of that step (loss, GRPO's reward) is still there
    for entry in callback.history:
        logged = [h for h in trainer.state.log_history if h["step"] == entry["step"] and "vlmdiag/seconds" in h]
        assert len(logged) == 1 and all(logged[0][k] == v for k, v in entry.items())
        assert any("loss" in h and "reward" in h for h in trainer.state.log_history if h["step"] == entry["step"])
    report = vlmdiag.run(recipes={f"step{k}": (tiny_stages["start"], out / f"checkpoint-{k}", tiny_stages["origin"])
                                  for k in (2, 4)},
                         claims=WEIGHT_CLAIMS, use_cache=False)
    reported = report_scalars(report)
    for entry in callback.history:
        logged = {k: v for k, v in entry.items() if k != "step"}
        assert_logged_equals_report(logged, reported[f"step{entry['step']}"])
    assert callback.history[0] != callback.history[1]  # the update grew between the two steps


# ---------------------------------------------------------------------- without training


@pytest.fixture
def plain_trainer(tiny_stages, tmp_path):
    """A ``transformers.Trainer`` around the start model (no training): the callback's events are
    driven by hand, so the schedule and errors are tested without GRPO."""
    from transformers import AutoModelForImageTextToText, Trainer, TrainingArguments

    model = AutoModelForImageTextToText.from_pretrained(tiny_stages["start"])
    args = TrainingArguments(output_dir=str(tmp_path / "trainer-out"), report_to="none", use_cpu=True,
                             logging_steps=4, save_strategy="no", disable_tqdm=True)
    trainer = Trainer(model=model, args=args)
    trainer.state.logging_steps = 4  # set by train(); the callback reads it for its default N
    return trainer


def drive(trainer, callback, steps) -> list[int]:
    """Call the callback's on_step_end for each step as the training loop does; the steps it logged."""
    logged = []
    for step in steps:
        before = len(trainer.state.log_history)
        trainer.state.global_step = step
        callback.on_step_end(trainer.args, trainer.state, trainer.control, model=trainer.model)
        if len(trainer.state.log_history) > before:
            logged.append(step)
    return logged


def nudge(model, scale=1e-2, seed=0):
    """Add small Gaussian noise to every parameter (a stand-in for an RL update)."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for parameter in model.parameters():
            parameter.add_(scale * torch.randn(parameter.shape, generator=generator))


def test_every_n_steps_and_spectra_schedule(plain_trainer, tiny_stages):
    nudge(plain_trainer.model)
    callback = WeightClaimsCallback(plain_trainer, tiny_stages["start"], origin=tiny_stages["origin"],
                                    every_n_steps=3, spectra_every_n_steps=6)
    assert drive(plain_trainer, callback, range(1, 8)) == [3, 6]
    spectral = [any(k.startswith("vlmdiag/updates.rl_steeper_mid_late/") for k in h) for h in callback.history]
    assert spectral == [False, True]
    # default N: the trainer's logging_steps; spectra every 5 N; 0 turns spectra off
    default = WeightClaimsCallback(plain_trainer, tiny_stages["start"], origin=tiny_stages["origin"])
    assert [default.due(s, plain_trainer.state) for s in (4, 8, 20)] == [(True, False), (True, False), (True, True)]
    off = WeightClaimsCallback(plain_trainer, tiny_stages["start"], every_n_steps=2, spectra_every_n_steps=0)
    assert off.due(20, plain_trainer.state) == (True, False)
    assert set(off.claims) == {"updates.energy_mid"}  # without an origin only the energy claim can run
    for bad in (0, -1, 2.5, True):
        with pytest.raises(UsageError, match="every_n_steps must be a positive integer"):
            WeightClaimsCallback(plain_trainer, tiny_stages["start"], every_n_steps=bad)
    with pytest.raises(UsageError, match="expected a transformers.Trainer"):
        WeightClaimsCallback(object(), tiny_stages["start"])
    with pytest.raises(UsageError, match="regions 'localized' need the localization probes"):
        WeightClaimsCallback(plain_trainer, tiny_stages["start"], regions="localized")
    assert WeightClaimsCallback(plain_trainer, tiny_stages["start"], regions="1,4").regions.cuts == (1, 4)


def test_a_missing_or_misshaped_tensor_is_a_clear_error_before_the_first_step(plain_trainer, tiny_stages):
    model = plain_trainer.model
    callback = WeightClaimsCallback(plain_trainer, tiny_stages["start"], origin=tiny_stages["origin"], every_n_steps=1)
    model.model.language_model.layers[3].mlp.up_proj = torch.nn.Identity()
    with pytest.raises(IncompatibleCheckpointsError,
                       match=r"start vs the training model: 1 tensor\(s\) of the checkpoint have no parameter in the "
                             r"model: model\.language_model\.layers\.3\.mlp\.up_proj\.weight"):
        callback.on_train_begin(plain_trainer.args, plain_trainer.state, plain_trainer.control, model=model)
    model.model.language_model.layers[3].mlp.up_proj = torch.nn.Linear(64, 100, bias=False)
    with pytest.raises(IncompatibleCheckpointsError, match=r"layers\.3\.mlp\.up_proj\.weight \[128, 64\] vs \[100, 64\]"):
        drive(plain_trainer, callback, [1])


def test_a_nan_parameter_is_named(plain_trainer, tiny_stages):
    from vlmdiag.errors import NonFiniteWeightsError

    callback = WeightClaimsCallback(plain_trainer, tiny_stages["start"], every_n_steps=1, spectra_every_n_steps=1)
    with torch.no_grad():
        plain_trainer.model.model.language_model.layers[2].mlp.down_proj.weight[0, :3] = float("nan")
    with pytest.raises(NonFiniteWeightsError,
                       match=r"training model parameter model\.language_model\.layers\.2\.mlp\.down_proj\.weight "
                             r"holds 3 NaN/Inf value\(s\)"):
        drive(plain_trainer, callback, [1])


def test_lora_and_sharded_parameters_are_refused_by_name(plain_trainer, tiny_stages):
    callback = WeightClaimsCallback(plain_trainer, tiny_stages["start"], every_n_steps=1)
    layer = plain_trainer.model.model.language_model.layers[0].self_attn
    layer.q_proj.register_parameter("lora_A", torch.nn.Parameter(torch.zeros(2, 64)))
    with pytest.raises(UsageError, match=r"layers\.0\.self_attn\.q_proj\.lora_A: LoRA/PEFT-wrapped models"):
        callback.on_train_begin(plain_trainer.args, plain_trainer.state, plain_trainer.control,
                                model=plain_trainer.model)


def test_a_wrapped_model_is_measured_as_the_model(plain_trainer, tiny_stages):
    """DDP / accelerate wrappers hold the model as ``.module``; torch.compile as ``._orig_mod``."""
    nudge(plain_trainer.model)

    class Wrapper(torch.nn.Module):
        def __init__(self, inner, attribute):
            super().__init__()
            setattr(self, attribute, inner)

    callback = WeightClaimsCallback(plain_trainer, tiny_stages["start"], every_n_steps=1, spectra_every_n_steps=0)
    direct = callback.measure(plain_trainer.model, 1, spectra=False)
    wrapped = callback.measure(Wrapper(Wrapper(plain_trainer.model, "_orig_mod"), "module"), 1, spectra=False)
    assert {k: v for k, v in direct.items() if k != "vlmdiag/seconds"} == \
        {k: v for k, v in wrapped.items() if k != "vlmdiag/seconds"}


def test_null_update_never_reads_as_reproduced(plain_trainer, tiny_stages):
    """The live model is the start checkpoint itself (RL = a copy of IN)."""
    callback = WeightClaimsCallback(plain_trainer, tiny_stages["start"], origin=tiny_stages["origin"],
                                    every_n_steps=1, spectra_every_n_steps=1)
    drive(plain_trainer, callback, [1])
    outcomes = callback.outcomes[1]
    assert outcomes and all(o.verdict != "reproduced" for o in outcomes.values())
    assert outcomes["updates.energy_mid"].verdict == "inconclusive"
    assert "RL has no update at all" in outcomes["updates.energy_mid"].reason
    assert callback.history[0]["vlmdiag/updates.energy_mid/verdict_code"] == VERDICT_CODES["inconclusive"]


def test_the_callback_writes_no_file(plain_trainer, tiny_stages, tmp_path, monkeypatch):
    """Measuring and logging touch no file: not the checkpoints, not the current folder, not the
    trainer's output folder, not vlmdiag's cache."""
    monkeypatch.chdir(tmp_path)
    roots = [tiny_stages["start"].parent, tmp_path, os.environ["VLMDIAG_CACHE_DIR"]]

    def snapshot():
        return {str(p): (p.stat().st_size, p.stat().st_mtime_ns) for root in roots
                for p in Path(root).rglob("*") if p.is_file() and "organism" not in p.parts}

    nudge(plain_trainer.model)
    before = snapshot()
    callback = WeightClaimsCallback(plain_trainer, tiny_stages["start"], origin=tiny_stages["origin"],
                                    every_n_steps=1, spectra_every_n_steps=1)
    callback.on_train_begin(plain_trainer.args, plain_trainer.state, plain_trainer.control, model=plain_trainer.model)
    assert drive(plain_trainer, callback, [1, 2]) == [1, 2]
    assert snapshot() == before
    assert all(math.isfinite(v) for h in callback.history for v in h.values())


@pytest.mark.slow
def test_on_the_organism_logged_values_equal_the_pytest_run(tmp_path):
    """The same check from the model organism's own IN stage (the full recipe: built into the cache
    on first use, which takes long), Base as the origin, with the small-N probe claim (the organism
    answers its probes, so the scores are not all zero as a random model's are; the fast recipe's
    are)."""
    import vlmdiag
    from vlmdiag.organism import checkpoint_path

    start = checkpoint_path("in", recipe="full", progress=False)
    origin = start.parent / "base"
    thresholds = small_probe_thresholds(tmp_path, n_items=4, max_new_tokens=32)
    out = tmp_path / "out"
    _, callback = grpo_run(start, origin, out, steps=3, every=3, spectra_every=3, save_steps=3,
                           probe_every_n_steps=3, thresholds=thresholds, probes="organism")
    claims = (*WEIGHT_CLAIMS, PROBE_CLAIM)
    report = vlmdiag.run(start, out / "checkpoint-3", origin=origin, claims=claims, thresholds=thresholds,
                         use_cache=False, probes="organism")  # the callback's suite (paths default to synthetic)
    assert [h["step"] for h in callback.history] == [3]
    logged = {k: v for k, v in callback.history[0].items() if k != "step"}
    assert_logged_equals_report(logged, report_scalars(report)["main"], claims)
    assert any(v > 0 for k, v in logged.items() if "/scores/RL/" in k)


def small_probe_thresholds(folder, *, n_items: int, max_new_tokens: int):
    """The shipped thresholds with the probe claim at ``n_items`` per ability (a file in ``folder``)."""
    import yaml

    from vlmdiag.packaged import default_thresholds

    data = yaml.safe_load(default_thresholds().read_text())
    data["claims"][PROBE_CLAIM].update(n_items=n_items, max_new_tokens=max_new_tokens)
    path = folder / "thresholds.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


def test_the_probe_claim_draws_the_suite_the_pytest_run_would(plain_trainer, tiny_stages, tmp_path):
    """Checkpoint folders default to the synthetic suite, as ``pytest --base DIR`` does; the items
    are the suite's own draw (the first ``n_items`` of each ability, in the suite's order)."""
    from vlmdiag.probes.suite import open_suite

    thresholds = small_probe_thresholds(tmp_path, n_items=2, max_new_tokens=6)
    callback = WeightClaimsCallback(plain_trainer, tiny_stages["start"], origin=tiny_stages["origin"],
                                    probe_every_n_steps=1, thresholds=thresholds)
    seed = callback.probes.thresholds.probe_seed
    suite = open_suite("synthetic")
    expected = [item for kind in ("vqa", "math_vqa", "text_math") for item in suite.ability_items(kind, 2, seed=seed).items]
    assert [item.id for item in callback.probes.items] == [item.id for item in expected]
    organism = WeightClaimsCallback(plain_trainer, tiny_stages["start"], probe_every_n_steps=1, thresholds=thresholds,
                                    probes="organism")
    assert {item.id for item in organism.probes.items}.isdisjoint(item.id for item in expected)


def test_the_small_n_probe_claim_equals_the_pytest_run(plain_trainer, tiny_stages, tmp_path):
    """``abilities.no_uniform_vision_gain`` with 2 items per ability: the live model's answers
    judged against IN and Base give what the pytest run gives on the same weights saved."""
    import vlmdiag
    from vlmdiag.organism.tokenizer import save_processor
    from vlmdiag.runtime.processor import load_processor

    claim = PROBE_CLAIM
    thresholds = small_probe_thresholds(tmp_path, n_items=2, max_new_tokens=6)
    nudge(plain_trainer.model, scale=5e-2, seed=2)
    plain_trainer.model.train()
    suite = "synthetic:preset=small,answer_format=boxed"
    callback = WeightClaimsCallback(plain_trainer, tiny_stages["start"], origin=tiny_stages["origin"], every_n_steps=2,
                                    spectra_every_n_steps=0, probe_every_n_steps=1, thresholds=thresholds,
                                    probes=suite)
    assert callback.probes.answer_format == "boxed"
    assert drive(plain_trainer, callback, [1]) == [1]
    assert plain_trainer.model.training  # the probe answers in eval mode and restores the mode
    assert callback.outcomes[1][claim].metrics  # judged, not an error
    logged = {k: v for k, v in callback.history[0].items() if k.startswith(f"vlmdiag/{claim}/")}
    assert f"vlmdiag/{claim}/verdict_code" in logged
    plain_trainer.model.save_pretrained(tmp_path / "saved")
    save_processor(load_processor(tiny_stages["start"]), tmp_path / "saved")
    report = vlmdiag.run(tiny_stages["start"], tmp_path / "saved", origin=tiny_stages["origin"], claims=[claim],
                         thresholds=thresholds, use_cache=False, probes=suite)  # the callback's suite
    reported = report_scalars(report)["main"]
    assert {k: reported[k] for k in logged} == pytest.approx(logged, rel=1e-9, abs=1e-12)
