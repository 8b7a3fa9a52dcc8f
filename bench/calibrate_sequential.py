"""The sequential design (``--sequential``, vlmdiag/sequential.py) by simulation, with more trials
than the tests (tests/claims/test_sequential_claims.py runs the same simulations): per claim, the
rate of a wrong ``reproduced`` under a null effect sitting exactly on the claim's threshold, the
power at a planted effect, and the mean N used, with the shipped ``sequential`` rule (4 looks,
Bonferroni, 0.9875 per look) and, for comparison, the same looks each at 0.95 (no error spending).

The data are simulated item by item (tests/claims/sequential_sims.py) and judged by the claims'
own verdict rules through the loop a run uses (:func:`vlmdiag.sequential.run_looks`).

    python bench/calibrate_sequential.py [--trials 2000] [--resamples 1000] [--write]
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(ROOT / "tests" / "claims"))
from benchlib import load_average, machine, publish, rate  # noqa: E402
from sequential_sims import run_sequential  # noqa: E402

from vlmdiag.claims import load_thresholds  # noqa: E402

CASES = {  # claim -> (null, planted, share of --trials it runs: attention's per-layer intervals are slow)
    "localization.reasoning_late": ("every skip breaks 20 % (Late − Early = 0 = threshold)",
                                    "Late skips break 15 %, others 5 % (+0.08)", 1.0),
    "localization.vision_early": ("Early–Mid 0.5, Late 0.4 (difference 0.1 = threshold)",
                                  "Early–Mid 0.55, Late 0.3 (+0.25)", 1.0),
    "transplant.mid_late_carries_gain": ("IN:RL:RL keeps half of a +0.35 gain (share 0.5 = threshold)",
                                         "IN:RL:RL keeps all of it", 0.5),
    "attention.r2v_shift_mid_late": ("no change (0 = both thresholds)", "+0.004 over Mid–Late (SD 0.01 per layer)",
                                     0.1),
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=2000)
    parser.add_argument("--resamples", type=int, default=1000, help="bootstrap resamples per interval")
    parser.add_argument("--write", action="store_true", help="write the section into bench/RESULTS.md")
    args = parser.parse_args()
    shipped = load_thresholds(ROOT / "thresholds.yaml")
    rows, start = [], time.time()
    for claim_id, (null, planted, share) in CASES.items():
        trials = max(50, int(args.trials * share))
        t = shipped.get(claim_id).model_copy(update={"bootstrap_resamples": args.resamples})
        run = lambda effect, seed, naive=False: run_sequential(  # noqa: E731
            claim_id, effect, t, trials=trials, seed=seed, rule=shipped.sequential, naive=naive)
        spent, naive, found = run("null", 0), run("null", 0, True), run("planted", 1)
        looks = "/".join(map(str, spent["plan"].looks))
        rows.append(f"| `{claim_id}` | {looks} | {trials} | {null} | {rate(spent['reproduced'], trials)} | "
                    f"{rate(naive['reproduced'], trials)} | {planted} | {rate(found['reproduced'], trials)} | "
                    f"{found['mean_n']:.0f} |")
        print(rows[-1], flush=True)
    text = "\n".join([
        "## Sequential design (calibrate_sequential.py)", "",
        f"`python bench/calibrate_sequential.py --trials {args.trials} --resamples {args.resamples}` ({machine()}; "
        f"load {load_average()}; {time.time() - start:.0f} s). Each claim's own verdict rule, run as `--sequential` "
        "runs it (the shipped `sequential` rule: 4 looks up to `max_items`, per-look level 0.9875, Bonferroni "
        "error spending), on simulated per-item data (tests/claims/sequential_sims.py; 12 layers, `paper` "
        "regions). *Null*: the effect sits exactly on the claim's threshold, so any `reproduced` is wrong; the "
        "design promises a rate ≤ 1 − confidence = 0.05. *Naive*: the same looks each at 0.95 (no spending). "
        "*Planted*: the effect named, power = rate of `reproduced`; mean N = items per probe set at the stop. "
        "Rates ± 95 % Monte-Carlo half-width. Simulated item noise only.", "",
        "| claim | looks (N) | trials | null | wrong `reproduced` | naive looks | planted | power | mean N |",
        "|---|---|---|---|---|---|---|---|---|", *rows, ""])
    publish("## Sequential design (calibrate_sequential.py)", text, args.write)


if __name__ == "__main__":
    main()
