"""ΔW spectra against the authors' per-matrix ``torch.linalg.svdvals`` loop, and the weight pass
with the statistics of updates.rl_sparse / updates.rl_off_principal against the pass without them.

On the 0.74B Qwen2.5-VL-shaped bf16 triple of ``bench_weights.py`` (built once under
$VLMDIAG_BENCH_DIR or /tmp/vlmdiag-bench):

  spectra   per update matrix and stage (ΔRL, ΔIN; fp32, in memory), interleaved matrix by matrix on
            one thread: ``torch.linalg.svdvals`` (every singular value; the authors' way),
            vlmdiag's :func:`~vlmdiag.measure.delta_stats.singular_values` (scipy's BLAS ``syrk``
            Gram matrix + LAPACK symmetric eigensolve, exact svdvals where the Gram cannot resolve
            the top 50) and the same Gram method in torch (matmul + ``eigvalsh``), with the
            largest relative error of the top 50 against svdvals. ``--sample K`` times every K-th
            LLM layer (every vision block and the projector always); the ratio is per shape, and
            the 24 layers have the same shapes.
  pass      ``weight_deltas`` on CPU (default workers), each in a fresh subprocess after the page
            cache is warm: norms without / with the updated-element counts, spectra without /
            with the counts and the principal subspaces (``extras``), interleaved ``--repeats`` times.

Run:  .venv/bin/python bench/bench_spectra.py [--layers 24] [--sample 3] [--repeats 1] [--device cuda] [--write]
``--device cuda`` times the spectra and the pass on the GPU (synchronized; the matrices are moved
there before timing, as the weight pass moves its slices). ``--write`` replaces the "ΔW spectra and structure statistics" section of bench/RESULTS.md.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
from pathlib import Path

import benchlib
from bench_weights import STAGES, build

HEADING = "## ΔW spectra and structure statistics"
PASSES = {"norms": (False, False), "norms+extras": (False, True),
          "spectra": (True, False), "spectra+extras": (True, True)}


def spectra_task(folder: Path, sample: int, device: str = "cpu") -> dict:
    import numpy as np
    import torch

    from vlmdiag.checkpoints import open_checkpoint
    from vlmdiag.measure.delta_stats import (GRAM_RESOLUTION, TOP_SINGULAR_VALUES, singular_values,
                                             torch_gram_eigenvalues)
    from vlmdiag.measure.weights import update_matrices

    from threadpoolctl import threadpool_limits

    torch.set_num_threads(1)
    threadpool_limits(limits=1, user_api="blas")  # scipy's OpenBLAS too, as in the weight pass
    origin, base, rl = (open_checkpoint(str(folder / s)) for s in ("origin", "base", "rl"))
    clock = benchlib.clock(device)
    t_exact = t_fast = t_torch = 0.0
    worst, count, fallbacks, zero = 0.0, 0, 0, 0
    for name in update_matrices(base):
        location = base.locate(name)
        if location.component == "llm" and location.layer % sample:
            continue
        w_base = base.get(name).float()
        for delta in (rl.get(name).float() - w_base, w_base - origin.get(name).float()):
            matrix = delta.reshape(delta.shape[0], -1).contiguous().to(device)
            if not matrix.any():  # the weight pass computes no spectrum of a ΔW of exact zeros
                zero += 1
                continue
            start = clock()
            exact = torch.linalg.svdvals(matrix).double().cpu().numpy()
            t_exact += clock() - start
            start = clock()
            fast = singular_values(matrix)
            t_fast += clock() - start
            start = clock()
            torch_gram_eigenvalues(matrix)
            t_torch += clock() - start
            top = exact[:TOP_SINGULAR_VALUES]
            resolved = top >= GRAM_RESOLUTION * top[0]
            fallbacks += not resolved.all()
            worst = max(worst, float(np.max(np.abs(fast[:len(top)][resolved] - top[resolved]) / top[resolved])))
            count += 1
    return {"svdvals": t_exact, "fast": t_fast, "torch_gram": t_torch, "matrices": count,
            "max_rel_error": worst, "fallbacks": fallbacks, "zero": zero}


def pass_task(kind: str, folder: Path, device: str = "cpu") -> dict:
    from vlmdiag.checkpoints import open_checkpoint
    from vlmdiag.measure.weights import weight_deltas

    spectra, extras = PASSES[kind]
    cks = [open_checkpoint(str(folder / s)) for s in STAGES]
    clock = benchlib.clock(device)
    start = clock()
    weight_deltas(cks[0], cks[1], cks[2], device=device, spectra=spectra, extras=extras)
    return {"seconds": clock() - start}


def run(args: list[str], device: str) -> dict:
    out = subprocess.run([sys.executable, __file__, "--device", device, "--task", *args], check=True,
                         capture_output=True, text=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--task", nargs="+", help=argparse.SUPPRESS)
    parser.add_argument("--layers", type=int, default=24, help="LLM decoder layers of the triple (24 = 0.74B)")
    parser.add_argument("--sample", type=int, default=3, help="time the spectra on every K-th LLM layer")
    parser.add_argument("--repeats", type=int, default=1, help="interleaved runs of each pass (median)")
    parser.add_argument("--skip-spectra", action="store_true", help="only the pass rows")
    parser.add_argument("--device", default="cpu", help="where the spectra and the pass run (cpu, cuda)")
    parser.add_argument("--write", action="store_true", help="replace this section of bench/RESULTS.md")
    args = parser.parse_args(argv)
    if args.task:
        kind, folder = args.task[0], Path(args.task[1])
        result = (spectra_task(folder, int(args.task[2]), args.device) if kind == "svd"
                  else pass_task(kind, folder, args.device))
        print(json.dumps(result))
        return 0
    folder = build(args.layers)
    for stage in STAGES:  # warm the page cache
        (folder / stage / "model.safetensors").read_bytes()
    load_before = benchlib.load_average()
    spectra = None if args.skip_spectra else run(["svd", str(folder), str(args.sample)], args.device)
    times: dict[str, list[float]] = {k: [] for k in PASSES}
    for _ in range(args.repeats):
        for kind in PASSES:
            times[kind].append(run([kind, str(folder)], args.device)["seconds"])
    t = {k: statistics.median(v) for k, v in times.items()}
    load_after = benchlib.load_average()
    lines = [HEADING, "",
             f"`.venv/bin/python bench/bench_spectra.py --layers {args.layers} --sample {args.sample} --repeats "
             f"{args.repeats} --device {args.device}` ({benchlib.machine()}; load average {load_before} before, {load_after} after; "
             f"the ratios are side by side in one run). Triple: `bench_weights.py`'s {args.layers}-layer bf16 "
             f"Qwen2.5-VL shape (0.74B "
             f"parameters per checkpoint at 24 layers; RL = IN + 1e-4 noise, IN = Base + 1e-2 noise).", ""]
    if spectra:
        ratio = spectra["svdvals"] / spectra["fast"]
        lines += [f"| ΔW spectra on {args.device}, interleaved (CPU: one thread) | seconds | × |", "|---|---|---|",
                  f"| `torch.linalg.svdvals` per matrix (the authors' loop) | {spectra['svdvals']:.1f} | 1.00 |",
                  f"| torch Gram matmul + `torch.linalg.eigvalsh` (vlmdiag's CUDA path) | "
                  f"{spectra['torch_gram']:.1f} | {spectra['torch_gram'] / spectra['svdvals']:.2f} |",
                  f"| vlmdiag `singular_values` ({'scipy `syrk` + `syevr`' if args.device == 'cpu' else 'the torch Gram'})"
                  f" | {spectra['fast']:.1f} | "
                  f"{1 / ratio:.2f} |", "",
                  f"- {spectra['matrices']} ΔW matrices (ΔRL and ΔIN of every vision block, the projector and every "
                  f"{args.sample}-th LLM layer): **{ratio:.1f}× faster**; largest relative error of the top 50 "
                  f"against svdvals {spectra['max_rel_error']:.1e} (target 1e-3); {spectra['fallbacks']} matrices "
                  f"fell back to svdvals (top 50 below {0.02:g}·σ_1); {spectra['zero']} ΔW of exact zeros "
                  f"skipped (the triple leaves the projector unchanged; the weight pass computes no spectrum of "
                  f"a zero ΔW)."]
    lines += ["", f"| weight pass ({args.device}, default workers) | seconds | × without |", "|---|---|---|",
              f"| norms | {t['norms']:.1f} | 1.00 |",
              f"| norms + updated-element counts | {t['norms+extras']:.1f} | {t['norms+extras'] / t['norms']:.2f} |",
              f"| spectra (Gram spectra) | {t['spectra']:.1f} | 1.00 |",
              f"| spectra + counts + principal subspaces | {t['spectra+extras']:.1f} | "
              f"{t['spectra+extras'] / t['spectra']:.2f} |", "",
              f"- Target: the pass with the new statistics within 1.5× of the pass without them: norms "
              f"{t['norms+extras'] / t['norms']:.2f}×, spectra {t['spectra+extras'] / t['spectra']:.2f}× "
              f"(median of {args.repeats} interleaved run(s), each its own subprocess)."]
    benchlib.publish(HEADING, "\n".join(lines) + "\n", args.write)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
