"""The weight statistics against numpy/scipy, on arbitrary matrices (Hypothesis)."""

from contextlib import ExitStack

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from vlmdiag.measure.weights import SPECTRUM_RANKS, delta_stats, rounding_energy

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


# ---------------------------------------------------------------- the storage-precision floor


def rounding_reference(stored: torch.Tensor) -> float:
    """Σ ulp(w)²/12 over the stored values, ulp from numpy's float64 frexp (w = m·2^e, m ∈ [0.5, 1))."""
    mantissa, exponent = np.frexp(stored.double().numpy())
    binade = np.where(mantissa != 0, np.ldexp(1.0, exponent - 1), 0.0)
    return float((binade ** 2).sum() * torch.finfo(stored.dtype).eps ** 2 / 12)


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16, torch.float32])
def test_rounding_energy_is_the_expected_square_error_of_rounding(dtype):
    g = torch.Generator().manual_seed(0)
    w = torch.randn(256, 384, generator=g, dtype=torch.float64) * 0.02
    stored = w.to(dtype)
    energy = rounding_energy(stored.float(), dtype)
    assert energy == pytest.approx(rounding_reference(stored), rel=1e-4)
    if dtype != torch.float32:  # the measured square error of this rounding (fp32 is below float64's resolution)
        assert float((stored.double() - w).square().sum()) == pytest.approx(energy, rel=0.03)


def test_a_pure_bf16_round_trip_sits_on_its_floor_and_a_low_rank_update_rises_above_it():
    """ΔW = bf16(W) − W has the floor's Frobenius norm and a top singular value at the floor's σ;
    a rank-2 update of 3× the per-entry rounding error of two bf16 checkpoints rises above both, but only in 2 directions."""
    g = torch.Generator().manual_seed(0)
    w = torch.randn(384, 256, generator=g) * 0.02
    before = w.bfloat16()
    floor_energy = 2 * rounding_energy(before.float(), torch.bfloat16)  # both stored in bf16
    rounded = delta_stats((w.bfloat16().float() - w), w, spectra=True, floor_energy=rounding_energy(w, torch.float32)
                          + rounding_energy(before.float(), torch.bfloat16))
    assert 0.9 < rounded.frobenius / rounded.floor < 1.1
    assert 0.9 < rounded.singular_values[0] / rounded.floor_sigma < 1.3
    per_entry = (floor_energy / w.numel()) ** 0.5
    signal = (torch.randn(384, 2, generator=g) @ torch.randn(2, 256, generator=g)) * (3 * per_entry / 2 ** 0.5)
    after = (w + signal).bfloat16()
    update = delta_stats(after.float() - before.float(), before.float(), spectra=True, floor_energy=floor_energy)
    assert update.frobenius > 2.5 * update.floor
    assert update.singular_values[1] > 5 * update.floor_sigma > 5 * update.singular_values[2]


# ---------------------------------------------------------------- the streaming engines against float64

DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16, "fp32": torch.float32}
NAMES = ["model.language_model.layers.0.mlp.up_proj.weight", "model.language_model.layers.1.self_attn.q_proj.weight",
         "model.visual.blocks.0.attn.qkv.weight", "model.visual.merger.mlp.0.weight"]


@pytest.fixture(scope="module")
def config_json(tmp_path_factory):
    from vlmdiag.planted import tiny_config

    return tiny_config(num_layers=2, vision_depth=1).to_json_string()  # the layers NAMES hold


def write_triple(folder, config_json, tensors_by_stage):
    """Checkpoint folders ``origin``/``base``/``rl`` holding exactly the given tensors."""
    from safetensors.torch import save_file

    from vlmdiag.checkpoints import Checkpoint

    out = {}
    for stage, tensors in tensors_by_stage.items():
        (folder / stage).mkdir(parents=True, exist_ok=True)
        (folder / stage / "config.json").write_text(config_json)
        save_file({k: v.contiguous() for k, v in tensors.items()}, str(folder / stage / "model.safetensors"))
        out[stage] = Checkpoint(folder / stage)
    return out


def reference(tensors_by_stage, name):
    """(‖ΔRL‖, ‖ΔRL‖/‖W_base‖, ‖ΔIN‖, ‖ΔIN‖/‖W_origin‖) in float64 from the stored values."""
    o, b, r = (tensors_by_stage[s][name].double() for s in ("origin", "base", "rl"))
    rel = lambda d, w: float(d.norm() / w.norm()) if w.norm() > 0 else np.inf  # noqa: E731
    return float((r - b).norm()), rel(r - b, b), float((b - o).norm()), rel(b - o, o)


shapes = st.lists(st.tuples(st.integers(1, 40), st.integers(1, 40), st.integers(1, 3)),
                  min_size=len(NAMES), max_size=len(NAMES))


@settings(max_examples=25, deadline=None)
@given(shapes=shapes, dtypes=st.lists(st.sampled_from(sorted(DTYPES)), min_size=3, max_size=3),
       chunk=st.sampled_from([1, 7, 64, 1 << 16]), workers=st.integers(1, 3), seed=st.integers(0, 2**16),
       spectra=st.booleans())
def test_streamed_norms_match_float64(tmp_path_factory, config_json, monkeypatch_module, shapes, dtypes, chunk,
                                      workers, seed, spectra):
    """Both engines (slices on CPU; whole matrices with spectra), any slice size, worker count,
    stored dtype per checkpoint and matrix shape (3-D ones flattened), equal float64 norms of the
    stored values to fp32 accuracy."""
    from vlmdiag.measure import weight_engines, weights

    monkeypatch_module.setattr(weight_engines, "NORM_CHUNK", chunk)
    monkeypatch_module.setattr(weight_engines, "FLOOR_STRIDE", 1)  # exact floors (the sampling: test below)
    g = torch.Generator().manual_seed(seed)
    tensors = {"origin": {}, "base": {}, "rl": {}}
    for name, (rows, cols, depth) in zip(NAMES, shapes):
        shape = (rows, cols) if depth == 1 else (rows, depth, cols)
        origin = torch.randn(shape, generator=g) * 0.02
        base = origin + torch.randn(shape, generator=g) * 1e-2
        rl = base + torch.randn(shape, generator=g) * 1e-4
        for stage, value, dtype in zip(("origin", "base", "rl"), (origin, base, rl), dtypes):
            tensors[stage][name] = value.to(DTYPES[dtype])
    cks = write_triple(tmp_path_factory.mktemp("triple"), config_json, tensors)
    result = weights.weight_deltas(cks["base"], cks["rl"], cks["origin"], spectra=spectra, device="cpu",
                                   workers=workers)
    by = {(m.name, m.stage): m.stats for m in result.matrices}
    assert sorted({n for n, _ in by}) == sorted(NAMES) and len(by) == 2 * len(NAMES)
    assert_matches_float64(by, tensors, spectra)


def assert_matches_float64(by, tensors, spectra):
    for name in NAMES:
        rl_norm, rl_rel, in_norm, in_rel = reference(tensors, name)
        assert by[name, "rl"].frobenius == pytest.approx(rl_norm, rel=1e-5, abs=1e-12)
        assert by[name, "rl"].relative == pytest.approx(rl_rel, rel=1e-5, abs=1e-12)
        assert by[name, "in"].frobenius == pytest.approx(in_norm, rel=1e-5, abs=1e-12)
        assert by[name, "in"].relative == pytest.approx(in_rel, rel=1e-5, abs=1e-12)
        assert (by[name, "rl"].singular_values is not None) == (spectra and rl_norm > 0)
        rounding = {stage: rounding_reference(tensors[stage][name]) for stage in ("origin", "base", "rl")}
        assert by[name, "rl"].floor == pytest.approx((rounding["base"] + rounding["rl"]) ** 0.5, rel=1e-4)
        assert by[name, "in"].floor == pytest.approx((rounding["base"] + rounding["origin"]) ** 0.5, rel=1e-4)
        m, n = tensors["base"][name].shape[0], tensors["base"][name][0].numel()
        assert by[name, "rl"].floor_sigma == pytest.approx(by[name, "rl"].floor * (m ** -0.5 + n ** -0.5), rel=1e-6)
        for stage, (before, after) in (("rl", ("base", "rl")), ("in", ("origin", "base"))):
            assert by[name, stage].updated == updated_reference(tensors[before][name], tensors[after][name],
                                                                tensors["base"][name])
            assert (by[name, stage].rotation is not None) == spectra


def updated_reference(before, after, reference):
    """Elements that rounding an unchanged value cannot produce, from float64 and numpy's frexp:
    any change in one dtype, more than half the coarser dtype's ulp of ``reference`` across two."""
    delta = (after.double() - before.double()).abs().numpy()
    if before.dtype == after.dtype:
        return int((delta != 0).sum())
    eps = max(torch.finfo(before.dtype).eps, torch.finfo(after.dtype).eps)
    mantissa, exponent = np.frexp(reference.double().numpy())
    binade = np.where(mantissa != 0, np.ldexp(1.0, exponent - 1), 0.0)
    return int((delta > binade * eps / 2).sum())


def test_the_slice_engine_samples_the_floor_closely(tmp_path, config_json, monkeypatch):
    """Every FLOOR_STRIDE-th slice of a matrix of many slices: the floor within 1% of the exact one,
    on rows of unequal magnitude (a fifth of the rows 10× larger)."""
    from vlmdiag.measure import weight_engines, weights

    monkeypatch.setattr(weight_engines, "NORM_CHUNK", 1000)
    g = torch.Generator().manual_seed(3)
    shape = (300, 200)
    scale = torch.where(torch.rand(shape[0], 1, generator=g) < 0.2, 0.2, 0.02)
    tensors = {stage: {} for stage in ("origin", "base", "rl")}
    for name in NAMES:
        w = torch.randn(shape, generator=g) * scale
        for stage, step in (("origin", 0.0), ("base", 1e-2), ("rl", 1e-3)):
            w = w + step * torch.randn(shape, generator=g)
            tensors[stage][name] = w.bfloat16()
    cks = write_triple(tmp_path, config_json, tensors)
    result = weights.weight_deltas(cks["base"], cks["rl"], cks["origin"], device="cpu")
    for m in result.matrices:
        before, after = ("base", "rl") if m.stage == "rl" else ("origin", "base")
        exact = (rounding_reference(tensors[before][m.name]) + rounding_reference(tensors[after][m.name])) ** 0.5
        assert m.stats.floor == pytest.approx(exact, rel=0.01)


@pytest.mark.parametrize("spectra", [False, True])
def test_prefetching_engine_matches_float64_on_cpu(tmp_path, config_json, spectra):
    """The CUDA engine (reader thread, two buffer slots, whole matrices) run on CPU, where its
    logic can be checked without a GPU: same numbers, every matrix once, in order."""
    from vlmdiag.measure import weight_engines

    g = torch.Generator().manual_seed(1)
    tensors = {"origin": {}, "base": {}, "rl": {}}
    for i, name in enumerate(NAMES):  # sizes grow and shrink, so buffers are reused and regrown
        shape = ((3, 50), (40, 33), (2, 7), (64, 64))[i]
        origin = torch.randn(shape, generator=g)
        for stage, value in (("origin", origin), ("base", origin + 0.1 * torch.randn(shape, generator=g)),
                             ("rl", origin + 0.2 * torch.randn(shape, generator=g))):
            tensors[stage][name] = value.bfloat16()
    cks = write_triple(tmp_path, config_json, tensors)
    with ExitStack() as stack:
        readers = [stack.enter_context(cks[s].reader()) for s in ("base", "rl", "origin")]
        out = list(weight_engines.tensor_pass(readers, NAMES, torch.device("cpu"), spectra))
    assert [name for name, _ in out] == NAMES
    by = {(name, stage): stat for name, stats in out for stage, stat in zip(("rl", "in"), stats)}
    assert_matches_float64(by, tensors, spectra)
    if spectra:
        sigma = np.linalg.svd((tensors["rl"][NAMES[3]].double() - tensors["base"][NAMES[3]].double()).numpy(),
                              compute_uv=False)
        np.testing.assert_allclose(by[NAMES[3], "rl"].singular_values, sigma[:50], rtol=1e-4)


@pytest.fixture(scope="module")
def monkeypatch_module():
    with pytest.MonkeyPatch.context() as patch:
        yield patch


@pytest.mark.parametrize("engine", ["slices", "whole", "prefetch"])
@pytest.mark.parametrize("stage", ["base", "rl", "origin"])
def test_nan_in_any_checkpoint_names_it_and_the_tensor(tmp_path, config_json, stage, engine):
    from vlmdiag.errors import NonFiniteWeightsError
    from vlmdiag.measure import weight_engines, weights

    tensors = {s: {n: torch.full((8, 8), 0.01 * i) for n in NAMES} for i, s in enumerate(("origin", "base", "rl"))}
    tensors[stage][NAMES[2]][3, 4] = float("nan")
    tensors[stage][NAMES[2]][5, 1] = float("inf")
    cks = write_triple(tmp_path, config_json, tensors)
    with pytest.raises(NonFiniteWeightsError, match=rf"{stage}: tensor {NAMES[2]} holds 2 NaN/Inf"):
        if engine == "prefetch":
            with ExitStack() as stack:
                readers = [stack.enter_context(cks[s].reader()) for s in ("base", "rl", "origin")]
                list(weight_engines.tensor_pass(readers, NAMES, torch.device("cpu"), False))
        else:
            weights.weight_deltas(cks["base"], cks["rl"], cks["origin"], spectra=engine == "whole", device="cpu")


def test_without_origin_only_rl_and_progress_in_order(tmp_path, config_json):
    from vlmdiag.measure.weights import weight_deltas

    tensors = {s: {n: torch.full((4, 6), float(i + 1)) for n in NAMES} for i, s in enumerate(("origin", "base", "rl"))}
    cks = write_triple(tmp_path, config_json, tensors)
    calls = []
    result = weight_deltas(cks["base"], cks["rl"], progress=lambda done, total: calls.append((done, total)))
    assert calls == [(i, len(NAMES)) for i in range(1, len(NAMES) + 1)]
    assert result.stages == ("rl",)
    assert all(m.stats.frobenius == pytest.approx(np.sqrt(24)) and m.stats.relative == pytest.approx(0.5)
               for m in result.matrices)


def test_cuda_refused_without_cuda(tmp_path, config_json):
    from vlmdiag.errors import UsageError
    from vlmdiag.measure.weights import weight_deltas

    if torch.cuda.is_available():
        pytest.skip("CUDA is available here")
    tensors = {s: {n: torch.ones(2, 2) for n in NAMES} for s in ("origin", "base", "rl")}
    cks = write_triple(tmp_path, config_json, tensors)
    with pytest.raises(UsageError, match="CUDA is not available"):
        weight_deltas(cks["base"], cks["rl"], device="cuda")


@pytest.mark.parametrize("magnitude", [1e-22, 1e-3, 1e16])
def test_spectrum_is_exact_at_any_magnitude(magnitude):
    """Hypothesis found it: a ΔW of 1e-22 (below fp32's normal range once squared in the Gram
    matrix) read σ 1 % low. Values are rescaled before the Gram."""
    g = torch.Generator().manual_seed(1)
    delta = torch.randn(12, 7, generator=g) * magnitude
    stats = delta_stats(delta, torch.zeros_like(delta), spectra=True)
    sigma = np.linalg.svd(delta.double().numpy(), compute_uv=False)
    np.testing.assert_allclose(stats.singular_values, sigma, rtol=1e-4)
    assert stats.stable_rank == pytest.approx((sigma ** 2).sum() / sigma[0] ** 2, rel=1e-4)
