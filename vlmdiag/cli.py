"""The ``vlmdiag`` console script: the commands that are not a pytest run.

``vlmdiag organism build``  build the model organism's checkpoints
``vlmdiag planted OUT``     write a Base/IN/RL triple with planted weight updates
``vlmdiag transplant ...``  write a Frankenstein splice of two checkpoints
``vlmdiag report PATH``     re-render a saved JSON report in the terminal
``vlmdiag cache info|clear`` show or empty the results cache
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from vlmdiag.errors import VlmdiagError, printable


def _planted(argv: Sequence[str]) -> int:
    from vlmdiag.planted import SCENARIOS, build_triple

    parser = argparse.ArgumentParser(prog="vlmdiag planted",
                                     description="Write origin/, base/ and rl/ checkpoints with planted updates.")
    parser.add_argument("out", help="folder to create (must not exist)")
    parser.add_argument("--scenario", choices=sorted(SCENARIOS), default="paper")
    parser.add_argument("--layers", type=int, default=6)
    parser.add_argument("--seed", type=int, default=0)
    dtypes = ["float32", "bfloat16", "float16"]
    parser.add_argument("--dtype", choices=dtypes, default="float32", help="stored dtype of all three")
    parser.add_argument("--rl-dtype", choices=dtypes, help="stored dtype of RL (default: --dtype)")
    args = parser.parse_args(argv)
    from pathlib import Path

    if Path(args.out).exists():
        raise VlmdiagError(f"{args.out}: already exists; vlmdiag never overwrites a folder")
    paths = build_triple(args.out, args.scenario, num_layers=args.layers, seed=args.seed, dtype=args.dtype,
                         rl_dtype=args.rl_dtype)
    print(" ".join(f"--{role}={path}" for role, path in paths.items()))
    return 0


def _report(argv: Sequence[str]) -> int:
    from vlmdiag.report.document import load_report
    from vlmdiag.report.terminal import render

    parser = argparse.ArgumentParser(prog="vlmdiag report", description="Re-render a saved JSON report.")
    parser.add_argument("path")
    args = parser.parse_args(argv)
    try:
        report = load_report(args.path)
    except (OSError, ValueError) as error:
        raise VlmdiagError(str(error)) from error
    sys.stdout.write(render(report, color=sys.stdout.isatty()))
    return 0


def _cache(argv: Sequence[str]) -> int:
    from vlmdiag.cache import ResultsCache

    parser = argparse.ArgumentParser(
        prog="vlmdiag cache",
        description="The results cache: measurements kept between runs, under $VLMDIAG_CACHE_DIR/results "
                    "(default ~/.cache/vlmdiag/results). Model organism builds are not touched.")
    parser.add_argument("action", choices=("info", "clear"), help="info: what it holds; clear: delete every entry")
    args = parser.parse_args(argv)
    cache = ResultsCache()
    if args.action == "clear":
        count = cache.clear()
        print(f"deleted {count} cached measurement{'s' if count != 1 else ''} from {cache.root}")
        return 0
    info = cache.info()
    print(f"results cache: {info['root']}")
    print(f"{info['entries']} entries, {info['bytes'] / 1e6:.2f} MB")
    for name, stat in sorted(info["by_measurement"].items()):
        print(f"  {name:<16} {stat['entries']:>5} entries {stat['bytes'] / 1e6:>9.2f} MB")
    if info["leftovers"]:
        print(f"{info['leftovers']} temporary files of interrupted writes (`vlmdiag cache clear` removes them)")
    return 0


def _organism(argv: Sequence[str]) -> int:
    from vlmdiag.organism.cli import main

    return main(list(argv))


def _transplant(argv: Sequence[str]) -> int:
    from vlmdiag.transplant import main

    return main(list(argv))


COMMANDS = {"organism": _organism, "planted": _planted, "transplant": _transplant, "report": _report,
            "cache": _cache}


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``vlmdiag`` console script; returns the exit code (2 for bad input)."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] not in COMMANDS:
        print(__doc__.strip(), file=sys.stderr)
        return 0 if argv[:1] in (["-h"], ["--help"]) else 2
    try:
        return COMMANDS[argv[0]](argv[1:])
    except VlmdiagError as error:
        print(f"vlmdiag: error: {printable(error)}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    raise SystemExit(main())
