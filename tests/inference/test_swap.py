"""Visual-token swap (paper §3.1.1, Eq. 2): prefill-only, equal spans, one source prefill per pair."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from vlmdiag.errors import ProbeError
from vlmdiag.measure import swap
from vlmdiag.probes.types import SwapPair
from vlmdiag.runtime.generate import build_inputs, cache_kwarg, generate, greedy_generate_inputs, image_prompt

PROMPT = "Read the text in the image."


@pytest.fixture(scope="module")
def pair_inputs(qwen_loaded, images):
    target = build_inputs(qwen_loaded, [image_prompt(PROMPT, images["red"])])
    source = build_inputs(qwen_loaded, [image_prompt(PROMPT, images["blue_corner"])])
    return target, source


def test_sweep_endpoints(qwen_loaded, images, pair_inputs):
    """L = 0 reproduces the source image's answer exactly; L = n_layers (no swap) the target's."""
    target, source = pair_inputs
    run = swap.swap_sweep_inputs(qwen_loaded, target, source, layers=[0, 1, 2, 3, 4], max_new_tokens=12,
                                 layer_batch=3)
    gen_t = generate(qwen_loaded, [image_prompt(PROMPT, images["red"])], max_new_tokens=12)[0].text
    gen_s = generate(qwen_loaded, [image_prompt(PROMPT, images["blue_corner"])], max_new_tokens=12)[0].text
    assert gen_t != gen_s
    assert run.target_answer == gen_t and run.source_answer == gen_s
    assert run.swapped[0] == gen_s and run.swapped[4] == gen_t
    assert list(run.layers) == [0, 1, 2, 3, 4] and run.mode == "from"


def _first_logits(loaded, target, cache):
    with torch.no_grad():
        return loaded.model(**target, **{cache_kwarg(): cache}, use_cache=True).logits[0, -1]


def test_intermediate_layers_mix(qwen_loaded, pair_inputs):
    """Swapping from L = 1, 2, 3 gives first-token logits that differ from both endpoints, and
    "only L" at every layer equals "from 0"."""
    target, source = pair_inputs
    recorder = swap.RecordingCache(config=qwen_loaded.model.config)
    with torch.no_grad():
        qwen_loaded.model(**source, **{cache_kwarg(): recorder}, use_cache=True)
    pos = swap.check_same_span(target, source, qwen_loaded.image_token_id)
    make = lambda layers: swap.VisualSwapCache(recorder.recorded, pos, [frozenset(layers)],  # noqa: E731
                                               config=qwen_loaded.model.config)
    t_logits, s_logits = _first_logits(qwen_loaded, target, make([])), _first_logits(qwen_loaded, target, make(range(4)))
    with torch.no_grad():
        direct_s = qwen_loaded.model(**source).logits[0, -1]
    torch.testing.assert_close(s_logits, direct_s, atol=1e-5, rtol=0)
    for L in (1, 2, 3):
        mixed = _first_logits(qwen_loaded, target, make(range(L, 4)))
        assert (mixed - t_logits).abs().max() > 1e-3 and (mixed - s_logits).abs().max() > 1e-3


def test_swap_is_prefill_only(qwen_loaded, pair_inputs):
    """After a swapped generation the cache holds the source K/V at visual positions in swapped
    layers, the target's elsewhere, and no duplicated span: length = prompt + generated - 1."""
    target, source = pair_inputs
    recorder = swap.RecordingCache(config=qwen_loaded.model.config)
    with torch.no_grad():
        qwen_loaded.model(**source, **{cache_kwarg(): recorder}, use_cache=True)
    t_rec = swap.RecordingCache(config=qwen_loaded.model.config)
    with torch.no_grad():
        qwen_loaded.model(**target, **{cache_kwarg(): t_rec}, use_cache=True)
    pos = swap.check_same_span(target, source, qwen_loaded.image_token_id)
    cache = swap.VisualSwapCache(recorder.recorded, pos, [frozenset([2, 3])], config=qwen_loaded.model.config)
    seq = greedy_generate_inputs(qwen_loaded, target, max_new_tokens=6, past_key_values=cache)
    assert seq.shape[1] - target["input_ids"].shape[1] == 6
    for layer in range(4):
        keys = cache.layers[layer].keys
        assert keys.shape[2] == seq.shape[1] - 1
        want = (recorder if layer >= 2 else t_rec).recorded[layer][0]
        torch.testing.assert_close(keys[:, :, pos], want[:, :, pos], atol=0, rtol=0)


def test_unequal_spans_are_refused(qwen_loaded, images):
    pair = SwapPair("p-bad", "ocr", images["red"], images["green_wide"], PROMPT, "a", "b")
    with pytest.raises(ProbeError, match="p-bad: target and source differ in visual tokens"):
        swap.swap_pairs(qwen_loaded, [pair], layers=[0])


def test_one_source_prefill_per_pair(qwen_loaded, images):
    """Pairs and layer settings share batches: the vision tower runs once for the sources' batch
    and once for the targets' (2 pairs x (1 + 4 settings) rows), not once per pair or layer."""
    calls = []
    handle = qwen_loaded.model.model.visual.register_forward_hook(lambda m, a, o: calls.append(1))
    try:
        pair = SwapPair("p", "ocr", images["red"], images["blue_corner"], PROMPT, "a", "b")
        results = swap.swap_pairs(qwen_loaded, [pair, pair], layers=[0, 1, 2, 3], max_new_tokens=4)
    finally:
        handle.remove()
    assert len(calls) == 2
    assert results[0].changed.shape == (4,) and results[0].changed.dtype == bool
    np.testing.assert_array_equal(swap.change_rates(results), results[0].changed.astype(float))


@pytest.mark.parametrize("mode", ["from", "only"])
def test_batched_pairs_equal_one_pair_at_a_time(qwen_loaded, images, mode):
    """Pairs of different prompts and image sizes (so rows are left-padded differently) give, token
    for token, the answers of the unbatched single-pair sweep."""
    wide_b = images["green_wide"].copy()
    wide_b.paste((255, 0, 255), (0, 0, 60, 60))
    pairs = [SwapPair("a", "ocr", images["red"], images["blue_corner"], PROMPT, "a", "b"),
             SwapPair("b", "counting", images["green_wide"], wide_b, "How many items are there in the image?", "1", "2"),
             SwapPair("c", "ocr", images["blue"], images["red"], "What color is the square?", "a", "b")]
    layers = [0, 1, 3] if mode == "only" else [0, 2, 4]
    batched = swap.swap_pairs(qwen_loaded, pairs, layers=layers, mode=mode, max_new_tokens=8, batch_size=5)
    for pair, got in zip(pairs, batched):
        target = build_inputs(qwen_loaded, [image_prompt(pair.prompt, pair.target_image)])
        source = build_inputs(qwen_loaded, [image_prompt(pair.prompt, pair.source_image)])
        alone = swap.swap_sweep_inputs(qwen_loaded, target, source, layers=layers, mode=mode, max_new_tokens=8)
        assert got.run.target_answer == alone.target_answer and got.run.source_answer == alone.source_answer
        assert [x.tolist() for x in got.run.swapped_ids] == [x.tolist() for x in alone.swapped_ids]
        assert got.run.swapped == alone.swapped


def test_only_mode_and_validation(qwen_loaded, pair_inputs):
    target, source = pair_inputs
    run = swap.swap_sweep_inputs(qwen_loaded, target, source, layers=[3], mode="only", max_new_tokens=4)
    assert run.mode == "only" and len(run.swapped) == 1
    with pytest.raises(ValueError, match="outside 0..3"):
        swap.swap_sweep_inputs(qwen_loaded, target, source, layers=[4], mode="only")
    with pytest.raises(ValueError, match="mode="):
        swap.swap_sweep_inputs(qwen_loaded, target, source, mode="at")


def test_box_frame_of_qwen25_is_the_resized_image(qwen_loaded):
    """Qwen2.5-VL writes boxes in pixels of the image its processor resized (smart_resize to
    multiples of 28 within the pixel bounds): the frame holds that size, from the patch grid."""
    from transformers.models.qwen2_vl.image_processing_pil_qwen2_vl import smart_resize

    from tiny_models import colour_image

    image = colour_image(size=(200, 90))
    inputs = build_inputs(qwen_loaded, [image_prompt(PROMPT, image)])
    frame = swap.box_frame(qwen_loaded, inputs, image.size)
    processor = qwen_loaded.processor.image_processor
    height, width = smart_resize(90, 200, factor=28, min_pixels=processor.size["shortest_edge"],
                                 max_pixels=processor.size["longest_edge"])
    assert frame.coordinates == "resized_pixels" and frame.resized_size == (width, height) != (200, 90)
    # a box the model writes over the resized image's right half is the original's right half
    assert frame.to_pixels((width / 2, 0, width, height)) == pytest.approx((100, 0, 200, 90))
