"""The ``vlmdiag`` console script: the commands that are not a pytest run (the diagnostics
themselves run under ``pytest --base CKPT --rl CKPT``, or from Python with :func:`vlmdiag.run`)."""

from __future__ import annotations

import argparse
import shutil
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

    parser = argparse.ArgumentParser(prog="vlmdiag report", description="Re-render a saved JSON report in the "
                                     "terminal (at its width; $COLUMNS sets it), as Markdown (--md), or as one "
                                     "self-contained HTML page with the figures (--html).")
    parser.add_argument("path", help="a report written by --report-json")
    parser.add_argument("--md", metavar="OUT", help="write the Markdown summary (as --report-md) to OUT instead")
    parser.add_argument("--html", metavar="OUT", help="write one self-contained HTML page (verdicts, every "
                        "condition, figures embedded, environment, checkpoints) to OUT instead")
    args = parser.parse_args(argv)
    try:
        report = load_report(args.path)
    except (OSError, ValueError) as error:
        raise VlmdiagError(str(error)) from error
    if args.html:
        from vlmdiag.report.html import check_html_output

        check_html_output(args.html, report, args.path)  # before the Markdown: nothing written on a bad OUT
    if args.md:
        from pathlib import Path

        from vlmdiag.atomic import write_atomic
        from vlmdiag.report.markdown import render_markdown

        out = Path(args.md).absolute()
        source = Path(args.path).absolute()
        text = render_markdown(report["claims"], regions=report.get("regions"),
                               figures=source.parent / f"{source.stem}_plots", relative_to=out.parent,
                               baseline=report.get("baseline"))
        write_atomic(out, text)
    if args.html:
        from vlmdiag.report.html import write_html

        try:
            written = write_html(report, args.html, source=args.path)
        except VlmdiagError:
            raise
        except OSError as error:
            raise VlmdiagError(f"--html {printable(args.html)}: cannot write the page "
                               f"({printable(error.strerror or error)})") from error
        print(f"html: {printable(written)}")
    if args.md or args.html:
        return 0
    sys.stdout.write(render(report, width=shutil.get_terminal_size().columns, color=sys.stdout.isatty()))
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


COMMANDS = {"organism": (_organism, "build the model organism's checkpoints (vlmdiag organism build)"),
            "planted": (_planted, "write a Base/IN/RL triple with planted weight updates"),
            "transplant": (_transplant, "write a Frankenstein splice of two checkpoints"),
            "report": (_report, "re-render a saved JSON report in the terminal, as Markdown (--md) or HTML (--html)"),
            "cache": (_cache, "show or empty the results cache (info | clear)")}


def _parser() -> argparse.ArgumentParser:
    from vlmdiag import __version__

    parser = argparse.ArgumentParser(
        prog="vlmdiag", formatter_class=argparse.RawDescriptionHelpFormatter,
        description="vlmdiag's commands besides the diagnostics themselves, which run under pytest\n"
                    "(pytest --base=CKPT --rl=CKPT) or from Python (vlmdiag.run(base=..., rl=...)).",
        epilog="commands:\n" + "\n".join(f"  {name:<11} {text}" for name, (_, text) in COMMANDS.items())
               + "\n\n`vlmdiag COMMAND --help` describes each.")
    parser.add_argument("--version", action="version", version=f"vlmdiag {__version__}")
    parser.add_argument("command", choices=list(COMMANDS), metavar="COMMAND", help="one of: " + ", ".join(COMMANDS))
    parser.add_argument("arguments", nargs=argparse.REMAINDER, help="the command's own arguments")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``vlmdiag`` console script; returns the exit code (2 for bad input).
    Help (``-h``) and ``--version`` go to stdout; usage errors to stderr."""
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = _parser()
    if not argv:
        parser.print_help()
        return 2
    if argv[0] not in COMMANDS:
        parser.parse_args(argv)  # -h / --version exit 0; an unknown command is a usage error (exit 2)
    try:
        from vlmdiag.extensions import load

        load()  # the built-in plugins (organism: checkpoints) and installed ones
        return COMMANDS[argv[0]][0](argv[1:])
    except VlmdiagError as error:
        print(f"vlmdiag: error: {printable(error)}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    raise SystemExit(main())
