"""Progress of the long measurement steps (weight pass, generation, swap, skip and transplant
sweeps), shown where the run is watched and readable when several processes share a terminal.

The measuring code only calls ``callback(done, total)``; :class:`StepProgress` decides how that
looks (:func:`choose_mode`):

* ``bar``: a rich progress bar per step, left as one finished line (an interactive terminal,
  no xdist);
* ``lines``: plain lines: when a step starts, every 30 s while it runs, and when it ends with its
  time (CI logs; pytest-xdist workers, whose lines carry the worker id, e.g. ``[gw1]``);
* ``off``: nothing (``-q``).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from contextlib import AbstractContextManager, nullcontext

MODES = ("bar", "lines", "off")


def choose_mode(*, verbosity: int, worker: bool, interactive: bool) -> str:
    """The display mode: ``off`` under ``-q`` (verbosity < 0), ``lines`` in an xdist worker or
    when the output is not an interactive terminal, else ``bar``."""
    if verbosity < 0:
        return "off"
    if worker or not interactive:
        return "lines"
    return "bar"


class StepProgress:
    """``progress(label)`` → a step callback ``(done, total)`` with ``close()``, or None when off.

    Args:
        mode: one of :data:`MODES`.
        write_line: prints one line (``lines`` mode).
        console: a factory of a rich Console for the bars (``bar`` mode).
        suspend: a context manager factory that lets output reach the terminal while pytest
            captures (``capturemanager.global_and_fixture_disabled``).
        begin / end: called (inside ``suspend``) before a step's first output and after its
            last, to leave the terminal's current line and to resume it (pytest's file line).
        prefix: put before each line (``[gw0] `` in a worker).
        interval: seconds between two lines while a step runs (``lines`` mode).
    """

    def __init__(self, mode: str, *, write_line: Callable[[str], None] = print,
                 console: Callable[[], object] | None = None,
                 suspend: Callable[[], AbstractContextManager] = nullcontext,
                 begin: Callable[[], None] = lambda: None, end: Callable[[], None] = lambda: None,
                 prefix: str = "", interval: float = 30.0, clock: Callable[[], float] = time.monotonic):
        if mode not in MODES:
            raise ValueError(f"progress mode {mode!r}: expected one of {', '.join(MODES)}")
        self.mode, self.write_line, self.console, self.suspend = mode, write_line, console, suspend
        self.begin, self.end = begin, end
        self.prefix, self.interval, self.clock = prefix, interval, clock

    def __call__(self, label: str):
        if self.mode == "off":
            return None
        if self.mode == "bar" and self.console is not None:
            return _BarStep(label, self.console(), self.suspend, self.begin, self.end)
        return _LineStep(label, self._line, self.interval, self.clock, self._end)

    def _line(self, text: str, *, first: bool = False) -> None:
        with self.suspend():
            if first:
                self.begin()
            self.write_line(f"{self.prefix}vlmdiag: {text}")

    def _end(self) -> None:
        with self.suspend():
            self.end()


class _LineStep:
    """A step as lines: ``LABEL ...`` at the start, ``LABEL: done/total (Ns)`` every ``interval``
    seconds, ``LABEL: total/total in N.N s`` at the end."""

    def __init__(self, label: str, line: Callable[..., None], interval: float, clock: Callable[[], float],
                 end: Callable[[], None]):
        self.label, self.line, self.interval, self.clock, self.end = label, line, interval, clock, end
        self.start = self.last = clock()
        self.done, self.total, self.closed = 0, None, False
        line(f"{label} ...", first=True)

    def __call__(self, done: int, total: int) -> None:
        self.done, self.total = done, total
        now = self.clock()
        if now - self.last >= self.interval and done < total:
            self.last = now
            self.line(f"{self.label}: {done}/{total} ({now - self.start:.0f} s)")

    def close(self) -> None:
        if self.closed:
            return
        self.closed = True
        count = f"{self.done}/{self.total} " if self.total is not None else ""
        self.line(f"{self.label}: {count}in {self.clock() - self.start:.1f} s")
        self.end()


class _BarStep:
    """A step as a rich progress bar, redrawn at most 10 times a second and left as one line."""

    def __init__(self, label: str, console, suspend: Callable[[], AbstractContextManager],
                 begin: Callable[[], None], end: Callable[[], None]):
        from rich.progress import (BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn,
                                   TimeRemainingColumn)

        self.suspend, self.end, self.last = suspend, end, 0.0
        # No refresh thread and no stdout redirection: pytest captures output, so every draw
        # happens here, inside ``suspend()``.
        self.progress = Progress(TextColumn("vlmdiag: {task.description}"), BarColumn(), MofNCompleteColumn(),
                                 TimeElapsedColumn(), TimeRemainingColumn(), console=console,
                                 auto_refresh=False, redirect_stdout=False, redirect_stderr=False)
        self.task = self.progress.add_task(label, total=None)
        with self.suspend():
            begin()
            self.progress.start()

    def __call__(self, done: int, total: int) -> None:
        self.progress.update(self.task, completed=done, total=total)
        now = time.monotonic()
        if now - self.last >= 0.1 or done >= total:
            self.last = now
            with self.suspend():
                self.progress.refresh()

    def close(self) -> None:
        if self.progress.live.is_started:
            with self.suspend():
                self.progress.stop()
                self.end()
