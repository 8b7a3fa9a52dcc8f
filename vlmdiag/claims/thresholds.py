"""Loading and validating ``thresholds.yaml``: every message names the file, the key and its line."""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from vlmdiag.claims.registry import ClaimThresholds, all_claims
from vlmdiag.errors import ThresholdsError, printable
from vlmdiag.regions import LocalizedRule

SCHEMA_VERSION = 1


class CurveTolerance(BaseModel):
    """How far a per-layer value may move from the baseline's: ``|now − then| <= atol + rtol·|then|``
    (``numpy.isclose``). Also the tolerance of an exact statistic (one without a sampled interval)."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    rtol: float = Field(0.05, ge=0, description="relative tolerance (0.05: 5 % of the baseline's value)")
    atol: float = Field(1e-6, ge=0, description="absolute tolerance, in the curve's own units")


class BaselineRule(CurveTolerance):
    """``baseline`` in ``thresholds.yaml``: the tolerances of ``--baseline`` comparisons, with
    per-claim overrides (``claims: {CLAIM_ID: {rtol, atol}}``)."""

    claims: dict[str, CurveTolerance] = Field(default_factory=dict)

    def for_claim(self, claim_id: str) -> CurveTolerance:
        return self.claims.get(claim_id, self)


class SequentialLooks(BaseModel):
    """One claim's looks in the sequential design: ``looks`` (K) evenly spaced item counts up to
    ``max_items`` (per probe set, the claim's ``n_items`` units); None: the section's value."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    looks: int | None = Field(None, ge=1, le=20, description="looks K (rounds of measuring, then judging)")
    max_items: int | None = Field(None, ge=1, description="the maximum N, in the claim's n_items units; "
                                                          "None: looks × n_items (look k at k·n_items)")


class SequentialRule(SequentialLooks):
    """``sequential`` in ``thresholds.yaml``: the sequential design of the inference claims (those
    with ``n_items``), off unless ``enabled`` or ``--sequential``. Looks at ``max_items``·k/K
    items, k = 1..K (the first items of the suite's fixed order), each judged with intervals at
    level 1 − (1 − confidence)/K (Bonferroni error spending, :class:`vlmdiag.stats.SequentialPlan`);
    the run stops at the first decided verdict or at the last look. ``claims: {CLAIM_ID: {looks,
    max_items}}`` overrides per claim."""

    enabled: bool = Field(False, description="judge the inference claims in rounds (also: --sequential)")
    looks: int = Field(4, ge=1, le=20, description="looks K")
    spending: Literal["bonferroni"] = Field("bonferroni", description="how the error level is split over looks")
    claims: dict[str, SequentialLooks] = Field(default_factory=dict)

    def for_claim(self, claim_id: str, n_items: int) -> tuple[int, int]:
        """``(looks, max_items)`` of a claim whose fixed-design N is ``n_items``."""
        own = self.claims.get(claim_id, SequentialLooks())
        looks = own.looks or self.looks
        maximum = own.max_items or self.max_items or looks * n_items
        return min(looks, maximum), maximum


class _File(BaseModel):
    model_config = ConfigDict(extra="forbid")
    schema_version: int
    claims: dict[str, dict]
    localized_regions: LocalizedRule | None = None  # the rule of --regions localized
    baseline: BaselineRule = Field(default_factory=BaselineRule)  # --baseline tolerances
    sequential: SequentialRule = Field(default_factory=SequentialRule)  # the sequential design (off by default)


@dataclass(frozen=True)
class Thresholds:
    """The validated thresholds of every claim the file lists, by claim id."""

    path: Path
    claims: dict[str, ClaimThresholds]
    localized: LocalizedRule | None = None  # None: the file has no localized_regions section
    baseline: BaselineRule = BaselineRule()  # the --baseline tolerances (defaults when the file has none)
    sequential: SequentialRule = SequentialRule()  # the sequential design (off when the file has none)

    def get(self, claim_id: str) -> ClaimThresholds | None:
        return self.claims.get(claim_id)


def load_thresholds(path: str | Path) -> Thresholds:
    """Read and validate a thresholds file against the claim registry.

    Raises:
        ThresholdsError: unreadable file, bad YAML, wrong schema version, an unknown claim id,
            or a claim entry with a missing, unknown or invalid key (message: ``file:line: key: problem``).
    """
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as error:
        raise ThresholdsError(f"{path}: cannot read the thresholds file ({error.strerror})") from error
    except UnicodeDecodeError as error:
        raise ThresholdsError(f"{path}: not UTF-8 text (byte {error.start}); save it as UTF-8") from error
    try:
        root = yaml.compose(text)
        data = yaml.safe_load(text)
    except yaml.YAMLError as error:
        raise ThresholdsError(f"{path}: not valid YAML ({printable(str(error).splitlines()[0])})") from error
    except RecursionError as error:  # PyYAML composes nested collections recursively
        raise ThresholdsError(f"{path}: nested too deeply to be a thresholds file") from error
    if not isinstance(data, dict):
        raise ThresholdsError(f"{path}: expected a mapping with schema_version and claims")
    _check_numbers(path, root, (), data)  # before pydantic, whose range messages would hide a NaN
    try:
        document = _File.model_validate(data)
    except ValidationError as error:
        raise ThresholdsError(_message(path, root, error, ())) from error
    if document.schema_version != SCHEMA_VERSION:
        raise ThresholdsError(f"{path}:{_line(root, ('schema_version',))}: schema_version "
                              f"{document.schema_version} is not supported (expected {SCHEMA_VERSION})")
    registry = all_claims()
    claims = {}
    for claim_id, entry in document.claims.items():
        if claim_id not in registry:
            raise ThresholdsError(f"{path}:{_line(root, ('claims', claim_id))}: unknown claim {claim_id!r}; "
                                  f"known claims: {', '.join(sorted(registry))}")
        try:
            claims[claim_id] = registry[claim_id].thresholds.model_validate(entry or {})
        except ValidationError as error:
            raise ThresholdsError(_message(path, root, error, ("claims", claim_id))) from error
        _check_numbers(path, root, ("claims", claim_id), claims[claim_id].model_dump())
    if document.localized_regions is not None:
        _check_numbers(path, root, ("localized_regions",), document.localized_regions.model_dump())
    unknown = sorted(set(document.baseline.claims) - set(registry))
    if unknown:
        raise ThresholdsError(f"{path}:{_line(root, ('baseline', 'claims', unknown[0]))}: baseline.claims: unknown "
                              f"claim {printable(unknown[0])!r}; known claims: {', '.join(sorted(registry))}")
    _check_numbers(path, root, ("baseline",), document.baseline.model_dump())
    unknown = sorted(set(document.sequential.claims) - set(claims))
    if unknown:
        raise ThresholdsError(f"{path}:{_line(root, ('sequential', 'claims', unknown[0]))}: sequential.claims: "
                              f"{printable(unknown[0])!r} has no entry under claims; "
                              f"known: {', '.join(sorted(claims))}")
    _check_numbers(path, root, ("sequential",), document.sequential.model_dump())
    return Thresholds(path, claims, document.localized_regions, document.baseline, document.sequential)


#: Sane ranges of the counts a thresholds file sets: past them a run takes days or runs out of
#: memory (a bootstrap of 10^9 resamples), or a seed is refused by numpy.
COUNT_RANGES = {"bootstrap_resamples": (100, 1_000_000), "n_items": (1, 100_000), "max_items": (1, 100_000),
                "max_new_tokens": (1, 32_768), "probe_seed": (0, 2**32 - 1)}


def _check_numbers(path: Path, root, prefix: tuple, values: dict) -> None:
    """Refuse NaN and infinite numbers (a NaN threshold makes every comparison false: the claim
    is inconclusive forever and a gate never fails) and counts outside :data:`COUNT_RANGES`.

    Raises:
        ThresholdsError: ``file:line: key: problem``.
    """
    for key, value in values.items():
        loc = (*prefix, key)
        if isinstance(value, dict):
            _check_numbers(path, root, loc, value)
            continue
        where = f"{path}:{_line(root, loc)}: {'.'.join(printable(part) for part in loc)}"
        if isinstance(value, float) and not math.isfinite(value):
            raise ThresholdsError(f"{where}: {value} is not a finite number")
        low, high = COUNT_RANGES.get(key, (None, None))
        if isinstance(value, int) and low is not None and not low <= value <= high:
            raise ThresholdsError(f"{where}: {value} is outside the sane range {low}..{high}")


def _message(path: Path, root, error: ValidationError, prefix: tuple) -> str:
    problems = []
    for item in error.errors():
        loc = prefix + tuple(str(x) for x in item["loc"])
        shown = ".".join(part if part.isprintable() else repr(part) for part in loc)  # keep it one line
        problems.append(f"{path}:{_line(root, loc)}: {shown}: {printable(item['msg'])}")
    return "; ".join(problems)


def _line(root, loc: tuple) -> int:
    """1-based line of the deepest YAML node on the path ``loc`` that exists."""
    node, line = root, 1
    for key in loc:
        if node is None or not isinstance(node, yaml.MappingNode):
            break
        found = next(((k, v) for k, v in node.value if k.value == key), None)
        if found is None:
            break
        line = found[0].start_mark.line + 1
        node = found[1]
    return line
