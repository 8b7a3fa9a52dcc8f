"""Frankenstein transplants: splice Early / Mid / Late decoder regions of two checkpoints
(paper §3.3, Table 2; App. E; ``notes/reference-implementation.md`` §8.4).

Notation ``X:Y:Z`` = the sources of the Early:Mid:Late LLM decoder regions. ``A`` (alias ``IN``,
``SFT``) is the checkpoint given first (``--from``), ``B`` (alias ``RL``) the second (``--with``).
Inside a region the complete state of every decoder layer is taken from its source (attention,
MLP, both layer norms), nothing is renormalised.

Everything that is *not* a decoder layer (vision tower, projector, token embeddings, final norm,
``lm_head``) comes from one explicit checkpoint, ``components_from``. The default is the Early
source, which is what the authors' code does (it loads the Early source in full and overwrites
layers from the others). mergekit's passthrough would instead take the embeddings from the first
slice and the final norm / ``lm_head`` from the last one; the written YAML says when that differs.

Two ways to get a splice:

* :class:`Splicer` splices **in memory**: A's model is loaded once, the chosen tensors are
  streamed from B's safetensors into it, the caller evaluates, and A's exact tensors are put
  back. A sweep over the 8 variants (:func:`all_variants`) therefore loads no checkpoint again.
* :func:`write_transplant` (and the ``vlmdiag transplant`` command, :func:`main`) writes a spliced
  checkpoint folder, tensor by tensor, with a mergekit-compatible ``mergekit_config.yml``.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import sys
import tempfile
import time
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import torch

from vlmdiag.checkpoints import Checkpoint, check_compatible, identity, open_checkpoint
from vlmdiag.checkpoints.safetensors_header import read_header
from vlmdiag.errors import IncompatibleCheckpointsError, UsageError, VlmdiagError
from vlmdiag.regions import REGION_NAMES, Regions, regions_for

Side = Literal["A", "B"]
COMPONENTS = ("vision", "projector", "embeddings", "final_norm", "lm_head")
_ALIASES: dict[str, Side] = {"A": "A", "IN": "A", "SFT": "A", "B": "B", "RL": "B"}
_WEIGHT_SUFFIXES = (".safetensors", ".bin", ".pt", ".pth", ".ckpt", ".msgpack", ".h5")
_OUR_FILES = ("mergekit_config.yml", "vlmdiag_transplant.json", "model.safetensors.index.json",
              "README.md")  # a source's model card would misdescribe the splice

__all__ = [
    "Variant", "SplicePlan", "SpliceRecord", "Splicer", "SweepResult", "TransplantResult", "all_variants",
    "parse_variant", "plan_splice", "sweep_abilities", "mergekit_config", "write_transplant", "main",
]


# --------------------------------------------------------------------------- variants and plans


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


@dataclass(frozen=True)
class SplicePlan:
    """Which checkpoint supplies each tensor of a splice.

    Attributes:
        variant: the Early:Mid:Late combination.
        regions: the region cuts over the LLM decoder (0-based layers).
        layer_source: source of each decoder layer, length L.
        component_source: source of each non-decoder component (:data:`COMPONENTS`).
    """

    variant: Variant
    regions: Regions
    layer_source: tuple[Side, ...]
    component_source: dict[str, Side] = field(compare=False)

    def layers_from(self, side: Side) -> tuple[int, ...]:
        """0-based decoder layers taken from ``side``."""
        return tuple(i for i, s in enumerate(self.layer_source) if s == side)

    def slices(self) -> list[tuple[Side, int, int]]:
        """Maximal runs ``(source, start, stop)`` of decoder layers with one source (stop exclusive)."""
        runs: list[tuple[Side, int, int]] = []
        for i, side in enumerate(self.layer_source):
            if runs and runs[-1][0] == side:
                runs[-1] = (side, runs[-1][1], i + 1)
            else:
                runs.append((side, i, i + 1))
        return runs

    def source_of(self, name: str, checkpoint: Checkpoint) -> Side:
        """The source of one canonical tensor name."""
        location = checkpoint.locate(name)
        if location.component == "llm":
            return self.layer_source[location.layer]
        return self.variant.components

    def as_dict(self, a: str = "IN", b: str = "RL") -> dict:
        """A JSON-ready record: variant label, regions, per-region and per-component sources."""
        name = {"A": a, "B": b}
        return {
            "variant": self.variant.label(a, b),
            "sources": {r: name[s] for r, s in zip(REGION_NAMES, self.variant.sources)},
            "regions": self.regions.as_dict(),
            "components_from": name[self.variant.components],
            "components": {c: name[s] for c, s in self.component_source.items()},
        }


def plan_splice(variant: Variant, regions: Regions) -> SplicePlan:
    """Resolve a variant over concrete region cuts (see :func:`vlmdiag.regions.regions_for`)."""
    layer_source: list[Side] = []
    for region_name, side in zip(REGION_NAMES, variant.sources):
        layer_source.extend([side] * len(regions.ranges[region_name]))
    return SplicePlan(variant, regions, tuple(layer_source),
                      {c: variant.components for c in COMPONENTS})


def _as_checkpoint(value: Checkpoint | str | os.PathLike) -> Checkpoint:
    return value if isinstance(value, Checkpoint) else open_checkpoint(str(value))


def _regions(spec: Regions | str, num_layers: int) -> Regions:
    if isinstance(spec, Regions):
        if spec.num_layers != num_layers:
            raise UsageError(f"regions are for {spec.num_layers} decoder layers, the checkpoints have {num_layers}")
        return spec
    return regions_for(spec, num_layers)


def _check_pair(a: Checkpoint, b: Checkpoint) -> None:
    """Refuse pairs that cannot be spliced, before any tensor is read."""
    try:
        check_compatible(a, b)
    except IncompatibleCheckpointsError as error:
        raise IncompatibleCheckpointsError(f"cannot splice {a.path} with {b.path}: {error}") from error


# --------------------------------------------------------------------------- in-memory splicing


@dataclass
class SpliceRecord:
    """What one in-memory splice did (filled while it is active).

    Attributes:
        plan: the resolved plan.
        tensors_copied: parameters whose source changed (overwritten with B's tensor, or put back
            to A's in a sweep).
        bytes_read: bytes streamed from B's safetensors.
        bytes_reread: bytes re-read from A's safetensors, to check a tensor can be restored from
            its file (once per tensor and splicer) and to restore it.
        tensors_backed_up: tensors that differ from A's file (so are kept as a CPU copy while
            overwritten); 0 for a model loaded from A and left unchanged.
        seconds_apply / seconds_restore: wall time of the copy and of the restore.
    """

    plan: SplicePlan
    tensors_copied: int = 0
    bytes_read: int = 0
    bytes_reread: int = 0
    tensors_backed_up: int = 0
    seconds_apply: float = 0.0
    seconds_restore: float = 0.0


_INT_OF_SIZE = {1: torch.uint8, 2: torch.int16, 4: torch.int32, 8: torch.int64}


def _same_bits(x: torch.Tensor, y: torch.Tensor) -> bool:
    """Whether two tensors of one dtype hold the same bits (NaN payloads and -0.0 included)."""
    if x.shape != y.shape or x.dtype != y.dtype:
        return False
    if x.is_floating_point():
        x, y = x.view(_INT_OF_SIZE[x.element_size()]), y.view(_INT_OF_SIZE[y.element_size()])
    return torch.equal(x, y)


class Splicer:
    """Splice decoder regions of checkpoint B into a model loaded from checkpoint A, in memory.

    The model is loaded once by the caller (e.g. :func:`vlmdiag.runtime.model.load_model`).
    :meth:`splice` is a context manager: on entry it streams the tensors the variant takes from B
    (one tensor at a time, cast to the parameter's dtype and device) into the model; on exit,
    even after an exception, it puts A's exact tensors back by streaming them again from A's
    safetensors, the same way. No copy of the model is kept, so the extra memory is one tensor
    in flight (at 7B the largest, the embedding, is about 1 GB in bf16), not the overwritten
    parameters (about 13 GB for the RL parent).

    Restoring from A's file is exact only if the model's tensor *is* A's file tensor cast to the
    parameter's dtype. Before a tensor is first overwritten, the splicer checks this bit for bit
    (once per tensor and splicer); a tensor that differs (the model was changed after loading, or
    the loader transformed it) is kept as a CPU copy while it is overwritten instead, and counted
    in :attr:`SpliceRecord.tensors_backed_up`.

    Args:
        model: the model loaded from ``a`` (an ``nn.Module`` or a ``LoadedModel``); its
            ``state_dict`` names must be the canonical names of ``a``.
        a: checkpoint the model was loaded from (a :class:`~vlmdiag.checkpoints.Checkpoint` or a
            spec for :func:`~vlmdiag.checkpoints.open_checkpoint`).
        b: the other checkpoint.
        regions: a :class:`~vlmdiag.regions.Regions` or a ``--regions`` spec (``paper``,
            ``thirds``, ``A,B``); default ``paper``.

    Raises:
        IncompatibleCheckpointsError: A and B differ in architecture, layer counts, tensor names
            or shapes; or the model's parameters do not match A's tensors (names or shapes).

    Example:
        >>> loaded = load_model("ckpt/in")                    # the only load
        >>> splicer = Splicer(loaded, "ckpt/in", "ckpt/rl")
        >>> for variant, record in splicer.sweep():           # IN, IN:RL:RL, ..., RL
        ...     scores[variant.label()] = evaluate(loaded)
        >>> with splicer.splice("IN:RL:RL") as record:       # or one variant at a time
        ...     scores["IN:RL:RL"] = evaluate(loaded)
    """

    def __init__(self, model, a: Checkpoint | str | os.PathLike, b: Checkpoint | str | os.PathLike,
                 *, regions: Regions | str = "paper"):
        self.a, self.b = _as_checkpoint(a), _as_checkpoint(b)
        _check_pair(self.a, self.b)
        self.model = getattr(model, "model", model) if not isinstance(model, torch.nn.Module) else model
        self.regions = _regions(regions, self.a.num_llm_layers)
        self._params = self._match_model()
        self._active = False
        self.reads = 0  # tensors streamed from B so far (the splicer never loads a model)
        self.rereads = 0  # tensors re-read from A so far (to check restorability, and to restore)
        self._restorable: set[str] = set()  # model tensor == A's file tensor, bit for bit
        self._modified: set[str] = set()  # model tensor != A's file tensor: back up instead

    def _match_model(self) -> dict[str, torch.Tensor]:
        """Map every checkpoint tensor to the model parameter/buffer it fills; tied parameters
        (``lm_head`` sharing the embedding) that the checkpoint omits are checked, not copied."""
        state = self.model.state_dict(keep_vars=True)
        problems: list[str] = []
        names = set(self.a.names)
        missing = sorted(names - set(state))
        if missing:
            problems.append(f"{len(missing)} tensor(s) of {self.a.path} are not in the model: "
                            + ", ".join(missing[:5]) + (" ..." if len(missing) > 5 else ""))
        stored = {state[n].data_ptr() for n in names if n in state}
        extra = sorted(n for n in set(state) - names if state[n].data_ptr() not in stored
                       and isinstance(state[n], torch.nn.Parameter))
        if extra:
            problems.append(f"{len(extra)} model parameter(s) have no tensor in {self.a.path}: "
                            + ", ".join(extra[:5]) + (" ..." if len(extra) > 5 else ""))
        shaped = [n for n in sorted(names & set(state)) if tuple(state[n].shape) != self.a.shape(n)]
        if shaped:
            problems.append(f"{len(shaped)} tensor(s) differ in shape between the model and "
                            f"{self.a.path}: " + ", ".join(shaped[:5]))
        if problems:
            raise IncompatibleCheckpointsError(
                "the model does not match checkpoint A (was it loaded from it?): " + "; ".join(problems))
        return {n: state[n] for n in sorted(names)}

    def plan(self, variant: Variant) -> SplicePlan:
        """The plan of ``variant`` over this splicer's regions."""
        return plan_splice(variant, self.regions)

    def tensors_from_b(self, plan: SplicePlan) -> list[str]:
        """Canonical names of the tensors ``plan`` takes from B."""
        return [n for n in self._params if plan.source_of(n, self.a) == "B"]

    def fingerprint(self, variant: Variant | str) -> str:
        """The exact identity of the spliced model (for answer caches, see
        :func:`vlmdiag.measure.abilities.answer_key`), composed as
        :attr:`Checkpoint.fingerprint <vlmdiag.checkpoints.Checkpoint.fingerprint>` is: A's
        files other than weights (the model runs with A's config and tokenizer) and each tensor's
        digest from the checkpoint it comes from. A variant whose tensors equal a parent's byte
        for byte (one that takes nothing from B, or only tensors equal in both) has that parent's
        fingerprint; variants that differ anywhere have different ones.

        Raises:
            CheckpointError: a weight file cannot be read (the digests are computed once).
        """
        variant = parse_variant(variant) if isinstance(variant, str) else variant
        taken = set(self.tensors_from_b(self.plan(variant)))
        tensors = {n: (self.b if n in taken else self.a).tensor_digests[n] for n in self._params}
        return identity.compose(self.a.file_digests, tensors)

    def _read(self, checkpoint: Checkpoint, name: str, target: torch.Tensor) -> torch.Tensor:
        """One tensor of ``checkpoint`` cast to ``target``'s dtype (on the CPU)."""
        return checkpoint.get(name).to(dtype=target.dtype)

    def _before_overwrite(self, name: str, backup: dict[str, torch.Tensor], record: SpliceRecord) -> None:
        """Make sure A's tensor ``name`` (which the model holds now) can be put back exactly: it is
        A's file tensor (checked once per splicer), or else it is copied into ``backup``."""
        if name in self._restorable:
            return
        target = self._params[name]
        if name not in self._modified:
            value = self._read(self.a, name, target)
            self.rereads += 1
            record.bytes_reread += value.numel() * value.element_size()
            if _same_bits(target.detach(), value.to(target.device)):
                self._restorable.add(name)
                return
            self._modified.add(name)
        backup[name] = target.detach().to("cpu", copy=True)
        record.tensors_backed_up += 1

    def _set(self, name: str, side: Side, backup: dict[str, torch.Tensor], record: SpliceRecord) -> None:
        """Overwrite parameter ``name`` with ``side``'s tensor, streamed from that checkpoint's
        safetensors (A's from ``backup`` when it had to be backed up)."""
        target = self._params[name]
        if side == "A" and name in backup:
            target.data.copy_(backup.pop(name))
            return
        value = self._read(self.b if side == "B" else self.a, name, target)
        nbytes = value.numel() * value.element_size()
        if side == "B":
            self.reads += 1
            record.bytes_read += nbytes
        else:
            self.rereads += 1
            record.bytes_reread += nbytes
        target.data.copy_(value)

    @contextlib.contextmanager
    def splice(self, variant: Variant | str) -> Iterator[SpliceRecord]:
        """Apply ``variant`` to the model for the duration of the ``with`` block.

        Yields:
            a :class:`SpliceRecord` (plan, tensors copied, bytes read, timings).

        Raises:
            UsageError: a splice is already active on this splicer (splices do not nest).
            CheckpointError: a tensor cannot be read back from A or B (the model is then left
                partly spliced: reload it).
        """
        if isinstance(variant, str):
            variant = parse_variant(variant)
        if self._active:
            raise UsageError("a splice is already active on this model; leave its `with` block first")
        plan = self.plan(variant)
        record = SpliceRecord(plan)
        backup: dict[str, torch.Tensor] = {}
        taken: list[str] = []
        self._active = True
        try:
            start = time.perf_counter()
            with torch.no_grad():
                for name in self.tensors_from_b(plan):
                    self._before_overwrite(name, backup, record)
                    taken.append(name)
                    self._set(name, "B", backup, record)
                    record.tensors_copied += 1
            record.seconds_apply = time.perf_counter() - start
            yield record
        finally:
            start = time.perf_counter()
            with torch.no_grad():
                for name in taken:
                    self._set(name, "A", backup, record)
            record.seconds_restore = time.perf_counter() - start
            self._active = False

    def sweep(self, variants: Iterable[Variant | str] | None = None) -> Iterator[tuple[Variant, SpliceRecord]]:
        """Apply each variant in turn (default: :func:`all_variants`, the paper's Table 2 order)
        and yield it while the model is in that state.

        Incremental: between two variants only the tensors whose source changes are touched, each
        streamed from its source's safetensors (B's, or A's when it goes back to A). A's exact
        tensors are restored when the sweep ends, raises, or is closed (wrap it in
        :func:`contextlib.closing` when breaking out of the loop early). Extra memory: one tensor
        in flight (plus CPU copies of tensors that differ from A's file, see :class:`Splicer`).

        Yields:
            ``(variant, SpliceRecord)``; ``tensors_copied`` / ``bytes_read`` count this step only.

        Raises:
            UsageError: a splice is already active on this splicer.
        """
        if self._active:
            raise UsageError("a splice is already active on this model; leave its `with` block first")
        self._active = True
        backup: dict[str, torch.Tensor] = {}
        current = dict.fromkeys(self._params, "A")
        try:
            for variant in variants if variants is not None else all_variants():
                variant = parse_variant(variant) if isinstance(variant, str) else variant
                plan = self.plan(variant)
                record = SpliceRecord(plan)
                start = time.perf_counter()
                with torch.no_grad():
                    for name in self._params:
                        want = plan.source_of(name, self.a)
                        if want == current[name]:
                            continue
                        if want == "B":
                            self._before_overwrite(name, backup, record)
                        self._set(name, want, backup, record)
                        current[name] = want
                        record.tensors_copied += 1
                record.seconds_apply = time.perf_counter() - start
                yield variant, record
        finally:
            final = SpliceRecord(self.plan(Variant(("A", "A", "A"))))  # the restore's reads
            with torch.no_grad():
                for name, side in current.items():
                    if side != "A":
                        self._set(name, "A", backup, final)
            self._active = False


@dataclass
class SweepResult:
    """Abilities of every variant of a sweep (paper Table 2), keyed by variant label (``IN``,
    ``IN:RL:RL``, ..., ``RL``): ``scores`` from :func:`~vlmdiag.measure.abilities.score_abilities`,
    the per-item ``outcomes``, and what each splice did (``records``)."""

    scores: dict[str, dict] = field(default_factory=dict)
    outcomes: dict[str, list] = field(default_factory=dict)
    records: dict[str, SpliceRecord] = field(default_factory=dict)


def sweep_abilities(splicer: Splicer, items: Sequence, predict, grade=None, *,
                    variants: Iterable[Variant | str] | None = None, labels: tuple[str, str] = ("IN", "RL"),
                    cache=None, decoding=None, batch_size: int = 8, level: float = 0.95) -> SweepResult:
    """Score Mvis / Mv2r / Mrea of every variant with one loaded model (paper §3.3, Table 2).

    Args:
        splicer: a :class:`Splicer` over the model that ``predict`` runs.
        items: ability items (:class:`~vlmdiag.probes.types.AbilityItem`).
        predict, grade, cache, decoding, batch_size: as in
            :func:`~vlmdiag.measure.abilities.run_abilities`; the cache key uses
            :meth:`Splicer.fingerprint` of each variant.
        variants: default :func:`all_variants`.
        labels: names of A and B in the labels.
        level: confidence level of the score intervals.

    Returns:
        :class:`SweepResult`. Compare variants with
        :func:`~vlmdiag.measure.abilities.compare_to_reference`.
    """
    from vlmdiag.measure.abilities import run_abilities, score_abilities

    result = SweepResult()
    for variant, record in splicer.sweep(variants):
        label = variant.label(*labels)
        outcomes = run_abilities(items, predict, grade, batch_size=batch_size, cache=cache,
                                 fingerprint=splicer.fingerprint(variant), decoding=decoding)
        result.outcomes[label] = outcomes
        result.scores[label] = score_abilities(outcomes, level=level)
        result.records[label] = record
    return result


# --------------------------------------------------------------------------- writing a checkpoint


@dataclass(frozen=True)
class TransplantResult:
    """A written splice: the folder, its plan, and the files it holds."""

    out: Path
    plan: SplicePlan
    files: tuple[str, ...]
    mergekit_exact: bool


def mergekit_config(plan: SplicePlan, a: Checkpoint, b: Checkpoint, *, dtype: str | None = None) -> tuple[str, bool]:
    """A mergekit ``passthrough`` configuration (YAML text) that describes ``plan``.

    The layout is mergekit's modular one for Qwen2.5-VL-style models: ``modules.text_decoder``
    holds one slice per run of decoder layers with the same source (``layer_range: [start,
    stop)``), ``vision_tower`` and ``multi_modal_projector`` name the components source.

    Returns:
        (yaml_text, exact): ``exact`` is False when mergekit would take the final norm /
        ``lm_head`` (from its last slice) or embeddings (first slice) from another checkpoint than
        vlmdiag's ``components_from``; the YAML then says so in a comment.
    """
    import yaml

    path = {"A": str(a.path.resolve()), "B": str(b.path.resolve())}
    slices = [{"sources": [{"model": path[s], "layer_range": [start, stop]}]}
              for s, start, stop in plan.slices()]
    comp = plan.variant.components
    config: dict = {"merge_method": "passthrough"}
    if dtype:
        config["dtype"] = dtype
    config["modules"] = {
        "text_decoder": {"slices": slices},
        "vision_tower": {"models": [{"model": path[comp]}]},
        "multi_modal_projector": {"models": [{"model": path[comp]}]},
    }
    config["tokenizer_source"] = path[comp]
    exact = plan.slices()[0][0] == comp and plan.slices()[-1][0] == comp
    d = plan.as_dict("A", "B")
    header = [
        f"# Written by vlmdiag transplant: {plan.variant.label()} (Early:Mid:Late; A = IN = {path['A']}, "
        f"B = RL = {path['B']}).",
        f"# Regions {d['regions']['preset']}: Early {d['regions']['Early']}, Mid {d['regions']['Mid']}, "
        f"Late {d['regions']['Late']} (0-based decoder layers, inclusive); layer_range below is [start, stop).",
        f"# Vision tower, projector, embeddings, final norm and lm_head: from {comp} ({path[comp]}).",
    ]
    if not exact:
        header.append(
            "# NOTE: mergekit's passthrough takes the embeddings from the first text_decoder slice and the "
            "final norm / lm_head from the last one, so `mergekit-yaml` on this file would take some of "
            f"them from another checkpoint than {comp}; vlmdiag's written weights take all of them from {comp}.")
    body = yaml.dump(config, Dumper=_yaml_dumper(), sort_keys=False)
    return "\n".join(header) + "\n" + body, exact


def _yaml_dumper():
    import yaml

    class Dumper(yaml.SafeDumper):
        """Block style, except ``[start, stop]`` number lists (as mergekit writes them)."""

        def represent_list(self, data):
            flow = all(isinstance(x, (int, float)) for x in data)
            return self.represent_sequence("tag:yaml.org,2002:seq", data, flow_style=flow)

    Dumper.add_representer(list, Dumper.represent_list)
    return Dumper


def _check_out(out: Path, inputs: Sequence[Path]) -> Path:
    out = Path(out)
    if out.exists() or out.is_symlink():
        raise UsageError(f"--out {out}: already exists; vlmdiag never overwrites a folder, choose a new path")
    resolved = out.resolve()
    for folder in inputs:
        folder = folder.resolve()
        if resolved == folder or folder in resolved.parents:
            raise UsageError(f"--out {out}: inside the input checkpoint {folder}; write the splice elsewhere")
    if not resolved.parent.is_dir():
        raise UsageError(f"--out {out}: parent folder {resolved.parent} does not exist")
    return resolved


def _disk_names(checkpoint: Checkpoint) -> dict[str, str]:
    """Canonical name -> on-disk name in ``checkpoint``'s safetensors files (keeps its layout)."""
    out: dict[str, str] = {}
    files = sorted(checkpoint.path.glob("*.safetensors"))
    for file in files:
        entries, _ = read_header(file)
        for name in entries:
            out[checkpoint.adapter.canonical(name)] = name
    return out


def write_transplant(a: Checkpoint | str | os.PathLike, b: Checkpoint | str | os.PathLike,
                     variant: Variant | str, out: str | os.PathLike, *,
                     regions: Regions | str = "paper", max_shard_bytes: int = 5 * 1024**3) -> TransplantResult:
    """Write the splice ``variant`` of ``a`` and ``b`` as a new checkpoint folder ``out``.

    Tensors are streamed one at a time and written in safetensors shards of at most
    ``max_shard_bytes`` (one ``model.safetensors``, or ``model-0000i-of-0000n.safetensors`` plus
    ``model.safetensors.index.json``), under the components source's on-disk names and dtypes.
    The components source's config, tokenizer, processor and other non-weight files are copied.
    Also written: ``mergekit_config.yml`` (see :func:`mergekit_config`) and
    ``vlmdiag_transplant.json`` (plan, checkpoint paths and fingerprints). Everything is written
    to a temporary folder next to ``out`` and renamed at the end; on error nothing is left.

    Raises:
        UsageError: ``out`` exists, lies inside an input folder, or its parent is missing; bad variant.
        IncompatibleCheckpointsError: the checkpoints differ in architecture, layer counts,
            tensor names or shapes.
        CheckpointError: an input checkpoint is unreadable.
    """
    a, b = _as_checkpoint(a), _as_checkpoint(b)
    variant = parse_variant(variant) if isinstance(variant, str) else variant
    out = _check_out(Path(out), [a.path, b.path])
    _check_pair(a, b)
    plan = plan_splice(variant, _regions(regions, a.num_llm_layers))
    side = {"A": a, "B": b}
    comp = side[variant.components]
    disk = _disk_names(comp)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.tmp-", dir=out.parent))
    try:
        from safetensors.torch import save_file

        # Decide the shard of every tensor from header sizes (no data read), then stream.
        layout: list[list[str]] = [[]]
        size = total = 0
        for name in comp.names:
            nbytes = _numel(comp.shape(name)) * comp.dtype(name).itemsize
            if layout[-1] and size + nbytes > max_shard_bytes:
                layout.append([])
                size = 0
            layout[-1].append(name)
            size += nbytes
            total += nbytes
        n = len(layout)
        shard_files = ["model.safetensors"] if n == 1 else [
            f"model-{i + 1:05d}-of-{n:05d}.safetensors" for i in range(n)]
        files: list[str] = []
        weight_map: dict[str, str] = {}
        for names, file in zip(layout, shard_files):
            shard: dict[str, torch.Tensor] = {}
            for name in names:
                value = side[plan.source_of(name, a)].get(name)
                key = disk.get(name, name)
                shard[key] = value.to(comp.dtype(name)).contiguous()
                weight_map[key] = file
            save_file(shard, str(tmp / file), metadata={"format": "pt"})
            del shard
            files.append(file)
        if len(shard_files) > 1:
            (tmp / "model.safetensors.index.json").write_text(json.dumps(
                {"metadata": {"total_size": total}, "weight_map": dict(sorted(weight_map.items()))}, indent=2))
            files.append("model.safetensors.index.json")
        for item in sorted(comp.path.iterdir()):
            if item.is_file() and not item.name.endswith(_WEIGHT_SUFFIXES) and item.name not in _OUR_FILES \
                    and not item.name.endswith(".safetensors.index.json"):
                shutil.copy2(item, tmp / item.name)
                files.append(item.name)
        dtype = comp.config.get("dtype") or comp.config.get("torch_dtype")
        yaml_text, exact = mergekit_config(plan, a, b, dtype=dtype if isinstance(dtype, str) else None)
        (tmp / "mergekit_config.yml").write_text(yaml_text)
        record = {
            "tool": "vlmdiag transplant",
            **plan.as_dict("A", "B"),
            "checkpoints": {"A": {"path": str(a.path.resolve()), "fingerprint": a.fingerprint},
                            "B": {"path": str(b.path.resolve()), "fingerprint": b.fingerprint}},
            "mergekit_exact": exact,
        }
        (tmp / "vlmdiag_transplant.json").write_text(json.dumps(record, indent=2))
        files += ["mergekit_config.yml", "vlmdiag_transplant.json"]
        if out.exists():
            raise UsageError(f"--out {out}: appeared while writing; vlmdiag never overwrites a folder")
        os.rename(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return TransplantResult(out, plan, tuple(files), exact)


def _numel(shape: Sequence[int]) -> int:
    n = 1
    for d in shape:
        n *= int(d)
    return n


# --------------------------------------------------------------------------- command line


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


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
