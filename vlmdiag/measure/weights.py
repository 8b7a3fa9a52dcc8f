"""Weight-update measurements (paper §3.2, Eq. 3; Figs. 5–6), streamed tensor by tensor.

ΔRL = W_rl − W_base and ΔIN = W_base − W_origin, in fp32, for every weight matrix of the vision
blocks, the projector and the LLM decoder layers (the authors' selection: names ending in
``.weight`` that are not norms; biases, embeddings and ``lm_head`` have no layer and are left
out). At most two matrices per checkpoint are in memory at a time (the one measured and the
next, read ahead).

Every update also gets its storage-precision floor: the ‖ΔW‖_F and the top singular value a pure
rounding Δ would have, given the dtypes the two checkpoints are stored in (see :func:`rounding_energy`).
"""

from __future__ import annotations

import math
import queue
import threading
from collections.abc import Callable, Generator, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack
from dataclasses import dataclass, field

import numpy as np
import torch

from vlmdiag.checkpoints import Checkpoint, check_compatible
from vlmdiag.checkpoints.reader import TensorReader
from vlmdiag.errors import NonFiniteWeightsError
from vlmdiag.runtime.model import choose_device

SPECTRUM_RANKS = (10, 20, 30, 40)
TOP_SINGULAR_VALUES = 50
# σ_k/σ_1 below fp32 resolution is numerical zero (a rank-2 update has σ_10 ≈ 1e-8·σ_1): clamp
# it there so exactly-low-rank updates read as maximally steep, not as missing ranks.
_RATIO_FLOOR = float(np.finfo(np.float32).eps)
# The exponent bits of an fp32 value: masking them off leaves 2^⌊log2|w|⌋, the binade of w.
_EXPONENT_BITS = 0x7F800000


@dataclass(frozen=True)
class DeltaStats:
    """Statistics of one update matrix ΔW (shape ``[out, in]``, higher-rank weights flattened to
    ``[shape[0], -1]``).

    ``frobenius``: ‖ΔW‖_F. ``relative``: ‖ΔW‖_F / ‖W_before‖_F. With spectra:
    ``singular_values`` (the top 50 of ``svdvals``, descending), ``log_ratio`` (natural
    log σ_k/σ_1 at ranks 10/20/30/40 that exist, floored at fp32 eps), ``effective_rank`` exp(H(σ/Σσ)) and
    ``stable_rank`` ‖ΔW‖_F²/σ_1². Spectral fields are None without spectra or for ΔW = 0.

    Storage-precision floor (what rounding to the stored dtypes alone puts into ΔW, see
    :func:`rounding_energy`): ``floor`` the expected ‖ΔW‖_F of a pure rounding Δ (both checkpoints'
    rounding, independent), ``floor_sigma`` the largest singular value of a random ``[m, n]`` matrix
    with that entry variance, ``floor/√(mn)·(√m + √n)`` (the Marchenko–Pastur edge). An update or a
    singular value at or below these cannot be told apart from storage rounding.
    """

    frobenius: float
    relative: float
    floor: float = 0.0
    floor_sigma: float = 0.0
    singular_values: np.ndarray | None = None
    log_ratio: dict[int, float] = field(default_factory=dict)
    effective_rank: float | None = None
    stable_rank: float | None = None


def delta_stats(delta: torch.Tensor, before: torch.Tensor, *, spectra: bool,
                floor_energy: float = 0.0) -> DeltaStats:
    """Statistics of one update ``delta = after − before`` (both fp32, same shape).

    ``floor_energy``: E‖ΔW‖_F² of a pure storage-rounding Δ (the sum of both checkpoints'
    :func:`rounding_energy`). ``svdvals`` runs in fp32 on whatever device ``delta`` is on.
    """
    return _delta_stats(delta, float(torch.linalg.vector_norm(before)), spectra=spectra, floor_energy=floor_energy)


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


def _ulp_scale(dtype: torch.dtype) -> float:
    """4^−nmant / 12 (eps = 2^−nmant): the rounding variance of a value in binade 1 of ``dtype``."""
    return torch.finfo(dtype).eps ** 2 / 12


def _floors(energy: float, shape: tuple[int, ...]) -> tuple[float, float]:
    """(floor, floor_sigma) of a pure rounding Δ of E‖Δ‖_F² = ``energy``, shape flattened to [m, n]."""
    m = shape[0]
    n = math.prod(shape) // m if m else 0
    floor = math.sqrt(energy)
    return floor, (floor * (math.sqrt(m) + math.sqrt(n)) / math.sqrt(m * n) if m * n else 0.0)


def _delta_stats(delta: torch.Tensor, reference: float, *, spectra: bool, floor_energy: float = 0.0) -> DeltaStats:
    """:func:`delta_stats` given ‖W_before‖_F (the tensor pass measures it before the buffer that
    holds W_before is overwritten by a delta)."""
    matrix = delta.reshape(delta.shape[0], -1)
    frobenius = float(torch.linalg.vector_norm(matrix))
    relative = frobenius / reference if reference > 0 else math.inf
    floor, floor_sigma = _floors(floor_energy, tuple(delta.shape))
    if not spectra or frobenius == 0.0:
        return DeltaStats(frobenius, relative, floor, floor_sigma)
    sigma = torch.linalg.svdvals(matrix).double().cpu().numpy()
    top = sigma[0]
    p = sigma / sigma.sum()
    p = p[p > 0]
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
                  progress: Callable[[int, int], None] | None = None,
                  workers: int | None = None) -> WeightDeltas:
    """Stream ΔRL (and ΔIN when ``origin`` is given) over every update matrix.

    Three engines, same numbers (to fp32 rounding; ``tests/core/test_weight_math.py``):

    * norms only, on CPU: each matrix is read in slices of :data:`NORM_CHUNK` elements straight
      from the files into small reused buffers, converted to fp32 and reduced while it is in the
      CPU cache. Per-slice norms are summed in float64.
    * spectra on CPU: whole matrices, converted to fp32 into reused buffers, subtracted in place,
      then ``svdvals``.
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
        spectra: also compute singular values (slower: one ``svdvals`` per matrix and stage).
        device: where the fp32 arithmetic runs (default: CUDA when available, else CPU).
        progress: called as ``progress(done, total)`` after each matrix.
        workers: threads of the CPU engines (default: ``max(2, torch.get_num_threads())``).

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
            measured = _tensor_pass(readers, names, device, spectra)
        else:
            measure = _WholeMatrices(readers, spectra) if spectra else _SliceNorms(readers)
            measured = _pool_pass(names, measure, workers or max(2, torch.get_num_threads()))
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


#: The CPU norm engine reads the storage-precision floor's binades on every FLOOR_STRIDE-th slice (every
#: slice of a matrix of fewer slices; see _SliceNorms): on every slice, the bit masking cost as much as
#: the fp32 conversion (measured on the 0.74B bench triple: the whole pass 1.9× slower).
FLOOR_STRIDE = 8

#: Elements per slice in the CPU norm engine: three fp32 slices (1.5 MiB) and their stored bytes
#: stay in the L2 cache. Measured on the 0.74B bench triple: 32 Ki–128 Ki within noise, 16 Ki 2× slower.
NORM_CHUNK = 1 << 17

_Stats = tuple[DeltaStats, ...]


def _pool_pass(names: list[str], measure: Callable[[str], _Stats],
               workers: int) -> Iterator[tuple[str, _Stats]]:
    """``(name, measure(name))`` in ``names`` order, measured by ``workers`` threads that each
    run torch with one intra-op thread (the setting is restored afterwards)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="vlmdiag-weights")
    try:
        futures = [pool.submit(measure, name) for name in names]
        for name, future in zip(names, futures):
            yield name, future.result()
    finally:
        pool.shutdown(wait=True, cancel_futures=True)
        torch.set_num_threads(threads)


def _stats_from_squares(squares: np.ndarray, rounding: np.ndarray, shape: tuple[int, ...]) -> _Stats:
    """``squares`` = [‖W_base‖², ‖W_origin‖², ‖ΔRL‖², ‖ΔIN‖²] (the origin entries absent without
    origin), ``rounding`` = :func:`rounding_energy` of [base, rl, origin] → one
    :class:`DeltaStats` per stage."""
    stages = len(squares) // 2
    references, deltas = np.sqrt(squares[:stages]), np.sqrt(squares[stages:])
    floors = [_floors(rounding[0] + rounding[1 + i], shape) for i in range(stages)]
    return tuple(DeltaStats(float(d), float(d / r) if r > 0 else math.inf, *f)
                 for d, r, f in zip(deltas, references, floors))


class _SliceNorms:
    """Sums of squares of one matrix from slices read into per-thread buffers.

    Buffers per thread: the stored bytes of one slice per checkpoint (rows of ``raw``) and their
    fp32 values (rows of ``values``: base, rl, origin). Per slice: read, convert, ‖base‖, ‖rl‖
    and ‖origin‖, on every :data:`FLOOR_STRIDE`-th slice the norms of every row's binades, then
    rl − base and origin − base in place, and their norms. The tensor views each step works on are
    made once per slice size (making them per slice cost as much as a norm).

    The floor (:func:`rounding_energy`) is the sampled slices' Σ binade² / Σ w², a property of the
    shape of the value distribution that barely varies from row to row, times the whole Σ w²: so
    rows of unequal magnitude (outlier channels) do not bias it.
    """

    def __init__(self, readers: list[TensorReader]):
        self.readers = readers
        self.local = threading.local()

    def __call__(self, name: str) -> _Stats:
        local, readers, n = self.local, self.readers, len(self.readers)
        if not hasattr(local, "raw"):
            local.raw = torch.empty(n, NORM_CHUNK * 8, dtype=torch.uint8)  # 8 bytes: the widest dtype
            local.values = torch.empty(n, NORM_CHUNK, dtype=torch.float32)
            local.binades = torch.empty(n, NORM_CHUNK, dtype=torch.int32)
            local.steps = {}
        dtypes = tuple(r.dtype(name) for r in readers)
        numel = readers[0].numel(name)
        chunks = -(-numel // NORM_CHUNK)
        stride = FLOOR_STRIDE if chunks >= FLOOR_STRIDE else 1
        references = torch.empty(chunks, n, dtype=torch.float32)  # per slice: ‖base‖, ‖rl‖, ‖origin‖
        deltas = torch.empty(chunks, n - 1, dtype=torch.float32)  # per slice: ‖ΔRL‖, ‖ΔIN‖
        binade_norms = torch.zeros(chunks, n, dtype=torch.float32)  # per sampled slice and checkpoint
        raw = [local.raw[i].view(dtype) for i, dtype in enumerate(dtypes)]
        sliced = zip(*(r.slices(name, buffer, NORM_CHUNK) for r, buffer in zip(readers, raw)))
        for index, (reference, delta, binade, (k, *_)) in enumerate(
                zip(references.unbind(0), deltas.unbind(0), binade_norms.unbind(0), sliced)):
            key = (dtypes, k)
            if key not in local.steps:
                local.steps[key] = self._views(dtypes, k)
            copies, block, tail, head, (bits, binades) = local.steps[key]
            for target, source in copies:
                target.copy_(source)
            torch.linalg.vector_norm(block, dim=1, out=reference)
            if index % stride == 0:
                torch.bitwise_and(bits, _EXPONENT_BITS, out=binades)
                torch.linalg.vector_norm(binades.view(torch.float32), dim=1, out=binade)
            tail.sub_(head)  # rl − base, origin − base (the sign does not change a norm)
            torch.linalg.vector_norm(tail, dim=1, out=delta)
        references, deltas = references.double().square(), deltas.double().square().sum(0).numpy()
        weights_sq = references.sum(0).numpy()
        if not (np.isfinite(weights_sq).all() and np.isfinite(deltas).all()):
            _raise_non_finite(readers, name)  # or finite values overflowed: inf, as a whole-matrix norm gives
        sampled = references[::stride].sum(0).numpy()
        binades = binade_norms[::stride].double().square().sum(0).numpy()
        rounding = [b / s * w * _ulp_scale(d) if s > 0 else 0.0
                    for b, s, w, d in zip(binades, sampled, weights_sq, dtypes)]
        squares = np.concatenate([weights_sq[::2], deltas])  # ‖W_base‖², ‖W_origin‖², ‖ΔRL‖², ‖ΔIN‖²
        return _stats_from_squares(squares, rounding, tuple(readers[0].checkpoint.shape(name)))

    def _views(self, dtypes: tuple[torch.dtype, ...], k: int):
        """(conversion copies, all rows, rows rl/origin, row base, (values as int32, binades))
        over the first ``k`` elements of this thread's buffers."""
        local = self.local
        block = local.values[:, :k]
        if len(set(dtypes)) == 1:
            copies = [(block, local.raw.view(dtypes[0])[:, :k])]
        else:
            copies = [(block[i], local.raw[i].view(dtype)[:k]) for i, dtype in enumerate(dtypes)]
        return copies, block, block[1:], block[:1], (block.view(torch.int32), local.binades[:, :k])


class _WholeMatrices:
    """Stats with spectra of one matrix on CPU, from whole fp32 copies in per-thread buffers that
    are reused: one for the stored bytes, two fp32 ones (W_base; then W_rl, turned into ΔRL in
    place and measured; then W_origin, turned into ΔIN)."""

    def __init__(self, readers: list[TensorReader], spectra: bool):
        self.readers, self.spectra = readers, spectra
        self.local = threading.local()

    def __call__(self, name: str) -> _Stats:
        local, readers = self.local, self.readers
        if not hasattr(local, "raw"):
            local.raw = torch.empty(0, dtype=torch.uint8)
            local.values = [torch.empty(0, dtype=torch.float32) for _ in range(2)]
        shape = readers[0].checkpoint.shape(name)

        def load(i: int, slot: int) -> tuple[torch.Tensor, float, float]:
            reader = readers[i]
            dtype, numel = reader.dtype(name), reader.numel(name)
            local.raw = _grown(local.raw, numel * dtype.itemsize)
            stored = reader.read_into(name, local.raw[:numel * dtype.itemsize].view(dtype))
            local.values[slot] = _grown(local.values[slot], numel)
            values = local.values[slot][:numel].copy_(stored).view(shape)
            return values, _check_finite(values, reader.checkpoint, name), rounding_energy(values, dtype)

        base, base_norm, base_rounding = load(0, 0)
        rl, _, rl_rounding = load(1, 1)
        stats = [_delta_stats(rl.sub_(base), base_norm, spectra=self.spectra, floor_energy=base_rounding + rl_rounding)]
        if len(readers) == 3:
            origin, origin_norm, origin_rounding = load(2, 1)
            stats.append(_delta_stats(torch.sub(base, origin, out=origin), origin_norm, spectra=self.spectra,
                                      floor_energy=base_rounding + origin_rounding))
        return tuple(stats)


def _raise_non_finite(readers: list[TensorReader], name: str) -> None:
    """Raise for the first checkpoint whose tensor ``name`` holds NaN/Inf; return if none does."""
    for reader in readers:
        _check_finite(reader.checkpoint.get(name).float(), reader.checkpoint, name)


def _check_finite(tensor: torch.Tensor, checkpoint: Checkpoint, name: str) -> float:
    """‖tensor‖_F; raises NonFiniteWeightsError when ``tensor`` holds NaN/Inf."""
    # A NaN/Inf anywhere makes the norm non-finite; the norm costs ~1% of an isfinite() scan.
    norm = float(torch.linalg.vector_norm(tensor))
    if not math.isfinite(norm):
        bad = int((~torch.isfinite(tensor)).sum())
        if bad:
            raise NonFiniteWeightsError(f"{checkpoint.path}: tensor {name} holds {bad} NaN/Inf value(s)")
    return norm


class _Slot:
    """One matrix's stored bytes per checkpoint, filled by the reader thread."""

    def __init__(self, count: int, pin: bool):
        self.raw: list[torch.Tensor] = [torch.empty(0, dtype=torch.uint8) for _ in range(count)]
        self.pin = pin
        self.name = ""
        self.copied = None  # CUDA event: the host-to-device copies from ``raw`` have finished

    def fill(self, readers: list[TensorReader], name: str) -> None:
        if self.copied is not None:
            self.copied.synchronize()  # do not overwrite bytes a non_blocking copy still reads
            self.copied = None
        for i, reader in enumerate(readers):
            dtype, numel = reader.dtype(name), reader.numel(name)
            size = numel * dtype.itemsize
            if self.raw[i].numel() < size:
                self.raw[i] = torch.empty(0, dtype=torch.uint8)  # free before allocating the larger
                self.raw[i] = torch.empty(size, dtype=torch.uint8, pin_memory=self.pin)
            reader.read_into(name, self.raw[i][:size].view(dtype), 0)
        self.name = name

    def stored(self, i: int, reader: TensorReader) -> torch.Tensor:
        dtype, numel = reader.dtype(self.name), reader.numel(self.name)
        return self.raw[i][:numel * dtype.itemsize].view(dtype)


def _tensor_pass(readers: list[TensorReader], names: list[str], device: torch.device,
                 spectra: bool) -> Iterator[tuple[str, _Stats]]:
    """Whole matrices on a CUDA ``device``, the next one read meanwhile (see :func:`weight_deltas`).
    It also runs on CPU (unpinned), which is how its logic is tested where there is no GPU."""
    cuda = device.type == "cuda"
    slots = _prefetch(readers, names, slots=2, pin=cuda)
    empty = torch.empty(0, device=device)
    work = [empty] * len(readers)  # fp32 values on ``device``, one buffer per checkpoint, reused
    staged = [empty.byte()] * len(readers)  # CUDA: the stored bytes on the GPU, reused
    values: list[torch.Tensor] = []
    try:
        for slot, release in slots:
            name = slot.name
            shape = readers[0].checkpoint.shape(name)
            values = []
            for i, reader in enumerate(readers):
                stored = slot.stored(i, reader)
                if cuda:
                    staged[i] = _grown(staged[i], stored.numel() * stored.itemsize)
                    stored = staged[i][:stored.numel() * stored.itemsize].view(stored.dtype).copy_(
                        stored, non_blocking=True)
                work[i] = _grown(work[i], stored.numel())
                values.append(work[i][:stored.numel()].copy_(stored).view(shape))
            if cuda:
                slot.copied = torch.cuda.current_stream(device).record_event()
            release()  # the reader may refill this slot (after the copies, on CUDA)
            norms = [_check_finite(v, r.checkpoint, name) for v, r in zip(values, readers)]
            rounding = [rounding_energy(v, r.dtype(name)) for v, r in zip(values, readers)]
            base = values[0]
            stats = [_delta_stats(values[1].sub_(base), norms[0], spectra=spectra, floor_energy=rounding[0] + rounding[1])]
            if len(values) == 3:
                stats.append(_delta_stats(torch.sub(base, values[2], out=values[2]), norms[2], spectra=spectra,
                                          floor_energy=rounding[0] + rounding[2]))
            yield name, tuple(stats)
    finally:
        slots.close()
        if cuda:  # hand the buffers back, so later model loads see the GPU memory as free
            del work, staged, values
            torch.cuda.empty_cache()


def _grown(buffer: torch.Tensor, numel: int) -> torch.Tensor:
    """``buffer``, or a new one of ``numel`` elements (same dtype and device) when it is smaller."""
    return buffer if buffer.numel() >= numel else torch.empty(numel, dtype=buffer.dtype, device=buffer.device)


def _prefetch(readers: list[TensorReader], names: list[str], *, slots: int,
              pin: bool) -> Generator[tuple[_Slot, Callable[[], None]], None, None]:
    """Yield ``(slot, release)`` for each name in order, read by a background thread into one of
    ``slots`` buffers; ``release()`` hands the slot back for the next read. Closing the generator
    stops the thread. An error in the thread is raised here."""
    free: queue.Queue[_Slot] = queue.Queue()
    ready: queue.Queue[_Slot | BaseException | None] = queue.Queue()
    stop = threading.Event()
    for _ in range(slots):
        free.put(_Slot(len(readers), pin))

    def read() -> None:
        try:
            for name in names:
                slot = free.get()
                if stop.is_set():
                    return
                slot.fill(readers, name)
                ready.put(slot)
            ready.put(None)
        except BaseException as error:  # noqa: BLE001 — handed to the consumer, which raises it
            ready.put(error)

    thread = threading.Thread(target=read, name="vlmdiag-weights-reader", daemon=True)
    thread.start()
    try:
        while (item := ready.get()) is not None:
            if isinstance(item, BaseException):
                raise item
            yield item, (lambda slot=item: free.put(slot))
    finally:
        stop.set()
        free.put(_Slot(0, False))  # wake the thread if it waits for a slot
        thread.join()
