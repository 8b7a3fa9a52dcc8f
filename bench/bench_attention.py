"""Benchmark: reasoning→visual attention capture vs eager ``output_attentions=True``.

Run:  python bench/bench_attention.py [--quick] [--json PATH]

Each measurement runs in its own subprocess, so peak memory is that process's own high-water
mark: on CPU the peak resident set size (``ru_maxrss``) minus the RSS just before the measured
forward pass; on CUDA ``torch.cuda.max_memory_allocated`` minus the allocation before it. Time is
the median of ``--repeats`` runs of the measured call (after the memory run).

Modes:
* ``eager``   — LLM with eager attention (vision tower SDPA), one forward with ``output_attentions=True``, then the
  mass is read from the returned ``[B, heads, S, S]`` matrices (what research code does);
* ``capture`` — model with SDPA, :func:`vlmdiag.measure.attention.attention_on_sequence`;
* ``plain``   — model with SDPA, a forward pass without any capture (the floor; run first and last);
* ``capture_sinks`` — ``capture`` also measuring the mass without visual sinks (``sink_ratio=20``);
* ``recompute`` — ``capture`` forced onto the fp32 row recompute (the way before the fused path,
  still used for bf16 models).

Model: the tiny Qwen2.5-VL of ``tests/inference/tiny_models.py`` with a wider text model (hidden
256, 8 query / 2 KV heads), random weights; one image of 1,024 visual tokens (a 64×64 patch grid),
text filling the sequence up to S tokens, and the last S/4 tokens as reasoning queries.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests" / "inference"))


def build(seq_len: int, layers: int, visual: int = 1024):
    import torch

    import tiny_models
    from vlmdiag.runtime.model import wrap_model

    torch.manual_seed(0)
    model = tiny_models.qwen25_model(tiny_models.qwen_tokenizer(), layers=layers, hidden=256, heads=8)
    model = wrap_model(tiny_models.spread_init(model, seed=0))
    cfg = model.model.config
    side = int(round((visual * 4) ** 0.5))
    grid = torch.tensor([[1, side, side]])
    pixels = torch.randn(side * side, 3 * 2 * 14 * 14)
    n_text = seq_len - visual - 2
    head = torch.randint(20, 400, (16,))
    tail = torch.randint(20, 400, (n_text - 16,))
    ids = torch.cat([head, torch.tensor([cfg.vision_start_token_id] + [cfg.image_token_id] * visual
                                        + [cfg.vision_end_token_id]), tail])[None]
    inputs = dict(input_ids=ids, attention_mask=torch.ones_like(ids), pixel_values=pixels,
                  image_grid_thw=grid, mm_token_type_ids=(ids == cfg.image_token_id).long())
    query = torch.zeros_like(ids, dtype=torch.bool)
    query[0, -seq_len // 4:] = True
    return model, inputs, query


def _rss_kib() -> int:
    with open("/proc/self/status") as handle:
        for line in handle:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


def worker(mode: str, seq_len: int, layers: int, repeats: int) -> dict:
    import torch

    from vlmdiag.measure import attention_capture
    from vlmdiag.measure.attention import attention_on_sequence, capture_on_sequence

    torch.set_num_threads(int(os.environ.get("BENCH_THREADS", "2")))
    loaded, inputs, query = build(seq_len, layers)
    cuda = torch.cuda.is_available()
    if cuda:
        loaded.model.cuda()
        inputs = {k: v.cuda() for k, v in inputs.items()}
        query = query.cuda()
    cols = (inputs["input_ids"][0] == loaded.image_token_id)
    if mode == "eager":  # the LLM only: the vision tower keeps SDPA in every mode
        loaded.model.set_attn_implementation({"text_config": "eager"})

    attention_capture.FUSED = mode != "recompute"

    def run():
        with torch.inference_mode():
            if mode in ("capture", "recompute"):
                return attention_on_sequence(loaded, inputs, query)[0]
            if mode == "capture_sinks":
                return capture_on_sequence(loaded, inputs, query, sink_ratio=20.0).mass
            if mode == "eager":
                out = loaded.model(**inputs, output_attentions=True, use_cache=False)
                rows = query[0]
                return torch.stack([a[0][:, rows][:, :, cols].sum(-1).mean(-1) for a in out.attentions])
            loaded.model(**inputs, use_cache=False)
            return None

    # No warm-up before the memory run: it would set the high-water mark.
    if cuda:
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        before = torch.cuda.memory_allocated()
    else:
        before = _rss_kib() * 1024
    start = time.perf_counter()
    result = run()
    if cuda:
        torch.cuda.synchronize()
        peak = torch.cuda.max_memory_allocated() - before
    else:
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 - before
    first = time.perf_counter() - start
    del result
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        run()
        if cuda:
            torch.cuda.synchronize()
        times.append(time.perf_counter() - start)
    return dict(mode=mode, seq_len=seq_len, layers=layers, peak_mib=peak / 2**20,
                time_s=statistics.median(times), first_s=first, device="cuda" if cuda else "cpu",
                threads=torch.get_num_threads())


def measure(mode: str, seq_len: int, layers: int, repeats: int) -> dict:
    out = subprocess.run([sys.executable, __file__, "--worker", mode, str(seq_len), str(layers), str(repeats)],
                         capture_output=True, text=True, check=False)
    if out.returncode != 0:
        return dict(mode=mode, seq_len=seq_len, layers=layers, error=out.stderr.strip().splitlines()[-1:])
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--worker", nargs=4, metavar=("MODE", "SEQ", "LAYERS", "REPEATS"))
    parser.add_argument("--quick", action="store_true", help="only the 4,096-token comparison")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--json", type=Path, help="also write the rows as JSON here")
    args = parser.parse_args()
    if args.worker:
        mode, seq, layers, repeats = args.worker
        print(json.dumps(worker(mode, int(seq), int(layers), int(repeats))))
        return

    rows = []
    print("## 4,096 tokens, 4 layers: capture vs eager output_attentions (side by side)")
    main_rows = [measure(m, 4096, 4, args.repeats)
                 for m in ("plain", "capture", "capture_sinks", "recompute", "eager", "plain")]
    rows += main_rows
    by = {r["mode"]: r for r in main_rows}
    plains = [r["time_s"] for r in main_rows if r["mode"] == "plain" and "time_s" in r]
    if plains and "time_s" in by["capture"]:
        floor = min(plains)
        print(f"  plain SDPA forward {floor:.3f} s (best of the two plain rows, run first and last); capture "
              f"{by['capture']['time_s'] / floor:.2f}x, capture with sinks {by['capture_sinks'].get('time_s', float('nan')) / floor:.2f}x, "
              f"fp32 row recompute {by['recompute'].get('time_s', float('nan')) / floor:.2f}x of it")
    for r in main_rows:
        print(f"  {r['mode']:8s} peak {r.get('peak_mib', float('nan')):8.1f} MiB   time {r.get('time_s', float('nan')):7.3f} s")
    if "error" not in by["capture"] and "error" not in by["eager"]:
        print(f"  memory ratio eager/capture = {by['eager']['peak_mib'] / by['capture']['peak_mib']:.1f}x; "
              f"time ratio capture/eager = {by['capture']['time_s'] / by['eager']['time_s']:.2f}")
    if not args.quick:
        print("## growth with sequence length (4 layers)")
        for seq in (2048, 8192):
            for mode in ("capture", "eager") if seq <= 4096 else ("capture",):
                rows.append(measure(mode, seq, 4, args.repeats))
                print("  ", rows[-1])
        print("## growth with layer count (2,048 tokens)")
        for layers in (2, 8, 16):
            for mode in ("capture", "eager"):
                rows.append(measure(mode, 2048, layers, args.repeats))
                print("  ", rows[-1])
    rows = [r for r in rows if r]
    if args.json:
        args.json.write_text(json.dumps(rows, indent=1))


if __name__ == "__main__":
    main()
