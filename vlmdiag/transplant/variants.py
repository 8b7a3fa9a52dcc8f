"""The variant grammar: ``X:Y:Z`` names the sources of the Early:Mid:Late LLM decoder regions
(paper §3.3, Table 2). ``A`` (alias ``IN``, ``SFT``) is the checkpoint given first (``--from``),
``B`` (alias ``RL``) the second (``--with``)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from vlmdiag.errors import UsageError

Side = Literal["A", "B"]
COMPONENTS = ("vision", "projector", "embeddings", "final_norm", "lm_head")
_ALIASES: dict[str, Side] = {"A": "A", "IN": "A", "SFT": "A", "B": "B", "RL": "B"}


@dataclass(frozen=True)
class Variant:
    """One Early:Mid:Late combination of the two checkpoints.

    Attributes:
        sources: source of (Early, Mid, Late), each ``"A"`` or ``"B"``.
        components_from: source of the vision tower, projector, embeddings, final norm and
            ``lm_head``; None means the Early source (the authors' code).
    """

    sources: tuple[Side, Side, Side]
    components_from: Side | None = None

    def __post_init__(self):
        if len(self.sources) != 3 or any(s not in ("A", "B") for s in self.sources):
            raise UsageError(f"Variant sources={self.sources!r}: need three of 'A'/'B'")
        if self.components_from not in (None, "A", "B"):
            raise UsageError(f"Variant components_from={self.components_from!r}: need 'A', 'B' or None")

    @property
    def components(self) -> Side:
        """The checkpoint that supplies every non-decoder tensor."""
        return self.components_from or self.sources[0]

    def label(self, a: str = "IN", b: str = "RL") -> str:
        """``"IN:RL:RL"``-style name (parents are named ``a`` / ``b`` alone, e.g. ``"RL"``), with
        ``" [components B]"`` appended when the components do not come from the Early source."""
        names = [a if s == "A" else b for s in self.sources]
        text = names[0] if len(set(self.sources)) == 1 else ":".join(names)
        if self.components != self.sources[0]:
            text += f" [components {a if self.components == 'A' else b}]"
        return text

    def __str__(self) -> str:
        return self.label()


def parse_variant(text: str, *, components_from: str | None = None) -> Variant:
    """Parse ``"IN:RL:RL"`` (tokens ``A``/``IN``/``SFT`` for the first checkpoint, ``B``/``RL`` for
    the second; case-insensitive), or a single token for a parent.

    Raises:
        UsageError: not three ``:``-separated known tokens, or a bad ``components_from``.
    """
    parts = [p.strip().upper() for p in str(text).split(":")]
    if len(parts) == 1:
        parts = parts * 3
    comp = _ALIASES.get(str(components_from).strip().upper()) if components_from is not None else None
    if components_from is not None and comp is None:
        raise UsageError(f"--components-from {components_from!r}: expected A (alias IN) or B (alias RL)")
    if len(parts) != 3 or any(p not in _ALIASES for p in parts):
        raise UsageError(
            f"--regions {text!r}: expected Early:Mid:Late sources such as IN:RL:RL, each one of "
            f"A/IN/SFT (the --from checkpoint) or B/RL (the --with checkpoint)")
    return Variant(tuple(_ALIASES[p] for p in parts), comp)  # type: ignore[arg-type]


def all_variants(components_from: Side | None = None) -> list[Variant]:
    """The 8 models of the paper's Table 2, in its column order: IN, IN:RL:RL, IN:IN:RL, RL:RL:IN,
    RL:IN:IN, IN:RL:IN, RL:IN:RL, RL (A = IN, B = RL)."""
    orders = ("AAA", "ABB", "AAB", "BBA", "BAA", "ABA", "BAB", "BBB")
    return [Variant(tuple(o), components_from) for o in orders]  # type: ignore[arg-type]
