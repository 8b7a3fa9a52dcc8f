"""The weight measurements of the pytest run (:func:`vlmdiag.measure.weights.weight_deltas`),
taken from a model in memory instead of a saved RL checkpoint (paper §3.2, Eq. 3; Figs. 5–6).

ΔRL = W_live − W_start per update matrix (the authors' selection,
:func:`~vlmdiag.measure.weights.update_matrices`), with the same per-matrix statistics
(:func:`~vlmdiag.measure.weights.delta_stats`: ‖ΔW‖_F, ‖ΔW‖_F/‖W_start‖_F, the storage-precision
floor, and with spectra the singular values), so the claims of :mod:`vlmdiag.claims.updates` read a
:class:`~vlmdiag.measure.weights.WeightDeltas` equal (to fp32 rounding) to the one the pytest run
builds from the same weights saved to a folder. ΔIN = W_start − W_origin never changes during RL:
it is measured once, by :func:`~vlmdiag.measure.weights.weight_deltas` itself.

Live parameter names are mapped onto the checkpoint's canonical names as the checkpoint reader maps
on-disk names (:meth:`vlmdiag.adapters.Adapter.canonical`), after unwrapping DDP / accelerate
(``.module``) and ``torch.compile`` (``._orig_mod``) wrappers. Nothing is written anywhere.
"""

from __future__ import annotations

import math
from collections.abc import Iterator

import torch

from vlmdiag.checkpoints import Checkpoint, check_compatible
from vlmdiag.errors import IncompatibleCheckpointsError, NonFiniteWeightsError, UsageError
from vlmdiag.measure.weights import MatrixDelta, WeightDeltas, delta_stats, rounding_energy, update_matrices, weight_deltas


def unwrap(model: torch.nn.Module) -> torch.nn.Module:
    """The model under DDP / accelerate / DataParallel (``.module``) and ``torch.compile``
    (``._orig_mod``) wrappers."""
    while True:
        inner = getattr(model, "_orig_mod", None)
        if not isinstance(inner, torch.nn.Module):
            inner = getattr(model, "module", None)
        if not isinstance(inner, torch.nn.Module) or inner is model:
            return model
        model = inner


def live_parameters(model: torch.nn.Module, start: Checkpoint) -> dict[str, torch.Tensor]:
    """``{canonical name: parameter}`` of ``model`` (unwrapped), named as ``start``'s reader names
    its tensors.

    Raises:
        UsageError: a LoRA/PEFT-wrapped model (its weights are base + adapter, not one tensor), or
            sharded parameters (DeepSpeed ZeRO-3, FSDP ``DTensor``): the message names one.
    """
    out: dict[str, torch.Tensor] = {}
    for name, parameter in unwrap(model).named_parameters(remove_duplicate=False):
        if ".base_layer." in name or ".lora_" in name:
            raise UsageError(f"training model parameter {name}: LoRA/PEFT-wrapped models are not supported "
                             "by vlmdiag's weight checks (merge the adapter to measure its update)")
        if hasattr(parameter, "ds_shape") or hasattr(parameter, "full_tensor"):
            raise UsageError(f"training model parameter {name} is sharded (DeepSpeed ZeRO-3 or FSDP); "
                             "vlmdiag's weight checks need whole parameters on one process")
        out[start.adapter.canonical(name)] = parameter
    return out


class LiveWeights:
    """The starting checkpoint (the paper's IN, where RL began), optionally its origin (Base), and
    the per-matrix statistics of a model in memory against them.

    Args:
        start: the checkpoint RL started from (``--base`` of the pytest run).
        origin: the checkpoint before the start's SFT (``--origin``); enables ΔIN.
        stored_dtype: the dtype the RL checkpoint will be saved in, which sets the RL side of the
            storage-precision floor (default: each parameter's own dtype, what ``save_pretrained``
            writes).

    Raises:
        IncompatibleCheckpointsError: ``start`` and ``origin`` differ in names, shapes or layer counts.
    """

    def __init__(self, start: Checkpoint, origin: Checkpoint | None = None, *,
                 stored_dtype: torch.dtype | None = None):
        if origin is not None:
            check_compatible(start, origin)
        self.start, self.origin, self.stored_dtype = start, origin, stored_dtype
        self.names = list(update_matrices(start))
        self._in: dict[bool, list[MatrixDelta]] = {}  # spectra? -> the IN stage's matrices

    def check(self, model: torch.nn.Module) -> dict[str, torch.Tensor]:
        """The live parameters of every update matrix, by canonical name, after checking them
        against the starting checkpoint.

        Raises:
            IncompatibleCheckpointsError: a matrix of the checkpoint has no parameter in ``model``,
                ``model`` has an update matrix the checkpoint lacks, or shapes differ (the message
                names the checkpoint and the tensors).
            UsageError: see :func:`live_parameters`.
        """
        live = live_parameters(model, self.start)
        where = f"{self.start.path} vs the training model"
        missing = [n for n in self.names if n not in live]
        extra = sorted(n for n, p in live.items() if n not in self.start.names and p.ndim >= 2
                       and self.start.adapter.locate(n, self.start.num_vision_layers).component != "other"
                       and n.endswith(".weight") and "norm" not in n)
        shaped = [n for n in self.names if n in live and tuple(live[n].shape) != tuple(self.start.shape(n))]
        problems = []
        if missing:
            problems.append(f"{len(missing)} tensor(s) of the checkpoint have no parameter in the model: "
                            + _some(missing))
        if extra:
            problems.append(f"{len(extra)} weight matrix parameter(s) of the model are not in the checkpoint: "
                            + _some(extra))
        if shaped:
            problems.append(f"{len(shaped)} tensor(s) differ in shape: " + ", ".join(
                f"{n} {list(self.start.shape(n))} vs {list(live[n].shape)}" for n in shaped[:5]))
        if problems:
            raise IncompatibleCheckpointsError(f"{where}: " + "; ".join(problems))
        return {n: live[n] for n in self.names}

    def in_matrices(self, spectra: bool) -> list[MatrixDelta]:
        """ΔIN of every matrix (empty without ``origin``), measured once per ``spectra`` setting by
        :func:`~vlmdiag.measure.weights.weight_deltas` on (start, start, origin) (whose ΔRL is zero
        and costs no SVD)."""
        if self.origin is None:
            return []
        if spectra not in self._in:
            if not spectra and True in self._in:
                return self._in[True]  # norms come with spectra
            deltas = weight_deltas(self.start, self.start, self.origin, spectra=spectra)
            self._in[spectra] = [m for m in deltas.matrices if m.stage == "in"]
        return self._in[spectra]

    def measure(self, model: torch.nn.Module, *, spectra: bool,
                spectra_components: tuple[str, ...] = ("llm",)) -> WeightDeltas:
        """ΔRL = W_live − W_start of every update matrix (and ΔIN with an origin), as the
        :class:`~vlmdiag.measure.weights.WeightDeltas` the weight claims read.

        Each live parameter is copied to fp32 on its own device, W_start read from the checkpoint
        onto that device; at most those two matrices are held at a time. ``spectra``: singular
        values of the matrices of ``spectra_components`` (default the LLM decoder's, the only ones
        the claims read; the others get norms).

        Raises:
            IncompatibleCheckpointsError, UsageError: see :meth:`check`.
            NonFiniteWeightsError: a live parameter holds NaN/Inf (names it).
        """
        live = self.check(model)
        in_by_name = {m.name: m for m in self.in_matrices(spectra)}
        matrices: list[MatrixDelta] = []
        with torch.no_grad():
            for name, stats in self._rl_stats(live, spectra, spectra_components):
                location = self.start.locate(name)
                matrices.append(MatrixDelta(name=name, stage="rl", component=location.component, layer=location.layer,
                                            unified=location.unified, numel=math.prod(self.start.shape(name)),
                                            stats=stats))
                if name in in_by_name:
                    matrices.append(in_by_name[name])
        return WeightDeltas(self.start.num_llm_layers, self.start.num_vision_layers, matrices, spectra)

    def _rl_stats(self, live: dict[str, torch.Tensor], spectra: bool, components: tuple[str, ...]) -> Iterator:
        for name in self.names:
            parameter = live[name].detach()
            before = self.start.get(name).to(device=parameter.device, dtype=torch.float32)
            after = parameter.to(torch.float32, copy=True)
            if not math.isfinite(float(torch.linalg.vector_norm(after))):
                bad = int((~torch.isfinite(after)).sum())
                if bad:  # else only the norm overflowed, as a checkpoint's would
                    raise NonFiniteWeightsError(f"training model parameter {name} holds {bad} NaN/Inf value(s)")
            floor = rounding_energy(before, self.start.dtype(name)) + rounding_energy(
                after, self.stored_dtype or parameter.dtype)
            stats = delta_stats(after.sub_(before), before, floor_energy=floor,
                                spectra=spectra and self.start.locate(name).component in components)
            del before, after
            yield name, stats


def _some(names: list[str], limit: int = 5) -> str:
    return ", ".join(names[:limit]) + (f" ... ({len(names) - limit} more)" if len(names) > limit else "")
