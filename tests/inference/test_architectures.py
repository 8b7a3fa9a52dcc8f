"""The measurements on tiny random models of all 9 supported classes: attention capture equals
eager, swap at L = 0 reproduces the source, the skip hook equals zeroed weights, and the adapter's
module paths and checkpoint-name rules fit the model."""

from __future__ import annotations

import copy
import tempfile

import numpy as np
import pytest
import torch
from safetensors import safe_open

import tiny_models
from vlmdiag.measure import attention as att
from vlmdiag.measure import skip, swap
from vlmdiag.runtime.model import get_module, wrap_model

FAMILIES = tiny_models.ARCH_FAMILIES


@pytest.fixture(scope="module", params=FAMILIES)
def arch(request):
    family = request.param
    model = tiny_models.arch_model(family)
    return family, wrap_model(model), tiny_models.arch_inputs(model, family, image_seed=0)


def test_adapter_paths_and_checkpoint_names(arch):
    family, loaded, _ = arch
    assert loaded.adapter.family == family
    for path in ("decoder_layers", "vision_blocks", "projector", "embed_tokens", "final_norm", "lm_head"):
        get_module(loaded.model, getattr(loaded.adapter, path))
    assert len(get_module(loaded.model, loaded.adapter.vision_blocks)) == loaded.adapter.num_vision_layers(loaded.config)
    assert loaded.num_layers == loaded.adapter.num_llm_layers(loaded.config) == 4
    with tempfile.TemporaryDirectory() as folder:
        loaded.model.save_pretrained(folder)
        with safe_open(f"{folder}/model.safetensors", "pt") as handle:
            on_disk = set(handle.keys())
    in_memory = set(loaded.model.state_dict().keys())
    mapped = {loaded.adapter.canonical(name) for name in on_disk}
    assert mapped <= in_memory, sorted(mapped - in_memory)[:5]
    tied = {"lm_head.weight"} if loaded.config.get("tie_word_embeddings") else set()
    assert in_memory - mapped <= tied, sorted(in_memory - mapped)[:5]


def test_attention_capture_equals_eager(arch):
    family, loaded, inputs = arch
    seq = inputs["input_ids"].shape[1]
    query = torch.zeros(1, seq, dtype=torch.bool)
    query[0, -6:] = True
    mass, n_r, n_v = att.attention_on_sequence(loaded, inputs, query, row_block=4)
    eager = copy.deepcopy(loaded.model)
    eager.set_attn_implementation("eager")
    with torch.no_grad():
        out = eager(**inputs, output_attentions=True)
    cols = (inputs["input_ids"][0] == loaded.image_token_id).numpy()
    expected = np.stack([a[0].double().numpy()[:, -6:][:, :, cols].sum(-1).mean(-1) for a in out.attentions])
    assert mass.shape == (1, 4, expected.shape[1]) and n_r[0] == 6 and n_v[0] == cols.sum() > 0
    np.testing.assert_allclose(mass[0], expected, atol=1e-5, rtol=0)
    assert expected.min() > 1e-4   # image keys do receive attention


def test_swap_endpoints(arch):
    family, loaded, target = arch
    source = tiny_models.arch_inputs(loaded.model, family, image_seed=1)
    run = swap.swap_sweep_inputs(loaded, target, source, layers=[0, 2, 4], max_new_tokens=6, layer_batch=3)
    assert not np.array_equal(run.target_ids, run.source_ids)
    np.testing.assert_array_equal(run.swapped_ids[0], run.source_ids)
    np.testing.assert_array_equal(run.swapped_ids[2], run.target_ids)


def test_skip_hook_equals_zeroed_weights(arch):
    family, loaded, inputs = arch
    layer = 1

    def scores(model):
        with torch.no_grad():
            out = model.generate(**inputs, max_new_tokens=4, min_new_tokens=4, do_sample=False,
                                 output_scores=True, return_dict_in_generate=True, pad_token_id=0)
        return torch.stack(out.scores).nan_to_num(neginf=0.0)

    base = scores(loaded.model)
    with skip.skip_layers(loaded, [layer]):
        hooked = scores(loaded.model)
    zeroed = copy.deepcopy(loaded.model)
    block = get_module(zeroed, loaded.adapter.decoder_layers)[layer]
    with torch.no_grad():
        block.self_attn.o_proj.weight.zero_()
        block.mlp.down_proj.weight.zero_()
    torch.testing.assert_close(hooked, scores(zeroed), atol=1e-5, rtol=0)
    assert (hooked - base).abs().max() > 1e-3
