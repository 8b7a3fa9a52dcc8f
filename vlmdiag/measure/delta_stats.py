"""Statistics of one update matrix ΔW = W_after − W_before: norms, the storage-precision floor,
the elements that changed, the singular-value spectrum and the rotation of W's principal subspace.

Used by every engine of :func:`vlmdiag.measure.weights.weight_deltas`; all arithmetic is fp32 on
whatever device the tensors are on.
"""

from __future__ import annotations

import math
import threading
from dataclasses import dataclass, field

import numpy as np
import torch

SPECTRUM_RANKS = (10, 20, 30, 40)
TOP_SINGULAR_VALUES = 50
# σ_k/σ_1 below fp32 resolution is numerical zero (a rank-2 update has σ_10 ≈ 1e-8·σ_1): clamp
# it there so exactly-low-rank updates read as maximally steep, not as missing ranks.
_RATIO_FLOOR = float(np.finfo(np.float32).eps)
# The exponent bits of an fp32 value: masking them off leaves 2^⌊log2|w|⌋, the binade of w.
_EXPONENT_BITS = 0x7F800000

#: The spectrum comes from the eigenvalues of the fp32 Gram matrix ΔWᵀΔW (or ΔWΔWᵀ, the smaller):
#: λ_k carries an absolute error of a few fp32 eps × σ_1² (measured: ≤ 4e-7·σ_1² on 64–4864 × 896
#: matrices), so σ_k = √λ_k is within 1e-3 relative only while σ_k ≥ GRAM_RESOLUTION·σ_1. A matrix
#: whose top-50 singular values (or all of them, if fewer) reach below that gets exact ``svdvals``.
GRAM_RESOLUTION = 0.02

#: Principal subspace of W (Zhu et al., arXiv 2511.08567): its top PRINCIPAL_K left singular
#: vectors, from a randomized range finder with PRINCIPAL_OVERSAMPLE extra columns and one power
#: iteration, on a test matrix fixed by W's shape (the same for W_before and W_after, so an
#: unchanged W gives the same subspace bit for bit).
PRINCIPAL_K = 16
PRINCIPAL_OVERSAMPLE = 8


@dataclass(frozen=True)
class DeltaStats:
    """Statistics of one update matrix ΔW (shape ``[out, in]``, higher-rank weights flattened to
    ``[shape[0], -1]``).

    ``frobenius``: ‖ΔW‖_F. ``relative``: ‖ΔW‖_F / ‖W_before‖_F. With spectra:
    ``singular_values`` (the top 50, descending), ``log_ratio`` (natural log σ_k/σ_1 at ranks
    10/20/30/40 that exist, floored at fp32 eps), ``effective_rank`` exp(H(σ/Σσ)) and
    ``stable_rank`` ‖ΔW‖_F²/σ_1²; ``spectrum`` every singular value (descending, float32; those
    under ``GRAM_RESOLUTION``·σ_1 are approximate, see :func:`singular_values`). Spectral fields
    are None without spectra or for ΔW = 0.

    Storage-precision floor (what rounding to the stored dtypes alone puts into ΔW, see
    :func:`rounding_energy`): ``floor`` the expected ‖ΔW‖_F of a pure rounding Δ (both checkpoints'
    rounding, independent), ``floor_sigma`` the largest singular value of a random ``[m, n]`` matrix
    with that entry variance, ``floor/√(mn)·(√m + √n)`` (the Marchenko–Pastur edge). An update or a
    singular value at or below these cannot be told apart from storage rounding.

    ``updated``: how many elements changed by more than storage rounding can (see
    :func:`count_updated`; Mukherjee et al., arXiv 2505.11711, §3). None where not measured.

    Principal subspace (with spectra; Zhu et al., arXiv 2511.08567): ``rotation`` the mean sin² of
    the principal angles between the top-``PRINCIPAL_K`` left singular subspaces of W_before and
    W_after (0 = same subspace, 1 = orthogonal), ``max_angle`` the largest of those angles
    (degrees), ``drift`` ‖σ_top(W_after) − σ_top(W_before)‖₂ / ‖σ_top(W_before)‖₂ (the spectral
    drift of W's top singular values).
    """

    frobenius: float
    relative: float
    floor: float = 0.0
    floor_sigma: float = 0.0
    singular_values: np.ndarray | None = None
    log_ratio: dict[int, float] = field(default_factory=dict)
    effective_rank: float | None = None
    stable_rank: float | None = None
    updated: int | None = None
    spectrum: np.ndarray | None = None
    rotation: float | None = None
    max_angle: float | None = None
    drift: float | None = None


def delta_stats(delta: torch.Tensor, before: torch.Tensor, *, spectra: bool,
                floor_energy: float = 0.0,
                dtypes: tuple[torch.dtype, torch.dtype] | None = None) -> DeltaStats:
    """Statistics of one update ``delta = after − before`` (both fp32, same shape).

    ``floor_energy``: E‖ΔW‖_F² of a pure storage-rounding Δ (the sum of both checkpoints'
    :func:`rounding_energy`). ``dtypes``: the stored dtypes of (before, after), for the count of
    updated elements (default: the same dtype, so every non-zero element counts).
    """
    before_dtype, after_dtype = dtypes or (torch.float32, torch.float32)
    principal = None
    if spectra:
        principal = (principal_subspace(before), principal_subspace(before + delta))
    return _delta_stats(delta, float(torch.linalg.vector_norm(before)), spectra=spectra, floor_energy=floor_energy,
                        updated=count_updated(delta, before, before_dtype, after_dtype), principal=principal)


def rounding_energy(values: torch.Tensor, dtype: torch.dtype) -> float:
    """E‖round(W) − W‖_F²: the energy that rounding to ``dtype`` alone put into the stored values.

    Round-to-nearest leaves an error uniform in ±ulp(w)/2, of variance ulp(w)²/12, with
    ulp(w) = 2^⌊log2|w|⌋ · 2^−nmant (nmant = 7 for bf16, 10 for fp16, 23 for fp32). So the
    expectation is Σ 4^⌊log2|w|⌋ · 4^−nmant / 12 over the stored values, read here from their fp32
    exponent bits (about 0.18 u²‖W‖_F² for bell-shaped weights, u = 2^−(nmant+1); at most u²‖W‖_F²/3).

    Args:
        values: the stored values converted to fp32 (exact for bf16/fp16), any shape, any device.
        dtype: the dtype the checkpoint stores the tensor in.
    """
    binades = torch.bitwise_and(values.view(torch.int32), _EXPONENT_BITS).view(torch.float32)
    return float(torch.linalg.vector_norm(binades)) ** 2 * _ulp_scale(dtype)


def count_updated(delta: torch.Tensor, reference: torch.Tensor, dtype_a: torch.dtype, dtype_b: torch.dtype) -> int:
    """Elements of ``delta`` that storage rounding of an unchanged value cannot produce.

    Two checkpoints stored in the same dtype round an unchanged value to the same bits, so every
    non-zero element is an update (Mukherjee et al., arXiv 2505.11711, count exact changes). In
    different dtypes, rounding the same value to each differs by at most ulp_coarser(w)/2: an
    element counts when |ΔW| exceeds that, the ulp read from the binade of ``reference`` (the
    values of either checkpoint, fp32; rounding never moves a value to a lower binade).

    Args:
        delta: ΔW, fp32, any shape. reference: fp32 values of the same shape.
        dtype_a, dtype_b: the two checkpoints' stored dtypes.
    """
    if dtype_a == dtype_b:
        return int(torch.count_nonzero(delta))
    eps = max(torch.finfo(dtype_a).eps, torch.finfo(dtype_b).eps)
    binades = torch.bitwise_and(reference.reshape(-1).view(torch.int32), _EXPONENT_BITS).view(torch.float32)
    return int(torch.count_nonzero(delta.reshape(-1).abs() > binades * (eps / 2)))


def _ulp_scale(dtype: torch.dtype) -> float:
    """4^−nmant / 12 (eps = 2^−nmant): the rounding variance of a value in binade 1 of ``dtype``."""
    return torch.finfo(dtype).eps ** 2 / 12


def floors(energy: float, shape: tuple[int, ...]) -> tuple[float, float]:
    """(floor, floor_sigma) of a pure rounding Δ of E‖Δ‖_F² = ``energy``, shape flattened to [m, n]."""
    m = shape[0]
    n = math.prod(shape) // m if m else 0
    floor = math.sqrt(energy)
    return floor, (floor * (math.sqrt(m) + math.sqrt(n)) / math.sqrt(m * n) if m * n else 0.0)


def singular_values(matrix: torch.Tensor) -> np.ndarray:
    """Every singular value of a 2-D fp32 ``matrix`` ``[m, n]`` (float64 array of min(m, n),
    descending), from the eigenvalues of its Gram matrix on the smaller side. Where the top 50
    reach below :data:`GRAM_RESOLUTION`·σ_1 (a numerically low-rank matrix) the Gram cannot
    resolve them and ``torch.linalg.svdvals`` gives them exactly.

    On CPU the Gram is BLAS ``syrk`` (one triangle: half the flops of a matmul) and the eigensolve
    LAPACK ``syevr``, both through scipy: 3-15× faster than ``svdvals`` per matrix
    (``bench/bench_spectra.py``). Elsewhere (CUDA) a matmul and ``torch.linalg.eigvalsh``."""
    m, n = matrix.shape
    # The Gram squares the entries: outside ~1e±15 fp32 under/overflows, so work on a rescaled copy.
    scale = float(matrix.abs().amax()) if matrix.numel() else 0.0
    if scale == 0.0:
        return np.zeros(min(m, n))
    scaled = not 1e-15 < scale < 1e15 and np.isfinite(scale)
    work = matrix / scale if scaled else matrix
    cpu = work.device.type == "cpu" and work.dtype == torch.float32
    eigenvalues = _cpu_gram_eigenvalues(work) if cpu else torch_gram_eigenvalues(work).cpu().numpy()
    sigma = np.sqrt(np.clip(eigenvalues[::-1], 0, None)).astype(np.float64)
    if scaled:
        sigma *= scale
    top = min(TOP_SINGULAR_VALUES, len(sigma))
    if sigma[0] > 0 and sigma[top - 1] >= GRAM_RESOLUTION * sigma[0]:
        return sigma
    return torch.linalg.svdvals(matrix).double().cpu().numpy()


def torch_gram_eigenvalues(matrix: torch.Tensor) -> torch.Tensor:
    """Ascending eigenvalues of the Gram matrix of ``matrix`` ``[m, n]`` on its smaller side, in
    torch on ``matrix``'s device (a matmul and ``torch.linalg.eigvalsh``: vlmdiag's CUDA path)."""
    m, n = matrix.shape
    return torch.linalg.eigvalsh(matrix.T @ matrix if m >= n else matrix @ matrix.T)


def _cpu_gram_eigenvalues(matrix: torch.Tensor) -> np.ndarray:
    """Ascending eigenvalues (fp32) of the Gram matrix of ``matrix`` ``[m, n]`` on its smaller side."""
    from scipy.linalg import blas, eigh

    # The transpose of a row-major array is column-major, which BLAS reads without a copy.
    columns = matrix.contiguous().numpy().T  # [n, m], Fortran order
    # trans=1: columnsᵀ·columns = A·Aᵀ [m, m]; trans=0: columns·columnsᵀ = AᵀA [n, n]
    gram = blas.ssyrk(1.0, columns, trans=int(matrix.shape[0] <= matrix.shape[1]), lower=1)
    return eigh(gram, lower=True, eigvals_only=True, overwrite_a=True, check_finite=False)


_TEST_MATRICES: dict[tuple, torch.Tensor] = {}
_TEST_LOCK = threading.Lock()


def _test_matrix(n: int, columns: int, device: torch.device) -> torch.Tensor:
    """The range finder's Gaussian test matrix ``[n, columns]``, fixed by its shape (seeded)."""
    key = (n, columns, str(device))
    with _TEST_LOCK:
        if key not in _TEST_MATRICES:
            generator = torch.Generator().manual_seed(n * 7919 + columns)
            _TEST_MATRICES[key] = torch.randn(n, columns, generator=generator).to(device)
        return _TEST_MATRICES[key]


def principal_subspace(w: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(U_k ``[m, k]`` orthonormal, σ_k ``[k]``): W's top-k left singular subspace and values,
    k = min(PRINCIPAL_K, m, n), W flattened to ``[m, n]`` fp32.

    Randomized range finder (Halko et al. 2011, Alg. 4.4 with q = 1): Y = W Wᵀ W Ω, Q = qr(Y),
    then the SVD of QᵀW. Four products of [m, n] by [n, k + p]: a few percent of a Gram matrix."""
    w = w.reshape(w.shape[0], -1)
    m, n = w.shape
    columns = min(PRINCIPAL_K + PRINCIPAL_OVERSAMPLE, m, n)
    y = w @ _test_matrix(n, columns, w.device)
    y = torch.linalg.qr(y).Q
    q = torch.linalg.qr(w @ (w.T @ y)).Q
    u, s, _ = torch.linalg.svd(q.T @ w, full_matrices=False)
    k = min(PRINCIPAL_K, columns)
    return q @ u[:, :k], s[:k]


def subspace_change(before: tuple[torch.Tensor, torch.Tensor],
                    after: tuple[torch.Tensor, torch.Tensor]) -> tuple[float, float, float]:
    """(rotation, max_angle, drift) between two :func:`principal_subspace` results: the mean sin²
    of the principal angles, the largest angle in degrees, and ‖σ_after − σ_before‖₂ / ‖σ_before‖₂.

    The sines are the singular values of (I − U_b U_bᵀ) U_a, in float64 (small angles keep their
    precision, which 1 − cos² would lose); the same subspace bit for bit gives exactly 0."""
    if torch.equal(before[0], after[0]) and torch.equal(before[1], after[1]):
        return 0.0, 0.0, 0.0
    u_before, u_after = before[0].double(), after[0].double()
    sines = torch.linalg.svdvals(u_after - u_before @ (u_before.T @ u_after)).clamp(0, 1).cpu().numpy()
    rotation = float(np.mean(sines ** 2))
    max_angle = float(np.degrees(np.arcsin(sines.max())))
    reference = float(torch.linalg.vector_norm(before[1]))
    drift = float(torch.linalg.vector_norm(after[1] - before[1])) / reference if reference > 0 else 0.0
    return rotation, max_angle, drift


def _delta_stats(delta: torch.Tensor, reference: float, *, spectra: bool, floor_energy: float = 0.0,
                 updated: int | None = None, principal=None) -> DeltaStats:
    """:func:`delta_stats` given ‖W_before‖_F (the tensor pass measures it before the buffer that
    holds W_before is overwritten by a delta), the updated-element count and, with spectra,
    ``principal`` = (:func:`principal_subspace` of W_before, of W_after)."""
    matrix = delta.reshape(delta.shape[0], -1)
    frobenius = float(torch.linalg.vector_norm(matrix))
    if not 1e-15 < frobenius < 1e15 and bool(matrix.any()):  # squares under/overflow fp32: exact in fp64
        frobenius = float(torch.linalg.vector_norm(matrix.double()))
    relative = frobenius / reference if reference > 0 else math.inf
    floor, floor_sigma = floors(floor_energy, tuple(delta.shape))
    if not spectra or frobenius == 0.0:
        rotation = (0.0, 0.0, 0.0) if spectra and principal is not None else (None, None, None)
        return DeltaStats(frobenius, relative, floor, floor_sigma, updated=updated, rotation=rotation[0],
                          max_angle=rotation[1], drift=rotation[2])
    sigma = singular_values(matrix)
    top = sigma[0]
    p = sigma / sigma.sum()
    p = p[p > 0]
    change = subspace_change(*principal) if principal is not None else (None, None, None)
    return DeltaStats(
        frobenius=frobenius,
        relative=relative,
        floor=floor,
        floor_sigma=floor_sigma,
        singular_values=sigma[:TOP_SINGULAR_VALUES].copy(),
        log_ratio={k: float(np.log(max(sigma[k - 1] / top, _RATIO_FLOOR)))
                   for k in SPECTRUM_RANKS if k <= len(sigma)},
        effective_rank=float(np.exp(-(p * np.log(p)).sum())),
        stable_rank=float(frobenius ** 2 / top ** 2),
        updated=updated,
        spectrum=sigma.astype(np.float32),
        rotation=change[0], max_angle=change[1], drift=change[2],
    )
