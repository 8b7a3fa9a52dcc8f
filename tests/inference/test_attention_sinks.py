"""Visual attention sinks (Kang et al. 2025, arXiv 2503.03321): a planted sink is found and taking
it out moves the R→V mass by exactly the attention it took; no sink, nothing taken out; the
claim's ``sinks`` setting chooses which mass the verdict reads."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

import tiny_models
from vlmdiag.measure import attention as att
from vlmdiag.runtime.generate import build_inputs, extend_batch, image_prompt
from vlmdiag.runtime.model import wrap_model

RESPONSE = "<think> the square is red and there are 12 items </think> 12"
SPIKE_DIM, RATIO, STRENGTH = 5, 6.0, 12.0


def _model(processor, *, planted: bool, eager: bool = False):
    """The tiny Qwen2.5-VL; planted: the first visual token leaves layer 0 with a massive value in
    one hidden dimension (a forward hook on layer 0), and layers 1-3 are edited so that every
    query attends to keys large in that dimension (q·k read through the lowest-frequency rotary
    channel, so positions barely matter)."""
    model = tiny_models.spread_init(tiny_models.qwen25_model(processor.tokenizer, seed=0), seed=0)
    if eager:
        model.set_attn_implementation("eager")
    if not planted:
        return wrap_model(model, processor), None
    layers = model.model.language_model.layers
    image_token = model.config.image_token_id
    first = {}

    def spike(module, args, kwargs, output):
        hidden = output[0] if isinstance(output, tuple) else output
        if hidden.shape[1] == first["ids"].shape[1]:
            hidden = hidden.clone()
            for b in range(hidden.shape[0]):
                j = int((first["ids"][b] == image_token).nonzero()[0])
                hidden[b, j, SPIKE_DIM] = 400.0
        return (hidden, *output[1:]) if isinstance(output, tuple) else hidden

    layers[0].register_forward_hook(spike, with_kwargs=True)
    model.register_forward_pre_hook(lambda m, a, k: first.update(ids=k["input_ids"]), with_kwargs=True)
    with torch.no_grad():
        for layer in layers[1:]:
            attn = layer.self_attn
            hd = attn.head_dim
            r = hd // 2 - 1
            attn.q_proj.weight.zero_(); attn.q_proj.bias.zero_()
            attn.k_proj.weight.zero_(); attn.k_proj.bias.zero_()
            attn.q_proj.bias[r::hd] = STRENGTH
            attn.k_proj.weight[r::hd, SPIKE_DIM] = 1.0
    return wrap_model(model, processor), first


def _sequence(loaded, images):
    prompts = [image_prompt("What color is the square?", images["red"]),
               image_prompt("How many items are there in the image?", images["green_wide"])]
    inputs = build_inputs(loaded, prompts)
    ids = torch.as_tensor(loaded.tokenizer(RESPONSE, add_special_tokens=False)["input_ids"])
    full = extend_batch(inputs, [ids, ids[:-2]], pad=0)
    query = torch.zeros_like(full["input_ids"], dtype=torch.bool)
    query[0, -len(ids):] = True
    query[1, -(len(ids) - 2):] = True
    return full, query


def test_a_planted_sink_is_found_and_excluding_it_removes_its_attention(qwen_processor, images):
    loaded, _ = _model(qwen_processor, planted=True)
    full, query = _sequence(loaded, images)
    got = att.capture_on_sequence(loaded, full, query, sink_ratio=RATIO)
    # Layer 0's input has no spike; from layer 1 on exactly the planted token is a sink.
    assert got.sinks[:, 0].tolist() == [0, 0] and (got.sinks[:, 1:] == 1).all(), got.sinks
    # It takes most of every reasoning row's attention there; without it little is left on the image.
    assert (got.mass[:, 1:].mean(-1) > 0.9).all() and (got.mass_without_sinks[:, 1:].mean(-1) < 0.1).all()
    np.testing.assert_allclose(got.mass_without_sinks[:, 0], got.mass[:, 0], atol=0, rtol=0)
    # Exactly: mass without sinks = mass − the attention on the sink, read from eager attention weights.
    eager, first = _model(qwen_processor, planted=True, eager=True)
    with torch.no_grad():
        out = eager.model(**full, output_attentions=True)
    for b in range(2):
        j = int((full["input_ids"][b] == eager.image_token_id).nonzero()[0])
        rows = query[b].numpy()
        on_sink = np.stack([a[b].double().numpy()[:, rows][:, :, j].mean(-1) for a in out.attentions])  # [L, H]
        np.testing.assert_allclose(got.mass[b, 1:] - got.mass_without_sinks[b, 1:], on_sink[1:], atol=1e-5, rtol=0)


def test_no_sink_excludes_nothing(qwen_loaded, images):
    full, query = _sequence(qwen_loaded, images)
    got = att.capture_on_sequence(qwen_loaded, full, query, sink_ratio=RATIO)
    assert (got.sinks == 0).all()
    np.testing.assert_array_equal(got.mass_without_sinks, got.mass)
    plain, _, _ = att.attention_on_sequence(qwen_loaded, full, query)
    np.testing.assert_allclose(got.mass, plain, atol=1e-6, rtol=0)


def test_sink_tokens_rule():
    hidden = torch.randn(1, 5, 64) * 0.1
    hidden[0, 2, 7] = 50.0      # visual, massive: a sink
    hidden[0, 0, 3] = 50.0      # massive but text: not a visual sink
    visual = torch.tensor([[False, True, True, True, False]])
    assert att.sink_tokens(hidden, visual, 6.0).tolist() == [[False, False, True, False, False]]


# ----------------------------------------------------------------------------- the claim's setting

L, N = 6, 30


def _comparison(sink_share_rl: float, sink_share_in: float = 0.0, seed: int = 0):
    """IN and RL with the same attention on non-sink visual keys; RL puts ``sink_share_rl`` more on
    sinks in Mid–Late layers."""
    from vlmdiag.measure.tables import AttentionComparison

    rng = np.random.default_rng(seed)
    without = 0.05 + rng.normal(0, 0.002, (N, L))
    rl_without = without + rng.normal(0, 0.002, (N, L))
    extra = np.array([0, 0, 1, 1, 1, 1.0]) * sink_share_rl
    mass = {m: {"IN": without + sink_share_in, "RL": rl_without + extra} for m in ("teacher_forced", "own")}
    free = {m: {"IN": without, "RL": rl_without} for m in ("teacher_forced", "own")}
    sinks = {m: {"IN": np.zeros((N, L)), "RL": np.ones((N, L)) * (sink_share_rl > 0)} for m in ("teacher_forced", "own")}
    mean = {m: {k: v / 16 for k, v in by.items()} for m, by in mass.items()}
    return AttentionComparison(tuple(f"i{i}" for i in range(N)), mass, mean, ("RL",) * N,
                               mass_without_sinks=free, sinks=sinks)


def _judge(m, **overrides):
    from vlmdiag.claims import all_claims
    from vlmdiag.claims.thresholds import load_thresholds
    from vlmdiag.regions import regions_for

    shipped = load_thresholds(Path(__file__).resolve().parents[2] / "thresholds.yaml")
    t = shipped.get("attention.r2v_shift_mid_late").model_copy(update=overrides)
    return all_claims()["attention.r2v_shift_mid_late"].judge(m, regions_for("paper", L), t)


def test_the_sinks_setting_chooses_the_mass_the_verdict_reads():
    m = _comparison(0.03)
    default = _judge(m)
    assert default.metrics["sinks"] == "include" and default.verdict == "reproduced"
    excluded = _judge(m, sinks="exclude")
    assert excluded.verdict != "reproduced" and "visual sinks excluded" in excluded.reason
    assert default.metrics["teacher_forced_RL_visual_sinks"] == [1.0] * L
    assert max(abs(x) for x in excluded.metrics["teacher_forced_mass_without_sinks_increase"]) < 0.01


@pytest.mark.parametrize("sinks", ["include", "exclude"])
def test_null_pair_is_never_reproduced_either_way(sinks):
    from vlmdiag.measure.tables import AttentionComparison

    m = _comparison(0.0)
    same = AttentionComparison(m.item_ids, {k: {"IN": v["IN"], "RL": v["IN"]} for k, v in m.mass.items()},
                               {k: {"IN": v["IN"], "RL": v["IN"]} for k, v in m.mean.items()}, m.shared_from,
                               mass_without_sinks={k: {"IN": v["IN"], "RL": v["IN"]} for k, v in m.mass_without_sinks.items()},
                               sinks={k: {"IN": v["IN"], "RL": v["IN"]} for k, v in m.sinks.items()})
    assert _judge(same, sinks=sinks).verdict != "reproduced"
