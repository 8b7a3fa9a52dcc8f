"""Organism SFT step time: one process on 2 threads (the session-8 build) against one process per
batch shard on 1 thread each (the build now, vlmdiag/organism/sft_stages.py), side by side.

Each setting runs ``--steps`` steps of the full recipe's Base or IN SFT (batch 16, the recipe's
examples) in fresh processes, after ``--warmup`` steps; the settings alternate for ``--rounds``
rounds so that a drift of the shared machine hits both. Prints a markdown table.

    python bench/bench_sft_shards.py --steps 30 --rounds 2
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import statistics
import tempfile
import time


def _train(stage: str, threads: int, rank: int, world: int, steps: int, warmup: int,
           rendezvous: str, out) -> None:

    from vlmdiag.organism import tasks as T
    from vlmdiag.organism import train as TR
    from vlmdiag.organism.data import _sft_examples
    from vlmdiag.organism.recipe import RECIPES
    from vlmdiag.organism.tokenizer import build_processor, build_tokenizer

    r = RECIPES["full"]
    TR.set_determinism(r.seed, threads)
    if world > 1:
        import torch.distributed as dist

        dist.init_process_group("gloo", init_method=rendezvous, rank=rank, world_size=world)
    processor = build_processor(build_tokenizer(T.corpus_texts(r.seed), vocab_size=r.vocab_size))
    model = TR.build_model(processor.tokenizer, hidden=r.hidden, layers=r.layers, heads=r.heads,
                           kv_heads=r.kv_heads, intermediate=r.intermediate,
                           vision_hidden=r.vision_hidden, vision_depth=r.vision_depth, seed=r.seed)
    examples = _sft_examples(r, stage)
    marks = {}

    def progress(done: int, total: int) -> None:
        marks[done] = time.perf_counter()

    TR.sft(model, processor, examples, steps=warmup + steps, batch_size=16, lr=r.base_lr,
           seed=r.seed, shards=TR.Shards(2 if world > 1 else 1, rank, world), progress=progress)
    if rank == 0:
        out.put((marks[warmup + steps] - marks[warmup]) / steps)
    if world > 1:
        dist.destroy_process_group()


def run(setting: str, stage: str, steps: int, warmup: int) -> float:
    """Seconds a step for ``setting`` ``one-process-2-threads`` or ``2-shard-processes``."""
    ctx = multiprocessing.get_context("spawn")
    out = ctx.Queue()
    world, threads = (1, 2) if setting == "one-process-2-threads" else (2, 1)
    with tempfile.TemporaryDirectory() as tmp:
        procs = [ctx.Process(target=_train, args=(stage, threads, rank, world, steps, warmup,
                                                  f"file://{tmp}/rendezvous", out))
                 for rank in range(world)]
        for p in procs:
            p.start()
        seconds = out.get()
        for p in procs:
            p.join()
    return seconds


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, default=30)
    ap.add_argument("--warmup", type=int, default=5)
    ap.add_argument("--rounds", type=int, default=2)
    args = ap.parse_args()
    settings = ("one-process-2-threads", "2-shard-processes")
    load_before = os.getloadavg()
    rows = []
    for stage in ("base", "in"):
        times = {s: [] for s in settings}
        for _ in range(args.rounds):
            for s in settings:
                times[s].append(run(s, stage, args.steps, args.warmup))
        med = {s: statistics.median(v) for s, v in times.items()}
        for s in settings:
            rows.append(f"| {stage} | {s} | {', '.join(f'{t:.3f}' for t in times[s])} | "
                        f"{med[s]:.3f} | {med[s] / med[settings[0]]:.2f} |")
    print(f"`python bench/bench_sft_shards.py --steps {args.steps} --rounds {args.rounds}` "
          f"(load average before {load_before[0]:.1f}, after {os.getloadavg()[0]:.1f})\n")
    print("| stage | setting | s/step, each round | median | × one process |")
    print("|---|---|---|---|---|")
    print("\n".join(rows))


if __name__ == "__main__":
    main()
