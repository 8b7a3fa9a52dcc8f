"""The organism build: stages, cache, concurrency, CLI (fast recipe), learning claims (slow)."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from vlmdiag.errors import CheckpointError
from vlmdiag.organism import STAGES, checkpoint_path, resolve_spec
from vlmdiag.organism import build as B
from vlmdiag.organism import tasks as T
from vlmdiag.organism.cli import main as cli_main
from vlmdiag.organism.train import region_layers
from vlmdiag.probes.prompts import described_question, image_message, text_message
from vlmdiag.runtime.processor import load_processor


@pytest.fixture(scope="session")
def fast_cache(tmp_path_factory) -> Path:
    """A cache root holding the fast recipe's build (built once per session)."""
    root = tmp_path_factory.mktemp("organism-cache")
    checkpoint_path("rl", recipe="fast", cache_dir=root, progress=False)
    return root


def test_region_layers_paper_preset():
    r28 = region_layers(28)
    assert [len(r28[k]) for k in ("early", "mid", "late")] == [10, 9, 9]
    assert r28["early"] + r28["mid"] + r28["late"] == list(range(28))
    assert region_layers(6) == {"early": [0, 1], "mid": [2, 3], "late": [4, 5]}
    assert [len(v) for v in region_layers(8).values()] == [3, 3, 2]


def test_unknown_stage_lists_valid(tmp_path):
    with pytest.raises(CheckpointError) as info:
        checkpoint_path("sft", cache_dir=tmp_path)
    for stage in STAGES:
        assert stage in str(info.value)
    with pytest.raises(CheckpointError, match="fast"):
        checkpoint_path("rl", recipe="tiny", cache_dir=tmp_path)
    with pytest.raises(CheckpointError, match="organism:STAGE"):
        resolve_spec("hub:rl", cache_dir=tmp_path)
    assert not any(tmp_path.iterdir())  # nothing was built


def test_rl_prompt_mix():
    """GRPO prompts: the recipe's visual-arithmetic items plus its share of perception items."""
    recipe = B.Recipe(name="mix", rl_items=300, rl_perception_share=0.25)
    items = B._rl_items(recipe)
    tasks = [it.task for it in items]
    assert tasks.count("arithmetic") == 300 and len(items) == 400
    assert {t: tasks.count(t) for t in T.PERCEPTION_TASKS} == dict.fromkeys(T.PERCEPTION_TASKS, 25)
    assert tasks[:20] != sorted(tasks[:20])  # shuffled, not blocks
    assert not any(it.held_out for it in items)
    assert [it.task for it in B._rl_items(B.Recipe(name="mix", rl_items=50,
                                                   rl_perception_share=0.0))] == ["arithmetic"] * 50


def test_grpo_kl_needs_a_reference_folder():
    from vlmdiag.organism.train import correctness_reward, grpo

    class Cfg:
        _name_or_path = ""

    class Fake:
        config = Cfg()

    with pytest.raises(ValueError, match="from_pretrained"):
        grpo(Fake(), None, [], steps=1, prompts_per_step=1, num_generations=2, lr=1e-4,
             temperature=1.0, seed=0, beta=0.1)
    good = "<think>look for a triangle</think><answer>yes</answer>"
    assert correctness_reward([good, good], ["yes", "3"], task=["recognition", "counting"]) == [1.0, 0.0]
    assert correctness_reward(["<answer>7</answer>"], ["7"]) == [1.0]


def test_recipe_hash_is_stable_and_sensitive():
    fast = B.get_recipe("fast")
    assert fast.hash() == B.get_recipe("fast").hash()
    assert fast.hash() != B.get_recipe("full").hash()
    assert B.entry_dir(fast, "/x").name.startswith("fast-")


def test_cache_key_hashes_every_organism_module():
    """Every module of vlmdiag.organism but ``__init__``/``cli`` defines the organism, so its
    bytes are in the cache key (a new module left out of CODE_FILES would reuse stale builds)."""
    package = Path(B.__file__).resolve().parent
    modules = {p.name for p in package.glob("*.py")} - {"__init__.py", "cli.py"}
    assert set(B.CODE_FILES) == modules


def test_stages_load_generate_and_score(fast_cache):
    from transformers import AutoModelForImageTextToText

    it = T.generate("arithmetic", 1, seed=99, held_out=True)[0]
    for stage in STAGES:
        path = checkpoint_path(stage, recipe="fast", cache_dir=fast_cache, progress=False)
        assert path.name == stage
        for name in ("config.json", "model.safetensors", "tokenizer.json", "chat_template.jinja",
                     "processor_config.json", "generation_config.json"):
            assert (path / name).is_file(), (stage, name)
        model = AutoModelForImageTextToText.from_pretrained(path).eval()
        assert type(model).__name__ == "Qwen2_5_VLForConditionalGeneration"
        assert model.config.text_config.num_hidden_layers == 6
        proc = load_processor(path)
        for messages, image in ((image_message(it.question), it.image()),
                                (image_message(described_question(it.description(), it.question)),
                                 T.black_image()),
                                (text_message(it.question), None)):
            prompt = proc.apply_chat_template(messages, add_generation_prompt=True)
            inputs = proc(text=[prompt], images=[image] if image else None, return_tensors="pt")
            assert "mm_token_type_ids" in inputs
            with torch.no_grad():
                out = model.generate(**inputs, max_new_tokens=12, do_sample=False)
            text = proc.batch_decode(out[:, inputs["input_ids"].shape[1]:],
                                     skip_special_tokens=True)[0]
            assert isinstance(T.is_correct("arithmetic", text, it.answer), bool)


def _stage_report(stage: str, fast_cache: Path) -> dict:
    """The training report of the cache entry holding ``stage`` (fast recipe)."""
    folder = checkpoint_path(stage, recipe="fast", cache_dir=fast_cache, progress=False)
    return json.loads((folder.parent / "report" / "training_report.json").read_text())


def test_frozen_regions_unchanged(fast_cache):
    entry = checkpoint_path("in", recipe="fast", cache_dir=fast_cache, progress=False).parent
    w_in = load_file(entry / "in" / "model.safetensors")
    regions = region_layers(6)
    report = json.loads((entry / "report" / "training_report.json").read_text())
    for region in ("early", "mid", "late"):
        stage = f"rl-frozen-{region}"
        w = load_file(checkpoint_path(stage, recipe="fast", cache_dir=fast_cache, progress=False)
                      / "model.safetensors")
        assert _stage_report(stage, fast_cache)["stages"][stage]["frozen_layers"] == regions[region]
        for key, value in w.items():
            if any(key.startswith(f"model.layers.{i}.") for i in regions[region]):
                assert torch.equal(value, w_in[key]), key
    # when any RL step had a gradient, the unfrozen weights moved
    hist = report["stages"]["rl"]["rl_history"]
    if any((h.get("grad_norm") or 0) > 0 for h in hist):
        w_rl = load_file(entry / "rl" / "model.safetensors")
        assert any(not torch.equal(w_rl[k], w_in[k]) for k in w_in)


def test_report_contents(fast_cache):
    entry = checkpoint_path("rl", recipe="fast", cache_dir=fast_cache, progress=False).parent
    report = json.loads((entry / "report" / "training_report.json").read_text())
    # the first use builds the stages the suite reads; the others have entries of their own
    assert list(report["accuracy"]) == list(B.FIRST_STAGES)
    assert sorted(p.name for p in entry.iterdir() if (p / "model.safetensors").is_file()) == sorted(B.FIRST_STAGES)
    accuracies = dict(report["accuracy"])
    for stage in B.ON_DEMAND_STAGES:
        on_demand = _stage_report(stage, fast_cache)
        assert list(on_demand["accuracy"]) == [stage] and set(on_demand["rl_vs_in"]) == {stage}
        assert len(on_demand["stages"][stage]["rl_history"]) == B.get_recipe("fast").rl_steps
        accuracies.update(on_demand["accuracy"])
    for stage in STAGES:
        for name in ("recognition", "counting", "reading", "grounding", "arithmetic",
                     "arithmetic_described", "arithmetic_text"):
            acc = accuracies[stage][name]
            assert 0.0 <= acc["wilson95"][0] <= acc["accuracy"] <= acc["wilson95"][1] <= 1.0
    assert len(report["stages"]["base"]["loss"]) == B.get_recipe("fast").base_steps
    assert len(report["stages"]["base"]["vision_loss"]) == B.get_recipe("fast").vision_steps
    assert len(report["stages"]["rl"]["rl_history"]) == B.get_recipe("fast").rl_steps
    assert report["peak_rss_mb"] > 0 and report["times_s"]["total"] > 0
    for plot in ("loss_curves.png", "rl_reward.png", "accuracy.png"):
        assert (entry / "report" / plot).stat().st_size > 1000


def test_rl_runs_in_worker_processes_give_the_same_weights(fast_cache, tmp_path):
    """The RL runs give bitwise the same weights, histories and accuracies whether they run in
    this process (``jobs=1``) or in spawned workers (``jobs=2``, the default on 2+ CPUs), and
    whether an on-demand stage came with the whole build or later from the cached IN: each run is
    seeded and single-threaded, so where and when it ran does not matter."""
    entry = checkpoint_path("rl", recipe="fast", cache_dir=fast_cache, progress=False).parent
    cached = json.loads((entry / "report" / "training_report.json").read_text())
    for stage in B.ON_DEMAND_STAGES:
        later = _stage_report(stage, fast_cache)
        for key in ("weights_sha256", "stages", "accuracy", "rl_vs_in"):
            cached[key].update(later[key])
    jobs = 1 if cached["rl_jobs"] > 1 else 2
    report = B.build_organism(B.get_recipe("fast"), tmp_path / "other", progress=False, jobs=jobs,
                              stages=STAGES)
    assert report["rl_jobs"] == jobs and report["weights_sha256"] == cached["weights_sha256"]
    assert report["stages"] == cached["stages"] and report["accuracy"] == cached["accuracy"]
    assert report["rl_vs_in"] == cached["rl_vs_in"]


def test_second_use_is_instant(fast_cache):
    checkpoint_path("rl-frozen-mid", recipe="fast", cache_dir=fast_cache, progress=False)
    t = time.perf_counter()
    a = checkpoint_path("rl-frozen-mid", recipe="fast", cache_dir=fast_cache, progress=False)
    assert time.perf_counter() - t < 5.0
    assert a == resolve_spec("organism:rl-frozen-mid@fast", cache_dir=fast_cache, progress=False)


def test_env_recipe_override(fast_cache, monkeypatch):
    monkeypatch.setenv("VLMDIAG_ORGANISM_RECIPE", "fast")
    monkeypatch.setenv("VLMDIAG_CACHE_DIR", str(fast_cache))
    assert checkpoint_path("base", progress=False).parent == B.entry_dir(B.get_recipe("fast"),
                                                                         fast_cache)


def test_validate_detects_corruption(fast_cache, tmp_path):
    import shutil

    recipe = B.get_recipe("fast")
    entry = B.entry_dir(recipe, fast_cache)
    assert B.validate_entry(entry, recipe) is None
    copy = tmp_path / "copy"
    shutil.copytree(entry, copy)
    weights = copy / "rl" / "model.safetensors"
    data = bytearray(weights.read_bytes())
    data[len(data) // 2] ^= 0xFF
    weights.write_bytes(bytes(data))
    assert "SHA-256" in B.validate_entry(copy, recipe)
    weights.write_bytes(bytes(data[:100]))
    assert "truncated" in B.validate_entry(copy, recipe)
    (copy / B.MANIFEST).unlink()
    assert "half-written" in B.validate_entry(copy, recipe)


# ---------------------------------------------------------------- cache logic with a fake builder

FAKE_BUILDER = textwrap.dedent("""
    import sys, time, os
    from pathlib import Path
    from vlmdiag.organism import build as B
    log = Path(sys.argv[2])
    def fake(recipe, out_dir, progress=True, stages=()):
        with open(log, "a") as f:
            f.write(f"{os.getpid()}\\n")
        time.sleep(float(sys.argv[3]))
        for stage in B.STAGES:
            d = Path(out_dir) / stage
            d.mkdir(parents=True)
            (d / "config.json").write_text("{}")
            (d / "model.safetensors").write_bytes(b"x" * 64)
        return {}
    B.build_organism = fake
    recipe = B.Recipe(name="fake-" + sys.argv[4])
    print(B.ensure_built(recipe, sys.argv[1], progress=False))
""")


def _run_fake(root: Path, log: Path, sleep: float, tag: str) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-c", FAKE_BUILDER, str(root), str(log), str(sleep),
                             tag], stdout=subprocess.PIPE, text=True)


def test_concurrent_builders_build_once(tmp_path):
    log = tmp_path / "builds.log"
    procs = [_run_fake(tmp_path, log, 1.5, "conc") for _ in range(3)]
    outs = [p.communicate(timeout=120)[0].strip() for p in procs]
    assert all(p.returncode == 0 for p in procs)
    assert len(set(outs)) == 1
    assert len(log.read_text().split()) == 1  # exactly one process built it
    entry = Path(outs[0])
    assert B.validate_entry(entry, B.Recipe(name="fake-conc")) is None
    assert not [p for p in entry.parent.iterdir() if p.name.startswith((".tmp-", ".trash-"))]


def test_half_written_and_corrupt_entries_are_rebuilt(tmp_path):
    log = tmp_path / "builds.log"
    recipe = B.Recipe(name="fake-rebuild")
    entry = B.entry_dir(recipe, tmp_path)
    entry.mkdir(parents=True)
    (entry / "base").mkdir()
    (entry / "base" / "model.safetensors").write_bytes(b"half")  # no manifest: half-written
    p = _run_fake(tmp_path, log, 0, "rebuild")
    assert p.communicate(timeout=120)[0].strip() == str(entry)
    assert B.validate_entry(entry, recipe) is None
    (entry / "rl" / "model.safetensors").write_bytes(b"y" * 64)  # same size, wrong content
    p = _run_fake(tmp_path, log, 0, "rebuild")
    p.communicate(timeout=120)
    assert B.validate_entry(entry, recipe) is None
    assert len(log.read_text().split()) == 2


def test_killed_builder_leaves_no_entry(tmp_path):
    log = tmp_path / "builds.log"
    p = _run_fake(tmp_path, log, 30, "killed")
    deadline = time.time() + 60
    while not log.exists() and time.time() < deadline:
        time.sleep(0.1)
    p.kill()
    p.wait()
    entry = B.entry_dir(B.Recipe(name="fake-killed"), tmp_path)
    assert not entry.exists()  # only a .tmp- folder may remain; never a partial entry
    p = _run_fake(tmp_path, log, 0, "killed")
    assert p.communicate(timeout=120)[0].strip() == str(entry)
    assert B.validate_entry(entry, B.Recipe(name="fake-killed")) is None
    assert not list(entry.parent.glob(".tmp-*"))  # the killed builder's leftovers were removed


# ---------------------------------------------------------------- CLI


def test_cli_refuses_non_empty_out(tmp_path, capsys):
    out = tmp_path / "out"
    out.mkdir()
    (out / "keep.txt").write_text("mine")
    assert cli_main(["build", "--out", str(out), "--recipe", "fast", "--no-progress"]) == 4
    assert (out / "keep.txt").read_text() == "mine" and len(list(out.iterdir())) == 1
    assert "refusing" in capsys.readouterr().err
    assert cli_main(["build", "--recipe", "nope", "--no-progress"]) == 4
    assert cli_main(["frobnicate"]) == 2


def test_cli_build_out_all_writes_six_stages(tmp_path, capsys):
    out = tmp_path / "out"
    assert cli_main(["build", "--out", str(out), "--recipe", "fast", "--all", "--no-progress"]) == 0
    assert capsys.readouterr().out.split() == [str(out)]
    assert sorted(p.name for p in out.iterdir() if (p / "model.safetensors").is_file()) == sorted(STAGES)
    assert B.validate_entry(out, B.get_recipe("fast"), stages=STAGES) is None


def test_cli_build_out_uses_cache_recipe(tmp_path, monkeypatch, fast_cache, capsys):
    monkeypatch.setenv("VLMDIAG_CACHE_DIR", str(fast_cache))
    assert cli_main(["build", "--recipe", "fast", "--no-progress"]) == 0  # cached: instant
    recipe = B.get_recipe("fast")
    assert capsys.readouterr().out.split() == [str(B.entry_dir(recipe, fast_cache))]
    assert cli_main(["build", "--recipe", "fast", "--all", "--no-progress"]) == 0
    assert capsys.readouterr().out.split() == [str(B.entry_dir(recipe, fast_cache, stage))
                                               for stage in (None, *B.ON_DEMAND_STAGES)]


# ---------------------------------------------------------------- learning claims (full build)


@pytest.fixture(scope="module")
def full_report() -> dict:
    entry = checkpoint_path("rl", recipe="full", progress=True).parent
    return json.loads((entry / "report" / "training_report.json").read_text())


@pytest.mark.slow
def test_full_build_rl_beats_in(full_report):
    """RL beats IN on held-out visual arithmetic outside the noise (paired bootstrap 95 % interval
    of the accuracy difference above 0), and the GRPO reward rises."""
    rl = full_report["rl_vs_in"]["rl"]["arithmetic"]
    assert rl["bootstrap95"][0] > 0, rl
    rewards = [h["reward"] for h in full_report["stages"]["rl"]["rl_history"]]
    k = max(1, len(rewards) // 4)
    assert sum(rewards[-k:]) / k > sum(rewards[:k]) / k


@pytest.mark.slow
def test_full_build_is_measurable(full_report):
    """Organism v2 is built for measurability: 4 decoder layers per Early/Mid/Late region, and an
    IN stage that answers text math above chance (the baseline layer skipping needs)."""
    assert [len(full_report["regions"][r]) for r in ("early", "mid", "late")] == [4, 4, 4]
    acc = full_report["accuracy"]["in"]["arithmetic_text"]
    assert acc["wilson95"][0] > full_report["chance"]["arithmetic_text"], acc


@pytest.mark.slow
@pytest.mark.parametrize("task", ["recognition", "counting", "reading", "grounding"])
def test_full_build_in_above_chance(full_report, task):
    """The IN stage is above chance on the perception task (Wilson 95 % lower bound > chance)."""
    acc = full_report["accuracy"]["in"][task]
    assert acc["wilson95"][0] > full_report["chance"][task], acc
