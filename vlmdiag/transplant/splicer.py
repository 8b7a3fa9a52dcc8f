"""In-memory splicing (:class:`Splicer`): A's model is loaded once, the chosen tensors are streamed
from B's safetensors into it, the caller evaluates, and A's exact tensors are put back. A sweep over
the 8 variants (:func:`~vlmdiag.transplant.variants.all_variants`) loads no checkpoint again."""

from __future__ import annotations

import contextlib
import os
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass

import torch

from vlmdiag.checkpoints import Checkpoint, identity
from vlmdiag.errors import IncompatibleCheckpointsError, UsageError
from vlmdiag.regions import Regions
from vlmdiag.transplant.plan import SplicePlan, as_checkpoint, check_pair, plan_splice, resolve_regions
from vlmdiag.transplant.variants import Side, Variant, all_variants, parse_variant


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
        self.a, self.b = as_checkpoint(a), as_checkpoint(b)
        check_pair(self.a, self.b)
        self.model = getattr(model, "model", model) if not isinstance(model, torch.nn.Module) else model
        self.regions = resolve_regions(regions, self.a.num_llm_layers)
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
