"""The three engines of :func:`vlmdiag.measure.weights.weight_deltas` (same numbers, to fp32
rounding; ``tests/core/test_weight_math.py``): CPU slices (norms only), CPU whole matrices
(spectra) and whole matrices on a device with a reader thread (CUDA; also runs on CPU, which is
how its logic is tested where there is no GPU).

Each yields ``(name, stats)`` in ``names`` order, ``stats`` one
:class:`~vlmdiag.measure.delta_stats.DeltaStats` per stage (ΔRL, then ΔIN with an origin).
``extras=False`` leaves out the statistics of the sparsity and principal-subspace claims (the
updated-element counts, the principal subspaces): ``bench/bench_spectra.py`` times the pass both ways.
"""

from __future__ import annotations

import math
import queue
import threading
from collections.abc import Callable, Generator, Iterator
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import torch

from vlmdiag.checkpoints import Checkpoint
from vlmdiag.checkpoints.reader import TensorReader
from vlmdiag.errors import NonFiniteWeightsError
from vlmdiag.measure.delta_stats import (
    _EXPONENT_BITS,
    DeltaStats,
    _delta_stats,
    _ulp_scale,
    count_updated,
    floors,
    principal_subspace,
    rounding_energy,
)

#: The CPU norm engine reads the storage-precision floor's binades on every FLOOR_STRIDE-th slice (every
#: slice of a matrix of fewer slices; see _SliceNorms): on every slice, the bit masking cost as much as
#: the fp32 conversion (measured on the 0.74B bench triple: the whole pass 1.9× slower).
FLOOR_STRIDE = 8

#: Elements per slice in the CPU norm engine: three fp32 slices (1.5 MiB) and their stored bytes
#: stay in the L2 cache. Measured on the 0.74B bench triple: 32 Ki–128 Ki within noise, 16 Ki 2× slower.
NORM_CHUNK = 1 << 17

_Stats = tuple[DeltaStats, ...]


def pool_pass(names: list[str], measure: Callable[[str], _Stats],
              workers: int) -> Iterator[tuple[str, _Stats]]:
    """``(name, measure(name))`` in ``names`` order, measured by ``workers`` threads that each
    run torch and scipy's BLAS with one thread (the settings are restored afterwards)."""
    from threadpoolctl import threadpool_limits

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    blas = threadpool_limits(limits=1, user_api="blas")
    pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="vlmdiag-weights")
    try:
        futures = [pool.submit(measure, name) for name in names]
        for name, future in zip(names, futures):
            yield name, future.result()
    finally:
        pool.shutdown(wait=True, cancel_futures=True)
        blas.restore_original_limits()
        torch.set_num_threads(threads)


def _stats_from_squares(squares: np.ndarray, rounding: list[float], shape: tuple[int, ...],
                        updated: list[int | None]) -> _Stats:
    """``squares`` = [‖W_base‖², ‖W_origin‖², ‖ΔRL‖², ‖ΔIN‖²] (the origin entries absent without
    origin), ``rounding`` = :func:`rounding_energy` of [base, rl, origin], ``updated`` the
    updated-element count per stage → one :class:`DeltaStats` per stage."""
    stages = len(squares) // 2
    references, deltas = np.sqrt(squares[:stages]), np.sqrt(squares[stages:])
    stage_floors = [floors(rounding[0] + rounding[1 + i], shape) for i in range(stages)]
    return tuple(DeltaStats(float(d), float(d / r) if r > 0 else math.inf, *f, updated=u)
                 for d, r, f, u in zip(deltas, references, stage_floors, updated))


class SliceNorms:
    """Sums of squares of one matrix from slices read into per-thread buffers.

    Buffers per thread: the stored bytes of one slice per checkpoint (rows of ``raw``) and their
    fp32 values (rows of ``values``: base, rl, origin). Per slice: read, convert, ‖base‖, ‖rl‖
    and ‖origin‖, on every :data:`FLOOR_STRIDE`-th slice the norms of every row's binades, then
    rl − base and origin − base in place, their norms and (``extras``) the updated elements
    (:func:`count_updated`, against the base row). The tensor views each step works on are
    made once per slice size (making them per slice cost as much as a norm).

    The floor (:func:`rounding_energy`) is the sampled slices' Σ binade² / Σ w², a property of the
    shape of the value distribution that barely varies from row to row, times the whole Σ w²: so
    rows of unequal magnitude (outlier channels) do not bias it.
    """

    def __init__(self, readers: list[TensorReader], extras: bool = True):
        self.readers, self.extras = readers, extras
        self.local = threading.local()

    def __call__(self, name: str) -> _Stats:
        local, readers, n = self.local, self.readers, len(self.readers)
        if not hasattr(local, "raw"):
            local.raw = torch.empty(n, NORM_CHUNK * 8, dtype=torch.uint8)  # 8 bytes: the widest dtype
            local.values = torch.empty(n, NORM_CHUNK, dtype=torch.float32)
            local.binades = torch.empty(n, NORM_CHUNK, dtype=torch.int32)
            local.signs = torch.empty(n - 1, NORM_CHUNK, dtype=torch.float32)
            local.steps = {}
        dtypes = tuple(r.dtype(name) for r in readers)
        numel = readers[0].numel(name)
        chunks = -(-numel // NORM_CHUNK)
        stride = FLOOR_STRIDE if chunks >= FLOOR_STRIDE else 1
        references = torch.empty(chunks, n, dtype=torch.float32)  # per slice: ‖base‖, ‖rl‖, ‖origin‖
        deltas = torch.empty(chunks, n - 1, dtype=torch.float32)  # per slice: ‖ΔRL‖, ‖ΔIN‖
        binade_norms = torch.zeros(chunks, n, dtype=torch.float32)  # per sampled slice and checkpoint
        same = len(set(dtypes)) == 1  # then an update is any non-zero element: counted as Σ|sign(ΔW)|
        counts = torch.zeros(chunks, n - 1, dtype=torch.float32)  # per slice: updated elements (exact < 2^24)
        mixed = [0] * (n - 1)
        raw = [local.raw[i].view(dtype) for i, dtype in enumerate(dtypes)]
        sliced = zip(*(r.slices(name, buffer, NORM_CHUNK) for r, buffer in zip(readers, raw)))
        for index, (reference, delta, binade, count, (k, *_)) in enumerate(
                zip(references.unbind(0), deltas.unbind(0), binade_norms.unbind(0), counts.unbind(0), sliced)):
            key = (dtypes, k)
            if key not in local.steps:
                local.steps[key] = self._views(dtypes, k)
            copies, block, tail, head, (bits, binades), signs = local.steps[key]
            for target, source in copies:
                target.copy_(source)
            torch.linalg.vector_norm(block, dim=1, out=reference)
            if index % stride == 0:
                torch.bitwise_and(bits, _EXPONENT_BITS, out=binades)
                torch.linalg.vector_norm(binades.view(torch.float32), dim=1, out=binade)
            tail.sub_(head)  # rl − base, origin − base (the sign does not change a norm)
            torch.linalg.vector_norm(tail, dim=1, out=delta)
            if self.extras and same:  # |sign| summed: 1.5 norms' time; count_nonzero or an ℓ1 norm took 5
                torch.sum(torch.sign(tail, out=signs).abs_(), dim=1, out=count)
            elif self.extras:
                for stage in range(n - 1):
                    mixed[stage] += count_updated(tail[stage], head[0], dtypes[0], dtypes[stage + 1])
        references, deltas = references.double().square(), deltas.double().square().sum(0).numpy()
        weights_sq = references.sum(0).numpy()
        if not (np.isfinite(weights_sq).all() and np.isfinite(deltas).all()):
            raise_non_finite(readers, name)  # or finite values overflowed: inf, as a whole-matrix norm gives
        sampled = references[::stride].sum(0).numpy()
        binades = binade_norms[::stride].double().square().sum(0).numpy()
        rounding = [b / s * w * _ulp_scale(d) if s > 0 else 0.0
                    for b, s, w, d in zip(binades, sampled, weights_sq, dtypes)]
        squares = np.concatenate([weights_sq[::2], deltas])  # ‖W_base‖², ‖W_origin‖², ‖ΔRL‖², ‖ΔIN‖²
        updated = ([int(c) for c in counts.double().sum(0).round()] if same else mixed) if self.extras \
            else [None] * (n - 1)
        return _stats_from_squares(squares, rounding, tuple(readers[0].checkpoint.shape(name)), updated)

    def _views(self, dtypes: tuple[torch.dtype, ...], k: int):
        """(conversion copies, all rows, rows rl/origin, row base, (values as int32, binades),
        signs of rows rl/origin) over the first ``k`` elements of this thread's buffers."""
        local = self.local
        block = local.values[:, :k]
        if len(set(dtypes)) == 1:
            copies = [(block, local.raw.view(dtypes[0])[:, :k])]
        else:
            copies = [(block[i], local.raw[i].view(dtype)[:k]) for i, dtype in enumerate(dtypes)]
        return (copies, block, block[1:], block[:1], (block.view(torch.int32), local.binades[:, :k]),
                local.signs[:, :k])


def _stage_stats(values: list[torch.Tensor], norms: list[float], rounding: list[float],
                 dtypes: list[torch.dtype], spectra: bool, extras: bool, principal: list) -> _Stats:
    """ΔRL (and ΔIN) of whole fp32 matrices ``values`` = [base, rl(, origin)], in place: rl
    becomes ΔRL, origin ΔIN. ``principal``: the :func:`principal_subspace` of each (or Nones)."""
    base = values[0]
    stats = [_delta_stats(values[1].sub_(base), norms[0], spectra=spectra, floor_energy=rounding[0] + rounding[1],
                          updated=count_updated(values[1], base, dtypes[0], dtypes[1]) if extras else None,
                          principal=(principal[0], principal[1]) if principal[0] is not None else None)]
    if len(values) == 3:
        delta = torch.sub(base, values[2], out=values[2])
        stats.append(_delta_stats(delta, norms[2], spectra=spectra, floor_energy=rounding[0] + rounding[2],
                                  updated=count_updated(delta, base, dtypes[0], dtypes[2]) if extras else None,
                                  principal=(principal[2], principal[0]) if principal[0] is not None else None))
    return tuple(stats)


class WholeMatrices:
    """Stats with spectra of one matrix on CPU, from whole fp32 copies in per-thread buffers that
    are reused: one for the stored bytes, three fp32 ones (W_base, W_rl, W_origin; W_rl turned
    into ΔRL and W_origin into ΔIN in place, after each W's principal subspace is taken)."""

    def __init__(self, readers: list[TensorReader], spectra: bool, extras: bool = True):
        self.readers, self.spectra, self.extras = readers, spectra, extras
        self.local = threading.local()

    def __call__(self, name: str) -> _Stats:
        local, readers = self.local, self.readers
        if not hasattr(local, "raw"):
            local.raw = torch.empty(0, dtype=torch.uint8)
            local.values = [torch.empty(0, dtype=torch.float32) for _ in range(3)]
        shape = readers[0].checkpoint.shape(name)
        values, norms, rounding, dtypes = [], [], [], []
        for i, reader in enumerate(readers):
            dtype, numel = reader.dtype(name), reader.numel(name)
            local.raw = grown(local.raw, numel * dtype.itemsize)
            stored = reader.read_into(name, local.raw[:numel * dtype.itemsize].view(dtype))
            local.values[i] = grown(local.values[i], numel)
            values.append(local.values[i][:numel].copy_(stored).view(shape))
            norms.append(check_finite(values[i], reader.checkpoint, name))
            rounding.append(rounding_energy(values[i], dtype))
            dtypes.append(dtype)
        principal = [principal_subspace(v) if self.spectra and self.extras else None for v in values]
        return _stage_stats(values, norms, rounding, dtypes, self.spectra, self.extras, principal)


def raise_non_finite(readers: list[TensorReader], name: str) -> None:
    """Raise for the first checkpoint whose tensor ``name`` holds NaN/Inf; return if none does."""
    for reader in readers:
        check_finite(reader.checkpoint.get(name).float(), reader.checkpoint, name)


def check_finite(tensor: torch.Tensor, checkpoint: Checkpoint, name: str) -> float:
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


def tensor_pass(readers: list[TensorReader], names: list[str], device: torch.device,
                spectra: bool, extras: bool = True) -> Iterator[tuple[str, _Stats]]:
    """Whole matrices on a CUDA ``device``, the next one read meanwhile (see
    :func:`~vlmdiag.measure.weights.weight_deltas`). It also runs on CPU (unpinned)."""
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
                    staged[i] = grown(staged[i], stored.numel() * stored.itemsize)
                    stored = staged[i][:stored.numel() * stored.itemsize].view(stored.dtype).copy_(
                        stored, non_blocking=True)
                work[i] = grown(work[i], stored.numel())
                values.append(work[i][:stored.numel()].copy_(stored).view(shape))
            if cuda:
                slot.copied = torch.cuda.current_stream(device).record_event()
            release()  # the reader may refill this slot (after the copies, on CUDA)
            norms = [check_finite(v, r.checkpoint, name) for v, r in zip(values, readers)]
            rounding = [rounding_energy(v, r.dtype(name)) for v, r in zip(values, readers)]
            dtypes = [r.dtype(name) for r in readers]
            principal = [principal_subspace(v) if spectra and extras else None for v in values]
            yield name, _stage_stats(values, norms, rounding, dtypes, spectra, extras, principal)
    finally:
        slots.close()
        if cuda:  # hand the buffers back, so later model loads see the GPU memory as free
            del work, staged, values
            torch.cuda.empty_cache()


def grown(buffer: torch.Tensor, numel: int) -> torch.Tensor:
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
