"""The organism's supervised stages (vision pre-training, Base, IN) and their evaluations, in one
process per batch shard.

Every step's batch is split into ``recipe.shards`` equal shards (:class:`supervised.Shards`).
Where the build may use that many CPUs, each shard runs in its own spawned process on
``recipe.threads`` threads and the processes sum their gradients through a gloo group; elsewhere
one process runs the shards in turn. Both give bitwise the same weights. At 12 layers a training
step is arithmetic on small matrices, which two one-thread processes do faster than one process on
two threads (the profile in bench/RESULTS.md, "Model organism build").
"""

from __future__ import annotations

import os
import queue as queue_module
import tempfile
import time
import traceback
from datetime import timedelta
from pathlib import Path
from typing import Callable

from vlmdiag.organism.data import _eval_sets, _sft_examples
from vlmdiag.organism.recipe import Recipe

#: ``(name, done, total)``: a training stage's steps (``vision``, ``base``, ``in``), or
#: ``("evaluate", 1, 0)`` for one more evaluation set done.
EventFn = Callable[[str, int, int], None]


def run_sft_stages(recipe: Recipe, out: Path, world: int, on_event: EventFn) -> dict:
    """Train vision, Base and IN into ``out/base`` and ``out/in`` and evaluate both, in ``world``
    processes (1, or ``recipe.shards``). Returns ``{"n_params", "vision_loss", "base_loss",
    "in_loss", "eval": {"base": results, "in": results}, "times_s": {...}}``.

    Raises:
        RuntimeError: a shard process failed (its traceback in the message) or died.
    """
    if world == 1:
        return _rank(recipe, str(out), 0, 1, "", on_event)
    import multiprocessing

    ctx = multiprocessing.get_context("spawn")
    events = ctx.Queue()
    results: dict[int, dict] = {}
    with tempfile.TemporaryDirectory(prefix="vlmdiag-organism-") as tmp:
        rendezvous = f"file://{Path(tmp) / 'rendezvous'}"
        procs = [ctx.Process(target=_rank_process, daemon=True,
                             args=(recipe, str(out), rank, world, rendezvous, events))
                 for rank in range(world)]
        for p in procs:
            p.start()
        try:
            while len(results) < world:
                try:
                    kind, rank, payload = events.get(timeout=1.0)
                except queue_module.Empty:
                    # exited without sending its result (sent before a normal exit, so read by now)
                    dead = {r: p.exitcode for r, p in enumerate(procs)
                            if p.exitcode is not None and r not in results}
                    if dead:
                        raise RuntimeError(f"organism SFT processes died (rank: exit code {dead})") from None
                    continue
                if kind == "event":
                    on_event(*payload)
                elif kind == "result":
                    results[rank] = payload
                else:
                    raise RuntimeError(f"organism SFT process {rank} of {world} failed:\n{payload}")
        finally:
            for p in procs:
                if p.is_alive() and len(results) < world:
                    p.terminate()
                p.join()
    merged = dict(results[0])
    for rank in range(1, world):
        for stage, res in results[rank]["eval"].items():
            merged["eval"][stage].update(res)
        for key, seconds in results[rank]["times_s"].items():
            merged["times_s"][key] = max(seconds, merged["times_s"].get(key, 0.0))
    merged["eval"] = {stage: {name: res[name] for name in _eval_sets(recipe)}
                      for stage, res in merged["eval"].items()}  # the sets' own order
    return merged


def _rank_process(recipe: Recipe, out_dir: str, rank: int, world: int, rendezvous: str,
                  events) -> None:
    """A spawned shard process: runs :func:`_rank`, sends its events and result to ``events``,
    and stops if its parent died (a killed builder must not leave trainers behind)."""
    parent = os.getppid()

    def on_event(name: str, done: int, total: int) -> None:
        if os.getppid() != parent:
            os._exit(1)
        if rank == 0 or name == "evaluate":
            events.put(("event", rank, (name, done, total)))

    try:
        events.put(("result", rank, _rank(recipe, out_dir, rank, world, rendezvous, on_event)))
    except BaseException:
        events.put(("error", rank, traceback.format_exc()))


def _rank(recipe: Recipe, out_dir: str, rank: int, world: int, rendezvous: str,
          on_event: EventFn) -> dict:
    """Shard ``rank`` of ``world``: vision pre-training, Base SFT (saved by rank 0), its share of
    the Base evaluation sets, IN SFT (saved by rank 0), its share of the IN evaluation."""
    import torch

    from vlmdiag.organism import tasks as T
    from vlmdiag.organism import train as TR
    from vlmdiag.organism.build import _evaluate, _save_stage
    from vlmdiag.organism.tokenizer import build_processor, build_tokenizer

    out = Path(out_dir)
    prev_threads = torch.get_num_threads()
    TR.set_determinism(recipe.seed, recipe.threads)
    if world > 1:
        import torch.distributed as dist

        dist.init_process_group("gloo", init_method=rendezvous, rank=rank, world_size=world,
                                timeout=timedelta(minutes=10))
    try:
        times: dict[str, float] = {}
        tokenizer = build_tokenizer(T.corpus_texts(recipe.seed), vocab_size=recipe.vocab_size)
        processor = build_processor(tokenizer)
        model = TR.build_model(tokenizer, hidden=recipe.hidden, layers=recipe.layers,
                               heads=recipe.heads, kv_heads=recipe.kv_heads,
                               intermediate=recipe.intermediate, vision_hidden=recipe.vision_hidden,
                               vision_depth=recipe.vision_depth, seed=recipe.seed)
        shards = TR.Shards(recipe.shards, rank, world)
        eval_sets = _share(_eval_sets(recipe), rank, world)
        report: dict = {"n_params": sum(p.numel() for p in model.parameters()), "eval": {}}

        def progress(name: str):
            return lambda done, total: on_event(name, done, total)

        t = time.perf_counter()
        report["vision_loss"] = TR.pretrain_vision(
            model, processor, T.vision_scenes(recipe.vision_scenes, seed=recipe.seed),
            steps=recipe.vision_steps, batch_size=recipe.vision_batch, lr=recipe.vision_lr,
            seed=recipe.seed, shards=shards, progress=progress("vision"))
        times["vision"] = time.perf_counter() - t
        for stage, steps, batch, lr, seed in (
                ("base", recipe.base_steps, recipe.base_batch, recipe.base_lr, recipe.seed),
                ("in", recipe.in_steps, recipe.in_batch, recipe.in_lr, recipe.seed + 1)):
            t = time.perf_counter()
            report[f"{stage}_loss"] = TR.sft(model, processor, _sft_examples(recipe, stage),
                                             steps=steps, batch_size=batch, lr=lr, seed=seed,
                                             shards=shards, progress=progress(stage))
            if rank == 0:
                _save_stage(model, processor, out / stage)
            times[stage] = time.perf_counter() - t
            t = time.perf_counter()
            report["eval"][stage] = _evaluate(model, processor, eval_sets,
                                              lambda: on_event("evaluate", 1, 0))
            times[f"eval:{stage}"] = time.perf_counter() - t
        report["times_s"] = times
        return report
    finally:
        if world > 1:
            dist.destroy_process_group()
        torch.set_num_threads(prev_threads)


def _share(sets: dict, rank: int, world: int) -> dict:
    """The evaluation sets process ``rank`` of ``world`` evaluates: whole sets (so a set's
    results do not depend on ``world``), the largest first to the least-loaded process."""
    load = [0] * world
    mine = {}
    for name in sorted(sets, key=lambda n: (-len(sets[n]), n)):
        owner = load.index(min(load))
        load[owner] += len(sets[name])
        if owner == rank:
            mine[name] = sets[name]
    return mine
