"""``vlmdiag organism build [--out DIR] [--recipe full|fast] [--all] [--no-progress]``."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from vlmdiag.errors import CheckpointError, UsageError


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="vlmdiag organism",
                                description="Build the model organism (SPEC §6).")
    sub = p.add_subparsers(dest="command", required=True)
    b = sub.add_parser("build", help="train the stages the suite reads (base, in, rl, "
                                     "rl-frozen-late); --all adds rl-frozen-early and -mid")
    b.add_argument("--out", type=Path, default=None,
                   help="write the checkpoints here (must not exist or be empty); default: the "
                        "cache ($VLMDIAG_CACHE_DIR or ~/.cache/vlmdiag)")
    b.add_argument("--recipe", default=None,
                   help="full (default, or $VLMDIAG_ORGANISM_RECIPE) or fast")
    b.add_argument("--all", action="store_true",
                   help="also the RL runs with Early or Mid frozen (otherwise built when first used)")
    b.add_argument("--no-progress", action="store_true", help="no progress bar")
    return p


def main(argv: list[str]) -> int:
    """Run the ``organism`` subcommand with ``argv`` (without the leading ``organism``).

    Returns 0 on success, 2 on a usage error (argparse), 4 on a refused ``--out`` or unknown
    recipe. Prints the folder holding the stage checkpoints and the report on stdout (with
    ``--all`` into the cache, then the folder of each on-demand stage).
    """
    from vlmdiag.organism import default_recipe_name
    from vlmdiag.organism.build import (FIRST_STAGES, ON_DEMAND_STAGES, REPORT_DIR, STAGES,
                                        build_into, ensure_built, get_recipe)

    try:
        args = _parser().parse_args(argv)
    except SystemExit as exit_:
        return int(exit_.code or 0)
    try:
        recipe = get_recipe(args.recipe or default_recipe_name())
        if args.out is None:
            folder = ensure_built(recipe, progress=not args.no_progress)
            extra = [ensure_built(recipe, progress=not args.no_progress, stage=stage)
                     for stage in (ON_DEMAND_STAGES if args.all else ())]
        else:
            out: Path = args.out
            if out.exists() and (not out.is_dir() or any(out.iterdir())):
                raise UsageError(f"--out {out}: exists and is not an empty folder; refusing to "
                                 f"overwrite it. Choose a new folder.")
            if out.exists():
                out.rmdir()  # empty: replaced atomically by the finished build
            build_into(recipe, out, progress=not args.no_progress,
                       stages=STAGES if args.all else FIRST_STAGES)
            folder, extra = out, []
    except (UsageError, CheckpointError) as error:
        print(f"vlmdiag organism: {error}", file=sys.stderr)
        return 4
    report = json.loads((folder / REPORT_DIR / "training_report.json").read_text())
    print(str(folder))
    for path in extra:  # the on-demand stages' cache entries
        print(str(path))
    print(json.dumps({"times_s": report["times_s"], "peak_rss_mb": report["peak_rss_mb"]}),
          file=sys.stderr)
    return 0


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main(sys.argv[1:]))
