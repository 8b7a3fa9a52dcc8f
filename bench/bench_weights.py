"""Weight pass against the time to read the bytes, and against the naive approach.

Builds (once, cached under $VLMDIAG_BENCH_DIR or /tmp/vlmdiag-bench) a ~0.6B-parameter
Qwen2.5-VL-shaped Base/IN/RL triple in bf16, then times, each in a fresh subprocess so peak RSS
is its own:
  read   - reading every byte of the three safetensors files (16 MiB chunks)
  energy - vlmdiag's streaming pass (Frobenius and relative norms of ΔRL and ΔIN)
  naive  - the authors' approach: three full state dicts in memory, then the same norms
Prints a Markdown table of times, ratios to `read`, and peak RSS above the interpreter's baseline.

Run: .venv/bin/python bench/bench_weights.py
"""

from __future__ import annotations

import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(os.environ.get("VLMDIAG_BENCH_DIR", "/tmp/vlmdiag-bench")) / "qwen25vl-0.6b"


def build() -> None:
    import torch
    from transformers import Qwen2_5_VLConfig, Qwen2_5_VLForConditionalGeneration

    if all((ROOT / s / "model.safetensors").exists() for s in ("origin", "base", "rl")):
        return
    config = Qwen2_5_VLConfig(
        text_config=dict(hidden_size=896, num_hidden_layers=24, num_attention_heads=14, num_key_value_heads=2,
                         intermediate_size=4864, vocab_size=151936, tie_word_embeddings=True,
                         rope_scaling={"type": "mrope", "mrope_section": [16, 24, 24]}),
        vision_config=dict(depth=4, hidden_size=1280, intermediate_size=3420, num_heads=16, out_hidden_size=896),
        tie_word_embeddings=True)
    torch.manual_seed(0)
    with torch.device("meta"):
        model = Qwen2_5_VLForConditionalGeneration(config)
    model = model.to_empty(device="cpu").to(torch.bfloat16)
    with torch.no_grad():
        for p in model.parameters():
            p.normal_(0, 0.02)
    for stage, scale in (("origin", 0.0), ("base", 1e-2), ("rl", 1e-4)):
        with torch.no_grad():
            for name, p in model.named_parameters():
                if scale and ".layers." in name or scale and ".blocks." in name:
                    p.add_(torch.randn_like(p) * scale)
        model.save_pretrained(ROOT / stage)


def rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def task(kind: str) -> dict:
    import torch  # noqa: F401  (baseline includes torch, as any vlmdiag run does)
    from safetensors.torch import load_file

    from vlmdiag.checkpoints import open_checkpoint
    from vlmdiag.measure.weights import update_matrices, weight_deltas

    files = [ROOT / s / "model.safetensors" for s in ("base", "rl", "origin")]
    baseline = rss_mb()
    start = time.perf_counter()
    if kind == "read":
        for f in files:
            with open(f, "rb", buffering=0) as handle:
                while handle.read(16 << 20):
                    pass
    elif kind == "energy":
        base, rl, origin = (open_checkpoint(str(ROOT / s)) for s in ("base", "rl", "origin"))
        weight_deltas(base, rl, origin, device="cpu")
    elif kind == "naive":
        base_ckpt = open_checkpoint(str(ROOT / "base"))
        names = {base_ckpt.adapter.canonical(n) for n in load_file(files[0])}
        wanted = set(update_matrices(base_ckpt))
        states = [load_file(f) for f in files]
        for state in states:
            for key in list(state):
                state[base_ckpt.adapter.canonical(key)] = state.pop(key).float()
        for name in wanted & names:
            b, r, o = (s[name] for s in states)
            torch.linalg.matrix_norm((r - b).reshape(r.shape[0], -1))
            torch.linalg.matrix_norm((b - o).reshape(b.shape[0], -1))
    return {"kind": kind, "seconds": time.perf_counter() - start, "rss_above_baseline_mb": rss_mb() - baseline}


def main() -> None:
    if len(sys.argv) > 1:
        print(json.dumps(task(sys.argv[1])))
        return
    build()
    size = sum((ROOT / s / "model.safetensors").stat().st_size for s in ("origin", "base", "rl")) / 1e9
    run = lambda kind: json.loads(subprocess.check_output([sys.executable, __file__, kind], text=True).strip().splitlines()[-1])  # noqa: E731
    run("read")  # warm the page cache so every contender reads from memory alike
    results = {kind: run(kind) for kind in ("read", "energy", "naive")}
    read = results["read"]["seconds"]
    print(f"checkpoint triple: {size:.2f} GB of safetensors (bf16), torch threads {os.cpu_count()}")
    print("| pass | seconds | × read time | peak RSS above baseline (MB) |\n|---|---|---|---|")
    for kind in ("read", "energy", "naive"):
        r = results[kind]
        print(f"| {kind} | {r['seconds']:.2f} | {r['seconds'] / read:.2f} | {r['rss_above_baseline_mb']:.0f} |")


if __name__ == "__main__":
    main()
