"""The model organism's build report: the progress bar, evaluation summaries, versions and
plots written to ``report/``."""

from __future__ import annotations

import os
import platform
import resource
from pathlib import Path

from vlmdiag.organism.recipe import RL_STAGES
from vlmdiag.stats import Interval, wilson_interval

REPORT_DIR = "report"


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


def _peak_rss_mb(children: bool = False) -> float:
    """Peak RSS (MB) of this process, or of its largest terminated child process."""
    return resource.getrusage(resource.RUSAGE_CHILDREN if children else resource.RUSAGE_SELF).ru_maxrss / 1024.0


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


def _versions() -> dict:
    import torch
    import transformers
    import trl

    return {"python": platform.python_version(), "torch": torch.__version__,
            "transformers": transformers.__version__, "trl": trl.__version__,
            "machine": platform.machine(), "cpus": os.cpu_count()}


def _plots(report: dict, out: Path) -> None:
    """The report's plots of the stages it holds: SFT loss (when it holds Base and IN), RL reward
    and held-out accuracy."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    if "base" in report["stages"]:
        fig, ax = plt.subplots(figsize=(6, 3.5))
        for stage in ("base", "in"):
            ax.plot(report["stages"][stage]["loss"], label=stage)
        ax.set_xlabel("step"), ax.set_ylabel("loss (nats/token)"), ax.set_yscale("log"), ax.legend()
        ax.set_title("SFT loss")
        fig.tight_layout(), fig.savefig(out / "loss_curves.png", dpi=100), plt.close(fig)

    fig, ax = plt.subplots(figsize=(6, 3.5))
    for stage in (s for s in RL_STAGES if s in report["stages"]):
        hist = report["stages"][stage]["rl_history"]
        ax.plot([h["step"] for h in hist], [h["reward"] for h in hist], label=stage)
    ax.set_xlabel("GRPO step"), ax.set_ylabel("mean reward (correct + 0.5 format)"), ax.legend()
    ax.set_title("RL reward")
    fig.tight_layout(), fig.savefig(out / "rl_reward.png", dpi=100), plt.close(fig)

    stages = list(report["accuracy"])
    names = list(report["accuracy"][stages[0]])
    fig, ax = plt.subplots(figsize=(9, 3.8))
    width = 0.8 / len(stages)
    for i, stage in enumerate(stages):
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
