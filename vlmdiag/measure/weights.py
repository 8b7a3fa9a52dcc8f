"""Weight-update measurements (paper §3.2, Eq. 3; Figs. 5–6), streamed tensor by tensor.

ΔRL = W_rl − W_base and ΔIN = W_base − W_origin, in fp32, for every weight matrix of the vision
blocks, the projector and the LLM decoder layers (the authors' selection: names ending in
``.weight`` that are not norms; biases, embeddings and ``lm_head`` have no layer and are left
out). At most two matrices per checkpoint are in memory at a time (the one measured and the
next, read ahead).

Every update also gets its storage-precision floor: the ‖ΔW‖_F and the top singular value a pure
rounding Δ would have, given the dtypes the two checkpoints are stored in (see :func:`rounding_energy`),
and the count of elements that changed by more than rounding can (:func:`count_updated`). With
spectra, every singular value of ΔW and the rotation and drift of W's principal subspace.

The statistics of one matrix live in :mod:`vlmdiag.measure.delta_stats`, the engines in
:mod:`vlmdiag.measure.weight_engines`; this module is the public interface (names re-exported).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator
from contextlib import ExitStack
from dataclasses import dataclass

import numpy as np
import torch

from vlmdiag.checkpoints import Checkpoint, check_compatible
from vlmdiag.measure.delta_stats import (  # noqa: F401 — re-exported, the public names
    GRAM_RESOLUTION,
    PRINCIPAL_K,
    SPECTRUM_RANKS,
    TOP_SINGULAR_VALUES,
    DeltaStats,
    count_updated,
    delta_stats,
    principal_subspace,
    rounding_energy,
    singular_values,
    subspace_change,
)
from vlmdiag.measure.weight_engines import (  # noqa: F401 — re-exported
    FLOOR_STRIDE,
    NORM_CHUNK,
    SliceNorms,
    WholeMatrices,
    pool_pass,
    tensor_pass,
)
from vlmdiag.runtime.model import choose_device


@dataclass(frozen=True)
class MatrixDelta:
    """One weight matrix's update in one stage (``"rl"`` or ``"in"``)."""

    name: str
    stage: str
    component: str  # "llm" | "vision" | "projector"
    layer: int | None  # index in its stack (0-based), None for the projector
    unified: int  # unified layer index: vision −N…−1, projector 0, LLM 1…L
    numel: int
    stats: DeltaStats


@dataclass
class WeightDeltas:
    """Every matrix update of a recipe; the per-layer views the claims and plots use."""

    num_llm_layers: int
    num_vision_layers: int
    matrices: list[MatrixDelta]
    spectra: bool

    @property
    def stages(self) -> tuple[str, ...]:
        return tuple(dict.fromkeys(m.stage for m in self.matrices))

    def select(self, stage: str, component: str = "llm") -> list[MatrixDelta]:
        """The matrices of one stage and component."""
        return [m for m in self.matrices if m.stage == stage and m.component == component]

    def llm_layer_values(self, stage: str, value: Callable[[MatrixDelta], float],
                         reduce: Callable[[list[float]], float] = np.mean) -> np.ndarray:
        """``[L]`` array: ``reduce`` of ``value`` over each LLM decoder layer's matrices
        (NaN for a layer with no matrix or no value)."""
        per_layer: list[list[float]] = [[] for _ in range(self.num_llm_layers)]
        for m in self.select(stage):
            v = value(m)
            if v is not None:
                per_layer[m.layer].append(v)
        return np.array([reduce(v) if v else np.nan for v in per_layer], dtype=float)


def is_update_matrix(name: str, component: str, ndim: int) -> bool:
    """The authors' selection: layer weights (``.weight``, ≥2-D) that are not norms."""
    return component in ("llm", "vision", "projector") and name.endswith(".weight") \
        and "norm" not in name and ndim >= 2


def update_matrices(checkpoint: Checkpoint) -> Iterator[str]:
    """Canonical names of the matrices whose updates are measured, in checkpoint order."""
    for name in checkpoint.names:
        if is_update_matrix(name, checkpoint.locate(name).component, len(checkpoint.shape(name))):
            yield name


def weight_deltas(base: Checkpoint, rl: Checkpoint, origin: Checkpoint | None = None, *,
                  spectra: bool = False, device: str | torch.device | None = None,
                  progress: Callable[[int, int], None] | None = None,
                  workers: int | None = None, extras: bool = True) -> WeightDeltas:
    """Stream ΔRL (and ΔIN when ``origin`` is given) over every update matrix.

    Three engines, same numbers (to fp32 rounding; ``tests/core/test_weight_math.py``):

    * norms only, on CPU: each matrix is read in slices of :data:`NORM_CHUNK` elements straight
      from the files into small reused buffers, converted to fp32 and reduced while it is in the
      CPU cache. Per-slice norms are summed in float64.
    * spectra on CPU: whole matrices, converted to fp32 into reused buffers, subtracted in place,
      then the spectrum (:func:`singular_values`: Gram matrix and eigensolve) and the principal
      subspaces of W_base, W_rl and W_origin (:func:`principal_subspace`).
    * CUDA (norms and spectra): whole matrices; a reader thread reads the next matrix into pinned
      memory while the current one is copied over (``non_blocking``), converted to fp32 on the GPU,
      subtracted in place and measured there.

    On CPU, ``workers`` threads take whole matrices, each with one intra-op thread (so reading in
    one overlaps computing in another, and no OpenMP barrier is shared: on a busy 2-core machine
    two intra-op threads made both the slices and ``svdvals`` several times slower, measured).

    Args:
        base: the checkpoint RL started from (the paper's IN).
        rl: the RL result.
        origin: the checkpoint before the base's SFT (the paper's Base); enables ΔIN.
        spectra: also compute singular values and principal subspaces (slower: one Gram matrix
            and eigensolve per matrix and stage, one range finder per matrix and checkpoint).
        device: where the fp32 arithmetic runs (default: CUDA when available, else CPU).
        progress: called as ``progress(done, total)`` after each matrix.
        workers: threads of the CPU engines (default: ``max(2, torch.get_num_threads())``).
        extras: also the statistics of ``updates.rl_sparse`` / ``updates.rl_off_principal``
            (updated-element counts; principal subspaces with spectra). False only to time the
            pass without them (``bench/bench_spectra.py``).

    Returns:
        :class:`WeightDeltas` with one :class:`MatrixDelta` per matrix and stage.

    Raises:
        IncompatibleCheckpointsError: the checkpoints differ in names, shapes or layer counts.
        NonFiniteWeightsError: a weight or delta holds NaN/Inf (names checkpoint and tensor).
        UsageError: ``device`` names CUDA where it is not available.
    """
    checkpoints = [c for c in (base, rl, origin) if c is not None]
    check_compatible(*checkpoints)
    device = choose_device(device)
    names = list(update_matrices(base))
    stages = ("rl", "in")[:len(checkpoints) - 1]
    matrices: list[MatrixDelta] = []
    with ExitStack() as stack:
        readers = [stack.enter_context(c.reader()) for c in checkpoints]
        if device.type != "cpu":
            measured = tensor_pass(readers, names, device, spectra, extras)
        else:
            measure = WholeMatrices(readers, spectra, extras) if spectra else SliceNorms(readers, extras)
            measured = pool_pass(names, measure, workers or max(2, torch.get_num_threads()))
        stack.callback(measured.close)  # stops the reader thread / worker pool on an error
        for done, (name, stats) in enumerate(measured, 1):
            location = base.locate(name)
            numel = math.prod(base.shape(name))
            matrices.extend(MatrixDelta(name=name, stage=stage, component=location.component,
                                        layer=location.layer, unified=location.unified, numel=numel,
                                        stats=stat) for stage, stat in zip(stages, stats))
            if progress is not None:
                progress(done, len(names))
    return WeightDeltas(base.num_llm_layers, base.num_vision_layers, matrices, spectra)


