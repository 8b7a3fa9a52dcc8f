"""Building the model organism: the pipeline and the cache entry it builds into.

``build_organism(recipe, out_dir)`` runs Base -> IN -> RL (+ the region-frozen RL runs asked for)
and writes one Hugging Face checkpoint folder per stage plus ``report/`` (``training_report.json``
and plots); ``build_rl_stage`` adds one RL run to a finished build. :func:`ensure_built` keeps
builds in a cache keyed by the recipe hash: it builds into a temporary folder, renames it into
place when complete, validates entries (a manifest of file sizes and SHA-256 written last) and
serialises concurrent builders with ``fcntl.flock``.

The recipe lives in :mod:`~vlmdiag.organism.recipe`, the training sets in
:mod:`~vlmdiag.organism.data`, the report in :mod:`~vlmdiag.organism.report` and the cache entries'
manifest, validation and lock in :mod:`~vlmdiag.organism.cache`; this module re-exports them under
their old names.
"""

from __future__ import annotations

import json
import os
import shutil
import sys
import time
import uuid
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator, Sequence

import numpy as np

from vlmdiag.organism.cache import (MANIFEST, _locked, _sha256, _write_manifest,  # noqa: F401
                                    cache_root, entry_dir, validate_entry)
from vlmdiag.organism.data import _eval_sets, _rl_items, _sft_examples
from vlmdiag.organism.recipe import (CODE_FILES, FIRST_STAGES, ON_DEMAND_STAGES,  # noqa: F401
                                     PIPELINE_VERSION, RECIPES, RL_STAGES, STAGES, Recipe,
                                     _code_hash, get_recipe)
from vlmdiag.organism.report import (CHANCE, REPORT_DIR, _peak_rss_mb, _plots, _Progress,
                                     _summarise_eval, _versions)
from vlmdiag.stats import bootstrap_interval


def _save_stage(model, processor, path: Path) -> None:
    from vlmdiag.organism.tokenizer import save_processor

    path.mkdir(parents=True, exist_ok=True)
    with _hf_bars_off():
        model.save_pretrained(path)
    save_processor(processor, path)


def build_organism(recipe: Recipe, out_dir: str | os.PathLike, *, progress: bool = True,
                   jobs: int | None = None, stages: Sequence[str] = FIRST_STAGES) -> dict:
    """Train ``stages`` of ``recipe`` (base, in and rl always) into ``out_dir`` (must not exist
    or be empty).

    The RL runs start from the saved IN stage and run in up to ``jobs`` processes at once
    (default: 2 where the process may use 2 or more CPUs, else 1, in this process); the weights
    are the same either way, and the same as :func:`build_rl_stage` gives later. Worker processes
    are spawned, so a script calling this needs the usual ``if __name__ == "__main__":`` guard.

    Layout: ``out_dir/<stage>/`` (config.json, generation_config.json, model.safetensors,
    tokenizer.json, tokenizer_config.json, processor_config.json, chat_template.jinja) for each
    stage, and ``out_dir/report/`` (training_report.json, loss_curves.png, rl_reward.png,
    accuracy.png). Writes no manifest (see :func:`ensure_built`).

    Raises:
        ValueError: ``stages`` names an unknown stage.

    Returns:
        The training report (also written as JSON).
    """
    import torch

    from vlmdiag.organism import tasks as T
    from vlmdiag.organism import train as TR
    from vlmdiag.organism.tokenizer import build_processor, build_tokenizer

    unknown = sorted(set(stages) - set(STAGES))
    if unknown:
        raise ValueError(f"unknown organism stage(s) {', '.join(unknown)}; valid: {', '.join(STAGES)}")
    stages = [s for s in STAGES if s in {"base", "in", "rl", *stages}]
    rl_stages = [s for s in stages if s in RL_STAGES]
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    t_start = time.perf_counter()
    prev_threads = torch.get_num_threads()
    TR.set_determinism(recipe.seed, recipe.threads)
    times: dict[str, float] = {}
    n_eval = len(_eval_sets(recipe))
    totals = {"vision": recipe.vision_steps, "base": recipe.base_steps, "in": recipe.in_steps,
              **{s: recipe.rl_steps for s in rl_stages}, "evaluate": n_eval * len(stages)}
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

                def one_set_done() -> None:
                    eval_done[0] += 1
                    bar.fn("evaluate")(eval_done[0], totals["evaluate"])

                evals[stage] = _evaluate(m, processor, eval_sets, one_set_done)
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

            # RL: GRPO from IN, optionally with one region frozen: independent runs, in parallel
            # processes where there are cores (each is seeded and single-threaded, so its weights
            # do not depend on where it ran)
            del model
            for stage, (stage_report, res, seconds) in _rl_runs(recipe, out, rl_stages, jobs,
                                                                (processor, eval_sets)):
                report["stages"][stage] = stage_report
                evals[stage] = res
                times.update(seconds)
                bar.fn(stage)(recipe.rl_steps, recipe.rl_steps)
                eval_done[0] += n_eval
                bar.fn("evaluate")(eval_done[0], totals["evaluate"])
    finally:
        torch.set_num_threads(prev_threads)

    times["total"] = time.perf_counter() - t_start
    report["times_s"] = times
    report["peak_rss_mb"] = _peak_rss_mb()
    report["rl_jobs"] = _jobs(jobs)
    # the largest RL worker process (0 when the runs stayed in this process)
    report["peak_rss_rl_worker_mb"] = _peak_rss_mb(children=True)
    report["accuracy"] = {stage: _summarise_eval(r) for stage, r in evals.items()}
    report["chance"] = CHANCE
    # IN's per-item results, so an RL stage built later is compared on the same items
    report["in_per_item"] = {name: evals["in"][name]["per_item"] for name in RL_VS_IN_SETS}
    report["rl_vs_in"] = {stage: _rl_vs_in(recipe, evals[stage], report["in_per_item"])
                          for stage in rl_stages}
    report["weights_sha256"] = {s: _sha256(out / s / "model.safetensors") for s in stages}
    _write_report(report, out)
    return report


#: The held-out sets on which the report compares each RL stage with IN.
RL_VS_IN_SETS = ("arithmetic", "arithmetic_described", "arithmetic_text")


def _rl_vs_in(recipe: Recipe, rl_eval: dict, in_per_item: dict) -> dict:
    """RL stage minus IN on the same held-out items: mean difference and paired bootstrap 95 %."""
    out = {}
    for name in RL_VS_IN_SETS:
        rl_items = np.asarray(rl_eval[name]["per_item"], dtype=float)
        in_items = np.asarray(in_per_item[name], dtype=float)
        diff = rl_items - in_items
        interval = bootstrap_interval(diff, seed=recipe.seed)
        out[name] = {"diff": float(diff.mean()), "bootstrap95": [interval.low, interval.high],
                     "in": float(in_items.mean()), "rl": rl_eval[name]["accuracy"]}
    return out


def _write_report(report: dict, out: Path) -> None:
    report_dir = out / REPORT_DIR
    report_dir.mkdir(exist_ok=True)
    (report_dir / "training_report.json").write_text(json.dumps(report, indent=1))
    try:
        _plots(report, report_dir)
    except Exception as error:  # plots are a convenience; never fail a build on them
        (report_dir / "plots-error.txt").write_text(f"{type(error).__name__}: {error}\n")


def build_rl_stage(recipe: Recipe, core: Path, stage: str, out_dir: str | os.PathLike, *,
                   progress: bool = True) -> dict:
    """Run one RL stage of :data:`RL_STAGES` from the IN stage of ``core`` (a finished
    :func:`build_organism` folder) into ``out_dir/<stage>``, with ``out_dir/report/`` holding its
    history, accuracy and RL − IN on IN's items. Runs in this process on ``recipe.rl_threads``
    threads, seeded as in :func:`build_organism`, so the weights are bitwise those a whole build
    gives that stage.

    Raises:
        ValueError: ``stage`` is not an RL stage.
    """
    if stage not in RL_STAGES:
        raise ValueError(f"{stage!r} is not an RL stage; RL stages: {', '.join(RL_STAGES)}")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    t_start = time.perf_counter()
    core_report = json.loads((Path(core) / REPORT_DIR / "training_report.json").read_text())
    with _Progress(progress, {stage: recipe.rl_steps}) as bar:
        stage_report, res, seconds = _rl_run(recipe, str(out), stage, RL_STAGES[stage],
                                             in_dir=Path(core) / "in", progress=bar.fn(stage))
    report = {"recipe": recipe.to_dict(), "recipe_hash": recipe.hash(), "versions": _versions(),
              "core": str(core), "stages": {stage: stage_report},
              "times_s": {**seconds, "total": time.perf_counter() - t_start},
              "peak_rss_mb": _peak_rss_mb(),
              "accuracy": {stage: _summarise_eval(res)}, "chance": CHANCE,
              "rl_vs_in": {stage: _rl_vs_in(recipe, res, core_report["in_per_item"])},
              "weights_sha256": {stage: _sha256(out / stage / "model.safetensors")}}
    _write_report(report, out)
    return report


def _jobs(jobs: int | None) -> int:
    from vlmdiag.runtime.threads import usable_cpus

    return max(1, jobs if jobs is not None else min(2, usable_cpus()))


def _evaluate(model, processor, eval_sets: dict, one_set_done=None) -> dict:
    """Held-out evaluation of ``model`` on every set of ``eval_sets`` (:func:`TR.evaluate`),
    calling ``one_set_done()`` after each set."""
    from vlmdiag.organism import train as TR

    results = {}
    for name, exs in eval_sets.items():
        results.update(TR.evaluate(model, processor, {name: exs}))
        if one_set_done is not None:
            one_set_done()
    return results


def _rl_runs(recipe: Recipe, out: Path, rl_stages: Sequence[str], jobs: int | None,
             prepared: tuple) -> Iterator[tuple[str, tuple]]:
    """``(stage, (stage report, evaluation results, seconds))`` of every stage of ``rl_stages``,
    in order, run in this process (``jobs`` 1, with the ``prepared`` processor and evaluation
    sets) or in spawned worker processes (which build their own)."""
    stages = [(stage, RL_STAGES[stage]) for stage in rl_stages]
    if _jobs(jobs) == 1:
        for stage, region in stages:
            yield stage, _rl_run(recipe, str(out), stage, region, prepared)
        return
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor

    with ProcessPoolExecutor(_jobs(jobs), mp_context=multiprocessing.get_context("spawn")) as pool:
        futures = [(stage, pool.submit(_rl_run, recipe, str(out), stage, region))
                   for stage, region in stages]
        for stage, future in futures:
            yield stage, future.result()


def _rl_run(recipe: Recipe, out_dir: str, stage: str, region: str | None,
            prepared: tuple | None = None, *, in_dir: Path | None = None,
            progress=None) -> tuple[dict, dict, dict]:
    """One GRPO run from ``in_dir`` (default ``out_dir/in``; trl's KL reference), ``region``'s
    layers frozen, on ``recipe.rl_threads`` threads; saves ``out_dir/<stage>`` and evaluates it.
    ``prepared``: ``(processor, eval_sets)``, built here when None (a spawned worker). Returns
    (stage report, evaluation results, seconds spent training and evaluating, under ``stage`` and
    ``eval:<stage>``)."""
    import torch
    from transformers import Qwen2_5_VLForConditionalGeneration

    from vlmdiag.organism import tasks as T
    from vlmdiag.organism import train as TR
    from vlmdiag.organism.tokenizer import build_processor, build_tokenizer

    out = Path(out_dir)
    prev_threads = torch.get_num_threads()
    TR.set_determinism(recipe.seed, recipe.rl_threads)
    try:
        if prepared is None:
            tokenizer = build_tokenizer(T.corpus_texts(recipe.seed), vocab_size=recipe.vocab_size)
            prepared = (build_processor(tokenizer), _eval_sets(recipe))
        processor, eval_sets = prepared
        t = time.perf_counter()
        with _hf_bars_off():
            model = Qwen2_5_VLForConditionalGeneration.from_pretrained(in_dir or out / "in")
        for p in model.parameters():
            p.requires_grad_(True)
        frozen = TR.freeze_region(model, region) if region else []
        torch.manual_seed(recipe.seed + 3)
        with _hf_bars_off():  # trl loads the KL reference from the IN folder
            history = TR.grpo(
                model, processor, _rl_items(recipe), steps=recipe.rl_steps,
                prompts_per_step=recipe.rl_prompts_per_step,
                num_generations=recipe.rl_generations, lr=recipe.rl_lr,
                temperature=recipe.rl_temperature, seed=recipe.seed + 3,
                beta=recipe.rl_beta, max_completion_length=recipe.rl_max_completion,
                progress=progress)
        for p in model.parameters():
            p.requires_grad_(True)
        _save_stage(model, processor, out / stage)
        seconds = {stage: time.perf_counter() - t}
        t = time.perf_counter()
        results = _evaluate(model, processor, eval_sets)
        seconds[f"eval:{stage}"] = time.perf_counter() - t
        stage_report = {"frozen_layers": frozen, "rl_history": [
            {k: h.get(k) for k in ("step", "reward", "reward_std", "frac_reward_zero_std",
                                   "rewards/correctness_reward/mean",
                                   "rewards/format_reward/mean", "kl", "loss", "grad_norm")}
            for h in history]}
        return stage_report, results, seconds
    finally:
        torch.set_num_threads(prev_threads)


@contextmanager
def _hf_bars_off() -> Iterator[None]:
    """No "Loading weights" or "Writing model shards" progress bars from transformers inside the
    organism's own bar."""
    from transformers.utils import logging as hf_logging

    enabled = hf_logging.is_progress_bar_enabled()
    hf_logging.disable_progress_bar()
    try:
        yield
    finally:
        if enabled:
            hf_logging.enable_progress_bar()


def build_into(recipe: Recipe, final: Path, *, progress: bool = True, stage: str | None = None,
               core: Path | None = None, stages: Sequence[str] = FIRST_STAGES) -> dict:
    """Build ``stages`` of ``recipe`` (or, with ``stage``, that on-demand stage from the build
    ``core``) into a temporary sibling of ``final``, write the manifest, rename it to ``final``.
    ``final`` must not exist (the caller handles stale entries and locking)."""
    final.parent.mkdir(parents=True, exist_ok=True)
    tmp = final.parent / f".tmp-{final.name}-{os.getpid()}-{uuid.uuid4().hex[:8]}"
    try:
        if stage is None:
            report = build_organism(recipe, tmp, progress=progress, stages=stages)
        else:
            report = build_rl_stage(recipe, core, stage, tmp, progress=progress)
        _write_manifest(tmp, recipe)
        os.rename(tmp, final)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return report


def ensure_built(recipe: Recipe, cache_dir: str | os.PathLike | None = None, *,
                 progress: bool = True, stage: str | None = None) -> Path:
    """The cache folder of a complete build of ``recipe``'s :data:`FIRST_STAGES`, or with
    ``stage`` (one of :data:`ON_DEMAND_STAGES`) of that stage, building it first if needed
    (an on-demand stage needs the first stages' IN, so those are built first).

    A missing, half-written or corrupted entry is (re)built under an exclusive ``flock`` on
    ``<root>/organism/<entry>.lock``, so concurrent processes (pytest-xdist workers) build it once
    and never see a partial folder. A valid entry is returned without taking the lock.

    Raises:
        ValueError: ``stage`` is not an on-demand stage.
    """
    if stage is not None and stage not in ON_DEMAND_STAGES:
        raise ValueError(f"{stage!r} is not built on demand; those are: {', '.join(ON_DEMAND_STAGES)}")
    stages = (stage,) if stage else FIRST_STAGES
    final = entry_dir(recipe, cache_dir, stage)
    if validate_entry(final, recipe, stages=stages) is None:
        return final
    core = ensure_built(recipe, cache_dir, progress=progress) if stage else None
    with _locked(final.parent / f"{final.name}.lock"):
        problem = validate_entry(final, recipe, stages=stages)
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
        build_into(recipe, final, progress=progress, stage=stage, core=core)
    return final
