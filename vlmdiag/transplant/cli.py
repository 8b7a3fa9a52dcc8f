"""The ``vlmdiag transplant`` command (also ``python -m vlmdiag.transplant``)."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from vlmdiag.errors import UsageError, VlmdiagError
from vlmdiag.transplant.variants import parse_variant
from vlmdiag.transplant.write import write_transplant


def build_parser() -> argparse.ArgumentParser:
    """The ``vlmdiag transplant`` argument parser."""
    parser = argparse.ArgumentParser(
        prog="vlmdiag transplant",
        description="Write a Frankenstein splice of two checkpoints (paper §3.3): the Early, Mid and "
                    "Late LLM decoder regions each come from --from (A, IN) or --with (B, RL).")
    parser.add_argument("--from", dest="a", required=True, metavar="A",
                        help="first checkpoint (IN): folder, organism:STAGE or hub id")
    parser.add_argument("--with", dest="b", required=True, metavar="B",
                        help="second checkpoint (RL), same architecture and layer count")
    parser.add_argument("--regions", required=True, metavar="X:Y:Z",
                        help="Early:Mid:Late sources, each A/IN/SFT or B/RL, e.g. IN:RL:RL")
    parser.add_argument("--out", required=True, help="new folder to write (refused if it exists)")
    parser.add_argument("--components-from", choices=["A", "B", "IN", "RL"], default=None,
                        help="checkpoint that supplies vision tower, projector, embeddings, final norm "
                             "and lm_head. Default: the Early source (as the authors' code)")
    parser.add_argument("--cuts", default="paper",
                        help="region cuts: paper, thirds, or A,B. Default: %(default)r")
    parser.add_argument("--max-shard-gb", type=float, default=5.0,
                        help="largest safetensors shard in GB. Default: %(default)r")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """``vlmdiag transplant --from A --with B --regions IN:RL:RL --out DIR [--components-from A|B]``.

    Returns:
        0 on success, 2 on a usage error (bad option, ``--out`` exists), 1 on a checkpoint error.
    """
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exit_:
        return int(exit_.code or 0)
    try:
        variant = parse_variant(args.regions, components_from=args.components_from)
        result = write_transplant(args.a, args.b, variant, args.out, regions=args.cuts,
                                  max_shard_bytes=int(args.max_shard_gb * 1024**3))
    except UsageError as error:
        print(f"vlmdiag transplant: error: {error}", file=sys.stderr)
        return 2
    except VlmdiagError as error:
        print(f"vlmdiag transplant: error: {error}", file=sys.stderr)
        return 1
    d = result.plan.as_dict("IN (--from)", "RL (--with)")
    print(f"wrote {result.out}: {result.plan.variant.label()}, layers "
          f"Early {d['regions']['Early']} from {d['sources']['Early']}, "
          f"Mid {d['regions']['Mid']} from {d['sources']['Mid']}, "
          f"Late {d['regions']['Late']} from {d['sources']['Late']}; vision tower, projector, "
          f"embeddings, final norm and lm_head from {d['components_from']}")
    if not result.mergekit_exact:
        print("note: mergekit_config.yml differs from the written weights in where mergekit would take "
              "the embeddings / final norm / lm_head from (see the comment in the file)")
    return 0
