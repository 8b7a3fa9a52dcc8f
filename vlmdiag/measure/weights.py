"""Weight-update measurements (paper §3.2, Eq. 3; Figs. 5–6), streamed tensor by tensor.

ΔRL = W_rl − W_base and ΔIN = W_base − W_origin, in fp32, for every weight matrix of the vision
blocks, the projector and the LLM decoder layers (the authors' selection: names ending in
``.weight`` that are not norms; biases, embeddings and ``lm_head`` have no layer and are left
out). Only one tensor per checkpoint is in memory at a time.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

import numpy as np
import torch

from vlmdiag.checkpoints import Checkpoint, check_compatible
from vlmdiag.errors import NonFiniteWeightsError

SPECTRUM_RANKS = (10, 20, 30, 40)
TOP_SINGULAR_VALUES = 50
# σ_k/σ_1 below fp32 resolution is numerical zero (a rank-2 update has σ_10 ≈ 1e-8·σ_1): clamp
# it there so exactly-low-rank updates read as maximally steep, not as missing ranks.
_RATIO_FLOOR = float(np.finfo(np.float32).eps)


@dataclass(frozen=True)
class DeltaStats:
    """Statistics of one update matrix ΔW (shape ``[out, in]``, higher-rank weights flattened to
    ``[shape[0], -1]``).

    ``frobenius``: ‖ΔW‖_F. ``relative``: ‖ΔW‖_F / ‖W_before‖_F. With spectra:
    ``singular_values`` (the top 50 of ``svdvals``, descending), ``log_ratio`` (natural
    log σ_k/σ_1 at ranks 10/20/30/40 that exist, floored at fp32 eps), ``effective_rank`` exp(H(σ/Σσ)) and
    ``stable_rank`` ‖ΔW‖_F²/σ_1². Spectral fields are None without spectra or for ΔW = 0.
    """

    frobenius: float
    relative: float
    singular_values: np.ndarray | None = None
    log_ratio: dict[int, float] = field(default_factory=dict)
    effective_rank: float | None = None
    stable_rank: float | None = None


def delta_stats(delta: torch.Tensor, before: torch.Tensor, *, spectra: bool) -> DeltaStats:
    """Statistics of one update ``delta = after − before`` (both fp32, same shape).

    ``svdvals`` runs in fp32 on whatever device ``delta`` is on.
    """
    matrix = delta.reshape(delta.shape[0], -1)
    frobenius = float(torch.linalg.matrix_norm(matrix))
    reference = float(torch.linalg.matrix_norm(before.reshape(matrix.shape)))
    relative = frobenius / reference if reference > 0 else math.inf
    if not spectra or frobenius == 0.0:
        return DeltaStats(frobenius, relative)
    sigma = torch.linalg.svdvals(matrix).double().cpu().numpy()
    top = sigma[0]
    p = sigma / sigma.sum()
    p = p[p > 0]
    return DeltaStats(
        frobenius=frobenius,
        relative=relative,
        singular_values=sigma[:TOP_SINGULAR_VALUES].copy(),
        log_ratio={k: float(np.log(max(sigma[k - 1] / top, _RATIO_FLOOR)))
                   for k in SPECTRUM_RANKS if k <= len(sigma)},
        effective_rank=float(np.exp(-(p * np.log(p)).sum())),
        stable_rank=float(frobenius ** 2 / top ** 2),
    )


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
                  progress: Callable[[int, int], None] | None = None) -> WeightDeltas:
    """Stream ΔRL (and ΔIN when ``origin`` is given) over every update matrix.

    Args:
        base: the checkpoint RL started from (the paper's IN).
        rl: the RL result.
        origin: the checkpoint before the base's SFT (the paper's Base); enables ΔIN.
        spectra: also compute singular values (slower: one ``svdvals`` per matrix and stage).
        device: where the fp32 arithmetic runs (default: CUDA when available, else CPU).
        progress: called as ``progress(done, total)`` after each matrix.

    Returns:
        :class:`WeightDeltas` with one :class:`MatrixDelta` per matrix and stage.

    Raises:
        IncompatibleCheckpointsError: the checkpoints differ in names, shapes or layer counts.
        NonFiniteWeightsError: a weight or delta holds NaN/Inf (names checkpoint and tensor).
    """
    checkpoints = [c for c in (base, rl, origin) if c is not None]
    check_compatible(*checkpoints)
    device = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
    names = list(update_matrices(base))
    matrices: list[MatrixDelta] = []
    for done, name in enumerate(names, 1):
        location = base.locate(name)
        w_base = _load(base, name, device)
        w_rl = _load(rl, name, device)
        stages = [("rl", w_rl - w_base, w_base)]
        del w_rl
        if origin is not None:
            w_origin = _load(origin, name, device)
            stages.append(("in", w_base - w_origin, w_origin))
        for stage, delta, before in stages:
            matrices.append(MatrixDelta(
                name=name, stage=stage, component=location.component, layer=location.layer,
                unified=location.unified, numel=delta.numel(),
                stats=delta_stats(delta, before, spectra=spectra)))
        del stages
        if progress is not None:
            progress(done, len(names))
    return WeightDeltas(base.num_llm_layers, base.num_vision_layers, matrices, spectra)


def _load(checkpoint: Checkpoint, name: str, device: torch.device) -> torch.Tensor:
    tensor = checkpoint.get(name).to(device=device, dtype=torch.float32)
    # A NaN/Inf anywhere makes the norm non-finite; the norm costs ~1% of an isfinite() scan.
    if not torch.isfinite(torch.linalg.vector_norm(tensor)):
        bad = int((~torch.isfinite(tensor)).sum())
        if bad:
            raise NonFiniteWeightsError(f"{checkpoint.path}: tensor {name} holds {bad} NaN/Inf value(s)")
    return tensor
