"""The per-layer localization curves (paper §3.1, Fig. 4), derived in one place for the
localization claims and for ``--regions localized``: which swap pairs changed their answer with
the visual tokens swapped from (or at) layer L, and which skip items each model state answered
right. Plain numpy over the sweeps' results (no torch).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np


def swap_changed(results: Sequence, num_layers: int) -> np.ndarray:
    """``changed[n, L]`` (float 0/1, shape [N pairs, num_layers]): whether pair n's answer changed
    with the swap at LLM layer L, columns in layer order 0..num_layers-1.

    ``results`` are :class:`~vlmdiag.measure.swap.SwapResult` of one sweep (every pair swapped at
    the same layers, ``run.layers``; ``changed`` per tested layer).

    Raises:
        ValueError: no results, or a layer below ``num_layers`` was not tested.
    """
    if not results:
        raise ValueError("no swap pairs were measured")
    layers = list(results[0].run.layers)
    missing = [k for k in range(num_layers) if k not in layers]
    if missing:
        raise ValueError(f"the swap sweep did not test layers {missing}")
    columns = [layers.index(k) for k in range(num_layers)]
    return np.stack([r.changed for r in results]).astype(float)[:, columns]


def skip_correct(skip, num_layers: int) -> tuple[np.ndarray, np.ndarray]:
    """``(baseline, skipped)``: float 0/1 correctness of the unskipped model, shape [N items], and
    with LLM layer k skipped, shape [N items, num_layers] (columns in layer order).

    ``skip`` is a :class:`~vlmdiag.measure.skip.SkipResult` (``layers``: the skipped layer per row,
    -1 for the unskipped baseline; ``correct``: [rows, N]).

    Raises:
        ValueError: the sweep has no unskipped baseline (layer -1) or misses a layer.
    """
    layers = list(skip.layers)
    if -1 not in layers:
        raise ValueError("the layer-skip sweep has no unskipped baseline (layer -1)")
    missing = [k for k in range(num_layers) if k not in layers]
    if missing:
        raise ValueError(f"the layer-skip sweep did not skip layers {missing}")
    baseline = skip.correct[layers.index(-1)].astype(float)
    skipped = np.stack([skip.correct[layers.index(k)] for k in range(num_layers)]).astype(float).T
    return baseline, skipped
