"""Layer skipping (paper §3.1.2): identity layer through hooks, cache consistent."""

from __future__ import annotations

import copy

import pytest
import torch

from vlmdiag.measure import skip
from vlmdiag.measure.grading import extract_answer
from vlmdiag.probes.types import AbilityItem
from vlmdiag.runtime.generate import build_inputs, image_prompt, text_prompt


def _scores(loaded, inputs, n=6):
    with torch.no_grad():
        out = loaded.model.generate(**inputs, max_new_tokens=n, min_new_tokens=n, do_sample=False,
                                    output_scores=True, return_dict_in_generate=True, pad_token_id=0)
    return torch.stack(out.scores).nan_to_num(neginf=0.0), out.sequences, out.past_key_values


@pytest.mark.parametrize("layer", [0, 2, 3])
def test_skip_hook_equals_zeroed_weights(qwen_loaded, images, layer):
    inputs = build_inputs(qwen_loaded, [image_prompt("What color is the square?", images["red"])])
    base_scores, _, _ = _scores(qwen_loaded, inputs)
    with skip.skip_layers(qwen_loaded, [layer]):
        hook_scores, _, cache = _scores(qwen_loaded, inputs)
    zeroed = copy.deepcopy(qwen_loaded.model)
    with torch.no_grad():
        zeroed.model.language_model.layers[layer].self_attn.o_proj.weight.zero_()
        zeroed.model.language_model.layers[layer].mlp.down_proj.weight.zero_()
    from vlmdiag.runtime.model import wrap_model

    zero_scores, _, _ = _scores(wrap_model(zeroed, qwen_loaded.processor), inputs)
    torch.testing.assert_close(hook_scores, zero_scores, atol=1e-5, rtol=0)
    assert (hook_scores - base_scores).abs().max() > 1e-3
    lengths = {cache.layers[i].keys.shape[2] for i in range(4)}
    assert lengths == {inputs["input_ids"].shape[1] + 5}


def test_hooks_removed_even_on_error(qwen_loaded):
    layers = qwen_loaded.model.model.language_model.layers
    with pytest.raises(RuntimeError):
        with skip.skip_layers(qwen_loaded, [1, 2]):
            assert len(layers[1]._forward_hooks) == 1
            raise RuntimeError("boom")
    assert all(len(layer._forward_hooks) == 0 for layer in layers)
    with pytest.raises(ValueError, match="outside 0..3"):
        with skip.skip_layers(qwen_loaded, [4]):
            pass


def test_skip_sweep_correctness_matrix(qwen_loaded):
    """Items whose gold answer is the unskipped model's own answer; shape [1 + layers, items].
    This random model rarely ends within 10 tokens: a response that runs out of the budget is
    truncated and wrong, one that ends is right at baseline; skipping a layer changes answers."""
    from vlmdiag.runtime.generate import generate

    questions = ["What is 2 + 3?", "Compute 7 * 8.", "What is 12 - 5?", "How many items are 3 + 4?"]
    prompts = [text_prompt(skip.MATH_PROMPT_PREFIX + q) for q in questions]
    baseline = generate(qwen_loaded, prompts, max_new_tokens=10)
    items = [AbilityItem(id=f"m{i}", kind="text_math", question=q, answer=extract_answer(g.text))
             for i, (q, g) in enumerate(zip(questions, baseline))]
    result = skip.skip_sweep(qwen_loaded, items, max_new_tokens=10)
    assert result.correct.shape == result.truncated.shape == (5, 4) and list(result.layers) == [-1, 0, 1, 2, 3]
    assert list(result.truncated[0]) == [g.hit_budget for g in baseline]
    assert (result.correct[0] == ~result.truncated[0]).all() and not (result.correct & result.truncated).any()
    assert any(result.answers[k] != result.answers[0] for k in range(1, 5))
    assert result.answers[0] == tuple(g.text for g in baseline)


def test_batched_settings_equal_one_setting_at_a_time(qwen_loaded, images):
    """Rows of all skip settings in shared, left-padded batches (text and image items) answer token
    for token as each setting does alone with :func:`skip.skip_layers`."""
    from vlmdiag.runtime.generate import generate

    items = [AbilityItem(id="t0", kind="text_math", question="What is 2 + 3?", answer="5"),
             AbilityItem(id="t1", kind="text_math", question="Compute 7 * 8 and then add 12 - 5.", answer="63"),
             AbilityItem(id="i0", kind="math_vqa", question="How many items?", answer="1", image=images["red"]),
             AbilityItem(id="i1", kind="math_vqa", question="What is 3 + 4?", answer="7", image=images["green_wide"])]
    result = skip.skip_sweep(qwen_loaded, items, layers=[1, 3], max_new_tokens=6, batch_size=5)
    prompts = [skip.math_prompt(item) for item in items]
    for s, k in enumerate(result.layers):
        with skip.skip_layers(qwen_loaded, [] if k < 0 else [int(k)]):
            alone = [generate(qwen_loaded, [p], max_new_tokens=6)[0].text for p in prompts]
        assert list(result.answers[s]) == alone, f"setting {k}"
