"""Helpers the benchmark scripts share: the machine line, and replacing one section of RESULTS.md."""

from __future__ import annotations

import math
import os
import platform
import re
from pathlib import Path

RESULTS = Path(__file__).with_name("RESULTS.md")


def machine() -> str:
    """``x86_64, 2 CPUs, torch 2.13.0+cpu, 2 intra-op threads`` (and the GPU when there is one)."""
    import torch

    line = f"{platform.machine()}, {os.cpu_count()} CPUs, torch {torch.__version__}, {torch.get_num_threads()} intra-op threads"
    if torch.cuda.is_available():
        line += f", {torch.cuda.get_device_name(0)} x{torch.cuda.device_count()}"
    return line


def clock(device: str):
    """A ``time.perf_counter`` that first waits for the GPU's queued work where ``device`` is not
    the CPU, so a span timed with it covers the work launched in it."""
    import time

    import torch

    def now() -> float:
        if device != "cpu":
            torch.cuda.synchronize()
        return time.perf_counter()
    return now


def load_average() -> str:
    """The 1/5/15-minute load averages, e.g. ``1.6 / 1.5 / 2.1`` (other jobs on the machine)."""
    return " / ".join(f"{x:.1f}" for x in os.getloadavg())


def rate(count: int, trials: int) -> str:
    """``count/trials`` with its 95 % Monte-Carlo half-width (normal approximation, at least that of
    one event in ``trials``), e.g. ``0.022 ± 0.009``."""
    p = count / trials
    return f"{p:.3f} ± {1.96 * math.sqrt(max(p * (1 - p), 1 / trials) / trials):.3f}"


def publish(heading: str, text: str, write: bool) -> None:
    """Print a benchmark's section and, with ``--write``, put it into bench/RESULTS.md."""
    print(text)
    if write:
        write_section(heading, text)
        print(f"wrote the '{heading[3:]}' section of {RESULTS}")


def write_section(heading: str, text: str, path: Path = RESULTS) -> None:
    """Replace the section that starts with ``heading`` (a ``## `` line) up to the next ``## ``
    heading, or append it; other sections are left as they are. Written atomically."""
    current = path.read_text() if path.exists() else "# Benchmark results\n"
    pattern = re.compile(rf"^{re.escape(heading)}\n.*?(?=^## |\Z)", re.DOTALL | re.MULTILINE)
    body = text.rstrip() + "\n"
    if pattern.search(current):
        updated = pattern.sub(lambda _: body + "\n", current).rstrip() + "\n"
    else:
        updated = current.rstrip() + "\n\n" + body
    tmp = path.with_suffix(".md.tmp")
    tmp.write_text(updated)
    tmp.replace(path)
