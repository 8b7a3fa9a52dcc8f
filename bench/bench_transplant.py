"""Transplant sweep benchmark: the 8 models of the paper's Table 2 (IN, six Early:Mid:Late splices,
RL), each evaluated once, two ways.

* ``splicer``: load IN once; for each variant stream the needed tensors from RL's safetensors into
  it (:class:`vlmdiag.transplant.Splicer`), evaluate, restore.
* ``naive``: what the authors' ``transferability_test.py`` does per variant (§8.4): load the Early
  source in full, load the other checkpoint in full when the variant needs it, copy its decoder
  layers over with ``load_state_dict``, evaluate, drop the models.

"Evaluate" is one forward pass over a fixed token batch, the same for both, so the difference is
the cost of getting each variant into memory. Both ways must give bit-identical logits; the
script checks this. Checkpoints are random Qwen2.5-VL models built from a config (no download).

Usage::

    python bench/bench_transplant.py [--layers 12 --hidden 512] [--repeats 3] [--write-results]

``--write-results`` replaces the "Transplant sweep" section of ``bench/RESULTS.md``.
"""

from __future__ import annotations

import argparse
import gc
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch

import benchlib
from vlmdiag.transplant import Splicer, all_variants

SECTION = "## Transplant sweep"


def build_pair(root: Path, *, layers: int, hidden: int, vocab: int) -> tuple[Path, Path]:
    from transformers import Qwen2_5_VLConfig, Qwen2_5_VLForConditionalGeneration

    heads = max(4, hidden // 64)
    half = hidden // heads // 2
    t = half // 4
    config = Qwen2_5_VLConfig(
        text_config=dict(hidden_size=hidden, intermediate_size=int(hidden * 2.75), num_hidden_layers=layers,
                         num_attention_heads=heads, num_key_value_heads=max(1, heads // 4), vocab_size=vocab,
                         max_position_embeddings=2048, tie_word_embeddings=False,
                         rope_scaling={"type": "mrope", "mrope_section": [t, (half - t) // 2, half - t - (half - t) // 2]},
                         bos_token_id=0, eos_token_id=1, pad_token_id=2),
        vision_config=dict(depth=4, hidden_size=256, intermediate_size=512, num_heads=4, out_hidden_size=hidden,
                           fullatt_block_indexes=[3], window_size=56, patch_size=14, spatial_merge_size=2,
                           temporal_patch_size=2),
        image_token_id=vocab - 4, video_token_id=vocab - 3, vision_start_token_id=vocab - 2,
        vision_end_token_id=vocab - 1, tie_word_embeddings=False)
    paths = []
    for name, seed in (("in", 0), ("rl", 1)):
        torch.manual_seed(seed)
        model = Qwen2_5_VLForConditionalGeneration(config)
        model.save_pretrained(root / name)
        paths.append(root / name)
        del model
    return paths[0], paths[1]


class Loads:
    """Counts and times ``from_pretrained`` calls."""

    def __init__(self):
        self.count = 0
        self.seconds = 0.0

    def load(self, path: Path):
        from transformers import AutoModelForImageTextToText

        start = time.perf_counter()
        model = AutoModelForImageTextToText.from_pretrained(path, dtype=torch.float32).eval()
        self.seconds += time.perf_counter() - start
        self.count += 1
        return model


class Sweep:
    """Times one way of building the eight variants: model loads, evaluation, and the total.

    Use as a context manager around the sweep; ``evaluate`` times each forward pass, and
    :meth:`result` gives the row (build time = total − evaluation)."""

    def __init__(self, tokens: torch.Tensor):
        self.tokens, self.loads = tokens, Loads()
        self.eval_seconds, self.logits = 0.0, {}

    def __enter__(self) -> Sweep:
        self.start = time.perf_counter()
        return self

    def __exit__(self, *exc) -> None:
        self.seconds = time.perf_counter() - self.start

    def evaluate(self, label: str, model) -> None:
        start = time.perf_counter()
        with torch.inference_mode():
            self.logits[label] = model(input_ids=self.tokens).logits[:, -1].clone()
        self.eval_seconds += time.perf_counter() - start

    def result(self, **extra) -> dict:
        return {"seconds": self.seconds, "build_seconds": self.seconds - self.eval_seconds,
                "loads": self.loads.count, "load_seconds": self.loads.seconds, "logits": self.logits, **extra}


def _splicer_sweep(a: Path, b: Path, tokens: torch.Tensor, variants) -> dict:
    """Load A once; ``variants(splicer)`` yields ``(variant, record)`` with the variant applied."""
    with Sweep(tokens) as sweep:
        model = sweep.loads.load(a)
        splicer = Splicer(model, a, b, regions="thirds")
        bytes_read = 0
        for variant, record in variants(splicer):
            sweep.evaluate(variant.label(), model)
            bytes_read += record.bytes_read
    return sweep.result(tensor_reads=splicer.reads, bytes_read=bytes_read)


def sweep_splicer(a: Path, b: Path, tokens: torch.Tensor) -> dict:
    """``Splicer.sweep``: between variants, move only the tensors whose source changes."""
    return _splicer_sweep(a, b, tokens, lambda splicer: splicer.sweep())


def sweep_per_variant(a: Path, b: Path, tokens: torch.Tensor) -> dict:
    """One ``Splicer.splice`` context per variant: apply from A's state, restore after each."""
    def variants(splicer):
        for variant in all_variants():
            with splicer.splice(variant) as record:
                yield variant, record

    return _splicer_sweep(a, b, tokens, variants)


def sweep_naive(a: Path, b: Path, tokens: torch.Tensor) -> dict:
    """The authors' per-variant build (thirds cuts, components from the Early source)."""
    with Sweep(tokens) as sweep:
        loads = sweep.loads
        for variant in all_variants():
            paths = {"A": a, "B": b}
            early = loads.load(paths[variant.sources[0]])
            others = {s for s in variant.sources[1:] if s != variant.sources[0]}
            donors = {s: loads.load(paths[s]) for s in others}
            layers = early.model.language_model.layers
            n = len(layers)
            cuts = (n // 3, 2 * n // 3)
            with torch.no_grad():
                for region, side in enumerate(variant.sources):
                    if side == variant.sources[0]:
                        continue
                    lo, hi = ((0, cuts[0]), (cuts[0], cuts[1]), (cuts[1], n))[region]
                    for i in range(lo, hi):
                        layers[i].load_state_dict(donors[side].model.language_model.layers[i].state_dict())
            sweep.evaluate(variant.label(), early)
            del early, donors, layers
            gc.collect()
    return sweep.result()


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--layers", type=int, default=12)
    parser.add_argument("--hidden", type=int, default=512)
    parser.add_argument("--vocab", type=int, default=8192)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=1,
                        help="torch intra-op threads (default 1: on a shared 2-core machine, multi-threaded "
                             "copies of small tensors spend most of their time synchronising)")
    parser.add_argument("--write-results", action="store_true")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    tokens = torch.randint(0, args.vocab - 8, (1, 16))
    with tempfile.TemporaryDirectory() as tmp:
        a, b = build_pair(Path(tmp), layers=args.layers, hidden=args.hidden, vocab=args.vocab)
        size = sum(f.stat().st_size for f in a.glob("*.safetensors"))
        runs = {"splicer": [], "per_variant": [], "naive": []}
        for _ in range(args.repeats):
            for name, fn in (("splicer", sweep_splicer), ("per_variant", sweep_per_variant), ("naive", sweep_naive)):
                runs[name].append(fn(a, b, tokens))
                gc.collect()
        ref = runs["naive"][0]["logits"]
        for way in ("splicer", "per_variant"):
            for label, value in runs[way][0]["logits"].items():
                if not torch.equal(value, ref[label]):
                    print(f"MISMATCH: {label} differs between {way} and naive", file=sys.stderr)
                    return 1
    med = {k: statistics.median(r["seconds"] for r in v) for k, v in runs.items()}
    build = {k: statistics.median(r["build_seconds"] for r in v) for k, v in runs.items()}
    load_med = {k: statistics.median(r["load_seconds"] for r in v) for k, v in runs.items()}
    s, p, n = runs["splicer"][0], runs["per_variant"][0], runs["naive"][0]
    params = size / 4 / 1e6
    text = f"""{SECTION}

`python bench/bench_transplant.py --layers {args.layers} --hidden {args.hidden} --vocab {args.vocab} --repeats {args.repeats} --threads {args.threads}`
({platform.machine()}, {os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.1f} at the end, torch {torch.__version__}, {args.threads} thread(s), fp32; random Qwen2.5-VL with
{args.layers} decoder layers, hidden {args.hidden}: {params:.1f}M parameters, {size / 1e6:.0f} MB safetensors;
regions `thirds`). Eight variants (IN, the six Early:Mid:Late splices, RL), each evaluated with one
forward pass over a 1x16 token batch. Medians of {args.repeats} sweeps; both ways give bit-identical logits
for every variant (checked by the script).

| way | model loads per sweep | load time (s) | build time (s): loads + splicing + restores | sweep time (s), incl. 8 forwards | tensors streamed | MB streamed |
|---|---|---|---|---|---|---|
| `Splicer.sweep` (load IN once; between variants move only the tensors whose source changes) | {s['loads']} | {load_med['splicer']:.2f} | {build['splicer']:.2f} | {med['splicer']:.2f} | {s['tensor_reads']} | {s['bytes_read'] / 1e6:.0f} |
| `Splicer.splice` per variant (apply from IN, restore after each) | {p['loads']} | {load_med['per_variant']:.2f} | {build['per_variant']:.2f} | {med['per_variant']:.2f} | {p['tensor_reads']} | {p['bytes_read'] / 1e6:.0f} |
| naive (authors' §8.4: load Early source + donor per variant) | {n['loads']} | {load_med['naive']:.2f} | {build['naive']:.2f} | {med['naive']:.2f} | – | – |

Build time (getting the 8 variants into memory) is {build['naive'] / build['splicer']:.1f}x lower with `Splicer.sweep`
than with the naive way ({build['naive'] / build['per_variant']:.1f}x with one `splice` per variant). Extra memory: the splicer
keeps no copy of IN; it re-reads IN's tensors from IN's safetensors to restore them, so it holds one tensor in
flight (`bench/bench_splicer_memory.py`, next section); the naive way holds two full models at once. Checkpoint
loads are cheap here because safetensors are memory-mapped and the files sit in the page cache; on a cold
disk, or for 7B models (about 16 GB each), every naive reload reads the whole checkpoint again.
"""
    print(text)
    if args.write_results:
        benchlib.write_section(SECTION, text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
