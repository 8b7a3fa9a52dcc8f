"""Reasoning→visual attention capture (paper Eq. 1) against eager ``output_attentions``."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import tiny_models
from vlmdiag.measure import attention as att
from vlmdiag.runtime.generate import build_inputs, extend_inputs, image_prompt
from vlmdiag.runtime.model import wrap_model

RESPONSE = "Let me look. <think> the square is red and there are 12 items </think> <answer>12</answer>"


def eager_reference(eager_loaded, prompt, response_ids):
    """Expected mass [layers, heads] from the full eager attention matrices."""
    inputs = build_inputs(eager_loaded, [prompt])
    full = extend_inputs(inputs, torch.as_tensor(response_ids))
    with torch.no_grad():
        out = eager_loaded.model(**full, output_attentions=True)
    prompt_len = inputs["input_ids"].shape[1]
    rows = np.zeros(full["input_ids"].shape[1], dtype=bool)
    rows[prompt_len:] = att.reasoning_token_mask(eager_loaded.tokenizer, response_ids)
    cols = (full["input_ids"][0] == eager_loaded.image_token_id).numpy()
    return np.stack([a[0].double().numpy()[:, rows][:, :, cols].sum(-1).mean(-1) for a in out.attentions])


@pytest.mark.parametrize("which", ["sdpa", "eager"])
def test_teacher_forced_equals_eager(which, qwen_loaded, qwen_eager, images):
    loaded = qwen_loaded if which == "sdpa" else qwen_eager
    prompt = image_prompt("How many items are there in the image?", images["green_wide"])
    got = att.attention_teacher_forced(loaded, [prompt], [RESPONSE])[0]
    ids = qwen_loaded.tokenizer(RESPONSE, add_special_tokens=False)["input_ids"]
    expected = eager_reference(qwen_eager, prompt, ids)
    assert got.mass.shape == (4, 4) and got.mode == "teacher_forced"
    np.testing.assert_allclose(got.mass, expected, atol=1e-5, rtol=0)
    np.testing.assert_allclose(got.mean, expected / got.n_visual, atol=1e-7, rtol=0)
    n_image = int((build_inputs(loaded, [prompt])["input_ids"] == loaded.image_token_id).sum())
    assert got.n_visual == n_image > 0 and 0 < got.n_reasoning < len(ids)
    assert np.all(got.mass > 0) and np.all(got.mass < 1)


def test_own_generation_equals_eager(qwen_loaded, qwen_eager, images):
    """Own-generation mode: the rows the generated tokens had, recomputed in one pass."""
    from vlmdiag.runtime.generate import generate

    prompts = [image_prompt("What color is the square?", images["red"]),
               image_prompt("How many items are there in the image?", images["green_wide"])]
    got = att.attention_own_generation(qwen_loaded, prompts, max_new_tokens=10, batch_size=2)
    gens = generate(qwen_loaded, prompts, max_new_tokens=10)
    for result, prompt, gen in zip(got, prompts, gens):
        assert result.mode == "own" and result.response == gen.text and result.n_reasoning == len(gen.token_ids)
        np.testing.assert_allclose(result.mass, eager_reference(qwen_eager, prompt, gen.token_ids), atol=1e-5, rtol=0)


def test_capture_leaves_model_untouched(qwen_loaded, images):
    inputs = build_inputs(qwen_loaded, [image_prompt("What color is the square?", images["red"])])
    config = qwen_loaded.model.config.text_config
    with torch.no_grad():
        before = qwen_loaded.model(**inputs).logits
    att.attention_teacher_forced(qwen_loaded, [image_prompt("What color is the square?", images["red"])], [RESPONSE])
    with pytest.raises(RuntimeError):
        query = torch.zeros_like(inputs["input_ids"], dtype=torch.bool)
        with att.capture_attention(qwen_loaded, query, query):
            assert config._attn_implementation == att.CAPTURE_IMPLEMENTATION + "_sdpa"
            raise RuntimeError("boom")
    assert config._attn_implementation == "sdpa"
    with torch.no_grad():
        after = qwen_loaded.model(**inputs).logits
    assert torch.equal(before, after)


@pytest.mark.parametrize("text, expected", [
    ("abc", "all"),
    ("<think>ab</think>cd", "inside"),
    ("x <think> reasoning here", "inside"),
])
def test_reasoning_token_mask(qwen_processor, text, expected):
    tok = qwen_processor.tokenizer
    ids = tok(text, add_special_tokens=False)["input_ids"]
    mask = att.reasoning_token_mask(tok, ids)
    if expected == "all":
        assert mask.all()
    else:
        start, end = att.reasoning_char_span(text)
        chosen = tok.decode([i for i, m in zip(ids, mask) if m])
        assert chosen.strip() == text[start:end].strip() and not mask.all()


def test_reasoning_char_span():
    assert att.reasoning_char_span("a<think>bc</think>d") == (8, 10)
    assert att.reasoning_char_span("no tags") == (0, 7)


def _plant(model, layers, strength):
    """Make ``layers`` attend to image tokens: image embeddings carry a marker direction d (added
    by the merger's output bias), and in the planted layers every query is c·u while keys read d."""
    hidden = model.config.text_config.hidden_size
    d = torch.zeros(hidden); d[0] = 1.0
    with torch.no_grad():
        merger_out = model.model.visual.merger.mlp[-1]
        merger_out.bias += 16.0 * d
        for k in layers:
            attn = model.model.language_model.layers[k].self_attn
            head_dim = attn.head_dim
            attn.q_proj.weight.zero_(); attn.q_proj.bias.fill_(strength / head_dim ** 0.5)
            attn.k_proj.weight.zero_(); attn.k_proj.bias.zero_()
            attn.k_proj.weight[:, 0] = 1.0
    return model


def test_planted_late_attention_is_found(qwen_processor, images):
    """A model edited to attend to image keys in its last layer shows a higher mass there than the
    unedited one, and identical mass in layers 0-2; two identical models show no difference."""
    def build(planted):
        model = tiny_models.spread_init(tiny_models.qwen25_model(qwen_processor.tokenizer, seed=0), seed=0)
        return wrap_model(_plant(model, [3] if planted else [], strength=6.0), qwen_processor)

    prompts = [image_prompt("What color is the square?", images[k]) for k in ("red", "blue_corner")]
    responses = [RESPONSE, "the answer is 7"]
    base = np.stack([r.mass.mean(1) for r in att.attention_teacher_forced(build(False), prompts, responses)])
    edited = np.stack([r.mass.mean(1) for r in att.attention_teacher_forced(build(True), prompts, responses)])
    again = np.stack([r.mass.mean(1) for r in att.attention_teacher_forced(build(False), prompts, responses)])
    np.testing.assert_allclose(base[:, :3], edited[:, :3], atol=1e-6)
    assert np.all(edited[:, 3] - base[:, 3] > 0.3), edited - base
    np.testing.assert_array_equal(base, again)


def test_padded_batch_equals_single_rows(qwen_loaded, images):
    """Left-padded batch (SDPA builds a boolean mask): each row's mass equals its B = 1 mass."""
    prompts = [image_prompt("What color is the square?", images["red"]),
               image_prompt("How many items are there in the image?", images["green_wide"])]
    batch = build_inputs(qwen_loaded, prompts)
    query = torch.zeros_like(batch["input_ids"], dtype=torch.bool)
    query[:, -5:] = True
    mass, n_r, _ = att.attention_on_sequence(qwen_loaded, batch, query, row_block=2)
    assert (batch["attention_mask"] == 0).any()
    for row, prompt in enumerate(prompts):
        single = build_inputs(qwen_loaded, [prompt])
        q1 = torch.zeros_like(single["input_ids"], dtype=torch.bool)
        q1[:, -5:] = True
        qwen_loaded.model.model.rope_deltas = None
        m1, _, _ = att.attention_on_sequence(qwen_loaded, single, q1)
        np.testing.assert_allclose(mass[row], m1[0], atol=1e-5, rtol=0)


def test_own_generation_rows_equal_generation_time_attention(qwen_loaded, qwen_eager, images):
    """The rows recomputed in one pass are the rows eager attention had while generating: for
    each generated token fed back at step t, generate(output_attentions=True)[t] gives its row."""
    prompt = image_prompt("What color is the square?", images["blue_corner"])
    inputs = build_inputs(qwen_eager, [prompt])
    with torch.no_grad():
        out = qwen_eager.model.generate(**inputs, max_new_tokens=6, min_new_tokens=6, do_sample=False,
                                        output_attentions=True, return_dict_in_generate=True,
                                        pad_token_id=0, suppress_tokens=[qwen_eager.image_token_id])
    generated = out.sequences[0, inputs["input_ids"].shape[1]:]
    cols = (inputs["input_ids"][0] == qwen_eager.image_token_id).numpy()
    # Steps 1..5 feed generated tokens 0..4 as queries.
    during = np.stack([[step[layer][0, :, 0].double().numpy()[:, :len(cols)][:, cols].sum(-1)
                        for layer in range(4)] for step in out.attentions[1:]])      # [5, L, H]
    full = extend_inputs(inputs, generated[:5])
    query = torch.zeros_like(full["input_ids"], dtype=torch.bool)
    query[0, -5:] = True
    mass, _, _ = att.attention_on_sequence(qwen_loaded, full, query)
    np.testing.assert_allclose(mass[0], during.mean(0), atol=1e-5, rtol=0)
