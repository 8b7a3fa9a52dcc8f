"""The weight statistics against numpy/scipy, on arbitrary matrices (Hypothesis)."""

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from vlmdiag.measure.weights import SPECTRUM_RANKS, delta_stats

finite = st.floats(-1e3, 1e3, allow_nan=False, width=32)
matrices = st.tuples(st.integers(1, 48), st.integers(1, 48)).flatmap(
    lambda shape: st.tuples(arrays(np.float32, shape, elements=finite), arrays(np.float32, shape, elements=finite)))


@settings(max_examples=60, deadline=None)
@given(matrices)
def test_norms_and_spectrum_match_numpy(pair):
    delta, before = (torch.from_numpy(a) for a in pair)
    stats = delta_stats(delta, before, spectra=True)
    d = pair[0].astype(np.float64)
    frob = np.linalg.norm(d)
    assert stats.frobenius == pytest.approx(frob, rel=1e-4, abs=1e-3)
    ref = np.linalg.norm(pair[1].astype(np.float64))
    if ref > 1e-3:
        assert stats.relative == pytest.approx(frob / ref, rel=1e-3)
    if stats.frobenius == 0:
        assert stats.singular_values is None and stats.effective_rank is None
        return
    sigma = np.linalg.svd(d, compute_uv=False)
    top = sigma[0]
    np.testing.assert_allclose(stats.singular_values, sigma[:50], rtol=1e-3, atol=1e-3 * top)
    assert stats.stable_rank == pytest.approx(frob ** 2 / top ** 2, rel=1e-3)
    p = sigma / sigma.sum()
    p = p[p > 1e-12]
    assert stats.effective_rank == pytest.approx(np.exp(-(p * np.log(p)).sum()), rel=1e-2, abs=1e-2)
    assert 1 - 1e-6 <= stats.effective_rank <= min(d.shape) + 1e-6
    assert set(stats.log_ratio) == {k for k in SPECTRUM_RANKS if k <= min(d.shape)}
    assert all(v <= 1e-6 for v in stats.log_ratio.values())


def test_low_rank_update_reads_as_maximally_steep():
    g = torch.Generator().manual_seed(0)
    low = torch.randn(64, 2, generator=g) @ torch.randn(2, 64, generator=g)
    full = torch.randn(64, 64, generator=g)
    steep, flat = (delta_stats(d, torch.ones(64, 64), spectra=True) for d in (low, full))
    assert steep.effective_rank < 2.5 < 20 < flat.effective_rank
    assert all(steep.log_ratio[k] < -10 < flat.log_ratio[k] for k in SPECTRUM_RANKS)
    assert steep.stable_rank < 2.01


def test_higher_rank_weights_are_flattened_per_output_channel():
    conv = torch.randn(8, 3, 2, 2, 2)
    stats = delta_stats(conv, torch.ones_like(conv), spectra=True)
    assert stats.singular_values.shape == (8,)
    assert stats.frobenius == pytest.approx(float(conv.norm()), rel=1e-5)
