"""Building the model organism: recipe, pipeline, cache, report.

``build_organism(recipe, out_dir)`` runs Base -> IN -> RL (+ three region-frozen RL runs) and
writes one Hugging Face checkpoint folder per stage plus ``report/`` (``training_report.json`` and
plots). :func:`ensure_built` keeps builds in a cache keyed by the recipe hash: it builds into a
temporary folder, renames it into place when complete, validates entries (a manifest of file
sizes and SHA-256 written last) and serialises concurrent builders with ``fcntl.flock``.
"""

from __future__ import annotations

import dataclasses
import fcntl
import hashlib
import json
import os
import platform
import random
import resource
import shutil
import sys
import time
import uuid
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator

import numpy as np

from vlmdiag.errors import CheckpointError
from vlmdiag.stats import Interval, bootstrap_interval, wilson_interval

STAGES: tuple[str, ...] = ("base", "in", "rl", "rl-frozen-early", "rl-frozen-mid", "rl-frozen-late")
RL_STAGES: dict[str, str | None] = {"rl": None, "rl-frozen-early": "early",
                                    "rl-frozen-mid": "mid", "rl-frozen-late": "late"}
MANIFEST = "organism-manifest.json"
REPORT_DIR = "report"
#: Bump when the pipeline code changes in a way that changes the weights.
PIPELINE_VERSION = "2"


@dataclass(frozen=True)
class Recipe:
    """Everything that determines the organism's weights (hashed into the cache key)."""

    name: str
    seed: int = 1234
    threads: int = 1
    vocab_size: int = 640
    # model
    hidden: int = 128
    layers: int = 6
    heads: int = 4
    kv_heads: int = 2
    intermediate: int = 256
    vision_hidden: int = 64
    vision_depth: int = 2
    # base, part 1: vision pre-training (vision tower + merger, per-token and pooled targets)
    vision_steps: int = 300
    vision_batch: int = 32
    vision_lr: float = 2e-3
    vision_scenes: int = 6000
    # base, part 2: SFT on perception, short answers
    base_items_per_task: int = 3000
    base_steps: int = 700
    base_batch: int = 16
    base_lr: float = 1e-3
    # in: SFT on the reasoning format (noisy arithmetic traces)
    in_items_per_task: int = 1000
    in_arith_items: int = 3000
    in_steps: int = 400
    in_batch: int = 16
    in_lr: float = 5e-4
    in_distractor_rate: float = 0.6
    in_fact_items: int = 1000
    # rl: GRPO on visual arithmetic (plus a share of perception prompts), KL to IN
    rl_items: int = 2000
    rl_perception_share: float = 0.25
    rl_beta: float = 0.1
    rl_steps: int = 40
    rl_prompts_per_step: int = 4
    rl_generations: int = 8
    rl_lr: float = 1e-4
    rl_temperature: float = 1.0
    rl_max_completion: int = 20
    # evaluation (held-out)
    eval_per_task: int = 100
    eval_arith: int = 300

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    def hash(self) -> str:
        """SHA-256 (hex) of the recipe, the pipeline version and the torch/transformers versions."""
        import torch
        import transformers

        payload = json.dumps({"recipe": self.to_dict(), "pipeline": PIPELINE_VERSION,
                              "code": _code_hash(),
                              "torch": torch.__version__.split("+")[0],
                              "transformers": transformers.__version__}, sort_keys=True)
        return hashlib.sha256(payload.encode()).hexdigest()


def _code_hash() -> str:
    """SHA-256 of the organism's pipeline sources, so a code change never reuses a stale build."""
    h = hashlib.sha256()
    here = Path(__file__).resolve().parent
    for name in ("tasks.py", "tokenizer.py", "train.py", "build.py"):
        h.update((here / name).read_bytes())
    return h.hexdigest()


RECIPES: dict[str, Recipe] = {
    "full": Recipe(name="full"),
    "fast": Recipe(name="fast", vision_steps=10, vision_batch=8, vision_scenes=100,
                   base_items_per_task=100, base_steps=30, in_items_per_task=50,
                   in_arith_items=100, in_steps=20, rl_items=50, rl_steps=3,
                   rl_prompts_per_step=2, rl_generations=4, eval_per_task=8, eval_arith=16),
}


def get_recipe(name: str) -> Recipe:
    """The named recipe; raises :class:`CheckpointError` listing the valid names."""
    try:
        return RECIPES[name]
    except KeyError:
        raise CheckpointError(f"unknown organism recipe {name!r}; valid recipes: "
                              f"{', '.join(RECIPES)}") from None


# --------------------------------------------------------------------------- progress


class _Progress:
    """A rich progress bar with one row per stage (no-op when disabled)."""

    def __init__(self, enabled: bool, totals: dict[str, int]):
        self.enabled = enabled
        self._bar = None
        self._ids: dict[str, int] = {}
        if enabled:
            from rich.console import Console
            from rich.progress import (BarColumn, MofNCompleteColumn, Progress, TextColumn,
                                       TimeElapsedColumn)

            self._bar = Progress(TextColumn("organism {task.description:<16}"), BarColumn(),
                                 MofNCompleteColumn(), TimeElapsedColumn(),
                                 console=Console(stderr=True), transient=False)
            for name, total in totals.items():
                self._ids[name] = self._bar.add_task(name, total=total)

    def __enter__(self):
        if self._bar:
            self._bar.__enter__()
        return self

    def __exit__(self, *exc):
        if self._bar:
            self._bar.__exit__(*exc)

    def fn(self, name: str):
        def update(done: int, total: int) -> None:
            if self._bar:
                self._bar.update(self._ids[name], completed=done, total=total)
        return update


# --------------------------------------------------------------------------- pipeline


def _peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _save_stage(model, processor, path: Path) -> None:
    from vlmdiag.organism.tokenizer import save_processor

    path.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(path)
    save_processor(processor, path)


def _eval_sets(recipe: Recipe):
    from vlmdiag.organism import tasks as T

    seed = recipe.seed + 17
    sets = {}
    for task in T.PERCEPTION_TASKS:
        items = T.generate(task, recipe.eval_per_task, seed=seed, held_out=True)
        sets[task] = [T.chat_example(it, "image", it.answer) for it in items]
    arith = T.generate("arithmetic", recipe.eval_arith, seed=seed, held_out=True)
    for cond, name in (("image", "arithmetic"), ("described", "arithmetic_described"),
                       ("text", "arithmetic_text")):
        sets[name] = [T.chat_example(it, cond, it.answer) for it in arith]
    return sets


def _sft_examples(recipe: Recipe, stage: str):
    from vlmdiag.organism import tasks as T
    from vlmdiag.probes.prompts import text_message

    rng = random.Random(f"{recipe.seed}:{stage}:mix")
    exs = []
    if stage == "base":
        for task in T.PERCEPTION_TASKS:
            for it in T.training_items(task, recipe.base_items_per_task, seed=recipe.seed):
                exs.append(T.chat_example(it, "image", T.short_target(it)))
        return exs
    for task in T.PERCEPTION_TASKS:
        for it in T.training_items(task, recipe.in_items_per_task, seed=recipe.seed + 1):
            exs.append(T.chat_example(it, "image", T.reasoning_target(it)))
    # clean addition facts in text ("What is 4+2?"), so the reasoning step itself is learnable
    for i in range(recipe.in_fact_items):
        n, k = rng.randint(0, 9), rng.randint(1, T.MAX_ADDEND)
        exs.append(T.ChatExample(text_message(f"What is {n}+{k}?"), None,
                                 f"<think>{n}+{k}={n + k}</think><answer>{n + k}</answer>",
                                 "arithmetic", str(n + k), "text"))
    conditions = ("image", "image", "described", "text")
    for i, it in enumerate(T.training_items("arithmetic", recipe.in_arith_items,
                                            seed=recipe.seed + 1)):
        noisy = rng.random() < recipe.in_distractor_rate
        exs.append(T.chat_example(it, conditions[i % len(conditions)],
                                  T.reasoning_target(it, distractor=noisy)))
    return exs


def _summarise_eval(results: dict) -> dict:
    out = {}
    for name, r in results.items():
        interval = wilson_interval(r["correct"], r["n"]) if r["n"] else Interval(0.0, 1.0, 0.95)
        out[name] = {"n": r["n"], "accuracy": r["accuracy"], "wilson95": [interval.low, interval.high],
                     "format_rate": r["format_rate"], "samples": r["samples"]}
    return out


#: Accuracy of a uniform guess among the possible answers (arithmetic: 1..12).
CHANCE = {"recognition": 1 / 2, "counting": 1 / 7, "reading": 1 / 10, "grounding": 1 / 12,
          "arithmetic": 1 / 12, "arithmetic_described": 1 / 12, "arithmetic_text": 1 / 12}


def _rl_items(recipe: Recipe):
    """GRPO prompts: ``rl_items`` visual-arithmetic items plus perception items (each task in
    turn) making up ``rl_perception_share`` of the whole, in a seeded shuffled order."""
    from vlmdiag.organism import tasks as T

    items = T.training_items("arithmetic", recipe.rl_items, seed=recipe.seed + 2)
    share = recipe.rl_perception_share
    n_perc = round(recipe.rl_items * share / (1 - share)) if 0 < share < 1 else 0
    per_task = {t: T.training_items(t, -(-n_perc // len(T.PERCEPTION_TASKS)), seed=recipe.seed + 2)
                for t in T.PERCEPTION_TASKS}
    for i in range(n_perc):
        task = T.PERCEPTION_TASKS[i % len(T.PERCEPTION_TASKS)]
        items.append(per_task[task][i // len(T.PERCEPTION_TASKS)])
    random.Random(f"{recipe.seed}:rl:mix").shuffle(items)
    return items


def build_organism(recipe: Recipe, out_dir: str | os.PathLike, *, progress: bool = True) -> dict:
    """Train all six stages of ``recipe`` into ``out_dir`` (must not exist or be empty).

    Layout: ``out_dir/<stage>/`` (config.json, generation_config.json, model.safetensors,
    tokenizer.json, tokenizer_config.json, processor_config.json, chat_template.jinja) for each
    stage of :data:`STAGES`, and ``out_dir/report/`` (training_report.json, loss_curves.png,
    rl_reward.png, accuracy.png). Writes no manifest (see :func:`ensure_built`).

    Returns:
        The training report (also written as JSON).
    """
    import torch

    from vlmdiag.organism import tasks as T
    from vlmdiag.organism import train as TR
    from vlmdiag.organism.tokenizer import build_processor, build_tokenizer

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    t_start = time.perf_counter()
    prev_threads = torch.get_num_threads()
    TR.set_determinism(recipe.seed, recipe.threads)
    times: dict[str, float] = {}
    n_eval = len(_eval_sets(recipe))
    totals = {"vision": recipe.vision_steps, "base": recipe.base_steps, "in": recipe.in_steps,
              **{s: recipe.rl_steps for s in RL_STAGES}, "evaluate": n_eval * len(STAGES)}
    report: dict = {"recipe": recipe.to_dict(), "recipe_hash": recipe.hash(),
                    "versions": _versions(), "stages": {}}
    try:
        with _Progress(progress, totals) as bar:
            t = time.perf_counter()
            tokenizer = build_tokenizer(T.corpus_texts(recipe.seed), vocab_size=recipe.vocab_size)
            processor = build_processor(tokenizer)
            model = TR.build_model(tokenizer, hidden=recipe.hidden, layers=recipe.layers,
                                   heads=recipe.heads, kv_heads=recipe.kv_heads,
                                   intermediate=recipe.intermediate,
                                   vision_hidden=recipe.vision_hidden,
                                   vision_depth=recipe.vision_depth, seed=recipe.seed)
            eval_sets = _eval_sets(recipe)
            times["setup"] = time.perf_counter() - t
            report["n_params"] = sum(p.numel() for p in model.parameters())
            report["regions"] = TR.region_layers(recipe.layers)
            evals: dict[str, dict] = {}
            eval_done = [0]

            def run_eval(stage: str, m) -> None:
                t0 = time.perf_counter()
                res = {}
                for name, exs in eval_sets.items():
                    res.update(TR.evaluate(m, processor, {name: exs}))
                    eval_done[0] += 1
                    bar.fn("evaluate")(eval_done[0], totals["evaluate"])
                evals[stage] = res
                times[f"eval:{stage}"] = time.perf_counter() - t0

            # Base, part 1: vision pre-training (the pre-trained ViT of a VLM pipeline)
            t = time.perf_counter()
            vision_losses = TR.pretrain_vision(
                model, processor, T.vision_scenes(recipe.vision_scenes, seed=recipe.seed),
                steps=recipe.vision_steps, batch_size=recipe.vision_batch, lr=recipe.vision_lr,
                seed=recipe.seed, progress=bar.fn("vision"))
            times["vision"] = time.perf_counter() - t

            # Base, part 2: perception SFT with short answers
            t = time.perf_counter()
            losses = TR.sft(model, processor, _sft_examples(recipe, "base"), steps=recipe.base_steps,
                            batch_size=recipe.base_batch, lr=recipe.base_lr, seed=recipe.seed,
                            progress=bar.fn("base"))
            _save_stage(model, processor, out / "base")
            times["base"] = time.perf_counter() - t
            report["stages"]["base"] = {"loss": losses, "vision_loss": vision_losses}
            run_eval("base", model)

            # IN: reasoning-format SFT (noisy arithmetic traces)
            t = time.perf_counter()
            losses = TR.sft(model, processor, _sft_examples(recipe, "in"), steps=recipe.in_steps,
                            batch_size=recipe.in_batch, lr=recipe.in_lr, seed=recipe.seed + 1,
                            progress=bar.fn("in"))
            _save_stage(model, processor, out / "in")
            times["in"] = time.perf_counter() - t
            report["stages"]["in"] = {"loss": losses}
            run_eval("in", model)

            # RL: GRPO from IN (loaded from its folder: trl's KL reference), optionally with one
            # region frozen
            from transformers import Qwen2_5_VLForConditionalGeneration

            rl_items = _rl_items(recipe)
            del model
            for stage, region in RL_STAGES.items():
                t = time.perf_counter()
                with _quiet_loading():
                    model = Qwen2_5_VLForConditionalGeneration.from_pretrained(out / "in")
                for p in model.parameters():
                    p.requires_grad_(True)
                frozen = TR.freeze_region(model, region) if region else []
                torch.manual_seed(recipe.seed + 3)
                with _quiet_loading():  # trl loads the KL reference from out/in
                    history = TR.grpo(
                        model, processor, rl_items, steps=recipe.rl_steps,
                        prompts_per_step=recipe.rl_prompts_per_step,
                        num_generations=recipe.rl_generations, lr=recipe.rl_lr,
                        temperature=recipe.rl_temperature, seed=recipe.seed + 3,
                        beta=recipe.rl_beta, max_completion_length=recipe.rl_max_completion,
                        progress=bar.fn(stage))
                for p in model.parameters():
                    p.requires_grad_(True)
                _save_stage(model, processor, out / stage)
                times[stage] = time.perf_counter() - t
                report["stages"][stage] = {"frozen_layers": frozen, "rl_history": [
                    {k: h.get(k) for k in ("step", "reward", "reward_std", "frac_reward_zero_std",
                                           "rewards/correctness_reward/mean",
                                           "rewards/format_reward/mean", "kl", "loss",
                                           "grad_norm")}
                    for h in history]}
                run_eval(stage, model)
    finally:
        torch.set_num_threads(prev_threads)

    times["total"] = time.perf_counter() - t_start
    report["times_s"] = times
    report["peak_rss_mb"] = _peak_rss_mb()
    report["accuracy"] = {stage: _summarise_eval(r) for stage, r in evals.items()}
    report["chance"] = CHANCE
    report["rl_vs_in"] = {}
    for stage in RL_STAGES:
        for name in ("arithmetic", "arithmetic_described", "arithmetic_text"):
            diff = (np.asarray(evals[stage][name]["per_item"], dtype=float)
                    - np.asarray(evals["in"][name]["per_item"], dtype=float))
            interval = bootstrap_interval(diff, seed=recipe.seed)
            report["rl_vs_in"].setdefault(stage, {})[name] = {
                "diff": float(diff.mean()), "bootstrap95": [interval.low, interval.high],
                "in": evals["in"][name]["accuracy"],
                "rl": evals[stage][name]["accuracy"]}
    report["weights_sha256"] = {s: _sha256(out / s / "model.safetensors") for s in STAGES}
    report_dir = out / REPORT_DIR
    report_dir.mkdir(exist_ok=True)
    (report_dir / "training_report.json").write_text(json.dumps(report, indent=1))
    try:
        _plots(report, report_dir)
    except Exception as error:  # plots are a convenience; never fail a build on them
        (report_dir / "plots-error.txt").write_text(f"{type(error).__name__}: {error}\n")
    return report


@contextmanager
def _quiet_loading() -> Iterator[None]:
    """No "Loading weights" progress bars from transformers inside the organism's own bar."""
    from transformers.utils import logging as hf_logging

    enabled = hf_logging.is_progress_bar_enabled()
    hf_logging.disable_progress_bar()
    try:
        yield
    finally:
        if enabled:
            hf_logging.enable_progress_bar()


def _versions() -> dict:
    import torch
    import transformers
    import trl

    return {"python": platform.python_version(), "torch": torch.__version__,
            "transformers": transformers.__version__, "trl": trl.__version__,
            "machine": platform.machine(), "cpus": os.cpu_count()}


def _plots(report: dict, out: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 3.5))
    for stage in ("base", "in"):
        ax.plot(report["stages"][stage]["loss"], label=stage)
    ax.set_xlabel("step"), ax.set_ylabel("loss (nats/token)"), ax.set_yscale("log"), ax.legend()
    ax.set_title("SFT loss")
    fig.tight_layout(), fig.savefig(out / "loss_curves.png", dpi=100), plt.close(fig)

    fig, ax = plt.subplots(figsize=(6, 3.5))
    for stage in RL_STAGES:
        hist = report["stages"][stage]["rl_history"]
        ax.plot([h["step"] for h in hist], [h["reward"] for h in hist], label=stage)
    ax.set_xlabel("GRPO step"), ax.set_ylabel("mean reward (correct + 0.5 format)"), ax.legend()
    ax.set_title("RL reward")
    fig.tight_layout(), fig.savefig(out / "rl_reward.png", dpi=100), plt.close(fig)

    names = list(report["accuracy"]["base"])
    fig, ax = plt.subplots(figsize=(9, 3.8))
    width = 0.8 / len(STAGES)
    for i, stage in enumerate(STAGES):
        acc = report["accuracy"][stage]
        ys = [acc[n]["accuracy"] for n in names]
        err = [[max(0.0, acc[n]["accuracy"] - acc[n]["wilson95"][0]) for n in names],
               [max(0.0, acc[n]["wilson95"][1] - acc[n]["accuracy"]) for n in names]]
        ax.bar([j + i * width for j in range(len(names))], ys, width, yerr=err, label=stage,
               capsize=2)
    ax.set_xticks([j + 0.4 - width / 2 for j in range(len(names))])
    ax.set_xticklabels(names, rotation=20, fontsize=8)
    ax.set_ylabel("held-out accuracy (95 % Wilson)"), ax.legend(fontsize=7, ncol=3)
    fig.tight_layout(), fig.savefig(out / "accuracy.png", dpi=100), plt.close(fig)


# --------------------------------------------------------------------------- cache


def cache_root(cache_dir: str | os.PathLike | None = None) -> Path:
    """``cache_dir``, else ``$VLMDIAG_CACHE_DIR``, else ``~/.cache/vlmdiag``."""
    if cache_dir is not None:
        return Path(cache_dir)
    env = os.environ.get("VLMDIAG_CACHE_DIR")
    return Path(env) if env else Path.home() / ".cache" / "vlmdiag"


def entry_dir(recipe: Recipe, cache_dir: str | os.PathLike | None = None) -> Path:
    """The cache folder of ``recipe``: ``<root>/organism/<name>-<hash[:16]>``."""
    return cache_root(cache_dir) / "organism" / f"{recipe.name}-{recipe.hash()[:16]}"


def _write_manifest(folder: Path, recipe: Recipe) -> None:
    files = {}
    for p in sorted(folder.rglob("*")):
        if p.is_file() and p.name != MANIFEST:
            files[str(p.relative_to(folder))] = {"size": p.stat().st_size, "sha256": _sha256(p)}
    manifest = {"recipe_hash": recipe.hash(), "recipe": recipe.to_dict(), "files": files,
                "complete": True}
    tmp = folder / (MANIFEST + ".part")
    tmp.write_text(json.dumps(manifest, indent=1))
    os.replace(tmp, folder / MANIFEST)


def validate_entry(folder: Path, recipe: Recipe, *, check_hashes: bool = True) -> str | None:
    """None when ``folder`` is a complete, intact build of ``recipe``; else why it is not.

    Checks: the manifest exists and parses, names this recipe's hash, every stage folder has
    ``config.json`` and ``model.safetensors``, and every listed file exists with the recorded size
    (and SHA-256 when ``check_hashes``).
    """
    mpath = folder / MANIFEST
    if not mpath.is_file():
        return f"{folder}: no {MANIFEST} (half-written or foreign folder)"
    try:
        manifest = json.loads(mpath.read_text())
        files = manifest["files"]
    except Exception as error:
        return f"{mpath}: unreadable manifest ({error})"
    if manifest.get("recipe_hash") != recipe.hash():
        return f"{mpath}: built from another recipe"
    for stage in STAGES:
        for name in ("config.json", "model.safetensors"):
            if f"{stage}/{name}" not in files:
                return f"{folder}: stage {stage!r} lacks {name}"
    for rel, info in files.items():
        p = folder / rel
        if not p.is_file():
            return f"{p}: missing"
        if p.stat().st_size != info["size"]:
            return f"{p}: size {p.stat().st_size} != {info['size']} (truncated or modified)"
        if check_hashes and _sha256(p) != info["sha256"]:
            return f"{p}: SHA-256 mismatch (corrupted)"
    return None


@contextmanager
def _locked(path: Path) -> Iterator[None]:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a+") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def build_into(recipe: Recipe, final: Path, *, progress: bool = True) -> dict:
    """Build ``recipe`` into a temporary sibling of ``final``, write the manifest, rename it to
    ``final``. ``final`` must not exist (the caller handles stale entries and locking)."""
    final.parent.mkdir(parents=True, exist_ok=True)
    tmp = final.parent / f".tmp-{final.name}-{os.getpid()}-{uuid.uuid4().hex[:8]}"
    try:
        report = build_organism(recipe, tmp, progress=progress)
        _write_manifest(tmp, recipe)
        os.rename(tmp, final)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return report


def ensure_built(recipe: Recipe, cache_dir: str | os.PathLike | None = None, *,
                 progress: bool = True) -> Path:
    """The cache folder of a complete build of ``recipe``, building it first if needed.

    A missing, half-written or corrupted entry is (re)built under an exclusive ``flock`` on
    ``<root>/organism/<entry>.lock``, so concurrent processes (pytest-xdist workers) build it once
    and never see a partial folder. A valid entry is returned without taking the lock.
    """
    final = entry_dir(recipe, cache_dir)
    if validate_entry(final, recipe) is None:
        return final
    with _locked(final.parent / f"{final.name}.lock"):
        problem = validate_entry(final, recipe)
        if problem is None:  # another process finished it while we waited
            return final
        # we hold the lock, so temporary folders of this entry are leftovers of killed builders
        for stale in final.parent.glob(f".tmp-{final.name}-*"):
            shutil.rmtree(stale, ignore_errors=True)
        if final.exists():
            trash = final.parent / f".trash-{final.name}-{os.getpid()}-{uuid.uuid4().hex[:8]}"
            os.rename(final, trash)
            shutil.rmtree(trash, ignore_errors=True)
            print(f"vlmdiag organism: rebuilding cache entry ({problem})", file=sys.stderr)
        build_into(recipe, final, progress=progress)
    return final
